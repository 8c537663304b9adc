// As `nobody`, ancillary data cannot lend the broker's root identity: SCM_CREDENTIALS carries only
// the caller's own ids (and is attached for it, so SO_PASSCRED never shows uid 0), raw control
// messages are refused (they could name a daemon fd), and SCM_RIGHTS reaches only the session's
// own handles.
import test from 'ava';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, runAsNobody, publicTempDir } from '../helpers/daemon.js';

const PROBE = `
import { connect } from 'sockbroker';
import { Transport } from './dist/client/transport.js';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const out = { pid: process.pid };
const probe = async (name, fn) => {
  try { out[name] = 'ok:' + JSON.stringify(await fn()); }
  catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
};
const creds = (pid, uid, gid) => { const b = Buffer.alloc(12); b.writeInt32LE(pid, 0); b.writeUInt32LE(uid, 4); b.writeUInt32LE(gid, 8); return b; };
const [a, b] = await socket.socketpair();
await b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1);
const received = async () => {
  const [d, anc] = await b.recvmsg(100, socket.CMSG_SPACE(12));
  const c = anc.find(([l, t]) => l === socket.SOL_SOCKET && t === socket.SCM_CREDENTIALS);
  return [d.toString(), c ? [c[2].readInt32LE(0), c[2].readUInt32LE(4), c[2].readUInt32LE(8)] : null];
};
await probe('implicit', async () => { await a.sendmsg([Buffer.from('plain')]); return received(); });
await probe('plainSend', async () => { await a.send(Buffer.from('send')); return received(); });
await probe('plainSendall', async () => { await a.sendall(Buffer.from('sendall')); return received(); });
await probe('own', async () => { await a.sendmsg([Buffer.from('own')], [[socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds(process.pid, 65534, 65534)]]); return received(); });
await probe('forgeUid', () => a.sendmsg([Buffer.from('x')], [[socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds(process.pid, 0, 65534)]]));
await probe('forgeGid', () => a.sendmsg([Buffer.from('x')], [[socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds(process.pid, 65534, 0)]]));
await probe('forgePid', () => a.sendmsg([Buffer.from('x')], [[socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds(1, 65534, 65534)]]));
const fd = (n) => { const x = Buffer.alloc(4); x.writeInt32LE(n); return x; };
for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) {
  if (n === a.fileno() || n === b.fileno()) continue;
  await probe('rights' + n, () => a.sendmsg([Buffer.from('x')], [[socket.SOL_SOCKET, socket.SCM_RIGHTS, fd(n)]]));
}
await probe('unknownType', () => a.sendmsg([Buffer.from('x')], [[socket.SOL_SOCKET, 99, Buffer.alloc(4)]]));
// A raw gRPC client: raw bytes for SCM_RIGHTS are refused whatever they hold.
const t = await Transport.open(process.env.SOCKBROKER_ADDRESS);
const pair = await t.call('socketpair', { family: socket.AF_UNIX, type: socket.SOCK_STREAM, protocol: 0 });
await probe('rawRights', () => t.call('sendMsg', { handle: pair.handleA, buffers: [Buffer.from('x')], ancdata: [{ level: socket.SOL_SOCKET, type: socket.SCM_RIGHTS, other: fd(0) }], flags: 0 }));
await probe('rawCreds', () => t.call('sendMsg', { handle: pair.handleA, buffers: [Buffer.from('x')], ancdata: [{ level: socket.SOL_SOCKET, type: socket.SCM_CREDENTIALS, other: creds(1, 0, 0) }], flags: 0 }));
await probe('nothingArrived', () => b.recv(10, socket.MSG_DONTWAIT));
await t.close();
console.log(JSON.stringify(out));
await socket.disconnect();
`;

test('as nobody: SCM_CREDENTIALS only with its own ids, attached for it; no raw or foreign SCM_RIGHTS', async (t) => {
  await withDaemon(async (d) => {
    const r = await runAsNobody(PROBE, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const pid = out.pid as number;
    t.is(out.implicit, `ok:${JSON.stringify(['plain', [pid, 65534, 65534]])}`);
    t.is(out.own, `ok:${JSON.stringify(['own', [pid, 65534, 65534]])}`);
    // Plain send/sendall on AF_UNIX carry the caller's credentials too, never the daemon's uid 0.
    t.is(out.plainSend, `ok:${JSON.stringify(['send', [pid, 65534, 65534]])}`);
    t.is(out.plainSendall, `ok:${JSON.stringify(['sendall', [pid, 65534, 65534]])}`);
    for (const k of ['forgeUid', 'forgeGid', 'forgePid', 'unknownType', 'rawRights', 'rawCreds']) t.is(out[k], 'PermissionError:1', k);
    const rights = Object.keys(out).filter((k) => k.startsWith('rights'));
    t.true(rights.length >= 10);
    for (const k of rights) t.is(out[k], 'OSError:9', k);
    t.is(out.nothingArrived, 'BlockingIOError:11');
    t.true(await d.logged((l) => l.includes('"event":"policy.deny"') && l.includes('scm_credentials')));
  });
});

const QUOTA = `
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const [a, b] = await socket.socketpair();
const [c, d] = await socket.socketpair();
const fds = (...h) => { const x = Buffer.alloc(4 * h.length); h.forEach((v, i) => x.writeInt32LE(v, 4 * i)); return x; };
const out = {};
// Four handles: the session is at its quota, so both received fds are closed.
await a.sendmsg([Buffer.from('1')], [[socket.SOL_SOCKET, socket.SCM_RIGHTS, fds(c.fileno(), d.fileno())]]);
let [m, anc, flags] = await b.recvmsg(10, socket.CMSG_SPACE(8));
out.full = [m.toString(), anc.length, (flags & socket.MSG_CTRUNC) !== 0];
await d.close();
await a.sendmsg([Buffer.from('2')], [[socket.SOL_SOCKET, socket.SCM_RIGHTS, fds(c.fileno(), c.fileno())]]);
[m, anc, flags] = await b.recvmsg(10, socket.CMSG_SPACE(8));
out.room = [m.toString(), anc.map(([, , x]) => x.length), (flags & socket.MSG_CTRUNC) !== 0];
console.log(JSON.stringify(out));
await socket.disconnect();
`;

test('received fds count against the socket quota: beyond it they are closed and MSG_CTRUNC is set', async (t) => {
  const dir = publicTempDir('sb-msgq-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'rules:\n  - name: nobody-four\n    match: { uid: 65534 }\n    quotas: { sockets_per_session: 4 }\n');
  chmodSync(policy, 0o644);
  await withDaemon(async (d) => {
    const base = d.fdCount();
    const r = await runAsNobody(QUOTA, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.deepEqual(out.full, ['1', 0, true]);
    // One slot left: the first fd becomes a handle, the second is closed.
    t.deepEqual(out.room, ['2', [4], true]);
    // The session ended with the client: every fd it had, received ones too, is closed.
    for (let i = 0; i < 50 && d.fdCount() > base; i++) await new Promise((res) => setTimeout(res, 100));
    t.is(d.fdCount(), base);
  }, { args: ['--config', policy], graceSeconds: 1 });
});
