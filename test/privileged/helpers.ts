// Shared pieces of the privileged-family tests: a policy file in a world-readable place and a
// nobody client run inside the test net's namespace A (where the daemon runs too).
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { runAsNobody, publicTempDir } from '../helpers/daemon.js';

export function policyFile(yaml: string): string {
  const file = join(publicTempDir('sb-priv-'), 'policy.yaml');
  writeFileSync(file, yaml);
  chmodSync(file, 0o644);
  return file;
}

/**
 * Runs an ES module as nobody in `netns`; resolves to the JSON its last stdout line holds.
 * `ready` is called once the client prints a line "ready".
 */
export async function nobodyIn(netns: string, address: string, source: string, env: Record<string, string> = {}, ready?: () => void): Promise<any> {
  let said = false;
  const onStdout = (soFar: string): void => {
    if (!said && /^ready$/m.test(soFar)) {
      said = true;
      ready?.();
    }
  };
  const r = await runAsNobody(source, { SOCKBROKER_ADDRESS: address, ...env }, 60_000, netns, onStdout);
  if (r.code !== 0) throw new Error(`nobody client exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** The prelude of every client script: connect, and a probe that reports ok or the error. */
export const PRELUDE = `
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const out = {};
const probe = async (name, fn) => {
  try { out[name] = { ok: await fn() }; }
  catch (e) { out[name] = { error: e.constructor.name, errno: e.errno, message: e.message }; }
};
const done = async () => { await socket.disconnect(); console.log(JSON.stringify(out)); };
`;

/** A client's "ready" line: the callback to give nobodyIn and the promise it resolves. */
export function readyLine(): { ready: () => void; isReady: Promise<void> } {
  let ready: () => void = () => undefined;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  return { ready, isReady };
}
