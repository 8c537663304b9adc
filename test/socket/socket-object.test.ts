// Socket object methods that are not data transfer: bind, listen, close, fileno, getsockname,
// getpeername, get/setsockopt, the timeout accessors, repr and `await using`; each compared
// with what python3 does for the same calls.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { OSError, OverflowError, Socket, ValueError } from '../../client/index.js';
import { useDaemon, listener, portOf, tcpPair } from './helpers/fixture.js';
import { as34, buffer34, int34, pyRaises, pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

test('bind(): numeric host, "" and "<broadcast>" bind as in python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); a = s.getsockname(); s.close()\n" +
      "s = socket.socket(); s.bind(('', 0)); b = s.getsockname(); s.close()\n" +
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('<broadcast>', 0)); c = s.getsockname(); s.close()\n" +
      'result = [a[0], a[1] > 0, b[0], b[1] > 0, c[0], c[1] > 0]',
  );
  t.deepEqual(py, ['127.0.0.1', true, '0.0.0.0', true, '255.255.255.255', true]);
  await using a = await socket.socket();
  await a.bind(['127.0.0.1', 0]);
  await using b = await socket.socket();
  await b.bind(['', 0]);
  await using c = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await c.bind(['<broadcast>', 0]);
  const [ah, ap] = (await a.getsockname()) as [string, number];
  const [bh, bp] = (await b.getsockname()) as [string, number];
  const [ch, cp] = (await c.getsockname()) as [string, number];
  t.deepEqual([ah, ap > 0, bh, bp > 0, ch, cp > 0], py);
});

test('bind(): port out of range raises OverflowError as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyRaisesAll({ high: "socket.socket().bind(('', 65536))", low: "socket.socket().bind(('', -1))" });
  await raisesLikePython(t, () => s.bind(['', 65536]), OverflowError, py.high);
  await raisesLikePython(t, () => s.bind(['', -1]), OverflowError, py.low);
  t.is(py.high?.message, 'bind(): port must be 0-65535.');
});

test("bind(): wrong address types raise python3's TypeError messages", async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const cases: Array<[string, unknown]> = [
    ["'x'", 'x'],
    ['None', null],
    ["('',)", ['']],
    ["('', 1, 2)", ['', 1, 2]],
    ['(1, 2)', [1, 2]],
    ["('', '80')", ['', '80']],
    ["('', 1.5)", ['', 1.5]],
  ];
  const py = await pyRaisesAll(Object.fromEntries(cases.map(([p]) => [p, `socket.socket().bind(${p})`])));
  for (const [p, js] of cases) {
    await raisesLikePython(t, () => s.bind(js as [string, number]), TypeError, py[p]!);
  }
  // Still unbound after all of that.
  t.deepEqual(await s.getsockname(), ['0.0.0.0', 0]);
});

test('bind(): OS errors (twice, address in use, not a local address) as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyRaisesAll({
    twice: "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.bind(('127.0.0.1', 0))",
    inUse: "a = socket.socket(); a.bind(('127.0.0.1', 0)); a.listen(); socket.socket().bind(a.getsockname())",
    notLocal: "socket.socket().bind(('192.0.2.1', 0))",
  });
  t.deepEqual([py.twice?.errno, py.inUse?.errno, py.notLocal?.errno], [22, 98, 99]);
  await using s = await socket.socket();
  await s.bind(['127.0.0.1', 0]);
  await raisesLikePython(t, () => s.bind(['127.0.0.1', 0]), OSError, py.twice);
  await s.listen();
  await using other = await socket.socket();
  await raisesLikePython(t, async () => other.bind((await s.getsockname())!), OSError, py.inUse);
  await raisesLikePython(t, () => other.bind(['192.0.2.1', 0]), OSError, py.notLocal);
});

