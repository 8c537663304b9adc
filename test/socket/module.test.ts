// Module-level functions and attributes of the SDK (socket(), socketpair(), create_connection(),
// getaddrinfo(), default timeouts, poll, has_ipv6, constants), each compared with python3.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  BlockingIOError,
  ConnectionRefusedError,
  gaierror,
  OSError,
  Socket,
  TimeoutError,
  timeout as SocketTimeout,
  ValueError,
  OverflowError,
} from '../../client/index.js';
import { connect } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';
import { useDaemon, listener, portOf, deadPort, stillPending, timed } from './helpers/fixture.js';
import { as34, int34, pyRaises, pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

test('socket() defaults: AF_INET, SOCK_STREAM, proto 0, blocking (as python3)', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyValue<[number, number, number, number | null]>('s = socket.socket(); result = [s.family, s.type, s.proto, s.gettimeout()]; s.close()');
  t.deepEqual(py, [socket.AF_INET, socket.SOCK_STREAM, 0, null]);
  t.deepEqual([s.family, s.type, s.proto, s.gettimeout()], py);
  t.true(s instanceof Socket);
  t.true(s instanceof socket.SocketType);
});

test('socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP) keeps the given family/type/proto', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP);
  const py = await pyValue<number[]>('s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP); result = [s.family, s.type, s.proto]; s.close()');
  t.deepEqual([s.family, s.type, s.proto], py);
  t.deepEqual(py, [socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP]);
});

test('SOCK_NONBLOCK in type: non-blocking mode, and type has neither NONBLOCK nor CLOEXEC', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC);
  const py = await pyValue<[number, number | null]>(
    's = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC); result = [s.type, s.gettimeout()]; s.close()',
  );
  t.deepEqual(py, [socket.SOCK_STREAM, 0]);
  t.deepEqual([s.type, s.gettimeout()], py);
  // The mode is real: accept on an empty queue raises at once.
  await s.bind(['127.0.0.1', 0]);
  await s.listen();
  const expected = await pyRaises(
    "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK); s.bind(('127.0.0.1', 0)); s.listen()\ntry:\n    s.accept()\nfinally:\n    s.close()",
  );
  await raisesLikePython(t, () => s.accept(), BlockingIOError, expected);
  t.is(expected?.errno, 11);
});

test('socket() with bad arguments raises as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyRaisesAll({
    family: "socket.socket('x')",
    unknownFamily: 'socket.socket(12345)',
    badType: 'socket.socket(socket.AF_INET, 12345)',
    floatType: 'socket.socket(socket.AF_INET, 1.5)',
    fileno: 'socket.socket(fileno=-1)',
    short: "socket.create_connection(('127.0.0.1',))",
    empty: 'socket.create_connection(())',
    long: "socket.create_connection(('127.0.0.1', 1, 2))",
    notIterable: 'socket.create_connection(5)',
  });
  await raisesLikePython(t, () => socket.socket('x' as unknown as number), TypeError, int34(t, py.family));
  await raisesLikePython(t, () => socket.socket(socket.AF_INET, 1.5), TypeError, int34(t, py.floatType));
  // 3.4 refuses INVALID_SOCKET (-1) as fileno with its own message.
  await raisesLikePython(t, () => socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, -1), ValueError, as34(t, py.fileno, 'negative file descriptor', "can't use invalid socket value"));
  // create_connection unpacks `host, port = address`: 3.4's unpacking messages.
  await raisesLikePython(t, () => socket.createConnection(['127.0.0.1'] as unknown as [string, number]), ValueError, as34(t, py.short, 'not enough values to unpack (expected 2, got 1)', 'need more than 1 value to unpack'));
  await raisesLikePython(t, () => socket.createConnection([] as unknown as [string, number]), ValueError, as34(t, py.empty, 'not enough values to unpack (expected 2, got 0)', 'need more than 0 values to unpack'));
  await raisesLikePython(t, () => socket.createConnection(['127.0.0.1', 1, 2] as unknown as [string, number]), ValueError, py.long);
  await raisesLikePython(t, () => socket.createConnection(5 as unknown as [string, number]), TypeError, as34(t, py.notIterable, 'cannot unpack non-iterable int object', "'int' object is not iterable"));
  await raisesLikePython(t, () => socket.socket(12345), OSError, py.unknownFamily);
  t.is(py.unknownFamily?.errno, 97);
  await raisesLikePython(t, () => socket.socket(socket.AF_INET, 12345), OSError, py.badType);
});

