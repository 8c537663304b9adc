// SocketCAN (CAN_RAW and CAN_BCM), AF_TIPC and AF_RDS through the broker, in the VM test bed
// (this kernel has none of them). One boot runs the whole suite: a root daemon with a policy
// granting nobody CAN on vcan0 (CAN ids 0x000-0x1ff), TIPC and RDS; a nobody client running the
// seed's CAN example transliterated and the rest; and a client of another uid, refused.
import test from 'ava';
import { runInVm, describeVmRun } from '../helpers/vm.js';
import { worldCopy } from '../helpers/daemon.js';

const HARD_TIMEOUT_S = 300;

const POLICY = `
rules:
  - name: nobody-can-tipc-rds
    match: { uid: 65534 }
    grant:
      sockets:
        - { family: AF_CAN, type: SOCK_RAW, protocol: CAN_RAW }
        - { family: AF_CAN, type: SOCK_DGRAM, protocol: CAN_BCM }
        - { family: AF_TIPC }
        - { family: AF_RDS }
      interfaces: [vcan0]
      can_ids: ["0x000-0x1ff"]
`;

// Runs as nobody in the VM. {{SDK}} is the SDK's absolute path in the world-readable copy.
const CLIENT = `
import { connect } from '{{SDK}}';
const socket = await connect('unix:/tmp/sbvm/sb.sock');
const out = {};
const probe = async (name, fn) => {
  try { out[name] = { ok: await fn() }; }
  catch (e) { out[name] = { error: e.constructor.name, errno: e.errno, message: e.message }; }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = (b) => Buffer.from(b).toString('hex');

// --- The seed's CAN example, transliterated ---
// CAN frame packing/unpacking (see 'struct can_frame' in <linux/can.h>): "=IB3x8s"
const can_frame_size = 16;
function build_can_frame(can_id, data) {
  const frame = Buffer.alloc(can_frame_size);
  frame.writeUInt32LE(can_id >>> 0, 0);
  frame[4] = data.length;
  Buffer.from(data).copy(frame, 8);
  return frame;
}
function dissect_can_frame(frame) {
  const can_dlc = frame[4];
  return [frame.readUInt32LE(0), can_dlc, frame.subarray(8, 8 + can_dlc)];
}
await probe('seed', async () => {
  // create a raw socket and bind it to the 'vcan0' interface
  const s = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await s.bind(['vcan0']);
  const peer = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await peer.bind(['vcan0']);
  peer.settimeout(5);
  s.settimeout(5);
  await peer.send(build_can_frame(0x123, [0xde, 0xad, 0xbe, 0xef]));
  const printed = [];
  // one turn of the example's loop
  const [cf, addr] = await s.recvfrom(can_frame_size);
  const [id, dlc, data] = dissect_can_frame(cf);
  printed.push('Received: can_id=' + id.toString(16) + ', can_dlc=' + dlc.toString(16) + ', data=' + hex(data));
  try { await s.send(cf); } catch { printed.push('Error sending CAN frame'); }
  try { await s.send(build_can_frame(0x01, [0x01, 0x02, 0x03])); } catch { printed.push('Error sending CAN frame'); }
  const echoed = dissect_can_frame((await peer.recvfrom(can_frame_size))[0]);
  const second = dissect_can_frame((await peer.recvfrom(can_frame_size))[0]);
  await s.close(); await peer.close();
  return { printed, addr, echoed: [echoed[0], hex(echoed[2])], second: [second[0], hex(second[2])] };
});

// --- CAN_RAW options ---
await probe('filter', async () => {
  const f = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  const flt = Buffer.alloc(8); flt.writeUInt32LE(0x140, 0); flt.writeUInt32LE(0x7ff, 4);
  await f.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FILTER, flt);
  await f.bind(['vcan0']);
  const tx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await tx.bind(['vcan0']);
  await tx.send(build_can_frame(0x141, [1]));
  await tx.send(build_can_frame(0x140, [2]));
  f.settimeout(5);
  const got = dissect_can_frame((await f.recv(16)));
  f.settimeout(0.3);
  let more = 'none';
  try { more = hex(await f.recv(16)); } catch (e) { if (!(e instanceof socket.timeout)) throw e; }
  await f.close(); await tx.close();
  return { got: [got[0], hex(got[2])], more };
});
await probe('ownAndLoopback', async () => {
  const a = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await a.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_RECV_OWN_MSGS, 1);
  await a.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_ERR_FILTER, socket.CAN_ERR_MASK);
  await a.bind(['vcan0']);
  a.settimeout(5);
  await a.send(build_can_frame(0x111, [7]));
  const own = dissect_can_frame(await a.recv(16))[0];
  const quiet = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await quiet.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_LOOPBACK, 0);
  await quiet.bind(['vcan0']);
  await quiet.send(build_can_frame(0x112, [8]));
  a.settimeout(0.3);
  let heard = 'none';
  try { heard = dissect_can_frame(await a.recv(16))[0]; } catch (e) { if (!(e instanceof socket.timeout)) throw e; }
  const loopback = await a.getsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_LOOPBACK);
  await a.close(); await quiet.close();
  return { own, heard, loopback };
});
await probe('flags', async () => {
  const rx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await rx.bind(['vcan0']);
  const tx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await tx.bind(['vcan0']);
  rx.settimeout(5);
  await tx.send(build_can_frame((0x1a5 | socket.CAN_EFF_FLAG) >>> 0, [1, 2]));
  await tx.send(build_can_frame((0x1a6 | socket.CAN_RTR_FLAG) >>> 0, []));
  const eff = (await rx.recv(16)).readUInt32LE(0);
  const rtr = (await rx.recv(16)).readUInt32LE(0);
  await rx.close(); await tx.close();
  return { eff, rtr };
});
await probe('fd', async () => {
  const rx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await rx.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FD_FRAMES, 1);
  await rx.bind(['vcan0']);
  const tx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await tx.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FD_FRAMES, 1);
  await tx.bind(['vcan0']);
  const frame = Buffer.alloc(72);
  frame.writeUInt32LE(0x130, 0); frame[4] = 20;
  for (let i = 0; i < 20; i++) frame[8 + i] = i;
  await tx.send(frame);
  rx.settimeout(5);
  const got = await rx.recv(72);
  await rx.close(); await tx.close();
  return { len: got.length, id: got.readUInt32LE(0), data: hex(got.subarray(8, 8 + got[4])) };
});
await probe('deniedId', async () => {
  const tx = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await tx.bind(['vcan0']);
  try { await tx.send(build_can_frame(0x7ff, [1])); } finally { await tx.close(); }
});

// --- CAN_BCM: bcm_msg_head packed as "@3I4l2I", then frames ---
const bcm = (opcode, flags, count, ival2us, can_id, frames) => {
  const head = Buffer.alloc(56);
  head.writeUInt32LE(opcode, 0); head.writeUInt32LE(flags, 4); head.writeUInt32LE(count, 8);
  head.writeBigInt64LE(0n, 16); head.writeBigInt64LE(0n, 24);
  head.writeBigInt64LE(BigInt(Math.floor(ival2us / 1e6)), 32); head.writeBigInt64LE(BigInt(ival2us % 1e6), 40);
  head.writeUInt32LE(can_id, 48); head.writeUInt32LE(frames.length, 52);
  return Buffer.concat([head, ...frames]);
};
await probe('bcm', async () => {
  const b = await socket.socket(socket.AF_CAN, socket.SOCK_DGRAM, socket.CAN_BCM);
  await b.connect(['vcan0']);
  const raw = await socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW);
  await raw.bind(['vcan0']);
  raw.settimeout(5);
  // TX_SETUP: a cyclic frame every 20 ms.
  await b.send(bcm(socket.CAN_BCM_TX_SETUP, socket.CAN_BCM_SETTIMER | socket.CAN_BCM_STARTTIMER, 0, 20000, 0x150, [build_can_frame(0x150, [1, 2, 3, 4])]));
  let cyclic = 0;
  const t0 = Date.now();
  while (cyclic < 3) { const f = await raw.recv(16); if (f.readUInt32LE(0) === 0x150) cyclic++; }
  const took = Date.now() - t0;
  // TX_DELETE stops it: drain what was queued before, then nothing more arrives.
  await b.send(bcm(socket.CAN_BCM_TX_DELETE, 0, 0, 0, 0x150, []));
  const drain = async () => {
    raw.setblocking(false);
    let n = 0;
    try { for (;;) { const f = await raw.recv(16); if (f.readUInt32LE(0) === 0x150) n++; } } catch (e) { if (!(e instanceof socket.BlockingIOError)) throw e; }
    raw.settimeout(5);
    return n;
  };
  await sleep(50);
  await drain();
  await sleep(300);
  const after = await drain();
  // RX_SETUP with a content filter on byte 0 of id 0x160: RX_CHANGED only when it changes.
  await b.send(bcm(socket.CAN_BCM_RX_SETUP, 0, 0, 0, 0x160, [build_can_frame(0x160, [0xff])]));
  for (const v of [1, 1, 2]) { await raw.send(build_can_frame(0x160, [v])); await sleep(30); }
  b.settimeout(5);
  const changes = [];
  for (let i = 0; i < 2; i++) {
    const m = await b.recv(56 + 16);
    changes.push([m.readUInt32LE(0), m.readUInt32LE(48), m[56 + 8]]);
  }
  b.settimeout(0.3);
  let extra = 'none';
  try { extra = hex(await b.recv(72)); } catch (e) { if (!(e instanceof socket.timeout)) throw e; }
  let denied;
  try { await b.send(bcm(socket.CAN_BCM_TX_SEND, 0, 0, 0, 0x300, [build_can_frame(0x300, [1])])); denied = 'sent'; } catch (e) { denied = e.constructor.name + ':' + e.errno; }
  await b.close(); await raw.close();
  return { cyclic, tookUnder2s: took < 2000, after, changes, extra, denied };
});

// --- AF_TIPC: RDM by name ---
await probe('tipc', async () => {
  const srv = await socket.socket(socket.AF_TIPC, socket.SOCK_RDM);
  await srv.bind([socket.TIPC_ADDR_NAMESEQ, 18888, 1, 1]);
  const cli = await socket.socket(socket.AF_TIPC, socket.SOCK_RDM);
  await cli.sendto(Buffer.from('tipc hello'), [socket.TIPC_ADDR_NAME, 18888, 1, 0]);
  srv.settimeout(5);
  const [data, addr] = await srv.recvfrom(100);
  await srv.close(); await cli.close();
  return { data: data.toString(), addrType: addr[0], fields: addr.length };
});

// --- AF_RDS: a datagram between two sockets on 127.0.0.1 ---
await probe('rds', async () => {
  const a = await socket.socket(socket.AF_RDS, socket.SOCK_SEQPACKET);
  await a.bind(['127.0.0.1', 0]);
  const b = await socket.socket(socket.AF_RDS, socket.SOCK_SEQPACKET);
  await b.bind(['127.0.0.1', 0]);
  const aAddr = await a.getsockname();
  await a.sendto(Buffer.from('rds hello'), await b.getsockname());
  b.settimeout(5);
  const [data, from] = await b.recvfrom(100);
  await a.close(); await b.close();
  return { data: data.toString(), fromMatches: from[0] === '127.0.0.1' && from[1] === aAddr[1] };
});

await socket.disconnect();
console.log('RESULT ' + JSON.stringify(out));
`;