test('close(): idempotent; then fileno() is -1 and every method raises EBADF as python3', async (t) => {
  const socket = fx.socket();
  const s = await socket.socket();
  t.true(s.fileno() >= 0);
  await s.close();
  await s.close();
  const py = await pyValue<number>('s = socket.socket(); s.close(); s.close(); result = s.fileno()');
  t.is(s.fileno(), py);
  t.is(py, -1);
  const calls: Array<[string, string, () => Promise<unknown>]> = [
    ['bind', "s.bind(('127.0.0.1', 0))", () => s.bind(['127.0.0.1', 0])],
    ['listen', 's.listen()', () => s.listen()],
    ['accept', 's.accept()', () => s.accept()],
    ['connect', "s.connect(('127.0.0.1', 1))", () => s.connect(['127.0.0.1', 1])],
    ['send', "s.send(b'x')", () => s.send(Buffer.from('x'))],
    ['sendall', "s.sendall(b'x')", () => s.sendall(Buffer.from('x'))],
    ['sendto', "s.sendto(b'x', ('127.0.0.1', 1))", () => s.sendto(Buffer.from('x'), ['127.0.0.1', 1])],
    ['recv', 's.recv(1)', () => s.recv(1)],
    ['recvfrom', 's.recvfrom(1)', () => s.recvfrom(1)],
    ['recv_into', 's.recv_into(bytearray(1))', () => s.recvInto(Buffer.alloc(1))],
    ['recvfrom_into', 's.recvfrom_into(bytearray(1))', () => s.recvfromInto(Buffer.alloc(1))],
    ['shutdown', 's.shutdown(socket.SHUT_RDWR)', () => s.shutdown(socket.SHUT_RDWR)],
    ['getsockname', 's.getsockname()', () => s.getsockname()],
    ['getpeername', 's.getpeername()', () => s.getpeername()],
    ['getsockopt', 's.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)', () => s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)],
    ['setsockopt', 's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)', () => s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)],
  ];
  const py2 = await pyRaisesAll(Object.fromEntries(calls.map(([name, code]) => [name, `s = socket.socket(); s.close()\n${code}`])));
  for (const [name, , fn] of calls) {
    t.is(py2[name]?.errno, 9, name);
    await raisesLikePython(t, fn, OSError, py2[name]!);
  }
  // connect_ex returns the errno instead.
  const ex = await pyValue<number>("s = socket.socket(); s.close(); result = s.connect_ex(('127.0.0.1', 1))");
  t.is(ex, 9);
  t.is(await s.connectEx(['127.0.0.1', 1]), ex);
});

test('fileno(): a small handle number, stable, distinct per socket', async (t) => {
  const socket = fx.socket();
  await using a = await socket.socket();
  await using b = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  t.true(Number.isInteger(a.fileno()) && a.fileno() >= 0);
  t.is(a.fileno(), a.fileno());
  t.not(a.fileno(), b.fileno());
  // python3's fileno() is an int >= 0 too, and -1 after close (see the close test).
  t.true(await pyValue<boolean>('s = socket.socket(); result = isinstance(s.fileno(), int) and s.fileno() >= 0; s.close()'));
});

test('getpeername(): ENOTCONN before connect, the peer after', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const expected = await pyRaises('socket.socket().getpeername()');
  t.is(expected?.errno, 107);
  await raisesLikePython(t, () => s.getpeername(), OSError, expected);
  const [c, conn, l] = await tcpPair(socket);
  t.deepEqual(await c.getpeername(), await l.getsockname());
  t.deepEqual(await conn.getpeername(), await c.getsockname());
  for (const x of [c, conn, l]) await x.close();
});

test('getsockname(): unbound inet and unnamed AF_UNIX as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  await using s6 = await socket.socket(socket.AF_INET6);
  const [a, b] = await socket.socketpair();
  const py = await pyValue<unknown[]>(
    's = socket.socket(); s6 = socket.socket(socket.AF_INET6); a, b = socket.socketpair()\n' +
      'result = [list(s.getsockname()), list(s6.getsockname()), a.getsockname(), b.getpeername()]',
  );
  t.deepEqual([await s.getsockname(), await s6.getsockname(), await a.getsockname(), await b.getpeername()], py);
  t.deepEqual(py, [['0.0.0.0', 0], ['::', 0, 0, 0], '', '']);
  await a.close();
  await b.close();
});

