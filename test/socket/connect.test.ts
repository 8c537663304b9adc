// accept, connect and connect_ex on TCP (and connect on UDP), compared with python3.
import test from 'ava';
import { ConnectionRefusedError, OSError, OverflowError } from '../../client/index.js';
import { useDaemon, listener, portOf, deadPort, tcpPair } from './helpers/fixture.js';
import { pyRaises, pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

/** python3 code that leaves a refused loopback port in `p`. */
const PY_DEAD_PORT = "d = socket.socket(); d.bind(('127.0.0.1', 0)); p = d.getsockname()[1]; d.close()\n";

/** Whether two addresses are the same tuple. */
const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);

test('accept(): [connection, address] with the peer address; the connection talks both ways, as python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  await using c = await socket.socket();
  await c.connect((await l.getsockname())!);
  const [conn, addr] = await l.accept();
  await using _conn = conn;
  await c.sendall(Buffer.from('to server'));
  const toServer = (await conn.recv(100)).toString();
  await conn.sendall(Buffer.from('to client'));
  const got = [
    same(addr, await c.getsockname()),
    same(await conn.getsockname(), await l.getsockname()),
    [conn.family, conn.type, conn.proto],
    conn.gettimeout(),
    toServer,
    (await c.recv(100)).toString(),
  ];
  const py = await pyValue<unknown[]>(
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.socket(); c.connect(l.getsockname()); conn, addr = l.accept()\n" +
      "c.sendall(b'to server'); s = conn.recv(100).decode(); conn.sendall(b'to client')\n" +
      'result = [addr == c.getsockname(), conn.getsockname() == l.getsockname(), [conn.family, conn.type, conn.proto], conn.gettimeout(), s, c.recv(100).decode()]',
  );
  t.deepEqual(py, [true, true, [socket.AF_INET, socket.SOCK_STREAM, 0], null, 'to server', 'to client']);
  t.deepEqual(got, py);
});

test('accept() on a socket that is not listening raises EINVAL as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  await s.bind(['127.0.0.1', 0]);
  const expected = await pyRaises("s = socket.socket(); s.bind(('127.0.0.1', 0)); s.accept()");
  t.is(expected?.errno, 22);
  await raisesLikePython(t, () => s.accept(), OSError, expected);
});

test('connect(): to a listener; refused port → ConnectionRefusedError errno 111 as python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  await using c = await socket.socket();
  t.is(await c.connect((await l.getsockname())!), undefined);
  t.deepEqual(await c.getpeername(), await l.getsockname());
  const [conn] = await l.accept();
  await conn.close();
  const port = await deadPort(socket);
  await using r = await socket.socket();
  const expected = await pyRaises(`${PY_DEAD_PORT}socket.socket().connect(('127.0.0.1', p))`);
  t.deepEqual(expected, { cls: 'ConnectionRefusedError', errno: 111, message: '[Errno 111] Connection refused' });
  await raisesLikePython(t, () => r.connect(['127.0.0.1', port]), ConnectionRefusedError, expected);
  t.is((await t.throwsAsync(() => r.connect(['127.0.0.1', port])) as OSError).code, 'ECONNREFUSED');
});

test('connect() on a connected socket raises EISCONN (106) as python3', async (t) => {
  const socket = fx.socket();
  const [c, conn, l] = await tcpPair(socket);
  const expected = await pyRaises("l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.socket(); c.connect(l.getsockname()); c.connect(l.getsockname())");
  t.deepEqual(expected, { cls: 'OSError', errno: 106, message: '[Errno 106] Transport endpoint is already connected' });
  await raisesLikePython(t, async () => c.connect((await l.getsockname())!), OSError, expected);
  // Also to another address, and again (no one-off success).
  await raisesLikePython(t, () => c.connect(['127.0.0.1', 1]), OSError, expected);
  for (const s of [c, conn, l]) await s.close();
});

test('connect(): bad addresses raise as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyRaisesAll({
    str: "socket.socket().connect('x')",
    triple: "socket.socket().connect(('127.0.0.1', 1, 2))",
    port: "socket.socket().connect(('127.0.0.1', 70000))",
  });
  await raisesLikePython(t, () => s.connect('x'), TypeError, py.str);
  await raisesLikePython(t, () => s.connect(['127.0.0.1', 1, 2] as unknown as [string, number]), TypeError, py.triple);
  await raisesLikePython(t, () => s.connect(['127.0.0.1', 70000]), OverflowError, py.port);
});

test('connectEx(): 0 on success, 111 refused, 106 when connected, as python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  const port = await deadPort(socket);
  const py = await pyValue<number[]>(
    PY_DEAD_PORT +
      "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.socket()\n" +
      "result = [socket.socket().connect_ex(('127.0.0.1', p)), c.connect_ex(l.getsockname()), c.connect_ex(l.getsockname())]",
  );
  t.deepEqual(py, [111, 0, 106]);
  await using c = await socket.socket();
  await using r = await socket.socket();
  const got = [await r.connectEx(['127.0.0.1', port]), await c.connectEx((await l.getsockname())!), await c.connectEx((await l.getsockname())!)];
  t.deepEqual(got, py);
  const [conn] = await l.accept();
  await conn.close();
});

test('connectEx(): bad arguments still raise (as python3)', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyRaisesAll({ str: "socket.socket().connect_ex('x')", port: "socket.socket().connect_ex(('127.0.0.1', -1))" });
  await raisesLikePython(t, () => s.connectEx('x'), TypeError, py.str);
  await raisesLikePython(t, () => s.connectEx(['127.0.0.1', -1]), OverflowError, py.port);
});

test('connect() on UDP sets the default peer: send/recv without addresses, as python3', async (t) => {
  const socket = fx.socket();
  await using a = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await using b = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await a.bind(['127.0.0.1', 0]);
  await b.bind(['127.0.0.1', 0]);
  await a.connect((await b.getsockname())!);
  const peer = same(await a.getpeername(), await b.getsockname());
  const n = await a.send(Buffer.from('dgram'));
  const [d, addr] = await b.recvfrom(100);
  const got = [peer, n, d.toString(), same(addr, await a.getsockname())];
  const py = await pyValue<unknown[]>(
    "a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('127.0.0.1', 0)); b.bind(('127.0.0.1', 0))\n" +
      "a.connect(b.getsockname()); p = a.getpeername() == b.getsockname(); n = a.send(b'dgram'); d, addr = b.recvfrom(100); result = [p, n, d.decode(), addr == a.getsockname()]",
  );
  t.deepEqual(py, [true, 5, 'dgram', true]);
  t.deepEqual(got, py);
});
