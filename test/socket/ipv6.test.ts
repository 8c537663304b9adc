// IPv6 on ::1: addresses are 4-tuples (host, port, flowinfo, scope_id), as python3 returns them.
import test from 'ava';
import { ConnectionRefusedError, OSError, OverflowError, timeout as SocketTimeout } from '../../client/index.js';
import { useDaemon, listener, portOf, deadPort, tcpPair } from './helpers/fixture.js';
import { pyRaises, pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

test('TCP over ::1: bind, listen, connect, accept; names are 4-tuples as in python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket, socket.AF_INET6);
  const port = await portOf(l);
  await using c = await socket.socket(socket.AF_INET6);
  await c.connect(['::1', port]);
  const [conn, addr] = await l.accept();
  await using _conn = conn;
  t.deepEqual(await l.getsockname(), ['::1', port, 0, 0]);
  t.deepEqual(await c.getpeername(), ['::1', port, 0, 0]);
  await c.sendall(Buffer.from('over v6'));
  const name = (await l.getsockname()) as unknown[];
  const got = [name[0], name.length, (addr as unknown[]).slice(2), JSON.stringify(addr) === JSON.stringify(await c.getsockname()), conn.family, (await conn.recv(100)).toString()];
  const py = await pyValue<unknown[]>(
    "l = socket.socket(socket.AF_INET6); l.bind(('::1', 0)); l.listen(); c = socket.socket(socket.AF_INET6); c.connect(('::1', l.getsockname()[1])); conn, addr = l.accept(); c.sendall(b'over v6')\n" +
      'result = [l.getsockname()[0], len(l.getsockname()), list(addr)[2:], addr == c.getsockname(), conn.family, conn.recv(100).decode()]',
  );
  t.deepEqual(py, ['::1', 4, [0, 0], true, socket.AF_INET6, 'over v6']);
  t.deepEqual(got, py);
});

test('bind on AF_INET6: "" is ::, short tuples, flowinfo overflow, <broadcast>, as python3', async (t) => {
  const socket = fx.socket();
  await using any = await socket.socket(socket.AF_INET6);
  await any.bind(['', 0]);
  const [host, , flow, scope] = (await any.getsockname()) as [string, number, number, number];
  const py = await pyValue<unknown[]>("s = socket.socket(socket.AF_INET6); s.bind(('', 0)); n = s.getsockname(); result = [n[0], n[2], n[3]]");
  t.deepEqual([host, flow, scope], py);
  t.deepEqual(py, ['::', 0, 0]);
  await using s = await socket.socket(socket.AF_INET6);
  const errs = await pyRaisesAll({
    short: "socket.socket(socket.AF_INET6).bind(('::1',))",
    flowinfo: "socket.socket(socket.AF_INET6).bind(('::1', 0, 1 << 20))",
    notTuple: "socket.socket(socket.AF_INET6).bind('::1')",
    broadcast: "socket.socket(socket.AF_INET6).bind(('<broadcast>', 0))",
    v4host: "socket.socket(socket.AF_INET6).bind(('127.0.0.1', 0))",
  });
  await raisesLikePython(t, () => s.bind(['::1'] as unknown as [string, number]), TypeError, errs.short);
  await raisesLikePython(t, () => s.bind(['::1', 0, 1 << 20, 0]), OverflowError, errs.flowinfo);
  await raisesLikePython(t, () => s.bind('::1'), TypeError, errs.notTuple);
  await raisesLikePython(t, () => s.bind(['<broadcast>', 0]), OSError, errs.broadcast);
  t.is(errs.broadcast?.message, 'address family mismatched');
  // A v4 dotted quad is not an IPv6 host: getaddrinfo for AF_INET6 refuses it (EAI_ADDRFAMILY).
  t.is(errs.v4host?.errno, -9);
  await raisesLikePython(t, () => s.bind(['127.0.0.1', 0]), socket.gaierror, errs.v4host);
});

