// sendmsg / recvmsg / recvmsgInto with ancillary data, compared with python3: the seed's
// examples (recvmsg_into's scatter, send_fds/recv_fds), SCM_RIGHTS end to end, truncation
// (MSG_CTRUNC, MSG_TRUNC), flags, several buffers, the address argument, and the typed IP items.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { BlockingIOError, OSError, ValueError, type Socket, type SocketModule } from '../../client/index.js';
import { useDaemon } from '../socket/helpers/fixture.js';
import { buffer34, pyRaisesAll, pyValue, raisesLikePython } from '../socket/helpers/py.js';
import { publicTempDir } from '../helpers/daemon.js';

const fx = useDaemon(test);

/** The seed's send_fds, transliterated. */
function sendFds(socket: SocketModule, sock: Socket, msg: Buffer, fds: number[]): Promise<number> {
  const arr = Buffer.alloc(4 * fds.length);
  fds.forEach((fd, i) => arr.writeInt32LE(fd, 4 * i));
  return sock.sendmsg([msg], [[socket.SOL_SOCKET, socket.SCM_RIGHTS, arr]]);
}

/** The seed's recv_fds, transliterated (array('i') is 4-byte native ints). */
async function recvFds(socket: SocketModule, sock: Socket, msglen: number, maxfds: number): Promise<[Buffer, number[]]> {
  const fds: number[] = [];
  const [msg, ancdata] = await sock.recvmsg(msglen, socket.CMSG_LEN(maxfds * 4));
  for (const [level, type, data] of ancdata) {
    if (level === socket.SOL_SOCKET && type === socket.SCM_RIGHTS) {
      const whole = data.subarray(0, data.length - (data.length % 4));
      for (let i = 0; i < whole.length; i += 4) fds.push(whole.readInt32LE(i));
    }
  }
  return [msg, fds];
}

const hexAnc = (anc: Array<[number, number, Buffer]>): Array<[number, number, string]> => anc.map(([l, t, d]) => [l, t, d.toString('hex')]);

test("the seed's recvmsg_into example scatters as python3", async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "s1, s2 = socket.socketpair(); b1 = bytearray(b'----'); b2 = bytearray(b'0123456789'); b3 = bytearray(b'--------------')\n" +
      "s1.send(b'Mary had a little lamb'); r = s2.recvmsg_into([b1, memoryview(b2)[2:9], b3])\n" +
      'result = [list(r), [bytes(b).decode() for b in (b1, b2, b3)]]',
  );
  const [s1, s2] = await socket.socketpair();
  const b1 = Buffer.from('----');
  const b2 = Buffer.from('0123456789');
  const b3 = Buffer.from('--------------');
  t.is(await s1.send(Buffer.from('Mary had a little lamb')), 22);
  const r = await s2.recvmsgInto([b1, b2.subarray(2, 9), b3]);
  t.deepEqual([r, [b1, b2, b3].map((b) => b.toString())], py);
  t.deepEqual(py, [[22, [], 0, null], ['Mary', '01 had a 9', 'little lamb---']]);
  await s1.close();
  await s2.close();
});

test("the seed's send_fds/recv_fds: SCM_RIGHTS between the two ends of a socketpair, the received handle talks to the original peer", async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const [c, peer] = await socket.socketpair();
  const [c2, peer2] = await socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM);
  t.is(await sendFds(socket, a, Buffer.from('take these'), [c.fileno(), c2.fileno()]), 10);
  const [msg, fds] = await recvFds(socket, b, 100, 4);
  t.is(msg.toString(), 'take these');
  t.is(fds.length, 2);
  // New handles of this session, not the sent ones.
  t.false(fds.includes(c.fileno()));
  const got = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fds[0]!);
  await got.sendall(Buffer.from('through the passed socket'));
  t.is((await peer.recv(100)).toString(), 'through the passed socket');
  await peer.sendall(Buffer.from('and back'));
  t.is((await got.recv(100)).toString(), 'and back');
  const got2 = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fds[1]!);
  await got2.send(Buffer.from('dgram'));
  t.is((await peer2.recv(100)).toString(), 'dgram');
  // The original still works too: both handles name the same socket.
  await c.sendall(Buffer.from('original'));
  t.is((await peer.recv(100)).toString(), 'original');
  for (const s of [a, b, c, peer, c2, peer2, got, got2]) await s.close();
});

