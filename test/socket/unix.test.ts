// AF_UNIX with filesystem paths and abstract names: addresses are str (a path) or bytes (an
// abstract name starting with NUL), as python3 returns them.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileNotFoundError, OSError } from '../../client/index.js';
import { useDaemon } from './helpers/fixture.js';
import { pyRaisesAll, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);
const dir = mkdtempSync(join(tmpdir(), 'sb-unix-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('stream over a path: bind, listen, connect, accept; names and repr as python3', async (t) => {
  const socket = fx.socket();
  const path = join(dir, 'stream.sock');
  await using l = await socket.socket(socket.AF_UNIX);
  await l.bind(path);
  await l.listen();
  await using c = await socket.socket(socket.AF_UNIX);
  await c.connect(path);
  const [a, addr] = await l.accept();
  await using _a = a;
  const got = [await l.getsockname(), addr, await a.getsockname(), await a.getpeername(), await c.getsockname(), await c.getpeername()];
  const py = await pyValue<unknown[]>(
    `import os\np = ${JSON.stringify(join(dir, 'py-stream.sock'))}\nl = socket.socket(socket.AF_UNIX); l.bind(p); l.listen(); c = socket.socket(socket.AF_UNIX); c.connect(p); a, addr = l.accept()\n` +
      'r = [l.getsockname(), addr, a.getsockname(), a.getpeername(), c.getsockname(), c.getpeername()]; os.unlink(p); result = [x.replace("py-stream", "stream") for x in r]',
  );
  t.deepEqual(got, py);
  t.deepEqual(py, [path, '', path, '', '', path]);
  t.is(String(l), `<socket.socket fd=${l.fileno()}, family=AddressFamily.AF_UNIX, type=SocketType.SOCK_STREAM, proto=0, laddr=${path}>`);
  t.is(String(c), `<socket.socket fd=${c.fileno()}, family=AddressFamily.AF_UNIX, type=SocketType.SOCK_STREAM, proto=0, raddr=${path}>`);
  await c.sendall(Buffer.from('unix'));
  t.deepEqual(await a.recv(10), Buffer.from('unix'));
});

test('datagrams over paths: recvfrom gives the sender path, or None for an unbound sender', async (t) => {
  const socket = fx.socket();
  await using a = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
  await using b = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
  await using anon = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
  await a.bind(join(dir, 'a.dgram'));
  await b.bind(join(dir, 'b.dgram'));
  t.is(await a.sendto(Buffer.from('named'), join(dir, 'b.dgram')), 5);
  t.is(await anon.sendto(Buffer.from('anon'), join(dir, 'b.dgram')), 4);
  const got = [await b.recvfrom(10), await b.recvfrom(10)].map(([d, f]) => [d.toString(), f]);
  const py = await pyValue<unknown[]>(
    `import os\nd = ${JSON.stringify(dir)}\na = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n` +
      "a.bind(d + '/pa.dgram'); b.bind(d + '/pb.dgram'); a.sendto(b'named', d + '/pb.dgram'); n.sendto(b'anon', d + '/pb.dgram')\n" +
      "r = [[x.decode(), f] for x, f in (b.recvfrom(10), b.recvfrom(10))]; os.unlink(d + '/pa.dgram'); os.unlink(d + '/pb.dgram'); r[0][1] = r[0][1].replace('/pa.', '/a.'); result = r",
  );
  t.deepEqual(py, [['named', join(dir, 'a.dgram')], ['anon', null]]);
  t.deepEqual(got, py);
});

test('abstract names are bytes starting with NUL, as python3 returns them', async (t) => {
  const socket = fx.socket();
  const name = Buffer.from(`\0sb-abstract-${process.pid}-${Date.now()}`);
  await using s = await socket.socket(socket.AF_UNIX);
  await s.bind(name);
  const got = await s.getsockname();
  t.true(Buffer.isBuffer(got));
  t.deepEqual(got, name);
  const py = await pyValue<unknown[]>(
    `n = b'\\x00sb-abstract-py-${process.pid}-${Date.now()}'\ns = socket.socket(socket.AF_UNIX); s.bind(n); g = s.getsockname()\n` +
      "t = socket.socket(socket.AF_UNIX); t.bind('\\x00sb-abstract-str-py-" + process.pid + "')\n" +
      'result = [type(g).__name__, g == n, type(t.getsockname()).__name__]',
  );
  t.deepEqual(py, ['bytes', true, 'bytes']);
  // A str starting with NUL names the abstract namespace too (it comes back as bytes).
  await using s2 = await socket.socket(socket.AF_UNIX);
  const str = `\0sb-abstract-str-${process.pid}-${Date.now()}`;
  await s2.bind(str);
  t.deepEqual(await s2.getsockname(), Buffer.from(str));
  const repr = String(s);
  t.is(repr, `<socket.socket fd=${s.fileno()}, family=AddressFamily.AF_UNIX, type=SocketType.SOCK_STREAM, proto=0, laddr=b'\\x00${name.subarray(1).toString()}'>`);
});

test('AF_UNIX errors as python3: wrong type, path too long, missing directory, nobody listening, in use', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket(socket.AF_UNIX);
  const taken = join(dir, 'taken.sock');
  await using owner = await socket.socket(socket.AF_UNIX);
  await owner.bind(taken);
  const py = await pyRaisesAll({
    int: 'socket.socket(socket.AF_UNIX).bind(5)',
    tuple: "socket.socket(socket.AF_UNIX).bind(('x', 1))",
    long: `socket.socket(socket.AF_UNIX).bind('/tmp/' + 'x' * 200)`,
    noDir: "socket.socket(socket.AF_UNIX).bind('/nonexistent/dir/x')",
    noListener: `socket.socket(socket.AF_UNIX).connect(${JSON.stringify(join(dir, 'nobody.sock'))})`,
    inUse: `socket.socket(socket.AF_UNIX).bind(${JSON.stringify(taken)})`,
  });
  await raisesLikePython(t, () => s.bind(5 as unknown as string), TypeError, py.int);
  await raisesLikePython(t, () => s.bind(['x', 1]), TypeError, py.tuple);
  await raisesLikePython(t, () => s.bind(`/tmp/${'x'.repeat(200)}`), OSError, py.long);
  await raisesLikePython(t, () => s.bind('/nonexistent/dir/x'), FileNotFoundError, py.noDir);
  await raisesLikePython(t, () => s.connect(join(dir, 'nobody.sock')), FileNotFoundError, py.noListener);
  await raisesLikePython(t, () => s.bind(taken), OSError, py.inUse);
  t.deepEqual([py.long?.message, py.noDir?.errno, py.inUse?.errno], ['AF_UNIX path too long', 2, 98]);
});