test('socketpair() defaults to AF_UNIX/SOCK_STREAM and the two ends talk', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  await using _a = a;
  await using _b = b;
  const py = await pyValue<number[][]>('a, b = socket.socketpair(); result = [[s.family, s.type, s.proto] for s in (a, b)]; a.close(); b.close()');
  t.deepEqual(py, [[socket.AF_UNIX, socket.SOCK_STREAM, 0], [socket.AF_UNIX, socket.SOCK_STREAM, 0]]);
  t.deepEqual([[a.family, a.type, a.proto], [b.family, b.type, b.proto]], py);
  t.not(a.fileno(), b.fileno());
  t.is(await a.send(Buffer.from('ping')), 4);
  t.deepEqual(await b.recv(10), Buffer.from('ping'));
  await b.sendall(Buffer.from('pong'));
  t.deepEqual(await a.recv(10), Buffer.from('pong'));
});

test('socketpair(AF_UNIX, SOCK_DGRAM) keeps message boundaries', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM);
  await using _a = a;
  await using _b = b;
  const py = await pyValue<unknown[]>(
    "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); a.send(b'one'); a.send(b'two'); result = [b.type, b.recv(10).decode(), b.recv(10).decode()]; a.close(); b.close()",
  );
  await a.send(Buffer.from('one'));
  await a.send(Buffer.from('two'));
  t.deepEqual([b.type, (await b.recv(10)).toString(), (await b.recv(10)).toString()], py);
  t.deepEqual(py, [socket.SOCK_DGRAM, 'one', 'two']);
});

test('createConnection(): connected socket like python3 (proto from getaddrinfo, timeout given or default)', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  const port = await portOf(l);
  const py = await pyValue<unknown[]>(
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n" +
      'c = socket.create_connection(l.getsockname()); c2 = socket.create_connection(l.getsockname(), 2.5)\n' +
      'result = [c.family, c.type, c.proto, c.gettimeout(), c2.gettimeout(), c.getpeername() == l.getsockname()]\n' +
      'c.close(); c2.close(); l.close()',
  );
  await using c = await socket.createConnection(['127.0.0.1', port]);
  await using c2 = await socket.createConnection(['127.0.0.1', port], 2.5);
  t.deepEqual([c.family, c.type, c.proto, c.gettimeout(), c2.gettimeout(), JSON.stringify(await c.getpeername()) === JSON.stringify(await l.getsockname())], py);
  t.deepEqual(py, [socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, null, 2.5, true]);
  const [a1] = await l.accept();
  const [a2] = await l.accept();
  await a1.close();
  await a2.close();
});

test('createConnection(address, timeout, sourceAddress) binds the source address first, as python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  const port = await portOf(l);
  const srcPort = await deadPort(socket);
  await using c = await socket.createConnection(['127.0.0.1', port], null, ['127.0.0.1', srcPort]);
  const [conn, addr] = await l.accept();
  await using _conn = conn;
  t.deepEqual(addr, ['127.0.0.1', srcPort]);
  const got = [JSON.stringify(await c.getsockname()) === JSON.stringify(['127.0.0.1', srcPort]), c.gettimeout()];
  const py = await pyValue<unknown[]>(
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); p = socket.socket(); p.bind(('127.0.0.1', 0)); src = p.getsockname(); p.close()\n" +
      "c = socket.create_connection(l.getsockname(), None, src); result = [c.getsockname() == src, c.gettimeout()]; c.close(); l.close()",
  );
  t.deepEqual(py, [true, null]);
  t.deepEqual(got, py);
});

test('createConnection() to a refused port raises ConnectionRefusedError as python3', async (t) => {
  const socket = fx.socket();
  const port = await deadPort(socket);
  const expected = await pyRaises("s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close()\nsocket.create_connection(('127.0.0.1', p))");
  await raisesLikePython(t, () => socket.createConnection(['127.0.0.1', port]), ConnectionRefusedError, expected);
  t.is(expected?.errno, 111);
});

