// The VM test bed from the test side: boot one throwaway qemu VM (Debian kernel with CAN, TIPC
// and RDS, vcan0 up, the host's files visible read-only under a tmpfs overlay, no network) and run
// one script in it. Booting costs ~3-8 s and every process start in the VM is ~25x slower than on
// the host (software emulation), so a suite boots ONE VM and runs one whole runner script in it:
//
//   const r = await runInVm(`node ${DIST}/test/can/runner.js`, { timeoutS: 240 });
//   const r = await runInVm(nodeSource, { lang: 'node', timeoutS: 240 });
//
// The script runs as root in the VM with cwd ROOT (the checkout), env PATH/HOME/LANG, VM_IO and
// VM_OUT (a directory whose files come back in `files`). Inline node scripts run from
// /run/vmio/script.mjs: import the project by absolute path (`${DIST}/client/index.js`).
// Implemented by scripts/vm/run.mjs (plain ESM, also a CLI). It never rejects once qemu started:
// a hard timeout or a VM that dies gives code null and `error` plus the console tail.
import { resolve, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** dist/ of this build and the checkout it came from. */
export const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ROOT = resolve(DIST, '..');

export interface VmOptions {
  /** Hard limit for boot + script, seconds; qemu is killed after it. */
  timeoutS: number;
  /** 'sh' (default): the script is a POSIX shell script; 'node': an ES module run by node. */
  lang?: 'sh' | 'node';
  /** Working directory in the VM (a host path; the VM sees the host's files). Default ROOT. */
  cwd?: string;
  env?: Record<string, string>;
  /** Extra files put in the VM's /run/vmio/ (e.g. data for the script). */
  files?: Record<string, string>;
}

export interface VmResult {
  /** The script's exit code; null when the VM gave no result (then `error` says why). */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall seconds from the start of the run (including qemu start) to the script's start. */
  bootS: number | null;
  /** Wall seconds for the whole run. */
  totalS: number;
  /** Guest uptime at the script's start, and the script's duration in guest time. */
  guestBootS: number | null;
  guestJobS: number | null;
  timedOut: boolean;
  error: string | null;
  /** Last lines of the serial console, and where the whole log was kept. */
  consoleTail: string;
  consoleLog: string | null;
  /** Files the script wrote to $VM_OUT, by name. */
  files: Record<string, string>;
}

interface RunMjs {
  runVm(opts: {
    argv: string[];
    cwd?: string;
    timeoutS?: number;
    env?: Record<string, string>;
    files?: Record<string, string>;
  }): Promise<VmResult>;
}

let runMjs: Promise<RunMjs> | undefined;
let queue: Promise<unknown> = Promise.resolve();

/** Runs `script` in a fresh VM. Runs from one test process are serialized (one VM at a time). */
export function runInVm(script: string, opts: VmOptions): Promise<VmResult> {
  runMjs ??= import(pathToFileURL(join(ROOT, 'scripts', 'vm', 'run.mjs')).href) as Promise<RunMjs>;
  const name = opts.lang === 'node' ? 'script.mjs' : 'script.sh';
  const argv = opts.lang === 'node' ? ['node', `/run/vmio/${name}`] : ['/bin/sh', `/run/vmio/${name}`];
  const run = queue.then(async () =>
    (await runMjs!).runVm({
      argv,
      cwd: opts.cwd ?? ROOT,
      timeoutS: opts.timeoutS,
      env: opts.env,
      files: { ...opts.files, [name]: script },
    }),
  );
  queue = run.catch(() => undefined);
  return run;
}

/** A few lines for t.log: times, and on failure the error, stderr and console tail. */
export function describeVmRun(r: VmResult): string {
  const f = (x: number | null) => (x === null ? '?' : x.toFixed(1));
  let s = `VM: boot ${f(r.bootS)} s wall (guest uptime ${f(r.guestBootS)} s), script ${f(r.guestJobS)} s guest, total ${f(r.totalS)} s wall, exit ${r.code}`;
  if (r.error || r.code !== 0) {
    if (r.error) s += `\nVM error: ${r.error}`;
    if (r.stderr) s += `\nstderr:\n${r.stderr.slice(-4000)}`;
    s += `\nconsole tail (${r.consoleLog ?? 'log not kept'}):\n${r.consoleTail}`;
  }
  return s;
}
