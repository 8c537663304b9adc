// Privilege separation is real: the daemon runs as root, the client as `nobody` (setpriv).
import test from 'ava';
import { withDaemon, runAsNobody, until } from '../helpers/daemon.js';

const CLIENT = `
import { connect } from 'sockbroker';
import { readFileSync } from 'node:fs';
const out = {};
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const tryIt = async (name, fn) => {
  try { out[name] = { ok: await fn() }; }
  catch (e) { out[name] = { error: e.constructor.name, errno: e.errno, message: e.message }; }
};
out.uid = process.getuid();
// A TCP echo through the broker.
const srv = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
await srv.bind(['127.0.0.1', 0]);
await srv.listen();
const [, port] = await srv.getsockname();
const cli = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
const [, [conn]] = await Promise.all([cli.connect(['127.0.0.1', port]), srv.accept()]);
await cli.sendall(Buffer.from('ping'));
await conn.sendall(await conn.recv(4));
out.echo = (await cli.recv(4)).toString();
// The kernel's view: who owns the listening socket (uid column of /proc/net/tcp).
const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
const row = readFileSync('/proc/net/tcp', 'utf8').split('\\n').find((l) => l.includes(':' + hexPort + ' 00000000:0000 0A'));
out.kernelUid = Number(row.trim().split(/\\s+/)[7]);
await tryIt('raw', () => socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP));
await tryIt('lowPort', async () => { const s = await socket.socket(); await s.bind(['127.0.0.1', 80]); });
await tryIt('unixPath', () => socket.socket(socket.AF_UNIX, socket.SOCK_STREAM));
await tryIt('soMark', () => cli.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 1));
await tryIt('bindToDevice', () => cli.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, Buffer.from('lo')));
await tryIt('priority7', () => cli.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 7));
await tryIt('nodelay', () => cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1));
await tryIt('pair', async () => { const [a, b] = await socket.socketpair(); await a.sendall(Buffer.from('x')); return (await b.recv(1)).toString(); });
await tryIt('pairCred', async () => { const [a] = await socket.socketpair(); return (await a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)).readUInt32LE(4); });
await socket.disconnect();
console.log(JSON.stringify(out));
`;

test('a nobody client gets ordinary sockets owned by nobody and is refused privileged ones', async (t) => {
  await withDaemon(async (d) => {
    const r = await runAsNobody(CLIENT, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.is(out.uid, 65534);
    t.is(out.echo, 'ping');
    t.is(out.kernelUid, 65534, 'the kernel attributes the socket to nobody, not root');
    t.like(out.raw, { error: 'PermissionError', errno: 1 });
    t.regex(out.raw.message, /^\[Errno 1\] Operation not permitted \(sockbroker policy: raw sockets/);
    t.like(out.lowPort, { error: 'PermissionError', errno: 13 });
    t.regex(out.lowPort.message, /port 80/);
    t.like(out.unixPath, { error: 'PermissionError', errno: 1 });
    t.regex(out.unixPath.message, /socketpair/);
    t.like(out.soMark, { error: 'PermissionError', errno: 1 });
    t.like(out.bindToDevice, { error: 'PermissionError', errno: 1 });
    t.like(out.priority7, { error: 'PermissionError', errno: 1 });
    t.false('error' in out.nodelay, JSON.stringify(out.nodelay));
    t.deepEqual(out.pair, { ok: 'x' });
    t.deepEqual(out.pairCred, { ok: 65534 }, "a socketpair's SO_PEERCRED names the caller, not root");
    // Every refusal is logged with the caller's identity.
    // The daemon's log lines arrive through a pipe: wait for them rather than read at once.
    const denials = (): Array<{ uid: number; hostRoot: boolean }> => d.logs.filter((l) => l.includes('"event":"policy.deny"')).map((l) => JSON.parse(l));
    t.true(await until(() => denials().length >= 6, 10_000));
    t.true(denials().every((e) => e.uid === 65534 && e.hostRoot === false));
  });
});

test('root in the daemon namespaces may create a raw socket', async (t) => {
  const { connect } = await import('../../client/index.js');
  await withDaemon(async (d) => {
    const socket = await connect(d.address);
    const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP);
    t.is(s.type, socket.SOCK_RAW);
    await s.close();
    await socket.disconnect();
  });
});