test('createConnection() tries each address in turn and raises the error of the last one', async (t) => {
  // 'both.test' is 127.0.0.1 and ::1 (the daemon's own /etc/hosts). On the port, 127.0.0.1 has a
  // listener whose backlog is full (connect times out) and ::1 refuses: the error raised is the
  // one of whichever address getaddrinfo lists last. python3 gets the same list (mocked
  // getaddrinfo) and connects to the same endpoints.
  await withDaemon(
    async (d) => {
      const socket = await connect(d.address);
      try {
        await using l = await listener(socket, socket.AF_INET, 0);
        const port = await portOf(l);
        await using v6 = await socket.socket(socket.AF_INET6);
        await v6.bind(['::1', port]); // bound, not listening: refused
        const fillers: Socket[] = [];
        for (let i = 0; i < 3; i++) {
          const f = await socket.socket();
          f.setblocking(false);
          fillers.push(f);
          t.is(await f.connectEx(['127.0.0.1', port]), 115);
        }
        const infos = await socket.getaddrinfo('both.test', port, 0, socket.SOCK_STREAM);
        t.deepEqual(infos.map((i) => i[0]).sort(), [socket.AF_INET, socket.AF_INET6].sort());
        const last = infos[infos.length - 1]![0];
        const pyInfos = infos.map(([f, ty, p, cn, sa]) => `(${f}, ${ty}, ${p}, '${cn}', ${JSON.stringify(sa).replace('[', '(').replace(']', ')')})`).join(', ');
        const expected = await pyRaises(`import unittest.mock as m\nwith m.patch('socket.getaddrinfo', return_value=[${pyInfos}]):\n    socket.create_connection(('both.test', ${port}), 0.5)`);
        const cls = last === socket.AF_INET ? SocketTimeout : ConnectionRefusedError;
        await raisesLikePython(t, () => socket.createConnection(['both.test', port], 0.5), cls, expected);
        // The other order gives the other error: each address is tried.
        const reversed = await pyRaises(`import unittest.mock as m\nwith m.patch('socket.getaddrinfo', return_value=[${pyInfos}][::-1]):\n    socket.create_connection(('both.test', ${port}), 0.5)`);
        t.is(reversed?.cls, last === socket.AF_INET ? 'ConnectionRefusedError' : 'timeout');
        for (const f of fillers) await f.close();
      } finally {
        await socket.disconnect();
      }
    },
    { hosts: '127.0.0.1 localhost\n127.0.0.1 both.test\n::1 both.test\n' },
  );
});

test('getaddrinfo() results equal python3 (numeric hosts, services, AI_PASSIVE with None host)', async (t) => {
  const socket = fx.socket();
  const cases: Array<[string, Parameters<typeof socket.getaddrinfo>, string]> = [
    ['v4', ['127.0.0.1', 80, socket.AF_INET, socket.SOCK_STREAM], "('127.0.0.1', 80, socket.AF_INET, socket.SOCK_STREAM)"],
    ['v4 all types', ['127.0.0.1', 53], "('127.0.0.1', 53)"],
    ['v6 service name', ['::1', 'http', socket.AF_INET6, socket.SOCK_STREAM], "('::1', 'http', socket.AF_INET6, socket.SOCK_STREAM)"],
    ['port as text', ['127.0.0.1', '8080', 0, socket.SOCK_DGRAM], "('127.0.0.1', '8080', 0, socket.SOCK_DGRAM)"],
    ['passive', [null, 80, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE], '(None, 80, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)'],
    ['not passive', [null, 80, 0, socket.SOCK_STREAM, 0, 0], '(None, 80, 0, socket.SOCK_STREAM, 0, 0)'],
    ['no port', ['127.0.0.1', null, socket.AF_INET, socket.SOCK_STREAM], "('127.0.0.1', None, socket.AF_INET, socket.SOCK_STREAM)"],
  ];
  for (const [name, args, pyArgs] of cases) {
    const expected = await pyValue(`result = [list(r[:4]) + [list(r[4])] for r in socket.getaddrinfo${pyArgs}]`);
    t.deepEqual(await socket.getaddrinfo(...args), expected, name);
  }
  const passive = await socket.getaddrinfo(null, 80, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_PASSIVE);
  t.deepEqual(passive, [[socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, '', ['0.0.0.0', 80]]]);
});

