// Datagrams read ahead on broker UDP sockets (RecvRequest.batch, client/socket.ts): one recv
// brings those already waiting, and the next reads return them one by one exactly as the kernel
// would — order, each sender's address, each cut at its own call's bufsize (MSG_TRUNC in recvmsg's
// msg_flags), MSG_PEEK, timeouts and non-blocking mode, poll(), errors on the call that meets them
// — compared with python3 where it can run the same. Sockets stay on the broker (the read-ahead is
// the streamed path's); no timing is asserted.
import test from 'ava';
import { BlockingIOError, ConnectionRefusedError, timeout as SocketTimeout, type Socket, type SocketModule } from '../../client/index.js';
import { useDaemon, portOf } from '../socket/helpers/fixture.js';
import { pyValue } from '../socket/helpers/py.js';

const fx = useDaemon(test, false);

async function udp(socket: SocketModule): Promise<Socket> {
  const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await s.bind(['127.0.0.1', 0]);
  return s;
}

/** Sends each payload from `from` to `to` (on loopback each is queued at `to` once sendto returns). */
async function sendAll(from: Socket, to: Socket, payloads: string[]): Promise<void> {
  const addr = (await to.getsockname())!;
  for (const p of payloads) await from.sendto(Buffer.from(p), addr);
}

test('datagrams already waiting come with one recv and are returned in order, each with its sender, as python3 returns them', async (t) => {
  const socket = fx.socket();
  const [r, a, b] = [await udp(socket), await udp(socket), await udp(socket)];
  const [pa, pb] = [await portOf(a), await portOf(b)];
  const payloads = Array.from({ length: 20 }, (_, i) => `${i % 2 ? 'b' : 'a'}${i}`);
  for (const [i, p] of payloads.entries()) await sendAll(i % 2 ? b : a, r, [p]);
  const got: Array<[string, string]> = [];
  for (let i = 0; i < payloads.length; i++) {
    const [data, addr] = await r.recvfrom(100);
    got.push([data.toString(), addr![1] === pa ? 'a' : addr![1] === pb ? 'b' : String(addr)]);
    // The first recv brought the other 19: they are in this process now.
    if (i === 0) t.is(r._queuedDatagrams, payloads.length - 1);
  }
  const py = await pyValue<Array<[string, string]>>(
    "r, a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))\n" +
      "for s in (r, a, b): s.bind(('127.0.0.1', 0))\n" +
      "for i in range(20): (b if i % 2 else a).sendto(('%s%d' % ('b' if i % 2 else 'a', i)).encode(), r.getsockname())\n" +
      "names = {a.getsockname()[1]: 'a', b.getsockname()[1]: 'b'}\n" +
      'result = []\n' +
      'for i in range(20):\n' +
      '    d, addr = r.recvfrom(100)\n' +
      '    result.append([d.decode(), names[addr[1]]])',
  );
  t.deepEqual(got, py);
  t.deepEqual(got, payloads.map((p) => [p, p[0]!]));
  for (const s of [r, a, b]) await s.close();
});

test('each datagram read ahead is cut at the bufsize of the call that returns it (recv, recvfrom, recv_into, recvmsg with MSG_TRUNC), as python3 cuts it', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  await sendAll(a, r, ['abcdef', 'ghijkl', 'mnopqr', 'stuvwx', 'yz0123']);
  const first = (await r.recv(2)).toString();
  t.is(r._queuedDatagrams, 4);
  const second = (await r.recvfrom(4))[0].toString();
  const buf = Buffer.alloc(8, 0x2e);
  const n = await r.recvInto(buf, 3);
  const [d4, anc4, flags4] = await r.recvmsg(2);
  const [d5, , flags5] = await r.recvmsg(10);
  const sdk = [first, second, [n, buf.toString()], [d4.toString(), anc4.length, flags4], [d5.toString(), flags5]];
  const py = await pyValue<unknown[]>(
    "r, a = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))\n" +
      "for s in (r, a): s.bind(('127.0.0.1', 0))\n" +
      "for p in (b'abcdef', b'ghijkl', b'mnopqr', b'stuvwx', b'yz0123'): a.sendto(p, r.getsockname())\n" +
      "first = r.recv(2).decode(); second = r.recvfrom(4)[0].decode()\n" +
      "buf = bytearray(b'........'); n = r.recv_into(buf, 3)\n" +
      'd4, anc4, flags4, _ = r.recvmsg(2); d5, _, flags5, _ = r.recvmsg(10)\n' +
      'result = [first, second, [n, buf.decode()], [d4.decode(), len(anc4), flags4], [d5.decode(), flags5]]',
  );
  t.deepEqual(sdk, py);
  t.deepEqual(sdk, ['ab', 'ghij', [3, 'mno.....'], ['st', 0, socket.MSG_TRUNC], ['yz0123', 0]]);
  await r.close();
  await a.close();
});

test('MSG_PEEK shows the next datagram read ahead without taking it; MSG_DONTWAIT and non-blocking mode return queued ones, then raise BlockingIOError', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  await sendAll(a, r, ['one', 'two', 'three']);
  t.is((await r.recv(10)).toString(), 'one');
  t.is((await r.recv(10, socket.MSG_PEEK)).toString(), 'two');
  t.is((await r.recvfrom(10, socket.MSG_PEEK))[0].toString(), 'two');
  t.is((await r.recv(10, socket.MSG_DONTWAIT)).toString(), 'two');
  r.setblocking(false);
  t.is((await r.recv(10)).toString(), 'three');
  await t.throwsAsync(r.recv(10), { instanceOf: BlockingIOError });
  r.setblocking(true);
  await r.close();
  await a.close();
});