const OTHER = `
import { connect } from '{{SDK}}';
const socket = await connect('unix:/tmp/sbvm/sb.sock');
const out = {};
for (const [name, args] of [['can', [socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW]], ['tipc', [socket.AF_TIPC, socket.SOCK_RDM]], ['rds', [socket.AF_RDS, socket.SOCK_SEQPACKET]]]) {
  try { await socket.socket(...args); out[name] = 'ok'; } catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
}
await socket.disconnect();
console.log('RESULT ' + JSON.stringify(out));
`;

const RUNNER = `
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync, chmodSync } from 'node:fs';
const world = process.env.WORLD;
mkdirSync('/tmp/sbvm', { recursive: true });
chmodSync('/tmp/sbvm', 0o755);
writeFileSync('/tmp/sbvm/policy.yaml', process.env.POLICY);
const sdk = world + '/dist/client/index.js';
for (const [name, src] of [['client', process.env.CLIENT], ['other', process.env.OTHER]]) {
  writeFileSync('/tmp/sbvm/' + name + '.mjs', src.replaceAll('{{SDK}}', sdk));
  chmodSync('/tmp/sbvm/' + name + '.mjs', 0o644);
}
const t0 = Date.now();
const daemon = spawn(process.execPath, [world + '/dist/daemon/cli.js', 'serve', '--listen', 'unix:/tmp/sbvm/sb.sock', '--config', '/tmp/sbvm/policy.yaml', '--grace-period', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
const logs = [];
await new Promise((resolve, reject) => {
  let buf = '';
  daemon.stderr.on('data', (d) => { buf += d; const lines = buf.split('\\n'); buf = lines.pop(); for (const l of lines) { logs.push(l); if (l.includes('"event":"listening"')) resolve(); } });
  daemon.on('exit', (c) => reject(new Error('daemon exited ' + c + '\\n' + logs.join('\\n'))));
});
const run = (uid, file) => new Promise((resolve) => {
  const p = spawn('setpriv', ['--reuid=' + uid, '--regid=' + uid, '--clear-groups', process.execPath, '/tmp/sbvm/' + file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let o = '', e = '';
  p.stdout.on('data', (d) => (o += d));
  p.stderr.on('data', (d) => (e += d));
  p.on('exit', (code) => resolve({ code, out: o, err: e }));
});
const results = { daemonStartS: (Date.now() - t0) / 1000 };
const t1 = Date.now();
results.nobody = await run(65534, 'client.mjs');
results.clientS = (Date.now() - t1) / 1000;
results.other = await run(1000, 'other.mjs');
daemon.kill('SIGTERM');
results.daemonExit = await new Promise((r) => daemon.on('exit', r));
results.audit = logs.filter((l) => l.includes('"event":"policy.')).map((l) => JSON.parse(l));
console.log('SUITE ' + JSON.stringify(results));
`;

