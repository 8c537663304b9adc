// Data transfer: recv, recvfrom, recv_into, recvfrom_into, send, sendall, sendto and shutdown,
// compared with python3 for the same calls.
import test from 'ava';
import { BlockingIOError, BrokenPipeError, OSError, OverflowError, ValueError, timeout as SocketTimeout } from '../../client/index.js';
import { useDaemon, tcpPair, portOf } from './helpers/fixture.js';
import { as34, pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

/** python3 prelude: a connected TCP pair c (client) / a (accepted). */
const PY_PAIR = "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.create_connection(l.getsockname()); a, _ = l.accept()\n";

test('recv(): data, MSG_PEEK leaves it, recv(0) is empty, as python3', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  t.is(await c.send(Buffer.from('hello world')), 11);
  // One segment on loopback: wait until all of it is there before peeking.
  await socket.poll([a], socket.POLLIN, 10);
  const got = [
    (await a.recv(0)).toString(),
    (await a.recv(5, socket.MSG_PEEK)).toString(),
    (await a.recv(5)).toString(),
    (await a.recv(100, socket.MSG_PEEK)).toString(),
    (await a.recv(100)).toString(),
  ];
  const py = await pyValue<string[]>(
    PY_PAIR +
      "import select\nc.send(b'hello world'); select.select([a], [], [], 10)\n" +
      'result = [x.decode() for x in (a.recv(0), a.recv(5, socket.MSG_PEEK), a.recv(5), a.recv(100, socket.MSG_PEEK), a.recv(100))]',
  );
  t.deepEqual(py, ['', 'hello', 'hello', ' world', ' world']);
  t.deepEqual(got, py);
  for (const s of [c, a, l]) await s.close();
});

test('recv()/recvfrom() return empty at EOF after the peer shuts down writing (SHUT_WR)', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  await c.sendall(Buffer.from('last'));
  await c.shutdown(socket.SHUT_WR);
  const got: unknown[] = [(await a.recv(100)).toString(), (await a.recv(100)).length, await a.recvfrom(100)];
  // The other direction still works.
  await a.sendall(Buffer.from('still open'));
  got.push((await c.recv(100)).toString());
  const py = await pyValue<unknown[]>(
    PY_PAIR +
      "c.sendall(b'last'); c.shutdown(socket.SHUT_WR)\n" +
      "r = [a.recv(100).decode(), len(a.recv(100)), list(a.recvfrom(100))]; r[2][0] = r[2][0].hex(); a.sendall(b'still open'); r.append(c.recv(100).decode()); result = r",
  );
  t.deepEqual(py, ['last', 0, ['', null], 'still open']);
  t.deepEqual(got.map((x, i) => (i === 2 ? [(x as [Buffer, unknown])[0].toString('hex'), (x as [Buffer, unknown])[1]] : x)), py);
  for (const s of [c, a, l]) await s.close();
});

test('recvfrom() on a socketpair (no peer address) gives None/null, stream and datagram, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "r = []\nfor ty in (socket.SOCK_STREAM, socket.SOCK_DGRAM):\n    a, b = socket.socketpair(socket.AF_UNIX, ty); b.send(b'x'); d, addr = a.recvfrom(5); r.append([d.decode(), addr])\nresult = r",
  );
  t.deepEqual(py, [['x', null], ['x', null]]);
  const got: unknown[] = [];
  for (const ty of [socket.SOCK_STREAM, socket.SOCK_DGRAM]) {
    const [a, b] = await socket.socketpair(socket.AF_UNIX, ty);
    await b.send(Buffer.from('x'));
    const [d, addr] = await a.recvfrom(5);
    got.push([d.toString(), addr]);
    await a.close();
    await b.close();
  }
  t.deepEqual(got, py);
});