test('getsockopt(): int form and buflen form (bytes) as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  const py = await pyValue<unknown[]>(
    's = socket.socket(); u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n' +
      'r = [s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE), u.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE), s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)]\n' +
      's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))\n' +
      'r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 4).hex()); r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8).hex())\n' +
      'r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 0)); r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)); result = r',
  );
  const got: unknown[] = [
    await s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
    await u.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
    await s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
  ];
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);
  got.push(await s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR));
  const typeBytes = await s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 4);
  t.true(Buffer.isBuffer(typeBytes));
  got.push(typeBytes.toString('hex'), (await s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)).toString('hex'));
  got.push(await s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 0), await s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR));
  t.deepEqual(got, py);
  t.deepEqual(py, [socket.SOCK_STREAM, socket.SOCK_DGRAM, 0, 1, '01000000', '0000000000000000', socket.SOCK_STREAM, 0]);
});

test("getsockopt(): 'getsockopt buflen out of range' and unknown options as python3", async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyRaisesAll({
    big: 'socket.socket().getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 1025)',
    negative: 'socket.socket().getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, -1)',
    unknown: 'socket.socket().getsockopt(socket.SOL_SOCKET, 9999)',
  });
  t.is(py.big?.message, 'getsockopt buflen out of range');
  await raisesLikePython(t, () => s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 1025), OSError, py.big);
  await raisesLikePython(t, () => s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, -1), OSError, py.negative);
  await raisesLikePython(t, () => s.getsockopt(socket.SOL_SOCKET, 9999), OSError, py.unknown);
  t.is(py.unknown?.errno, 92);
  // The largest allowed buflen works.
  t.is((await s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 1024)).length, 4);
});

test('setsockopt(): int, bool and bytes values as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyValue<unknown[]>(
    "import struct\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True); r = [s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)]\n" +
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 7)); r.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8).hex())\n" +
      's.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); r.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)); result = r',
  );
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, true as unknown as number);
  const got: unknown[] = [await s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)];
  const linger = Buffer.alloc(8);
  linger.writeInt32LE(1, 0);
  linger.writeInt32LE(7, 4);
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger);
  got.push((await s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)).toString('hex'));
  await s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1);
  got.push(await s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY));
  t.deepEqual(got, py);
  t.deepEqual(py, [1, '0100000007000000', 1]);
});

test('setsockopt(): overflow, wrong types and kernel refusals raise as python3', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const set = (v: unknown) => () => s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, v as number);
  const py = await pyRaisesAll({
    high: 'socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 2**31)',
    low: 'socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, -2**31 - 1)',
    str: "socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 'x')",
    float: 'socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1.5)',
    none: 'socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, None)',
    level: 'socket.socket().setsockopt(2**31, socket.SO_REUSEADDR, 1)',
    unknown: 'socket.socket().setsockopt(socket.SOL_SOCKET, 9999, 1)',
    short: "socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\\x01')",
  });
  // Not a C int, so parsed as bytes: 3.4's "'int' does not support the buffer interface".
  await raisesLikePython(t, set(2 ** 31), TypeError, buffer34(t, py.high));
  await raisesLikePython(t, set(-(2 ** 31) - 1), TypeError, buffer34(t, py.low));
  await raisesLikePython(t, set('x'), TypeError, buffer34(t, py.str));
  await raisesLikePython(t, set(1.5), TypeError, buffer34(t, py.float));
  await raisesLikePython(t, set(null), TypeError, buffer34(t, py.none));
  await raisesLikePython(t, () => s.setsockopt(2 ** 31, socket.SO_REUSEADDR, 1), OverflowError, py.level);
  await raisesLikePython(t, () => s.setsockopt(socket.SOL_SOCKET, 9999, 1), OSError, py.unknown);
  await raisesLikePython(t, () => s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, Buffer.from([1])), OSError, py.short);
  t.deepEqual([py.unknown?.errno, py.short?.errno], [92, 22]);
  // The largest and smallest C ints are accepted.
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 ** 31 - 1);
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, -(2 ** 31));
  t.is(await s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR), 1);
});