test('getaddrinfo() errors: gaierror codes and messages of python3', async (t) => {
  const socket = fx.socket();
  const py = await pyRaisesAll({
    host: "socket.getaddrinfo('not-a-number', 80, 0, 0, 0, socket.AI_NUMERICHOST)",
    service: "socket.getaddrinfo('127.0.0.1', 'no-such-service')",
    family: "socket.getaddrinfo('127.0.0.1', 80, 12345)",
    socktype: "socket.getaddrinfo('127.0.0.1', 80, 0, 12345)",
    nothing: 'socket.getaddrinfo(None, None)',
  });
  t.deepEqual(
    [py.host?.errno, py.service?.errno, py.family?.errno, py.socktype?.errno, py.nothing?.errno],
    [socket.EAI_NONAME, socket.EAI_SERVICE, socket.EAI_FAMILY, socket.EAI_SOCKTYPE, socket.EAI_NONAME],
  );
  await raisesLikePython(t, () => socket.getaddrinfo('not-a-number', 80, 0, 0, 0, socket.AI_NUMERICHOST), gaierror, py.host);
  await raisesLikePython(t, () => socket.getaddrinfo('127.0.0.1', 'no-such-service'), gaierror, py.service);
  await raisesLikePython(t, () => socket.getaddrinfo('127.0.0.1', 80, 12345), gaierror, py.family);
  await raisesLikePython(t, () => socket.getaddrinfo('127.0.0.1', 80, 0, 12345), gaierror, py.socktype);
  await raisesLikePython(t, () => socket.getaddrinfo(null, null), gaierror, py.nothing);
  t.true((await t.throwsAsync(() => socket.getaddrinfo(null, null))) instanceof OSError, 'gaierror is an OSError');
});

test('getdefaulttimeout()/setdefaulttimeout(): None at start; new sockets, pairs and create_connection use it', async (t) => {
  const socket = await fx.fresh();
  const py = await pyValue<unknown[]>(
    "r = [socket.getdefaulttimeout()]; socket.setdefaulttimeout(2.5); s = socket.socket(); a, b = socket.socketpair()\n" +
      "r += [socket.getdefaulttimeout(), s.gettimeout(), a.gettimeout(), b.gettimeout()]\n" +
      "s2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK); r.append(s2.gettimeout())\n" +
      "socket.setdefaulttimeout(None); r += [socket.getdefaulttimeout(), socket.socket().gettimeout()]; result = r",
  );
  t.deepEqual(py, [null, 2.5, 2.5, 2.5, 2.5, 0, null, null]);
  const got: unknown[] = [socket.getdefaulttimeout()];
  socket.setdefaulttimeout(2.5);
  const s = await socket.socket();
  const [a, b] = await socket.socketpair();
  got.push(socket.getdefaulttimeout(), s.gettimeout(), a.gettimeout(), b.gettimeout());
  const s2 = await socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK);
  got.push(s2.gettimeout());
  await using l = await listener(socket);
  await using c = await socket.createConnection(['127.0.0.1', await portOf(l)]);
  t.is(c.gettimeout(), 2.5);
  socket.setdefaulttimeout(null);
  const s3 = await socket.socket();
  got.push(socket.getdefaulttimeout(), s3.gettimeout());
  t.deepEqual(got, py);
  for (const x of [s, a, b, s2, s3]) await x.close();
});

test('setdefaulttimeout() with bad values raises as python3', async (t) => {
  const socket = await fx.fresh();
  const py = await pyRaisesAll({
    negative: 'socket.setdefaulttimeout(-1)',
    nan: "socket.setdefaulttimeout(float('nan'))",
    inf: "socket.setdefaulttimeout(float('inf'))",
    str: "socket.setdefaulttimeout('1')",
  });
  await raisesLikePython(t, () => socket.setdefaulttimeout(-1), ValueError, py.negative);
  await raisesLikePython(t, () => socket.setdefaulttimeout(NaN), ValueError, py.nan);
  await raisesLikePython(t, () => socket.setdefaulttimeout(Infinity), OverflowError, py.inf);
  await raisesLikePython(t, () => socket.setdefaulttimeout('1' as unknown as number), TypeError, as34(t, py.str, "'str' object cannot be interpreted as an integer", 'a float is required'));
  t.is(socket.getdefaulttimeout(), null);
});