test('recv family: negative sizes and nbytes larger than the buffer raise ValueError as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const py = await pyRaisesAll({
    recv: 'a, b = socket.socketpair(); a.recv(-1)',
    recvfrom: 'a, b = socket.socketpair(); a.recvfrom(-1)',
    recvInto: 'a, b = socket.socketpair(); a.recv_into(bytearray(4), -1)',
    recvfromInto: 'a, b = socket.socketpair(); a.recvfrom_into(bytearray(4), -1)',
    intoBig: 'a, b = socket.socketpair(); a.recv_into(bytearray(4), 5)',
    fromIntoBig: 'a, b = socket.socketpair(); a.recvfrom_into(bytearray(4), 5)',
    intoStr: "a, b = socket.socketpair(); a.recv_into('abcd')",
    fromIntoStr: "a, b = socket.socketpair(); a.recvfrom_into('abcd')",
    size: "a, b = socket.socketpair(); a.recv('1')",
    flags: 'a, b = socket.socketpair(); a.recv(1, 2**31)',
  });
  const buf = Buffer.alloc(4);
  await raisesLikePython(t, () => a.recv(-1), ValueError, py.recv);
  await raisesLikePython(t, () => a.recvfrom(-1), ValueError, py.recvfrom);
  await raisesLikePython(t, () => a.recvInto(buf, -1), ValueError, py.recvInto);
  await raisesLikePython(t, () => a.recvfromInto(buf, -1), ValueError, py.recvfromInto);
  await raisesLikePython(t, () => a.recvInto(buf, 5), ValueError, py.intoBig);
  await raisesLikePython(t, () => a.recvfromInto(buf, 5), ValueError, py.fromIntoBig);
  await raisesLikePython(t, () => a.recvInto('abcd' as unknown as Buffer), TypeError, py.intoStr);
  await raisesLikePython(t, () => a.recvfromInto('abcd' as unknown as Buffer), TypeError, py.fromIntoStr);
  await raisesLikePython(t, () => a.recv('1' as unknown as number), TypeError, py.size);
  await raisesLikePython(t, () => a.recv(1, 2 ** 31), OverflowError, py.flags);
  t.deepEqual(
    [py.recv?.message, py.intoBig?.message, py.fromIntoBig?.message],
    ['negative buffersize in recv', 'buffer too small for requested bytes', 'nbytes is greater than the length of the buffer'],
  );
  await a.close();
  await b.close();
});

test('recvInto()/recvfromInto(): fill the buffer (or its first nbytes) and return the count', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  await b.sendall(Buffer.from('abcdefgh'));
  await socket.poll([a], socket.POLLIN, 10);
  const buf = Buffer.alloc(6, '.');
  const n1 = await a.recvInto(buf, 2);
  const s1 = buf.toString();
  const n2 = await a.recvInto(buf);
  const s2 = buf.toString();
  const view = new Uint8Array(4);
  await b.sendall(Buffer.from('wxyz!'));
  await socket.poll([a], socket.POLLIN, 10);
  const [n3, addr] = await a.recvfromInto(view, 0, socket.MSG_PEEK);
  const rest = (await a.recv(10)).toString();
  const py = await pyValue<unknown[]>(
    "import select\na, b = socket.socketpair(); b.sendall(b'abcdefgh'); select.select([a], [], [], 10); buf = bytearray(b'......')\n" +
      "n1 = a.recv_into(buf, 2); s1 = buf.decode(); n2 = a.recv_into(buf); s2 = buf.decode(); view = bytearray(4); b.sendall(b'wxyz!'); select.select([a], [], [], 10)\n" +
      'n3, addr = a.recvfrom_into(view, 0, socket.MSG_PEEK); result = [n1, s1, n2, s2, n3, view.decode(), addr, a.recv(10).decode()]',
  );
  t.deepEqual(py, [2, 'ab....', 6, 'cdefgh', 4, 'wxyz', null, 'wxyz!']);
  t.deepEqual([n1, s1, n2, s2, n3, Buffer.from(view).toString(), addr, rest], py);
  await a.close();
  await b.close();
});

test('send()/sendall(): counts as python3, and a large sendall arriving intact', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  const counts = [await c.send(Buffer.from('abc')), await c.send(new Uint8Array([100, 101])), await c.sendall(Buffer.from('f')) ?? null];
  let got = Buffer.alloc(0);
  while (got.length < 6) got = Buffer.concat([got, await a.recv(10)]);
  const py = await pyValue<unknown[]>(
    PY_PAIR + "r = [c.send(b'abc'), c.send(bytearray([100, 101])), c.sendall(b'f')]; got = b''\nwhile len(got) < 6: got += a.recv(10)\nresult = [r, got.decode()]",
  );
  t.deepEqual(py, [[3, 2, null], 'abcdef']);
  t.deepEqual([counts, got.toString()], py);
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const sent = c.sendall(big);
  const parts: Buffer[] = [];
  let n = 0;
  while (n < big.length) {
    const p = await a.recv(1 << 20);
    t.true(p.length > 0);
    parts.push(p);
    n += p.length;
  }
  await sent;
  t.true(Buffer.concat(parts).equals(big));
  for (const s of [c, a, l]) await s.close();
});