test('gettimeout()/settimeout()/setblocking(): the values python3 reports', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyValue<unknown[]>(
    's = socket.socket(); r = [s.gettimeout()]\n' +
      'for v in (2.5, 0, None, 1e-3, True, 9e9): s.settimeout(v); r.append(s.gettimeout())\n' +
      's.setblocking(False); r.append(s.gettimeout()); s.setblocking(True); r.append(s.gettimeout())\n' +
      's.settimeout(3); s.setblocking(False); s.setblocking(True); r.append(s.gettimeout()); result = r',
  );
  const got: unknown[] = [s.gettimeout()];
  for (const v of [2.5, 0, null, 1e-3, true as unknown as number, 9e9]) {
    s.settimeout(v);
    got.push(s.gettimeout());
  }
  s.setblocking(false);
  got.push(s.gettimeout());
  s.setblocking(true);
  got.push(s.gettimeout());
  s.settimeout(3);
  s.setblocking(false);
  s.setblocking(true);
  got.push(s.gettimeout());
  t.deepEqual(got, py);
  t.deepEqual(py, [null, 2.5, 0, null, 0.001, 1, 9e9, 0, null, null]);
});

test('settimeout(): bad values raise as python3 and leave the timeout unchanged', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  s.settimeout(4);
  const py = await pyRaisesAll({
    negative: 'socket.socket().settimeout(-1)',
    nan: "socket.socket().settimeout(float('nan'))",
    inf: "socket.socket().settimeout(float('inf'))",
    huge: 'socket.socket().settimeout(1e10)',
    str: "socket.socket().settimeout('1')",
    bytes: "socket.socket().settimeout(b'1')",
    none: 'socket.socket().settimeout()',
    two: 'socket.socket().settimeout(1, 2)',
  });
  await raisesLikePython(t, () => s.settimeout(-1), ValueError, py.negative);
  await raisesLikePython(t, () => s.settimeout(NaN), ValueError, py.nan);
  await raisesLikePython(t, () => s.settimeout(Infinity), OverflowError, py.inf);
  await raisesLikePython(t, () => s.settimeout(1e10), OverflowError, py.huge);
  // 3.4 reads the value with PyFloat_AsDouble.
  await raisesLikePython(t, () => s.settimeout('1' as unknown as number), TypeError, as34(t, py.str, "'str' object cannot be interpreted as an integer", 'a float is required'));
  await raisesLikePython(t, () => s.settimeout(Buffer.from('1') as unknown as number), TypeError, as34(t, py.bytes, "'bytes' object cannot be interpreted as an integer", 'a float is required'));
  const call = s.settimeout as (...args: unknown[]) => void;
  await raisesLikePython(t, () => call.call(s), TypeError, as34(t, py.none, 'socket.settimeout() takes exactly one argument (0 given)', 'settimeout() takes exactly one argument (0 given)'));
  await raisesLikePython(t, () => call.call(s, 1, 2), TypeError, as34(t, py.two, 'socket.settimeout() takes exactly one argument (2 given)', 'settimeout() takes exactly one argument (2 given)'));
  t.is(s.gettimeout(), 4);
});

test('setblocking(): None, a str or no argument raise as 3.4 (PyLong_AsLong); a float truncates', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyRaisesAll({
    none: 'socket.socket().setblocking(None)',
    str: "socket.socket().setblocking('1')",
    missing: 'socket.socket().setblocking()',
  });
  const call = s.setblocking as (...args: unknown[]) => void;
  await raisesLikePython(t, () => call.call(s, null), TypeError, int34(t, py.none));
  await raisesLikePython(t, () => call.call(s, '1'), TypeError, int34(t, py.str));
  await raisesLikePython(t, () => call.call(s), TypeError, as34(t, py.missing, 'socket.setblocking() takes exactly one argument (0 given)', 'setblocking() takes exactly one argument (0 given)'));
  t.is(s.gettimeout(), null, 'unchanged');
  // 3.4 takes int(0.5) == 0: non-blocking (python3 >= 3.8 warns or refuses a float).
  call.call(s, 0.5);
  t.is(s.gettimeout(), 0);
  call.call(s, 1.5);
  t.is(s.gettimeout(), null);
});

test('a timeout too long for a Node timer still waits (3e6 s)', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  a.settimeout(3e6);
  const got = a.recv(10);
  setTimeout(() => void b.send(Buffer.from('late')), 300);
  t.deepEqual(await got, Buffer.from('late'));
  await a.close();
  await b.close();
});

