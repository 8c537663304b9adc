// Hand-off as `nobody`: the broker creates a socket under the policy and gives this process the
// real fd. Ordinary TCP/UDP leave by default and keep working with the daemon stopped; a
// privileged option or port is refused by the kernel and granted ones go through the broker
// (send-back, checked by SO_COOKIE); raw sockets leave only with the `handoff` grant, the
// sniffer socket never; `handoff: false` and a `no_handoff` rule keep sockets on the broker.
import test from 'ava';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, spawnAsNobody, publicTempDir, until, type Daemon } from '../helpers/daemon.js';
import { createTestNet, type TestNet } from '../helpers/netns.js';

// Expired tickets close quickly here (the leak test waits for them).
process.env.SOCKBROKER_HANDOFF_TTL_MS = '1500';

/** A daemon in its own test netns with `policy` (YAML) as its config. */
async function daemonWith(net: TestNet, policy: string): Promise<Daemon> {
  const dir = publicTempDir('sb-handoff-');
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policy);
  chmodSync(file, 0o644);
  return startDaemon({ netns: net.a, args: ['--config', file] });
}

/** Starts `body` as nobody in the daemon's netns with `socket` connected (hand-off on unless opts say). */
function startNobody(d: Daemon, net: TestNet, body: string, opts = '{ handoff: true }', env: Record<string, string> = {}) {
  const src = `
import { connect } from 'sockbroker';
import { readlinkSync, existsSync, writeFileSync } from 'node:fs';
const socket = await connect(process.env.SOCKBROKER_ADDRESS, ${opts});
const out = {};
const probe = async (name, fn) => {
  try { out[name] = await fn(); }
  catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
};
const isFd = (s) => readlinkSync('/proc/self/fd/' + s.fileno()).startsWith('socket:');
const cookie = async (s) => (await s.getsockopt(socket.SOL_SOCKET, 57, 8)).readBigUInt64LE(0).toString();
${body}
console.log(JSON.stringify(out));
process.exit(0);
`;
  const { pid, done } = spawnAsNobody(src, { SOCKBROKER_ADDRESS: d.address, ...env }, 60_000, net.a);
  const result = done.then((r) => {
    if (r.code !== 0) throw new Error(`nobody script failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, any>;
  });
  return { pid, result };
}

/** Runs `body` as nobody (see startNobody) and resolves to what it put in `out`. */
function asNobody(d: Daemon, net: TestNet, body: string, opts?: string, env?: Record<string, string>) {
  return startNobody(d, net, body, opts, env).result;
}

const audits = (d: Daemon, event: string) => d.logs.map((l) => JSON.parse(l)).filter((l) => l.event === event);

test.serial('TCP and UDP are handed off by default, behave as sockets, and keep working with the daemon SIGSTOPped', async (t) => {
  const net = createTestNet();
  const d = await daemonWith(net, 'rules: []\n');
  const dir = publicTempDir('sb-handoff-sync-');
  chmodSync(dir, 0o777);
  try {
    const run = asNobody(d, net, `
const l = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
await l.bind(['127.0.0.1', 0]); await l.listen();
const c = await socket.createConnection(await l.getsockname());
const [a] = await l.accept();
const u1 = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
const u2 = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
await u1.bind(['127.0.0.1', 0]); await u2.bind(['127.0.0.1', 0]);
out.handed = [l, c, a, u1, u2].map((s) => s._handedOff && isFd(s));
out.cookies = [await cookie(l), await cookie(c), await cookie(u1), await cookie(u2)];
writeFileSync(${JSON.stringify(join(dir, 'created'))}, '');
while (!existsSync(${JSON.stringify(join(dir, 'stopped'))})) await new Promise((r) => setTimeout(r, 20));
// The daemon is stopped: everything below is this process and the kernel.
await c.sendall(Buffer.from('ping'));
out.tcp = (await a.recv(10)).toString();
await u1.sendto(Buffer.from('dgram'), await u2.getsockname());
const [data, from] = await u2.recvfrom(10); out.udp = [data.toString(), from[1] === (await u1.getsockname())[1]];
a.settimeout(0.2); await probe('timeout', () => a.recv(1));
a.setblocking(false); await probe('nonblocking', () => a.recv(1));
a.setblocking(true);
const f = c.makefile('rwb'); await f.write(Buffer.from('line\\n')); await f.flush();
const g = a.makefile('rb'); out.makefile = (await g.readline()).toString();
await f.close(); await g.close();
await c.close(); await probe('closed', () => c.recv(1));
`);
    t.true(await until(() => existsSync(join(dir, 'created')), 30_000), 'the sockets were created');
    process.kill(d.pid, 'SIGSTOP');
    writeFileSync(join(dir, 'stopped'), '');
    let out;
    try {
      out = await run;
    } finally {
      process.kill(d.pid, 'SIGCONT');
    }
    t.deepEqual(out.handed, [true, true, true, true, true]);
    t.is(out.tcp, 'ping');
    t.deepEqual(out.udp, ['dgram', true]);
    t.is(out.timeout, 'timeout:null');
    t.is(out.nonblocking, 'BlockingIOError:11');
    t.is(out.makefile, 'line\n');
    t.is(out.closed, 'OSError:9');
    // Every hand-off is an audit line with the identity, the kind of socket and its cookie.
    const lines = audits(d, 'handoff');
    for (const cookie of out.cookies) {
      const line = lines.find((l) => l.cookie === cookie);
      t.truthy(line, `an audit line for cookie ${cookie}`);
      t.like(line, { uid: 65534, family: 2, outcome: 'handed off' });
    }
    t.deepEqual(lines.map((l) => l.type).sort(), [1, 1, 2, 2]);
  } finally {
    await d.stop();
    net.destroy();
  }
});

test.serial('a privileged option or port is refused by the kernel; granted ones go through the broker by cookie', async (t) => {
  const net = createTestNet();
  const d = await daemonWith(net, 'rules:\n  - name: marks\n    match: { user: nobody }\n    grant: { options: [SO_MARK], ports: [80] }\n');
  try {
    const out = await asNobody(d, net, `
const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
out.handed = s._handedOff;
await probe('mark', async () => { await s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 42); return s.getsockopt(socket.SOL_SOCKET, socket.SO_MARK); });
await probe('transparent', () => s.setsockopt(socket.IPPROTO_IP, socket.IP_TRANSPARENT, 1));
await probe('priority7', () => s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 7));
await probe('port80', async () => { await s.bind(['127.0.0.1', 80]); return (await s.getsockname())[1]; });
const s2 = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
await probe('port81', () => s2.bind(['127.0.0.1', 81]));
await probe('unprivileged', async () => { await s2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); return s2.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR); });
`);
    t.true(out.handed);
    t.is(out.mark, 42, 'SO_MARK is granted: sent back to the broker, set, and read back');
    t.is(out.transparent, 'PermissionError:1');
    t.is(out.priority7, 'PermissionError:1');
    t.is(out.port80, 80);
    t.is(out.port81, 'PermissionError:13');
    t.is(out.unprivileged, 1);
    t.like(audits(d, 'handoff.sendback').find((l) => l.op === 'setsockopt'), { uid: 65534, outcome: 'done' });
    t.like(audits(d, 'handoff.sendback').find((l) => l.op === 'bind'), { uid: 65534, outcome: 'done' });
  } finally {
    await d.stop();
    net.destroy();
  }
});

test.serial('a raw socket is handed off only with the handoff grant; the sniffer socket never', async (t) => {
  const net = createTestNet();
  const raw = '{ family: AF_INET, type: SOCK_RAW }';
  const BODY = `