test("send/sendall/sendto with str data raise 3.4's TypeError \"'str' does not support the buffer interface\"", async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  const py = await pyRaisesAll({
    send: "a, b = socket.socketpair(); a.send('abc')",
    sendall: "a, b = socket.socketpair(); a.sendall('abc')",
    sendto: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto('abc', ('127.0.0.1', 9))",
    none: 'a, b = socket.socketpair(); a.send(None)',
  });
  const str = 'abc' as unknown as Buffer;
  const strIn34 = (e: typeof py.send) => as34(t, e, "a bytes-like object is required, not 'str'", "'str' does not support the buffer interface");
  await raisesLikePython(t, () => a.send(str), TypeError, strIn34(py.send));
  await raisesLikePython(t, () => a.sendall(str), TypeError, strIn34(py.sendall));
  await raisesLikePython(t, () => u.sendto(str, ['127.0.0.1', 9]), TypeError, strIn34(py.sendto));
  const none = as34(t, py.none, "a bytes-like object is required, not 'NoneType'", "'NoneType' does not support the buffer interface");
  await raisesLikePython(t, () => a.send(null as unknown as Buffer), TypeError, none);
  await a.close();
  await b.close();
});

test('sendto()/recvfrom(): a UDP round trip with addresses, both sendto forms, as python3', async (t) => {
  const socket = fx.socket();
  await using server = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await using client = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await server.bind(['127.0.0.1', 0]);
  await client.bind(['127.0.0.1', 0]);
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const serverAddr = (await server.getsockname())!;
  const got: unknown[] = [await client.sendto(Buffer.from('question'), serverAddr)];
  const [data, from] = await server.recvfrom(100);
  got.push(data.toString(), same(from, await client.getsockname()), await server.sendto(Buffer.from('answer'), 0, from!));
  const [answer, from2] = await client.recvfrom(100);
  got.push(answer.toString(), same(from2, serverAddr));
  // Datagram semantics: MSG_PEEK then a short read truncates the datagram.
  await client.sendto(Buffer.from('abcdef'), serverAddr);
  const peek = await server.recvfrom(3, socket.MSG_PEEK);
  const short = await server.recvfrom(3);
  got.push(peek[0].toString(), short[0].toString(), same(peek[1], await client.getsockname()) && same(short[1], peek[1]));
  const py = await pyValue<unknown[]>(
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); c.bind(('127.0.0.1', 0))\n" +
      "r = [c.sendto(b'question', s.getsockname())]; d, f = s.recvfrom(100); r += [d.decode(), f == c.getsockname(), s.sendto(b'answer', 0, f)]\n" +
      "d, f = c.recvfrom(100); r += [d.decode(), f == s.getsockname()]; c.sendto(b'abcdef', s.getsockname())\n" +
      "p, pf = s.recvfrom(3, socket.MSG_PEEK); q, qf = s.recvfrom(3); r += [p.decode(), q.decode(), pf == c.getsockname() and qf == pf]; result = r",
  );
  t.deepEqual(py, [8, 'question', true, 6, 'answer', true, 'abc', 'abc', true]);
  t.deepEqual(got, py);
  // Nothing left of the truncated datagram.
  t.deepEqual(await socket.poll([server], socket.POLLIN, 0), []);
});

