// `sockbroker status` (AdminService.ListSessions): host root sees a session a nobody client
// holds, with its identity, pid and socket count; nobody itself is refused (PERMISSION_DENIED)
// and both calls are audit-logged.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DIST, startDaemon, worldCopy, until } from '../helpers/daemon.js';

const run = promisify(execFile);

/** A nobody client holding a session with two AF_INET sockets and one AF_UNIX pair until its stdin closes. */
async function holdAsNobody(address: string): Promise<{ pid: number; release(): Promise<void> }> {
  const world = worldCopy();
  const file = join(world, `holder-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, `
import { connect } from 'sockbroker';
const socket = await connect(${JSON.stringify(address)});
const a = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
const b = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
await b.sendto(Buffer.from('x'.repeat(7)), ['127.0.0.1', 9]);
const pair = await socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM);
console.log('ready');
process.stdin.resume();
process.stdin.on('end', async () => { await socket.disconnect(); process.exit(0); });
`);
  chmodSync(file, 0o644);
  const proc = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file], { cwd: world, stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  const exited = once(proc, 'exit');
  await Promise.race([until(() => out.includes('ready'), 30_000), exited.then(() => { throw new Error('holder exited early'); })]);
  return {
    pid: proc.pid!,
    async release() {
      proc.stdin!.end();
      await exited;
      rmSync(file, { force: true });
    },
  };
}

test('status shows a nobody session with its pid and sockets; nobody may not ask', async (t) => {
  const d = await startDaemon();
  try {
    const holder = await holdAsNobody(d.address);
    try {
      const cli = join(DIST, 'daemon', 'cli.js');
      const json = JSON.parse((await run(process.execPath, [cli, 'status', '--broker', d.address, '--json'])).stdout);
      t.is(json.brokerPid, d.pid);
      t.is(json.sessions.length, 1);
      const s = json.sessions[0];
      t.like(s, { kind: 'local', uid: 65534, pid: holder.pid, hostRoot: false, rule: 'default', attachedStreams: 1, bytesOut: 7, captures: 0 });
      t.deepEqual(s.sockets, [{ family: 1, name: 'AF_UNIX', count: 2 }, { family: 2, name: 'AF_INET', count: 2 }]);
      t.regex(s.sessionPrefix, /^[0-9a-f]{8}$/);

      const table = (await run(process.execPath, [cli, 'status', '--broker', d.address])).stdout;
      const lines = table.trim().split('\n');
      t.regex(lines[0]!, /: 1 sessions, 4 sockets$/);
      t.regex(lines[1]!, /^SESSION\s+IDENTITY\s+PID\s+NETNS\s+RULE\s+AGE\s+STREAMS\s+SOCKETS\s+CAPTURES\s+RX\s+TX$/);
      t.regex(lines[2]!, new RegExp(`^${s.sessionPrefix}\\s+uid=65534 gid=65534\\s+${holder.pid}\\s+host\\s+default\\s+\\d+s\\s+1\\s+AF_UNIX:2,AF_INET:2\\s+0\\s+0B\\s+7B$`));
      t.true(await d.logged((l) => l.includes('"event":"admin.list_sessions"') && l.includes('"hostRoot":true')));

      // The same command as nobody: PermissionError, exit 1, and a denial in the audit log.
      const world = worldCopy();
      const refused = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, join(world, 'dist', 'daemon', 'cli.js'), 'status', '--broker', d.address]).then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      t.is(refused?.code, 1);
      t.regex(refused?.stderr ?? '', /Operation not permitted \(AdminService is for root on the broker host only\)/);
      t.true(await until(() => d.logs.some((l) => l.includes('"event":"admin.refused"') && l.includes('"uid":65534')), 5000));
    } finally {
      await holder.release();
    }
    // Once the client ends its session, the broker lists none.
    const after = JSON.parse((await run(process.execPath, [join(DIST, 'daemon', 'cli.js'), 'status', '--broker', d.address, '--json'])).stdout);
    t.deepEqual(after.sessions, []);
  } finally {
    await d.stop();
  }
});