test.serial('SCM_RIGHTS truncated by a small ancbufsize: MSG_CTRUNC and only the fds that fit, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "import array\na, b = socket.socketpair(); c, d = socket.socketpair()\n" +
      "a.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [c.fileno(), d.fileno()]))])\n" +
      'msg, anc, flags, addr = b.recvmsg(10, socket.CMSG_LEN(4))\n' +
      'result = [msg.decode(), [(l, t, len(x)) for l, t, x in anc], flags & socket.MSG_CTRUNC != 0, addr]',
  );
  const [a, b] = await socket.socketpair();
  const [c, d] = await socket.socketpair();
  const before = fx.daemon().fdCount();
  await sendFds(socket, a, Buffer.from('x'), [c.fileno(), d.fileno()]);
  const [msg, anc, flags, addr] = await b.recvmsg(10, socket.CMSG_LEN(4));
  t.deepEqual([msg.toString(), anc.map(([l, ty, x]) => [l, ty, x.length]), (flags & socket.MSG_CTRUNC) !== 0, addr], py);
  // One new handle; the fd that did not fit was closed by the kernel.
  t.is(fx.daemon().fdCount(), before + 1);
  // ancbufsize 0: no ancillary data at all, the fds are discarded.
  await sendFds(socket, a, Buffer.from('y'), [c.fileno()]);
  const r0 = await b.recvmsg(10);
  t.deepEqual([r0[0].toString(), r0[1], (r0[2] & socket.MSG_CTRUNC) !== 0], ['y', [], true]);
  t.is(fx.daemon().fdCount(), before + 1);
  await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, anc[0]![2].readInt32LE(0)).then((s) => s.close());
  for (const s of [a, b, c, d]) await s.close();
});

test('sendmsg gathers several buffers; recvmsg flags MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT; recvmsgInto nbytes with MSG_TRUNC, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    'a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\nr = []\n' +
      "r.append(a.sendmsg([b'01', b'', bytearray(b'234'), memoryview(b'56789')]))\n" +
      'd, anc, fl, ad = b.recvmsg(4, 0, socket.MSG_PEEK); r.append([d.decode(), anc, fl, ad])\n' +
      'd, anc, fl, ad = b.recvmsg(4); r.append([d.decode(), anc, fl, ad])\n' +
      "a.send(b'0123456789'); d, anc, fl, ad = b.recvmsg(4, 0, socket.MSG_TRUNC); r.append([d.decode(), anc, fl, ad])\n" +
      "a.send(b'0123456789'); buf = bytearray(4); n, anc, fl, ad = b.recvmsg_into([buf], 0, socket.MSG_TRUNC); r.append([n, bytes(buf).decode(), fl])\n" +
      'result = r',
  );
  const [a, b] = await socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM);
  const r: unknown[] = [];
  r.push(await a.sendmsg([Buffer.from('01'), Buffer.alloc(0), new Uint8Array(Buffer.from('234')), Buffer.from('56789')]));
  let m = await b.recvmsg(4, 0, socket.MSG_PEEK);
  r.push([m[0].toString(), m[1], m[2], m[3]]);
  m = await b.recvmsg(4);
  r.push([m[0].toString(), m[1], m[2], m[3]]);
  await a.send(Buffer.from('0123456789'));
  m = await b.recvmsg(4, 0, socket.MSG_TRUNC);
  r.push([m[0].toString(), m[1], m[2], m[3]]);
  await a.send(Buffer.from('0123456789'));
  const buf = Buffer.alloc(4);
  const n = await b.recvmsgInto([buf], 0, socket.MSG_TRUNC);
  r.push([n[0], buf.toString(), n[2]]);
  t.deepEqual(r, py);
  // Nothing queued: MSG_DONTWAIT on a blocking socket raises at once.
  const err = await t.throwsAsync(b.recvmsg(4, 0, socket.MSG_DONTWAIT));
  t.true(err instanceof BlockingIOError);
  await a.close();
  await b.close();
});

test('recvmsg returns the sender address; sendmsg takes a destination (UDP, with the special host names), as python3', async (t) => {
  const socket = fx.socket();
  const rx = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await rx.bind(['', 0]);
  t.deepEqual(await rx.getsockname(), ['0.0.0.0', (await rx.getsockname() as [string, number])[1]]);
  const port = (await rx.getsockname() as [string, number])[1];
  const tx = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await tx.bind(['127.0.0.1', 0]);
  t.is(await tx.sendmsg([Buffer.from('to '), Buffer.from('you')], [], 0, ['127.0.0.1', port]), 6);
  const [data, anc, flags, addr] = await rx.recvmsg(100);
  t.deepEqual([data.toString(), anc, flags, addr], ['to you', [], 0, await tx.getsockname()]);
  // '<broadcast>' is INADDR_BROADCAST: the same outcome as python3's (sent, or the same error).
  await tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1);
  const py = await pyRaisesAll({ b: `s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); s.sendmsg([b'x'], [], 0, ('<broadcast>', ${port}))` });
  let mine: unknown = null;
  try {
    await tx.sendmsg([Buffer.from('x')], [], 0, ['<broadcast>', port]);
  } catch (err) {
    mine = { cls: (err as Error).name, errno: (err as OSError).errno, message: (err as Error).message };
  }
  t.deepEqual(mine, py.b);
  await tx.close();
  await rx.close();
});