test('concurrent sendto() calls (sent together by the broker): each returns its own count, in order; one that fails raises its own error; a pending ICMP error is raised, not lost', async (t) => {
  const socket = fx.socket();
  await using server = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await using client = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await server.bind(['127.0.0.1', 0]);
  const to = (await server.getsockname())!;
  const msg = (i: number): Buffer => Buffer.from(`datagram ${i}`);
  const counts = await Promise.all(Array.from({ length: 40 }, (_, i) => client.sendto(msg(i), to)));
  t.deepEqual(counts, Array.from({ length: 40 }, (_, i) => msg(i).length));
  const got: string[] = [];
  for (let i = 0; i < 40; i++) got.push((await server.recvfrom(100))[0].toString());
  t.deepEqual(got, Array.from({ length: 40 }, (_, i) => msg(i).toString()));
  // A broadcast without SO_BROADCAST among them: EACCES for that call alone, as python3 raises it.
  const mixed = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => client.sendto(msg(i), i === 4 ? ['255.255.255.255', 9] : to)));
  t.deepEqual(mixed.map((r) => r.status), [...Array(4).fill('fulfilled'), 'rejected', ...Array(5).fill('fulfilled')]);
  t.is(((mixed[4] as PromiseRejectedResult).reason as OSError).errno, 13);
  for (const i of [0, 1, 2, 3, 5, 6, 7, 8, 9]) t.is((await server.recvfrom(100))[0].toString(), msg(i).toString());
  // Connected to a port nobody has: the ICMP errors come back as ECONNREFUSED on later calls.
  await using gone = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await gone.bind(['127.0.0.1', 0]);
  const port = (await gone.getsockname())![1] as number;
  await gone.close();
  await using c = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await c.connect(['127.0.0.1', port]);
  const outcomes = (await Promise.allSettled(Array.from({ length: 20 }, () => c.send(msg(0))))).map((r) => (r.status === 'fulfilled' ? 'sent' : ((r.reason as OSError).errno === 111 ? 'refused' : String(r.reason))));
  // One by one (python3, or the broker) every send after a refused one's ICMP raises: about every
  // other one. A sendmmsg would lose the error of each datagram after its first (about 1 in 10).
  t.true(outcomes.filter((o) => o === 'refused').length >= 5, outcomes.join(' '));
  t.true(outcomes.every((o) => o === 'sent' || o === 'refused'), outcomes.join(' '));
});

test('sendto(): bad addresses and UDP send without a peer raise as python3', async (t) => {
  const socket = fx.socket();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  const py = await pyRaisesAll({
    str: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', 'bad')",
    port: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 65536))",
    noPeer: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).send(b'x')",
  });
  await raisesLikePython(t, () => u.sendto(Buffer.from('x'), 'bad'), TypeError, py.str);
  await raisesLikePython(t, () => u.sendto(Buffer.from('x'), ['127.0.0.1', 65536]), OverflowError, py.port);
  await raisesLikePython(t, () => u.send(Buffer.from('x')), OSError, py.noPeer);
  t.is(py.noPeer?.errno, 89);
});

test('shutdown(SHUT_WR): the peer gets EOF; sending after it is EPIPE (BrokenPipeError) as python3', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  await c.shutdown(socket.SHUT_WR);
  t.is((await a.recv(10)).length, 0);
  const py = await pyRaisesAll({
    send: `${PY_PAIR}c.shutdown(socket.SHUT_WR); c.send(b'x')`,
    sendall: `${PY_PAIR}c.shutdown(socket.SHUT_WR); c.sendall(b'x')`,
  });
  t.deepEqual(py.send, { cls: 'BrokenPipeError', errno: 32, message: '[Errno 32] Broken pipe' });
  await raisesLikePython(t, () => c.send(Buffer.from('x')), BrokenPipeError, py.send);
  await raisesLikePython(t, () => c.sendall(Buffer.from('x')), BrokenPipeError, py.sendall);
  for (const s of [c, a, l]) await s.close();
});

test('a pipelined sendall that fails in the broker fails the reads waiting on that socket with its error, and the next call', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM);
  const [c, d] = await socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM);
  if (a._handedOff) {
    // Handed off, nothing is pipelined: sendall is the syscall here and raises EPIPE itself, as python3's.
    await b.shutdown(socket.SHUT_RD);
    await t.throwsAsync(a.sendall(Buffer.from('x')), { instanceOf: BrokenPipeError });
    for (const s of [a, b, c, d]) await s.close();
    return;
  }
  // Two reads wait on a (one abort signal serves both), one on c (another socket: untouched).
  const reads = [a.recv(10), a.recv(10)];
  const other = c.recv(10);
  await b.shutdown(socket.SHUT_RD);
  // Pipelined: it resolves once on its way; the broker's send then fails with EPIPE.
  await a.sendall(Buffer.from('x'));
  for (const r of reads) await t.throwsAsync(r, { instanceOf: BrokenPipeError });
  await d.sendall(Buffer.from('still'));
  t.is((await other).toString(), 'still');
  // The next call raises it too, once; then the socket's reads work again (a fresh signal).
  await t.throwsAsync(a.recv(10), { instanceOf: BrokenPipeError });
  await b.sendall(Buffer.from('late'));
  t.is((await a.recv(10)).toString(), 'late');
  for (const s of [a, b, c, d]) await s.close();
});