test("accepted sockets' timeout follows the seed's 'Timeouts and the accept method' (as python3 on Linux)", async (t) => {
  const socket = await fx.fresh();
  const defaults = [null, 3] as const;
  const modes = [null, 0, 5] as const;
  const py = await pyValue<Array<[number | null, number | null, number | null]>>(
    'import select\nres = []\n' +
      'for default in (None, 3.0):\n' +
      '    for mode in (None, 0.0, 5.0):\n' +
      "        socket.setdefaulttimeout(None); l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); l.settimeout(mode)\n" +
      '        c = socket.create_connection(l.getsockname()); select.select([l], [], [], 10)\n' +
      '        socket.setdefaulttimeout(default); a, _ = l.accept(); res.append([default, mode, a.gettimeout()])\n' +
      '        for s in (a, c, l): s.close()\n' +
      'result = res',
  );
  const got: Array<[number | null, number | null, number | null]> = [];
  for (const def of defaults) {
    for (const mode of modes) {
      socket.setdefaulttimeout(null);
      const l = await listener(socket);
      l.settimeout(mode);
      const c = await socket.createConnection(['127.0.0.1', await portOf(l)]);
      await socket.poll([l], socket.POLLIN, 10);
      socket.setdefaulttimeout(def);
      const [a] = await l.accept();
      got.push([def, mode, a.gettimeout()]);
      for (const s of [a, c, l]) await s.close();
    }
  }
  socket.setdefaulttimeout(null);
  t.deepEqual(py, [
    [null, null, null],
    [null, 0, null],
    [null, 5, null],
    [3, null, 3],
    [3, 0, 3],
    [3, 5, 3],
  ]);
  t.deepEqual(got, py);
});

test('poll(): readiness of several handles, as select.poll reports it in python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const [c, d] = await socket.socketpair();
  await a.send(Buffer.from('x'));
  const py = await pyValue<unknown[]>(
    "import select\na, b = socket.socketpair(); c, d = socket.socketpair(); a.send(b'x')\n" +
      'names = {b.fileno(): "b", d.fileno(): "d", a.fileno(): "a"}\n' +
      'p = select.poll(); p.register(b, select.POLLIN); p.register(d, select.POLLIN); r1 = sorted([names[f], e] for f, e in p.poll(0))\n' +
      'p = select.poll(); p.register(a, select.POLLOUT); p.register(d, select.POLLIN | select.POLLOUT); r2 = sorted([names[f], e] for f, e in p.poll(0))\n' +
      'c.close(); p = select.poll(); p.register(d, select.POLLIN); r3 = [e for f, e in p.poll(0)]\n' +
      'result = [r1, r2, r3, [select.POLLIN, select.POLLOUT, select.POLLHUP, select.POLLNVAL]]',
  );
  t.deepEqual((py as unknown[])[3], [socket.POLLIN, socket.POLLOUT, socket.POLLHUP, socket.POLLNVAL]);
  const names = new Map<Socket | number, string>([[a, 'a'], [b, 'b'], [d, 'd']]);
  const named = (r: Array<[Socket | number, number]>) => r.map(([s, e]) => [names.get(s), e]).sort();
  const r1 = named(await socket.poll([b, d], socket.POLLIN, 0));
  const r2 = named(await socket.poll([a, d], [socket.POLLOUT, socket.POLLIN | socket.POLLOUT], 0));
  await c.close();
  const r3 = (await socket.poll([d], socket.POLLIN, 0)).map(([, e]) => e);
  t.deepEqual([r1, r2, r3], (py as unknown[]).slice(0, 3));
  t.deepEqual(r1, [['b', socket.POLLIN]]);
  for (const s of [a, b, d]) await s.close();
});