test('IP_PKTINFO, IP_RECVTTL, IP_RECVTOS and an IP_TTL item sent by sendmsg arrive as the bytes python3 receives', async (t) => {
  const socket = fx.socket();
  const code = (port: number) =>
    'rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0))\n' +
    // python3's socket module lacks IP_PKTINFO, IP_RECVTTL and IP_RECVTOS on Linux: their values.
    'for o in (8, 12, 13): rx.setsockopt(socket.IPPROTO_IP, o, 1)\n' +
    'tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x20)\n' +
    "tx.sendmsg([b'ttl'], [(socket.IPPROTO_IP, socket.IP_TTL, (33).to_bytes(4, 'little'))], 0, rx.getsockname())\n" +
    'd, anc, fl, ad = rx.recvmsg(100, 256)\n' +
    `result = [d.decode(), [(l, t, x.hex()) for l, t, x in anc], fl, ${port}]`;
  const py = await pyValue<[string, Array<[number, number, string]>, number, number]>(code(0));
  const rx = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await rx.bind(['127.0.0.1', 0]);
  for (const o of [socket.IP_PKTINFO, socket.IP_RECVTTL, socket.IP_RECVTOS]) await rx.setsockopt(socket.IPPROTO_IP, o, 1);
  const tx = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x20);
  const ttl = Buffer.alloc(4);
  ttl.writeInt32LE(33);
  await tx.sendmsg([Buffer.from('ttl')], [[socket.IPPROTO_IP, socket.IP_TTL, ttl]], 0, (await rx.getsockname())!);
  const [d, anc, fl] = await rx.recvmsg(100, 256);
  t.deepEqual([d.toString(), hexAnc(anc), fl, 0], py);
  t.true(py[1].some(([l, ty, x]) => l === socket.IPPROTO_IP && ty === socket.IP_TTL && x === '21000000'));
  // An IP_PKTINFO item on send (choose the source address) is accepted as in python3.
  const info = Buffer.alloc(12);
  info.writeInt32LE(0, 0);
  Buffer.from([127, 0, 0, 1]).copy(info, 4);
  t.is(await tx.sendmsg([Buffer.from('pi')], [[socket.IPPROTO_IP, socket.IP_PKTINFO, info]], 0, (await rx.getsockname())!), 2);
  const [d2, anc2] = await rx.recvmsg(100, 256);
  t.is(d2.toString(), 'pi');
  t.true(anc2.some(([l, ty]) => l === socket.IPPROTO_IP && ty === socket.IP_PKTINFO));
  await tx.close();
  await rx.close();
});

test('IPV6_RECVPKTINFO / IPV6_RECVHOPLIMIT / IPV6_RECVTCLASS and SO_TIMESTAMP items, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<Array<[number, number, string]>>(
    'rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); rx.bind(("::1", 0))\n' +
      'for o in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT, socket.IPV6_RECVTCLASS): rx.setsockopt(socket.IPPROTO_IPV6, o, 1)\n' +
      "tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); tx.sendto(b'6', rx.getsockname())\n" +
      'd, anc, fl, ad = rx.recvmsg(100, 256)\nresult = [(l, t, x.hex()) for l, t, x in anc]',
  );
  const rx = await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);
  await rx.bind(['::1', 0]);
  for (const o of [socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT, socket.IPV6_RECVTCLASS]) await rx.setsockopt(socket.IPPROTO_IPV6, o, 1);
  const tx = await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);
  await tx.sendto(Buffer.from('6'), (await rx.getsockname())!);
  const [, anc, , addr] = await rx.recvmsg(100, 256);
  t.deepEqual(hexAnc(anc), py);
  t.deepEqual(addr, ['::1', (await tx.getsockname() as [string, number])[1], 0, 0]);
  // SO_TIMESTAMP: a struct timeval of now.
  // SO_TIMESTAMP (29) is not among python3's socket constants, so not the SDK's either.
  const SO_TIMESTAMP = 29;
  await rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1);
  await tx.sendto(Buffer.from('t'), (await rx.getsockname())!);
  const [, anc2] = await rx.recvmsg(100, 256);
  const ts = anc2.find(([l, ty]) => l === socket.SOL_SOCKET && ty === SO_TIMESTAMP);
  t.truthy(ts);
  t.is(ts![2].length, 16);
  t.true(Math.abs(Number(ts![2].readBigInt64LE(0)) - Date.now() / 1000) < 60);
  await tx.close();
  await rx.close();
});