test('shutdown(): errors as python3 (not connected, bad how)', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const [c, a, l] = await tcpPair(socket);
  const py = await pyRaisesAll({
    notConnected: 'socket.socket().shutdown(socket.SHUT_RDWR)',
    how: `${PY_PAIR}c.shutdown(5)`,
    overflow: 'socket.socket().shutdown(2**31)',
  });
  t.deepEqual([py.notConnected?.errno, py.how?.errno], [107, 22]);
  await raisesLikePython(t, () => s.shutdown(socket.SHUT_RDWR), OSError, py.notConnected);
  await raisesLikePython(t, () => c.shutdown(5), OSError, py.how);
  await raisesLikePython(t, () => s.shutdown(2 ** 31), OverflowError, py.overflow);
  // SHUT_RDWR on a connected socket: both ends see EOF.
  await c.shutdown(socket.SHUT_RDWR);
  t.is((await a.recv(10)).length, 0);
  t.is((await c.recv(10)).length, 0);
  t.true((await portOf(l)) > 0);
  for (const x of [c, a, l]) await x.close();
});

test('MSG_DONTWAIT: a blocking socket raises BlockingIOError at once; a timeout socket still waits, as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const py = await pyRaisesAll({
    blocking: 'a, b = socket.socketpair(); a.recv(1, socket.MSG_DONTWAIT)',
    timeout: 'a, b = socket.socketpair(); a.settimeout(0.2); a.recv(1, socket.MSG_DONTWAIT)',
  });
  t.deepEqual(py.blocking, { cls: 'BlockingIOError', errno: 11, message: '[Errno 11] Resource temporarily unavailable' });
  t.deepEqual(py.timeout, { cls: 'timeout', errno: null, message: 'timed out' });
  await raisesLikePython(t, () => a.recv(1, socket.MSG_DONTWAIT), BlockingIOError, py.blocking);
  await raisesLikePython(t, () => a.recvfrom(1, socket.MSG_DONTWAIT), BlockingIOError, py.blocking);
  a.settimeout(0.3);
  await raisesLikePython(t, () => a.recv(1, socket.MSG_DONTWAIT), SocketTimeout, py.timeout);
  // Data that is there is returned.
  await b.send(Buffer.from('z'));
  a.settimeout(null);
  await socket.poll([a], socket.POLLIN, 10);
  t.deepEqual(await a.recv(1, socket.MSG_DONTWAIT), Buffer.from('z'));
  await a.close();
  await b.close();
});

test('recv()/recvfrom() with a bufsize above the broker limit return what is there, as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  await b.send(Buffer.from('hello'));
  const py = await pyValue<string[]>("a, b = socket.socketpair(); b.send(b'hello'); r = [a.recv(10_000_000).decode()]; b.send(b'again'); r.append(a.recvfrom(100_000_000)[0].decode()); result = r");
  const got = [(await a.recv(10_000_000)).toString()];
  await b.send(Buffer.from('again'));
  got.push((await a.recvfrom(100_000_000))[0].toString());
  t.deepEqual(got, py);
  t.deepEqual(py, ['hello', 'again']);
  await a.close();
  await b.close();
});

test('sendto() with 1 or 4 arguments: TypeError "sendto() takes 2 or 3 arguments (N given)" as python3', async (t) => {
  const socket = fx.socket();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  const py = await pyRaisesAll({
    one: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x')",
    four: "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', 0, ('127.0.0.1', 9), 1)",
  });
  t.is(py.one?.message, 'sendto() takes 2 or 3 arguments (1 given)');
  const sendto = u.sendto as (...args: unknown[]) => Promise<number>;
  await raisesLikePython(t, () => sendto.call(u, Buffer.from('x')), TypeError, py.one);
  await raisesLikePython(t, () => sendto.call(u, Buffer.from('x'), 0, ['127.0.0.1', 9], 1), TypeError, py.four);
});