test('connect on ::1: refused port → ConnectionRefusedError 111, as python3', async (t) => {
  const socket = fx.socket();
  const port = await deadPort(socket, socket.AF_INET6);
  await using s = await socket.socket(socket.AF_INET6);
  const expected = await pyRaises(
    "d = socket.socket(socket.AF_INET6); d.bind(('::1', 0)); p = d.getsockname()[1]; d.close()\nsocket.socket(socket.AF_INET6).connect(('::1', p))",
  );
  await raisesLikePython(t, () => s.connect(['::1', port]), ConnectionRefusedError, expected);
  t.is(await s.connectEx(['::1', port]), 111);
});

test('UDP over ::1: sendto/recvfrom carry 4-tuple addresses, as python3', async (t) => {
  const socket = fx.socket();
  await using a = await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);
  await using b = await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM);
  await a.bind(['::1', 0]);
  await b.bind(['::1', 0]);
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const n1 = await a.sendto(Buffer.from('ping6'), (await b.getsockname())!);
  const [data, from] = await b.recvfrom(100);
  // A 2-tuple address is accepted too (flowinfo and scope_id default to 0).
  const n2 = await b.sendto(Buffer.from('pong6'), ['::1', await portOf(a)]);
  const buf = Buffer.alloc(10);
  const [n, from2] = await a.recvfromInto(buf);
  const got = [n1, data.toString(), same(from, await a.getsockname()), (from as unknown[]).length, n2, buf.subarray(0, n).toString(), same(from2, await b.getsockname())];
  const py = await pyValue<unknown[]>(
    "a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); a.bind(('::1', 0)); b.bind(('::1', 0))\n" +
      "n1 = a.sendto(b'ping6', b.getsockname()); d, f = b.recvfrom(100); n2 = b.sendto(b'pong6', ('::1', a.getsockname()[1])); buf = bytearray(10); n, f2 = a.recvfrom_into(buf)\n" +
      'result = [n1, d.decode(), f == a.getsockname(), len(f), n2, buf[:n].decode(), f2 == b.getsockname()]',
  );
  t.deepEqual(py, [5, 'ping6', true, 4, 5, 'pong6', true]);
  t.deepEqual(got, py);
});

test('IPv6 timeout mode: recv on ::1 raises socket.timeout after the timeout, as python3', async (t) => {
  const socket = fx.socket();
  const [c, conn, l] = await tcpPair(socket, socket.AF_INET6);
  const expected = await pyRaises(
    "l = socket.socket(socket.AF_INET6); l.bind(('::1', 0)); l.listen(); c = socket.socket(socket.AF_INET6); c.connect(('::1', l.getsockname()[1])); c.settimeout(0.3); c.recv(10)",
  );
  t.deepEqual(expected, { cls: 'timeout', errno: null, message: 'timed out' });
  c.settimeout(0.3);
  const t0 = performance.now();
  await raisesLikePython(t, () => c.recv(10), SocketTimeout, expected);
  // Not before the timeout (the upper bound only catches a wait that never ends).
  const ms = performance.now() - t0;
  t.true(ms >= 250 && ms < 30_000, `${ms} ms`);
  for (const s of [c, conn, l]) await s.close();
});

test('getaddrinfo for ::1 and createConnection over IPv6', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket, socket.AF_INET6);
  const port = await portOf(l);
  const infos = await socket.getaddrinfo('::1', port, socket.AF_INET6, socket.SOCK_STREAM);
  const py = await pyValue(`result = [list(r[:4]) + [list(r[4])] for r in socket.getaddrinfo('::1', ${port}, socket.AF_INET6, socket.SOCK_STREAM)]`);
  t.deepEqual(infos, py);
  await using c = await socket.createConnection(['::1', port]);
  t.is(c.family, socket.AF_INET6);
  t.deepEqual(await c.getpeername(), ['::1', port, 0, 0]);
  const [conn] = await l.accept();
  await conn.close();
});