const r = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP);
out.raw = r._handedOff;
out.rawIsFd = isFd(r);
// An ICMP echo request to 127.0.0.1 comes back on the raw socket.
const echo = Buffer.from([8, 0, 0xf7, 0xfe, 0, 1, 0, 0]);
await r.sendto(echo, ['127.0.0.1', 0]);
r.settimeout(10);
out.reply = (await r.recv(100)).length >= 28;
const sniffer = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
out.sniffer = sniffer._handedOff;
`;
  for (const [policy, expected] of [
    [`rules:\n  - name: raw\n    match: { user: nobody }\n    grant: { sockets: [${raw}] }\n`, false],
    [`rules:\n  - name: raw\n    match: { user: nobody }\n    grant: { sockets: [${raw}], handoff: [AF_INET] }\n`, true],
  ] as const) {
    const d = await daemonWith(net, policy);
    try {
      const out = await asNobody(d, net, BODY);
      t.is(out.raw, expected, policy);
      t.is(out.rawIsFd, expected, 'fileno() is the real fd exactly when handed off');
      t.true(out.reply, 'the raw socket works either way');
      t.false(out.sniffer, 'the sniffer socket stays on the broker');
      const kinds = audits(d, 'handoff').map((l) => `${l.type}/${l.protocol}`);
      t.deepEqual(kinds, expected ? ['3/1'] : []);
    } finally {
      await d.stop();
    }
  }
  net.destroy();
});

test.serial('handoff: false and a no_handoff rule keep every socket on the broker', async (t) => {
  const net = createTestNet();
  const BODY = `
