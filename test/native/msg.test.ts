// native/msg.ts: the msghdr/iovec layout and the cmsg codec byte by byte, then real
// sendmsg/recvmsg calls (SCM_RIGHTS, truncation, MSG_TRUNC, addresses) on kernel sockets.
import test from 'ava';
import { linux as L } from '../../native/constants.js';
import { close, socket, socketpair, bind, getsockname, fcntl } from '../../native/libc.js';
import { cmsgLen, cmsgSpace, decodeCmsgs, encodeCmsgs, layoutMsg, MSGHDR, recvmsg, sendmsg } from '../../native/msg.js';
import { encodeSockaddr, decodeSockaddr } from '../../native/sockaddr.js';
import { checkNoFdLeaks } from './helpers/fds.js';

checkNoFdLeaks(test);

const hex = (b: Buffer) => b.toString('hex');
const u64 = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return hex(b);
};
const MSG_CMSG_CLOEXEC = L.MSG_CMSG_CLOEXEC;

test('CMSG_LEN/CMSG_SPACE as glibc on LP64', (t) => {
  t.deepEqual([cmsgLen(0), cmsgLen(4), cmsgLen(12), cmsgSpace(0), cmsgSpace(4), cmsgSpace(12)], [16, 20, 28, 16, 24, 32]);
});

test('encodeCmsgs: cmsg_len, level, type, data, padding to CMSG_SPACE', (t) => {
  const b = encodeCmsgs([{ level: 1, type: 1, data: Buffer.from([7, 0, 0, 0]) }, { level: 0, type: 2, data: Buffer.from([0x21]) }]);
  t.is(hex(b),
    u64(20) + '01000000' + '01000000' + '07000000' + '00000000' +
    u64(17) + '00000000' + '02000000' + '21' + '00000000000000');
});

test('decodeCmsgs walks CMSG_NXTHDR; an item running past the end keeps what is there, marked truncated', (t) => {
  const two = encodeCmsgs([{ level: 1, type: 1, data: Buffer.from('abcd') }, { level: 0, type: 2, data: Buffer.from('xy') }]);
  t.deepEqual(decodeCmsgs(two).map((c) => [c.level, c.type, c.data.toString(), c.truncated]), [[1, 1, 'abcd', false], [0, 2, 'xy', false]]);
  const cut = two.subarray(0, 24 + 16 + 1);
  t.deepEqual(decodeCmsgs(cut).map((c) => [c.data.toString(), c.truncated]), [['abcd', false], ['x', true]]);
  // Shorter than a header: nothing; a cmsg_len below the header size ends the walk.
  t.deepEqual(decodeCmsgs(two.subarray(0, 15)), []);
  const bad = Buffer.from(two);
  bad.writeBigUInt64LE(8n, 0);
  t.deepEqual(decodeCmsgs(bad), []);
});

test('layoutMsg writes msghdr and iovecs with absolute pointers; empty name/control are NULL', (t) => {
  const base = 0x7f0000001000n;
  const block = Buffer.alloc(256, 0xee);
  const l = layoutMsg(base, [3, 5], 16, 24, block);
  t.deepEqual([l.iov, l.name, l.control, l.data], [56, 88, 104, [128, 131]]);
  t.is(l.size, 136);
  t.is(hex(block.subarray(0, 88)),
    u64(base + 88n) + '10000000' + '00000000' + u64(base + 56n) + u64(2) + u64(base + 104n) + u64(24) + '00000000' + '00000000' +
    u64(base + 128n) + u64(3) + u64(base + 131n) + u64(5));
  const none = Buffer.alloc(128);
  layoutMsg(base, [1], 0, 0, none);
  t.is(hex(none.subarray(MSGHDR.name, MSGHDR.name + 8)), u64(0));
  t.is(hex(none.subarray(MSGHDR.control, MSGHDR.controllen + 8)), u64(0) + u64(0));
});

test('sendmsg/recvmsg pass data from several buffers and fds (SCM_RIGHTS), close-on-exec', (t) => {
  const [a, b] = socketpair(L.AF_UNIX, L.SOCK_STREAM, 0);
  const [x, y] = socketpair(L.AF_UNIX, L.SOCK_STREAM, 0);
  const fds = Buffer.alloc(8);
  fds.writeInt32LE(x, 0);
  fds.writeInt32LE(y, 4);
  t.is(sendmsg(a, [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde')], encodeCmsgs([{ level: L.SOL_SOCKET, type: L.SCM_RIGHTS, data: fds }]), 0, null), 5);
  const r = recvmsg(b, 100, cmsgSpace(8), MSG_CMSG_CLOEXEC);
  t.is(r.n, 5);
  t.is(r.data.toString(), 'abcde');
  t.is(r.addr.length, 0);
  const [c] = decodeCmsgs(r.control);
  t.deepEqual([c!.level, c!.type, c!.data.length], [L.SOL_SOCKET, L.SCM_RIGHTS, 8]);
  const got = [c!.data.readInt32LE(0), c!.data.readInt32LE(4)];
  for (const fd of got) t.is(fcntl(fd, 1 /* F_GETFD */, 0) & 1, 1);
  for (const fd of [a, b, x, y, ...got]) close(fd);
});

test('recvmsg: a control buffer too small sets MSG_CTRUNC (whole fds only); MSG_TRUNC gives the datagram size; the sender address', (t) => {
  const [a, b] = socketpair(L.AF_UNIX, L.SOCK_STREAM, 0);
  const [x, y] = socketpair(L.AF_UNIX, L.SOCK_STREAM, 0);
  const fds = Buffer.alloc(8);
  fds.writeInt32LE(x, 0);
  fds.writeInt32LE(y, 4);
  sendmsg(a, [Buffer.from('z')], encodeCmsgs([{ level: L.SOL_SOCKET, type: L.SCM_RIGHTS, data: fds }]), 0, null);
  const r = recvmsg(b, 10, cmsgLen(6), MSG_CMSG_CLOEXEC);
  t.true((r.msgFlags & L.MSG_CTRUNC) !== 0);
  const items = decodeCmsgs(r.control);
  t.is(items[0]!.data.length, 4);
  close(items[0]!.data.readInt32LE(0));
  const u = socket(L.AF_INET, L.SOCK_DGRAM, 0);
  const v = socket(L.AF_INET, L.SOCK_DGRAM, 0);
  bind(u, encodeSockaddr({ family: 'inet', host: '127.0.0.1', port: 0 }));
  bind(v, encodeSockaddr({ family: 'inet', host: '127.0.0.1', port: 0 }));
  t.is(sendmsg(v, [Buffer.from('0123456789')], Buffer.alloc(0), 0, getsockname(u)), 10);
  const d = recvmsg(u, 4, 0, L.MSG_TRUNC);
  t.deepEqual([d.n, d.data.toString(), (d.msgFlags & L.MSG_TRUNC) !== 0], [10, '0123', true]);
  t.deepEqual(decodeSockaddr(d.addr), decodeSockaddr(getsockname(v)));
  // A large message uses a block of its own.
  const big = Buffer.alloc(200_000, 7);
  const [p, q] = socketpair(L.AF_UNIX, L.SOCK_DGRAM, 0);
  t.is(sendmsg(p, [big], Buffer.alloc(0), 0, null), big.length);
  t.true(recvmsg(q, 300_000, 0, 0).data.equals(big));
  for (const fd of [a, b, x, y, u, v, p, q]) close(fd);
});