test('poll(): timeout 0 with nothing ready returns [] at once; a timeout expires with []; null waits for data, as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const now = await timed(() => socket.poll([b], socket.POLLIN, 0));
  t.true(now.ms < 20_000, `poll(0) took ${now.ms} ms`); // generous: a loaded machine; a wait would be forever
  const got: unknown[] = [await socket.poll([b], socket.POLLIN, 0)];
  const waited = await timed(async () => got.push(await socket.poll([b], socket.POLLIN, 0.3)));
  // Not before the timeout (the upper bound only catches a wait that never ends).
  t.true(waited.ms >= 250 && waited.ms < 10_000, `poll(0.3) took ${waited.ms} ms`);
  const py = await pyValue<unknown[]>('import select\na, b = socket.socketpair(); p = select.poll(); p.register(b, select.POLLIN); result = [p.poll(0), p.poll(300)]');
  t.deepEqual(py, [[], []]);
  t.deepEqual(got, py);
  const forever = socket.poll([b], socket.POLLIN, null);
  t.is(await stillPending(forever, 200), 'pending');
  await a.send(Buffer.from('wake'));
  t.deepEqual(await forever, [[b, socket.POLLIN]]);
  await a.close();
  await b.close();
});

// Serial, and every fd it needs made before the close: a closed number is free for the next fd
// (a handed-off socket is a real fd of this process, and python3 reuses numbers the same way),
// so nothing may open one between the close and the polls, or the poll would see that fd.
test.serial('poll(): a closed handle reports POLLNVAL (as python3 for a closed fd)', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<number[][]>(
    'import select\nlive, peer = socket.socketpair(); s = socket.socket(); fd = s.fileno(); s.close()\n'
      + 'def ask(fds, ev):\n  p = select.poll()\n  for f in fds: p.register(f, ev)\n  return [e for f, e in p.poll(0)]\n'
      + 'result = [ask([fd], select.POLLIN), ask([fd, live], select.POLLOUT)]',
  );
  t.deepEqual(py, [[socket.POLLNVAL], [socket.POLLNVAL, socket.POLLOUT]]);
  const [live, peer] = await socket.socketpair();
  const s = await socket.socket();
  const fd = s.fileno();
  const handed = s._handedOff;
  await s.close();
  const got = await socket.poll([fd], socket.POLLIN, 0);
  const both = await socket.poll([fd, live], socket.POLLOUT, 0);
  // The premise, checked: nothing in this process took the number meanwhile (a hand-off fd is ours).
  if (handed) t.false(existsSync(`/proc/self/fd/${fd}`), `fd ${fd} was reused during the check`);
  t.deepEqual([got.map(([, e]) => e), both.map(([, e]) => e)], py);
  t.is(got[0]?.[0], fd);
  t.deepEqual(both, [
    [fd, socket.POLLNVAL],
    [live, socket.POLLOUT],
  ]);
  await live.close();
  await peer.close();
});

test('has_ipv6 equals python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<boolean>('result = socket.has_ipv6');
  t.is(typeof socket.has_ipv6, 'boolean');
  t.is(socket.has_ipv6, py);
});

test('constants: a sample equals python3', async (t) => {
  const socket = fx.socket() as unknown as Record<string, number>;
  const names = [
    'AF_INET', 'AF_INET6', 'AF_UNIX', 'AF_UNSPEC', 'AF_PACKET', 'AF_NETLINK', 'AF_CAN',
    'SOCK_STREAM', 'SOCK_DGRAM', 'SOCK_RAW', 'SOCK_SEQPACKET', 'SOCK_NONBLOCK', 'SOCK_CLOEXEC',
    'SOL_SOCKET', 'SO_REUSEADDR', 'SO_REUSEPORT', 'SO_ERROR', 'SO_TYPE', 'SO_RCVBUF', 'SO_SNDBUF', 'SO_LINGER', 'SO_KEEPALIVE', 'SO_BROADCAST',
    'IPPROTO_IP', 'IPPROTO_TCP', 'IPPROTO_UDP', 'IPPROTO_IPV6', 'IPPROTO_ICMP', 'IP_TTL', 'IP_MULTICAST_TTL', 'IPV6_V6ONLY', 'TCP_NODELAY', 'TCP_MAXSEG',
    'MSG_PEEK', 'MSG_DONTWAIT', 'MSG_WAITALL', 'MSG_OOB', 'MSG_TRUNC',
    'SHUT_RD', 'SHUT_WR', 'SHUT_RDWR', 'SOMAXCONN', 'INADDR_ANY', 'INADDR_LOOPBACK', 'INADDR_BROADCAST',
    'AI_PASSIVE', 'AI_CANONNAME', 'AI_NUMERICHOST', 'NI_NUMERICHOST', 'EAI_NONAME', 'EAI_SERVICE', 'EAI_AGAIN',
  ];
  const py = await pyValue<Record<string, number>>(`result = {n: int(getattr(socket, n)) for n in ${JSON.stringify(names)}}`);
  t.is(Object.keys(py).length, names.length);
  t.deepEqual(Object.fromEntries(names.map((n) => [n, socket[n]])), py);
});