function backlogOf(port: number): number {
  // ss shows a listening socket's backlog in Send-Q (the daemon shares our network namespace).
  const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
  return Number(line.split(/\s+/)[2]);
}

test('listen(): default backlog min(SOMAXCONN, 128) and an explicit one, as python3', async (t) => {
  const socket = fx.socket();
  await using a = await listener(socket);
  await using b = await listener(socket, socket.AF_INET, 5);
  const py = await pyValue<number[]>(
    "import subprocess\ndef q(s): return int(subprocess.run(['ss', '-ltnH', 'sport = :%d' % s.getsockname()[1]], capture_output=True, text=True).stdout.split()[2])\n" +
      "a = socket.socket(); a.bind(('127.0.0.1', 0)); a.listen(); b = socket.socket(); b.bind(('127.0.0.1', 0)); b.listen(5); result = [q(a), q(b)]",
  );
  t.deepEqual([backlogOf(await portOf(a)), backlogOf(await portOf(b))], py);
  t.deepEqual(py, [Math.min(socket.SOMAXCONN, 128), 5]);
  // It accepts connections.
  await using c = await socket.socket();
  await c.connect((await a.getsockname())!);
  const [conn] = await a.accept();
  await conn.close();
});

test('listen(): errors as python3 (UDP socket, backlog overflow)', async (t) => {
  const socket = fx.socket();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await using s = await socket.socket();
  const py = await pyRaisesAll({
    udp: 'socket.socket(socket.AF_INET, socket.SOCK_DGRAM).listen()',
    overflow: 'socket.socket().listen(2**31)',
  });
  await raisesLikePython(t, () => u.listen(), OSError, py.udp);
  t.is(py.udp?.errno, 95);
  await raisesLikePython(t, () => s.listen(2 ** 31), OverflowError, py.overflow);
});

// CPython 3.4's socket.__repr__, run by python3 (whose own repr prints family=2 since 3.11). In
// 3.4 the SOCK_* enum was named SocketType (3.5 renamed it SocketKind): printed with the 3.4 name.
const REPR34 = `
import enum
def repr34(self):
    closed = getattr(self, '_closed', False)
    name = lambda v: enum.Enum.__str__(v).replace('SocketKind.', 'SocketType.') if isinstance(v, enum.Enum) else v
    s = "<%s.%s%s fd=%i, family=%s, type=%s, proto=%i" % (self.__class__.__module__, self.__class__.__name__,
        " [closed]" if closed else "", self.fileno(), name(self.family), name(self.type), self.proto)
    if not closed:
        try:
            laddr = self.getsockname()
            if laddr:
                s += ", laddr=%s" % str(laddr)
        except OSError:
            pass
        try:
            raddr = self.getpeername()
            if raddr:
                s += ", raddr=%s" % str(raddr)
        except OSError:
            pass
    return s + '>'
`;