const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
const [a, b] = await socket.socketpair();
out.handed = [s._handedOff, a._handedOff, b._handedOff];
out.isFd = (() => { try { return isFd(s); } catch { return false; } })();
`;
  let d = await daemonWith(net, 'rules: []\n');
  try {
    t.deepEqual((await asNobody(d, net, BODY, '{ handoff: false }')).handed, [false, false, false]);
    t.deepEqual((await asNobody(d, net, BODY, '{}', { SOCKBROKER_HANDOFF: '0' })).handed, [false, false, false], 'SOCKBROKER_HANDOFF=0');
    t.deepEqual((await asNobody(d, net, BODY, '{}', { SOCKBROKER_HANDOFF: '1' })).handed, [true, true, true], 'the default');
    t.is(audits(d, 'handoff').length, 1);
  } finally {
    await d.stop();
  }
  d = await daemonWith(net, 'rules:\n  - name: audited\n    match: { user: nobody }\n    no_handoff: true\n');
  try {
    const out = await asNobody(d, net, BODY);
    t.deepEqual(out.handed.slice(0, 1), [false], 'the broker keeps the socket');
    t.is(audits(d, 'handoff').length, 0);
  } finally {
    await d.stop();
    net.destroy();
  }
});

test.serial('an fd sent back with a cookie the broker did not record for the session is refused', async (t) => {
  const net = createTestNet();
  const d = await daemonWith(net, 'rules:\n  - name: marks\n    match: { user: nobody }\n    grant: { options: [SO_MARK] }\n');
  try {
    const out = await asNobody(d, net, `