test('exception classes: the module names them and they nest as in Python', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<boolean[]>(
    'result = [socket.error is OSError, issubclass(socket.timeout, OSError), issubclass(socket.gaierror, OSError), issubclass(socket.herror, OSError), issubclass(ConnectionRefusedError, ConnectionError), issubclass(BlockingIOError, OSError)]',
  );
  t.deepEqual(py, [true, true, true, true, true, true]);
  t.deepEqual(
    [
      socket.error === OSError,
      new socket.timeout('timed out') instanceof OSError,
      new socket.gaierror(-2, 'x') instanceof OSError,
      new socket.herror(1, 'x') instanceof OSError,
      new socket.ConnectionRefusedError(111, 'x', 'ECONNREFUSED') instanceof socket.ConnectionError,
      new socket.BlockingIOError(11, 'x', 'EAGAIN') instanceof OSError,
    ],
    py,
  );
  // 3.4: socket.timeout is an OSError but not a TimeoutError; python3 >= 3.10 made it an alias.
  t.true(await pyValue<boolean>('import sys; result = sys.version_info < (3, 10) or socket.timeout is TimeoutError'));
  t.false(new socket.timeout('timed out') instanceof TimeoutError, 'socket.timeout is not a TimeoutError in 3.4');
  t.false(new TimeoutError(110, 'Connection timed out', 'ETIMEDOUT') instanceof socket.timeout);
});

test('socket(family, type, proto, fileno) wraps an existing handle of the session, as python3 wraps an fd', async (t) => {
  const socket = fx.socket();
  const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await s.bind(['127.0.0.1', 0]);
  const w = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, s.fileno());
  const got = [w.fileno() === s.fileno(), JSON.stringify(await w.getsockname()) === JSON.stringify(await s.getsockname()), [w.family, w.type, w.proto]];
  const py = await pyValue<unknown[]>(
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, s.fileno())\n" +
      'result = [w.fileno() == s.fileno(), w.getsockname() == s.getsockname(), [w.family, w.type, w.proto]]; w.detach()',
  );
  t.deepEqual(py, [true, true, [socket.AF_INET, socket.SOCK_DGRAM, 0]]);
  t.deepEqual(got, py);
  // Closing one object closes the socket under both: the other then gets EBADF.
  await w.close();
  const expected = await pyRaises(
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, s.fileno()); w.close(); s.getsockname()",
  );
  t.is(expected?.errno, 9);
  await raisesLikePython(t, () => s.getsockname(), OSError, expected);
});

test('disconnect() / `await using` on the module ends the session: its sockets are gone', async (t) => {
  const d = fx.daemon();
  let s!: Socket;
  let inner!: Awaited<ReturnType<typeof connect>>;
  {
    await using socket = await connect(d.address);
    inner = socket;
    s = await socket.socket();
    t.true(s.fileno() >= 0);
  }
  const err = await t.throwsAsync(() => s.getsockname());
  t.true(err instanceof inner.SessionLostError, String(err));
  t.true(err instanceof OSError);
});

test('a session is attached when connect() resolves: a busy event loop right after it (past the grace period) does not lose it', async (t) => {
  const d = fx.daemon();
  const socket = await connect(d.address);
  try {
    // The fixture's daemon has a 2 s grace period; block this worker's event loop for 3 s.
    execFileSync('sleep', ['3']);
    await using s = await socket.socket();
    t.true(s.fileno() >= 0);
    t.deepEqual(await s.getsockname(), ['0.0.0.0', 0]);
  } finally {
    await socket.disconnect();
  }
});