test('a recv with a timeout returns queued datagrams at once and raises socket.timeout once none is left', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  await sendAll(a, r, ['x1', 'x2']);
  r.settimeout(0.2);
  t.is((await r.recv(10)).toString(), 'x1');
  t.is((await r.recv(10)).toString(), 'x2');
  await t.throwsAsync(r.recv(10), { instanceOf: SocketTimeout, message: 'timed out' });
  await r.close();
  await a.close();
});

test('poll() reports a socket readable while it holds datagrams read ahead (with nothing left in the kernel), and not once they are read', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  await sendAll(a, r, ['p1', 'p2', 'p3']);
  await r.recv(10);
  t.is(r._queuedDatagrams, 2);
  t.deepEqual(await socket.poll([r], socket.POLLIN, 0), [[r, socket.POLLIN]]);
  t.deepEqual(await socket.poll([r, a], socket.POLLIN | socket.POLLOUT, 5), [[r, socket.POLLIN | socket.POLLOUT], [a, socket.POLLOUT]]);
  await r.recv(10);
  await r.recv(10);
  t.deepEqual(await socket.poll([r], socket.POLLIN, 0), []);
  await r.close();
  await a.close();
});

test('two concurrent recvfrom calls and the reads after them see the datagrams in arrival order', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  const pending = [r.recvfrom(10), r.recvfrom(10)];
  await sendAll(a, r, ['c1', 'c2', 'c3', 'c4', 'c5']);
  const got = (await Promise.all(pending)).map(([d]) => d.toString());
  for (let i = 0; i < 3; i++) got.push((await r.recv(10)).toString());
  t.deepEqual(got, ['c1', 'c2', 'c3', 'c4', 'c5']);
  await r.close();
  await a.close();
});

test('connected UDP: ECONNREFUSED is raised by the recv that meets it, as python3 raises it, and after the datagrams read ahead before it', async (t) => {
  const socket = fx.socket();
  const dead = await udp(socket);
  const port = await portOf(dead);
  await dead.close();
  const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await s.connect(['127.0.0.1', port]);
  await s.send(Buffer.from('anyone?'));
  const err = await t.throwsAsync(s.recv(10), { instanceOf: ConnectionRefusedError });
  const py = await pyValue<number>(
    "d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.bind(('127.0.0.1', 0)); port = d.getsockname()[1]; d.close()\n" +
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('127.0.0.1', port)); s.send(b'anyone?')\n" +
      'try:\n    s.recv(10)\nexcept ConnectionRefusedError as e:\n    result = e.errno',
  );
  t.is(err?.errno, py);
  await s.close();

  // Datagrams read ahead before the error arrived come first; the error is not lost.
  const peer = await udp(socket);
  const c = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await c.connect((await peer.getsockname())!);
  await sendAll(peer, c, ['q1', 'q2', 'q3']);
  t.is((await c.recv(10)).toString(), 'q1');
  t.is(c._queuedDatagrams, 2);
  await peer.close();
  await c.send(Buffer.from('gone?'));
  t.is((await c.recv(10)).toString(), 'q2');
  t.is((await c.recv(10)).toString(), 'q3');
  await t.throwsAsync(c.recv(10), { instanceOf: ConnectionRefusedError });
  await c.close();
});

test('a setsockopt that may add ancillary data ends the read-ahead: recvmsg then gets that data from the kernel, as python3 does', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  // IP_RECVTTL (12): every datagram carries its TTL as an IP_TTL control message.
  await r.setsockopt(socket.IPPROTO_IP, 12, 1);
  await sendAll(a, r, ['t1', 't2']);
  t.is((await r.recv(10)).toString(), 't1');
  t.is(r._queuedDatagrams, 0);
  const [data, anc] = await r.recvmsg(10, 64);
  const py = await pyValue<unknown[]>(
    "r, a = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))\n" +
      "for s in (r, a): s.bind(('127.0.0.1', 0))\n" +
      'r.setsockopt(socket.IPPROTO_IP, 12, 1)\n' +
      "a.sendto(b't2', r.getsockname())\n" +
      'd, anc, _, _ = r.recvmsg(10, 64)\n' +
      'result = [d.decode(), [[l, ty, len(x)] for l, ty, x in anc]]',
  );
  t.deepEqual([data.toString(), anc.map(([l, ty, x]) => [l, ty, x.length])], py);
  await r.close();
  await a.close();
});

test('close() discards the datagrams read ahead, as closing a socket discards its queue', async (t) => {
  const socket = fx.socket();
  const [r, a] = [await udp(socket), await udp(socket)];
  await sendAll(a, r, ['d1', 'd2', 'd3']);
  await r.recv(10);
  t.is(r._queuedDatagrams, 2);
  await r.close();
  t.is(r._queuedDatagrams, 0);
  await t.throwsAsync(r.recv(10), { message: /Bad file descriptor/ });
  await a.close();
});