test('CAN_RAW, CAN_BCM, TIPC and RDS through the broker in the VM, as nobody with a grant; refused without', async (t) => {
  t.timeout((HARD_TIMEOUT_S + 30) * 1000);
  const r = await runInVm(RUNNER, {
    lang: 'node',
    timeoutS: HARD_TIMEOUT_S,
    env: { WORLD: worldCopy(), POLICY, CLIENT, OTHER },
  });
  t.log(describeVmRun(r));
  t.is(r.error, null, r.consoleTail);
  t.is(r.code, 0, r.stderr);
  const suite = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('SUITE '))!.slice(6));
  t.log(`daemon start ${suite.daemonStartS} s, nobody client ${suite.clientS} s (guest time)`);
  t.is(suite.nobody.code, 0, suite.nobody.err);
  const out = JSON.parse(suite.nobody.out.split('\n').find((l: string) => l.startsWith('RESULT '))!.slice(7));
  t.deepEqual(out.seed, {
    ok: {
      printed: ['Received: can_id=123, can_dlc=4, data=deadbeef'],
      addr: ['vcan0'],
      echoed: [0x123, 'deadbeef'],
      second: [0x01, '010203'],
    },
  });
  t.deepEqual(out.filter, { ok: { got: [0x140, '02'], more: 'none' } });
  t.deepEqual(out.ownAndLoopback, { ok: { own: 0x111, heard: 'none', loopback: 1 } });
  t.deepEqual(out.flags, { ok: { eff: (0x1a5 | 0x80000000) >>> 0, rtr: (0x1a6 | 0x40000000) >>> 0 } });
  t.deepEqual(out.fd, { ok: { len: 72, id: 0x130, data: Buffer.from(Array.from({ length: 20 }, (_, i) => i)).toString('hex') } });
  t.like(out.deniedId, { error: 'PermissionError', errno: 1 });
  t.regex(out.deniedId.message, /CAN id 0x7ff/);
  t.like(out.bcm.ok, { cyclic: 3, tookUnder2s: true, after: 0, extra: 'none', denied: 'PermissionError:1' });
  t.deepEqual(out.bcm.ok.changes, [[12, 0x160, 1], [12, 0x160, 2]]);
  t.deepEqual(out.tipc, { ok: { data: 'tipc hello', addrType: 3, fields: 5 } });
  t.deepEqual(out.rds, { ok: { data: 'rds hello', fromMatches: true } });
  const other = JSON.parse(suite.other.out.split('\n').find((l: string) => l.startsWith('RESULT '))!.slice(7));
  t.deepEqual(other, { can: 'PermissionError:1', tipc: 'PermissionError:1', rds: 'PermissionError:1' });
  t.is(suite.daemonExit, 0);
  t.true(suite.audit.filter((e: any) => e.event === 'policy.deny').length >= 5);
});