/** Numbers that differ between two processes (fd, ports) replaced by placeholders. */
function shape(repr: string): string {
  return repr.replace(/fd=\d+/, 'fd=N').replace(/(', )\d+/g, '$1P');
}

test("toString() is Python 3.4's repr (fresh, bound, connected, UDP, AF_UNIX, closed)", async (t) => {
  const socket = fx.socket();
  const fresh = await socket.socket();
  const bound = await socket.socket();
  await bound.bind(['127.0.0.1', 0]);
  const [c, conn, l] = await tcpPair(socket);
  const udp = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await udp.bind(['127.0.0.1', 0]);
  const [ua] = await socket.socketpair();
  const closed = await socket.socket();
  await closed.close();
  const py = await pyValue<string[]>(
    REPR34 +
      "fresh = socket.socket(); bound = socket.socket(); bound.bind(('127.0.0.1', 0))\n" +
      "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.socket(); c.connect(l.getsockname()); conn, _ = l.accept()\n" +
      "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(('127.0.0.1', 0)); ua, ub = socket.socketpair()\n" +
      'closed = socket.socket(); closed.close()\n' +
      'result = [repr34(s) for s in (fresh, bound, c, conn, udp, ua, closed)]',
  );
  const mine = [fresh, bound, c, conn, udp, ua, closed].map(String);
  t.deepEqual(mine.map(shape), py.map(shape));
  // And exactly, with this side's numbers.
  const p = await portOf(bound);
  t.is(String(bound), `<socket.socket fd=${bound.fileno()}, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0, laddr=('127.0.0.1', ${p})>`);
  t.is(String(fresh), `<socket.socket fd=${fresh.fileno()}, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0, laddr=('0.0.0.0', 0)>`);
  t.is(String(c), `<socket.socket fd=${c.fileno()}, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0, laddr=('127.0.0.1', ${await portOf(c)}), raddr=('127.0.0.1', ${await portOf(l)})>`);
  t.is(String(closed), '<socket.socket [closed] fd=-1, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0>');
  t.is(`${ua}`, `<socket.socket fd=${ua.fileno()}, family=AddressFamily.AF_UNIX, type=SocketType.SOCK_STREAM, proto=0>`);
  for (const s of [fresh, bound, c, conn, l, udp, ua]) await s.close();
});

test('toString() after listen() or sendto() on an unbound socket shows the port the kernel picked', async (t) => {
  const socket = fx.socket();
  await using l = await socket.socket();
  await l.listen();
  await using u = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await using sink = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await sink.bind(['127.0.0.1', 0]);
  await u.sendto(Buffer.from('x'), (await sink.getsockname())!);
  const py = await pyValue<string[]>(
    REPR34 +
      "l = socket.socket(); l.listen(); u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); k.bind(('127.0.0.1', 0))\n" +
      "u.sendto(b'x', k.getsockname()); result = [repr34(l), repr34(u), str(l.getsockname()[1] > 0)]",
  );
  t.deepEqual([shape(String(l)), shape(String(u))], py.slice(0, 2).map(shape));
  t.is(py[2], 'True');
  t.is(String(l), `<socket.socket fd=${l.fileno()}, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0, laddr=('0.0.0.0', ${await portOf(l)})>`);
  t.not(await portOf(l), 0);
  t.is(String(u), `<socket.socket fd=${u.fileno()}, family=AddressFamily.AF_INET, type=SocketType.SOCK_DGRAM, proto=0, laddr=('0.0.0.0', ${await portOf(u)})>`);
});

test('toString() of an IPv6 socket shows the 4-tuple laddr', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket(socket.AF_INET6);
  await s.bind(['::1', 0]);
  const py = await pyValue<string>(REPR34 + "s = socket.socket(socket.AF_INET6); s.bind(('::1', 0)); result = repr34(s)");
  t.is(shape(String(s)), shape(py));
  t.is(String(s), `<socket.socket fd=${s.fileno()}, family=AddressFamily.AF_INET6, type=SocketType.SOCK_STREAM, proto=0, laddr=('::1', ${await portOf(s)}, 0, 0)>`);
});

// Serial: a closed hand-off fd's number is the next fd's, so no other test may open one before the poll.
test.serial('Symbol.asyncDispose: `await using` closes the socket, like `with` in python3', async (t) => {
  const socket = fx.socket();
  let outer!: Socket;
  let fd = -1;
  let handed = false;
  {
    await using s = await socket.socket();
    outer = s;
    fd = s.fileno();
    handed = s._handedOff;
    await s.bind(['127.0.0.1', 0]);
  }
  t.is(outer.fileno(), -1);
  t.deepEqual(await socket.poll([fd], socket.POLLIN, 0), [[fd, socket.POLLNVAL]]);
  if (handed) t.false(existsSync(`/proc/self/fd/${fd}`), `fd ${fd} was reused during the check`);
  await t.throwsAsync(() => outer.getsockname(), { instanceOf: OSError, message: '[Errno 9] Bad file descriptor' });
  // Also when the block throws.
  let inner!: Socket;
  await t.throwsAsync(async () => {
    await using s = await socket.socket();
    inner = s;
    throw new Error('boom');
  }, { message: 'boom' });
  t.is(inner.fileno(), -1);
  const py = await pyValue<number[]>('with socket.socket() as s:\n    pass\nresult = [s.fileno()]');
  t.deepEqual([outer.fileno()], py);
});
