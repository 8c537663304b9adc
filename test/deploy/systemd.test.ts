// The systemd deployment: both units pass `systemd-analyze verify`; the daemon serves a socket
// passed by socket activation; it notifies READY=1 / WATCHDOG=1 / STOPPING=1 from its own pid;
// and run under exactly the unit's capability bounding set it still serves a nobody client in
// another network namespace with a grant (raw ICMP there).
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, readFileSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { DIST, ROOT, publicTempDir, runAsNobody, startDaemon, until, withDaemon } from '../helpers/daemon.js';
import { unitCapabilities } from './helpers.js';

const UNIT = join(ROOT, 'deploy', 'sockbroker.service');
const SOCKET = join(ROOT, 'deploy', 'sockbroker.socket');

test('systemd-analyze verify passes on the service and the socket unit', (t) => {
  const dir = publicTempDir('sb-units-');
  // verify checks that ExecStart's binary exists: point it at this build, as an install would.
  const unit = readFileSync(UNIT, 'utf8');
  t.regex(unit, /^ExecStart=\/usr\/bin\/sockbroker serve /m);
  writeFileSync(join(dir, 'sockbroker.service'), unit.replace(/^ExecStart=\/usr\/bin\/sockbroker /m, `ExecStart=${process.execPath} ${DIST}/daemon/cli.js `));
  copyFileSync(SOCKET, join(dir, 'sockbroker.socket'));
  try {
    const out = execFileSync('systemd-analyze', ['verify', join(dir, 'sockbroker.socket'), join(dir, 'sockbroker.service')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    t.is(out.trim(), '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  t.regex(unit, /^Type=notify$/m);
  t.regex(unit, /^NotifyAccess=main$/m);
  t.regex(unit, /^WatchdogSec=/m);
  t.regex(unit, /^RuntimeDirectoryPreserve=yes$/m, "stopping the service must not remove the socket unit's socket");
  for (const trap of ['ProtectHostname=yes', 'RestrictNamespaces=yes', 'MemoryDenyWriteExecute=yes', 'ProtectProc=invisible', 'PrivateNetwork=yes', 'PrivateUsers=yes']) {
    t.false(new RegExp(`^${trap}$`, 'm').test(unit), `${trap} would break the daemon`);
  }
});

test('socket activation: the daemon serves the socket it inherits (LISTEN_FDS) and leaves it to its owner', async (t) => {
  const dir = publicTempDir('sb-activate-');
  const path = join(dir, 'sb.sock');
  const proc = spawn('systemd-socket-activate', ['-l', path, process.execPath, join(DIST, 'daemon', 'cli.js'), 'serve', '--grace-period', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  proc.stderr!.on('data', (d) => (logs += d));
  try {
    t.true(await until(() => existsSync(path), 10_000), 'systemd-socket-activate listens');
    chmodSync(path, 0o666); // what the unit's SocketMode=0666 does
    // The first connection execs the daemon, which takes the queued connection from fd 3.
    const r = await runAsNobody(`
      import { connect } from 'sockbroker';
      const socket = await connect(${JSON.stringify(`unix:${path}`)});
      const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
      await s.bind(['127.0.0.1', 0]);
      const [host, port] = await s.getsockname();
      await s.close();
      await socket.disconnect();
      console.log(JSON.stringify({ host, ok: port > 0 }));
    `);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(JSON.parse(r.stdout.trim()), { host: '127.0.0.1', ok: true });
    const listening = logs.split('\n').find((l) => l.includes('"event":"listening"'));
    t.truthy(listening, logs);
    t.deepEqual(JSON.parse(listening!).addresses, [`unix:${path}`]);
    t.true(logs.includes('"uid":65534'), 'the caller is identified on the inherited socket');
    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    t.is(code, 0);
    t.true(existsSync(path), 'the socket belongs to the socket unit: the daemon does not unlink it');
    t.false(existsSync(`${path}.handoff`), 'the hand-off side channel it made is gone');
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A datagram socket with SO_PASSCRED (python3), printing {pid, data} per message received. */
function notifyListener(address: string) {
  const py = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
a = sys.argv[1]
s.bind(b'\\0' + a[1:].encode() if a.startswith('@') else a)
print(json.dumps({'bound': True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = [struct.unpack('iII', d[:12])[0] for l, t, d in anc if l == socket.SOL_SOCKET and t == socket.SCM_CREDENTIALS]
    print(json.dumps({'pid': pid[0] if pid else None, 'data': data.decode()}), flush=True)
`;
  const proc = spawn('python3', ['-c', py, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: Array<{ pid: number | null; data: string }> = [];
  let bound!: () => void;
  const ready = new Promise<void>((r) => (bound = r));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const m = JSON.parse(line);
    if (m.bound) bound();
    else messages.push(m);
  });
  return { proc, messages, ready };
}

for (const kind of ['path', 'abstract'] as const) {
  test(`sd_notify to a ${kind} NOTIFY_SOCKET: READY=1, WATCHDOG=1 and STOPPING=1 come from the daemon's own pid`, async (t) => {
    const dir = publicTempDir('sb-notify-');
    const address = kind === 'path' ? join(dir, 'notify.sock') : `@sb-notify-${randomBytes(6).toString('hex')}`;
    const listener = notifyListener(address);
    try {
      await listener.ready;
      // A 200 ms watchdog: pings every 100 ms.
      const d = await startDaemon({ env: { NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' } });
      const has = (prefix: string) => listener.messages.some((m) => m.data.startsWith(prefix));
      t.true(await until(() => has('READY=1'), 10_000), 'READY=1 arrives');
      const ready = listener.messages.find((m) => m.data.startsWith('READY=1'))!;
      t.is(ready.pid, d.pid, 'sent by the main process (NotifyAccess=main)');
      t.true(ready.data.includes(`STATUS=listening on ${d.address}`));
      t.true(await until(() => has('WATCHDOG=1'), 10_000), 'the event loop pings the watchdog');
      t.true(listener.messages.filter((m) => m.data === 'WATCHDOG=1').every((m) => m.pid === d.pid));
      t.is(await d.stop(), 0);
      const stopping = listener.messages.find((m) => m.data.startsWith('STOPPING=1'));
      t.truthy(stopping, 'STOPPING=1 on drain');
      t.is(stopping!.pid, d.pid);
    } finally {
      listener.proc.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("run under exactly the unit's bounding set, the daemon serves a nobody client in another network namespace with a grant", async (t) => {
  const caps = unitCapabilities(readFileSync(UNIT, 'utf8'));
  const tag = randomBytes(3).toString('hex');
  const [nsD, nsC] = [`sb-capd-${tag}`, `sb-capc-${tag}`];
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  for (const ns of [nsD, nsC]) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  const dir = publicTempDir('sb-caps-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'rules:\n  - name: nobody-ping\n    match: { uid: 65534 }\n    grant:\n      sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }]\n');
  chmodSync(policy, 0o644);
  const bounding = ['-all', ...caps.map((c) => '+' + c.replace(/^CAP_/, '').toLowerCase())].join(',');
  try {
    await withDaemon(async (d) => {
      // Root with this bounding set gets exactly it as its permitted and effective sets.
      const status = readFileSync(`/proc/${d.pid}/status`, 'latin1');
      const eff = BigInt('0x' + /^CapEff:\s+([0-9a-f]+)/m.exec(status)![1]);
      const bnd = BigInt('0x' + /^CapBnd:\s+([0-9a-f]+)/m.exec(status)![1]);
      t.is(eff, bnd);
      t.deepEqual(capNames(bnd), [...caps].sort());
      // The client lives in another namespace: reading its ids needs SYS_PTRACE, its sockets
      // SYS_ADMIN (setns), SETUID/SETGID (fsuid) and NET_RAW.
      const world = process.env.SOCKBROKER_WORLD_COPY!;
      const file = join(world, `caps-${tag}.mjs`);
      writeFileSync(file, `
        import { connect } from 'sockbroker';
        import { ping } from './dist/client/ping.js';
        const socket = await connect(${JSON.stringify(d.address)});
        const res = await ping(socket, '127.0.0.1', { count: 1, timeout: 5, interval: 0 });
        const ifs = await socket.ifNameindex();
        await socket.disconnect();
        console.log(JSON.stringify({ replies: res.replies.length, ifs }));
      `);
      chmodSync(file, 0o644);
      try {
        const env = { PATH: process.env.PATH!, HOME: '/tmp', SOCKBROKER_HANDOFF: process.env.SOCKBROKER_HANDOFF ?? '0' };
        const proc = spawn('ip', ['netns', 'exec', nsC, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file], { cwd: world, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        proc.stdout!.on('data', (b) => (out += b));
        proc.stderr!.on('data', (b) => (err += b));
        const [code] = await once(proc, 'exit');
        t.is(code, 0, err);
        t.deepEqual(JSON.parse(out.trim()), { replies: 1, ifs: [[1, 'lo']] });
      } finally {
        rmSync(file, { force: true });
      }
      t.true(await d.logged((l) => l.includes('"event":"policy.allow"') && l.includes('"by":"nobody-ping"') && l.includes('"uid":65534')));
    }, { netns: nsD, wrap: ['setpriv', `--bounding-set=${bounding}`, '--'], args: ['--config', policy] });
  } finally {
    for (const ns of [nsD, nsC]) ip('netns', 'del', ns);
    rmSync(dir, { recursive: true, force: true });
  }
});

const CAP_NAMES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE'];

/** The names of the bits set in a capability mask (an unknown bit shows as its number). */
function capNames(mask: bigint): string[] {
  const names: string[] = [];
  for (let i = 0; i < 64; i++) if ((mask >> BigInt(i)) & 1n) names.push(CAP_NAMES[i] ?? String(i));
  return names.sort();
}