test('bad arguments raise as python3', async (t) => {
  const socket = fx.socket();
  const [a] = await socket.socketpair();
  const py = await pyRaisesAll({
    negBuf: 'a, b = socket.socketpair(); a.recvmsg(-1)',
    negAnc: 'a, b = socket.socketpair(); a.recvmsg(1, -1)',
    negAncInto: 'a, b = socket.socketpair(); a.recvmsg_into([bytearray(1)], -1)',
    intoNotIter: 'a, b = socket.socketpair(); a.recvmsg_into(5)',
    sendNotIter: 'a, b = socket.socketpair(); a.sendmsg(5)',
    sendNotBytes: 'a, b = socket.socketpair(); a.sendmsg([5])',
    ancNotIter: "a, b = socket.socketpair(); a.sendmsg([b'x'], 5)",
    ancNotTuple: "a, b = socket.socketpair(); a.sendmsg([b'x'], [5])",
    ancShort: "a, b = socket.socketpair(); a.sendmsg([b'x'], [(1, 2)])",
    ancData: "a, b = socket.socketpair(); a.sendmsg([b'x'], [(1, 2, 3)])",
    floatBuf: 'a, b = socket.socketpair(); a.recvmsg(1.5)',
  });
  await raisesLikePython(t, () => a.recvmsg(-1), ValueError, py.negBuf);
  await raisesLikePython(t, () => a.recvmsg(1, -1), ValueError, py.negAnc);
  await raisesLikePython(t, () => a.recvmsgInto([Buffer.alloc(1)], -1), ValueError, py.negAncInto);
  await raisesLikePython(t, () => a.recvmsgInto(5 as never), TypeError, py.intoNotIter);
  await raisesLikePython(t, () => a.sendmsg(5 as never), TypeError, py.sendNotIter);
  await raisesLikePython(t, () => a.sendmsg([5 as never]), TypeError, buffer34(t, py.sendNotBytes));
  await raisesLikePython(t, () => a.sendmsg([Buffer.from('x')], 5 as never), TypeError, py.ancNotIter);
  await raisesLikePython(t, () => a.sendmsg([Buffer.from('x')], [5 as never]), TypeError, py.ancNotTuple);
  await raisesLikePython(t, () => a.sendmsg([Buffer.from('x')], [[1, 2] as never]), TypeError, py.ancShort);
  await raisesLikePython(t, () => a.sendmsg([Buffer.from('x')], [[1, 2, 3] as never]), TypeError, buffer34(t, py.ancData));
  await raisesLikePython(t, () => a.recvmsg(1.5), TypeError, py.floatBuf);
  await a.close();
});

test('SCM_RIGHTS naming anything but a handle of the session is EBADF; nothing is sent', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const [gone] = await socket.socketpair();
  const goneFd = gone.fileno();
  await gone.close();
  // 0-2 and small numbers are daemon fds, never handles (handles start above them and are never reused).
  for (const fd of [0, 1, 2, goneFd, 9999, -1]) {
    const err = await t.throwsAsync(sendFds(socket, a, Buffer.from('x'), [fd]));
    t.true(err instanceof OSError);
    t.is((err as OSError).code, 'EBADF', `fd ${fd}`);
  }
  await t.throwsAsync(b.recv(10, socket.MSG_DONTWAIT), { instanceOf: BlockingIOError });
  await a.close();
  await b.close();
});

test.serial('received fds that are not sockets are closed and dropped (an outside python3 process sends a pipe and a socket)', async (t) => {
  const socket = fx.socket();
  const dir = publicTempDir('sb-msg-');
  const path = join(dir, 'fds.sock');
  const l = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM);
  await l.bind(path);
  await l.listen();
  const py = spawn('python3', ['-c', `
import socket, os, array, sys
r, w = os.pipe(); s1, s2 = socket.socketpair()
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
c.sendmsg([b'mixed'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r, s1.fileno(), w]))])
s2.sendall(b'from python'); c.recv(1)
`, path], { stdio: 'ignore' });
  const [conn] = await l.accept();
  const before = fx.daemon().fdCount();
  const [msg, fds] = await recvFds(socket, conn, 100, 8);
  t.is(msg.toString(), 'mixed');
  t.is(fds.length, 1);
  t.is(fx.daemon().fdCount(), before + 1);
  const s = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fds[0]!);
  t.is((await s.recv(100)).toString(), 'from python');
  await conn.send(Buffer.from('!'));
  await once(py, 'exit');
  for (const x of [s, conn, l]) await x.close();
});