const libc = await import('./dist/native/libc.js');
const msg = await import('./dist/native/msg.js');
const { encodeSockaddr } = await import('./dist/native/sockaddr.js');
// A raw side-channel request, as the SDK makes it, carrying a socket of this process's own.
const sendBack = async (fd, session) => {
  const s = libc.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0);
  libc.connect(s, encodeSockaddr({ family: 'unix', path: Buffer.from(process.env.SOCKBROKER_ADDRESS.slice(5) + '.handoff') }));
  const body = Buffer.from(JSON.stringify({ op: 'setsockopt', session, level: socket.SOL_SOCKET, name: socket.SO_MARK, int: 7 }));
  const fdb = Buffer.alloc(4); fdb.writeInt32LE(fd);
  msg.sendmsg(s, [body], msg.encodeCmsgs([{ level: socket.SOL_SOCKET, type: socket.SCM_RIGHTS, data: fdb }]), 0, null);
  const r = msg.recvmsg(s, 4096, 0, 0);
  libc.close(s);
  return JSON.parse(r.data.toString());
};
const own = libc.socket(socket.AF_INET, socket.SOCK_DGRAM, 0);
out.own = await sendBack(own, socket.sessionId);
const handed = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
out.handed = await sendBack(handed.fileno(), socket.sessionId);
const other = await connect(process.env.SOCKBROKER_ADDRESS, { handoff: true });
out.otherSession = await sendBack(handed.fileno(), other.sessionId);
out.mark = await handed.getsockopt(socket.SOL_SOCKET, socket.SO_MARK);
out.ownMark = libc.getsockopt(own, socket.SOL_SOCKET, socket.SO_MARK, 4).readInt32LE(0);
`);
    t.like(out.own, { ok: false, errno: 1 });
    t.regex(out.own.message, /not a socket the broker handed to this session/);
    t.like(out.otherSession, { ok: false, errno: 1 }, "another session's record does not cover it");
    t.deepEqual(out.handed, { ok: true });
    t.is(out.mark, 7, 'the recorded socket got the option');
    t.is(out.ownMark, 0, 'the unrecorded one did not');
    t.true(audits(d, 'handoff.sendback').some((l) => l.outcome === 'denied'));
  } finally {
    await d.stop();
    net.destroy();
  }
});

test.serial('nothing leaks in the daemon when hand-off clients are SIGKILLed mid-call, or a side-channel peer stays silent', async (t) => {
  const net = createTestNet();
  const d = await daemonWith(net, 'rules: []\n');
  try {
    // One session first, so the baseline includes what any session costs (its namespace reference).
    await asNobody(d, net, 'out.ok = true;');
    t.true(await until(() => audits(d, 'session.end').length >= 1, 30_000));
    const baseline = d.fdCount();
    const dir = publicTempDir('sb-handoff-kill-');
    chmodSync(dir, 0o777);
    const runs = [0, 1, 2].map((i) => startNobody(d, net, `
const keep = [];
writeFileSync(${JSON.stringify(join(dir, 'busy'))} + ${i}, '');
for (;;) {
  const s = await socket.socket(socket.AF_INET, ${i === 2 ? 'socket.SOCK_DGRAM' : 'socket.SOCK_STREAM'});
  keep.push(s);
  if (keep.length > 50) await keep.shift().close();
}
`));
    // A silent peer: connects to the side channel and never sends its request.
    const silent = startNobody(d, net, `
const libc = await import('./dist/native/libc.js');
const { encodeSockaddr } = await import('./dist/native/sockaddr.js');
const s = libc.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0);
libc.connect(s, encodeSockaddr({ family: 'unix', path: Buffer.from(process.env.SOCKBROKER_ADDRESS.slice(5) + '.handoff') }));
await new Promise((r) => setTimeout(r, 60_000));
`);
    t.true(await until(() => [0, 1, 2].every((i) => existsSync(join(dir, `busy${i}`))), 30_000));
    t.true(await until(() => audits(d, 'handoff').length > 30, 30_000), 'hand-offs are under way');
    t.true(await until(() => d.logs.some((l) => l.includes('"event":"handoff.dropped"') && l.includes('timed out')), 30_000), 'the silent peer was dropped');
    // Kill the clients and the silent peer in the middle of whatever they do.
    for (const p of [...runs, silent]) process.kill(p.pid, 'SIGKILL');
    const outcomes = await Promise.all([...runs, silent].map((p) => p.result.then(() => 'exited', () => 'killed')));
    t.deepEqual(outcomes, ['killed', 'killed', 'killed', 'killed']);
    const back = await until(() => d.fdCount() <= baseline, 30_000);
    t.true(back, `daemon fds ${d.fdCount()}, baseline ${baseline}`);
  } finally {
    await d.stop();
    net.destroy();
  }
});
