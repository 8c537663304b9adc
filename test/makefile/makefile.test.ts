// makefile() against python3: readline over a TCP stream, binary and text modes with encodings,
// errors and newline arguments, read/readinto/iteration/write/flush, mode errors, and the close
// rule (the handle closes only when the socket and all its file objects are closed).
import test from 'ava';
import { OSError, ValueError, type Socket, type SocketModule } from '../../client/index.js';
import { useDaemon, tcpPair } from '../socket/helpers/fixture.js';
import { pyRaisesAll, pyValue, raisesLikePython } from '../socket/helpers/py.js';
import type { BufferedReader, TextIOWrapper } from '../../client/makefile.js';

const fx = useDaemon(test);

/** What each text-mode reader below reads from `bytes`, in python3 and in the SDK. */
const TEXT_CASES: Array<{ name: string; bytes: number[]; args: { encoding?: string; errors?: string; newline?: string | null } }> = [
  { name: 'utf-8 universal', bytes: [...Buffer.from('héllo\r\nwörld\rlast\nend')], args: { encoding: 'utf-8' } },
  { name: 'latin-1 newline=""', bytes: [0x61, 0xe9, 0x0d, 0x0a, 0x62, 0x0d, 0x63, 0x0a, 0x64], args: { encoding: 'latin-1', newline: '' } },
  { name: 'newline="\\n"', bytes: [...Buffer.from('a\r\nb\rc\nd')], args: { newline: '\n' } },
  { name: 'newline="\\r"', bytes: [...Buffer.from('a\r\nb\rc\nd')], args: { newline: '\r' } },
  { name: 'newline="\\r\\n"', bytes: [...Buffer.from('a\r\nb\rc\nd\r\n')], args: { newline: '\r\n' } },
  { name: 'utf-8 replace', bytes: [0x61, 0xff, 0x0a, 0x62], args: { encoding: 'utf-8', errors: 'replace' } },
  { name: 'ascii', bytes: [...Buffer.from('plain\nascii\n')], args: { encoding: 'ascii' } },
];

function pyArgs(a: { encoding?: string; errors?: string; newline?: string | null }): string {
  const q = (s: string) => JSON.stringify(s);
  return [a.encoding ? `encoding=${q(a.encoding)}` : '', a.errors ? `errors=${q(a.errors)}` : '', a.newline !== undefined ? `newline=${a.newline === null ? 'None' : q(a.newline)}` : ''].filter(Boolean).join(', ');
}

async function feed(socket: SocketModule, bytes: number[]): Promise<[Socket, Socket]> {
  const [w, r] = await socket.socketpair();
  await w.sendall(Buffer.from(bytes));
  await w.close();
  return [w, r];
}

test('readline over a TCP stream (binary), iteration and read(), as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.create_connection(l.getsockname()); a, _ = l.accept()\n" +
      "c.sendall(b'first line\\nsecond\\n' + b'x' * 10000 + b'\\ntail'); c.close(); f = a.makefile('rb')\n" +
      'r = [f.readline().decode(), f.readline(3).decode(), f.readline().decode(), len(f.readline()), f.read().decode(), f.read().decode(), f.readline().decode()]\n' +
      'result = r',
  );
  const [c, a, l] = await tcpPair(socket);
  await c.sendall(Buffer.concat([Buffer.from('first line\nsecond\n'), Buffer.alloc(10000, 'x'), Buffer.from('\ntail')]));
  await c.close();
  const f = a.makefile('rb') as BufferedReader;
  const got = [
    (await f.readline()).toString(), (await f.readline(3)).toString(), (await f.readline()).toString(),
    (await f.readline()).length, (await f.read()).toString(), (await f.read()).toString(), (await f.readline()).toString(),
  ];
  t.deepEqual(got, py);
  await f.close();
  await a.close();
  await l.close();
  // Iteration yields lines until end of stream.
  const [w, r] = await feed(socket, [...Buffer.from('1\n22\n333')]);
  const lines: string[] = [];
  for await (const line of r.makefile('rb') as BufferedReader) lines.push(line.toString());
  t.deepEqual(lines, ['1\n', '22\n', '333']);
  await r.close();
  await w.close();
});

for (const c of TEXT_CASES) {
  test(`text mode (${c.name}): readline/read as python3`, async (t) => {
    const socket = fx.socket();
    const py = await pyValue<string[]>(
      `w, r = socket.socketpair(); w.sendall(bytes(${JSON.stringify(c.bytes)})); w.close()\n` +
        `f = r.makefile('r', ${pyArgs(c.args)})\nout = []\n` +
        "while True:\n    line = f.readline()\n    if not line: break\n    out.append(line)\nresult = out",
    );
    const [, r] = await feed(socket, c.bytes);
    const f = r.makefile('r', null, c.args) as TextIOWrapper;
    const out: string[] = [];
    for await (const line of f) out.push(line);
    t.deepEqual(out, py);
    await f.close();
    await r.close();
  });
}

test('text read(n) counts characters; write() encodes and translates newlines; rw and wb modes; readinto, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "a, b = socket.socketpair(); fa = a.makefile('w', encoding='utf-8', newline='\\r\\n'); n = fa.write('é\\nz'); fa.flush()\n" +
      "fb = b.makefile('rb'); got = fb.read1(100)\n" +
      "rw = b.makefile('rw'); rw.write('pong\\n'); rw.flush(); back = a.recv(100)\n" +
      "a.sendall('αβγδ\\n'.encode()); fr = b.makefile('r', encoding='utf-8'); three = fr.read(3)\n" +
      "wb = a.makefile('wb', 0); k = wb.write(b'raw!!'); buf = bytearray(5); m = b.makefile('rb').readinto(buf)\n" +
      'result = [n, got.hex(), back.decode(), three, type(wb).__name__, k, m, bytes(buf[:m]).decode()]',
  );
  const [a, b] = await socket.socketpair();
  const fa = a.makefile('w', null, { encoding: 'utf-8', newline: '\r\n' }) as TextIOWrapper;
  const n = await fa.write('é\nz');
  await fa.flush();
  const fb = b.makefile('rb') as BufferedReader;
  const got = await fb.read1(100);
  const rw = b.makefile('rw') as TextIOWrapper;
  await rw.write('pong\n');
  await rw.flush();
  const back = (await a.recv(100)).toString();
  await a.sendall(Buffer.from('αβγδ\n'));
  const fr = b.makefile('r', null, { encoding: 'utf-8' }) as TextIOWrapper;
  const three = await fr.read(3);
  const wb = a.makefile('wb', 0);
  const k = await (wb as { write(b: Buffer): Promise<number | null> }).write(Buffer.from('raw!!'));
  const buf = Buffer.alloc(5);
  const m = await (b.makefile('rb') as BufferedReader).readinto(buf);
  t.deepEqual([n, got.toString('hex'), back, three, wb.constructor.name, k, m, buf.subarray(0, m).toString()], py);
  for (const s of [a, b]) await s.close();
});

test('makefile argument errors as python3', async (t) => {
  const socket = fx.socket();
  const [a] = await socket.socketpair();
  const py = await pyRaisesAll({
    mode: "a, b = socket.socketpair(); a.makefile('rx')",
    unbuffered: "a, b = socket.socketpair(); a.makefile('r', 0)",
    newline: "a, b = socket.socketpair(); a.makefile('r', newline='x')",
  });
  await raisesLikePython(t, () => a.makefile('rx'), ValueError, py.mode);
  await raisesLikePython(t, () => a.makefile('r', 0), ValueError, py.unbuffered);
  await raisesLikePython(t, () => a.makefile('r', null, { newline: 'x' }), ValueError, { ...py.newline!, message: py.newline!.message.replace("'x'", 'x') });
  t.throws(() => a.makefile('r', null, { encoding: 'no-such-codec' }), { message: 'unknown encoding: no-such-codec' });
  await a.close();
});

test('the close rule: the handle closes only when the socket and all its file objects are closed, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    "a, b = socket.socketpair(); f1 = a.makefile('rb'); f2 = a.makefile('wb'); a.close(); r = [a.fileno() >= 0]\n" +
      "f2.write(b'still open'); f2.flush(); r.append(b.recv(100).decode()); f2.close(); r.append(a.fileno() >= 0)\n" +
      "b.sendall(b'x\\n'); r.append(f1.readline().decode()); f1.close(); r.append(a.fileno())\n" +
      'result = r',
  );
  const [a, b] = await socket.socketpair();
  const h = a.fileno();
  const f1 = a.makefile('rb') as BufferedReader;
  const f2 = a.makefile('wb');
  await a.close();
  const got: unknown[] = [a.fileno() >= 0];
  await (f2 as { write(b: Buffer): Promise<number> }).write(Buffer.from('still open'));
  await f2.flush();
  got.push((await b.recv(100)).toString());
  await f2.close();
  got.push(a.fileno() >= 0);
  await b.sendall(Buffer.from('x\n'));
  got.push((await f1.readline()).toString());
  await f1.close();
  got.push(a.fileno());
  t.deepEqual(got, py);
  t.deepEqual(py, [true, 'still open', true, 'x\n', -1]);
  // The handle is really closed in the broker now.
  const again = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, h);
  await t.throwsAsync(again.send(Buffer.from('x')), { instanceOf: OSError, message: '[Errno 9] Bad file descriptor' });
  // A closed file object raises ValueError, as io does.
  await t.throwsAsync(f1.readline(), { instanceOf: ValueError, message: 'I/O operation on closed file.' });
  await b.close();
});

test('a timeout inside a file read leaves the raw file unusable, as SocketIO does', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  b.settimeout(0.2);
  const f = b.makefile('rb') as BufferedReader;
  await t.throwsAsync(f.read(1), { instanceOf: socket.timeout });
  await t.throwsAsync(f.read(1), { instanceOf: OSError, message: 'cannot read from timed out object' });
  await f.close();
  await a.close();
  await b.close();
});

test("makefile('rb', buffering=0): the raw SocketIO has readline, readlines and line iteration, as python3", async (t) => {
  const socket = fx.socket();
  const data = [...Buffer.from('one\ntwo\nthree\nfour\nfive')];
  const py = await pyValue<unknown[]>(
    `w, r = socket.socketpair(); w.sendall(bytes(${JSON.stringify(data)})); w.close(); f = r.makefile('rb', buffering=0)\n` +
      'result = [type(f).__name__, f.readline().decode(), f.readline(2).decode(), f.readline().decode(), [l.decode() for l in f.readlines(6)], [l.decode() for l in f], f.readline().decode()]\n' +
      "w, r = socket.socketpair(); w.sendall(b'a\\nbb\\nccc\\n'); w.close(); f = r.makefile('rb', buffering=0); result.append([l.decode() for l in f.readlines(2)])\n" +
      "w, r = socket.socketpair(); w.sendall(b'a\\nbb\\nccc\\n'); w.close(); f = r.makefile('rb'); result.append([l.decode() for l in f.readlines(2)])",
  );
  t.deepEqual(py, ['SocketIO', 'one\n', 'tw', 'o\n', ['three\n', 'four\n'], ['five'], '', ['a\n', 'bb\n'], ['a\n', 'bb\n']]);
  const [w, r] = await feed(socket, data);
  const f = r.makefile('rb', 0) as unknown as import('../../client/makefile.js').SocketIO;
  const got: unknown[] = [f.constructor.name, (await f.readline()).toString(), (await f.readline(2)).toString(), (await f.readline()).toString()];
  got.push((await f.readlines(6)).map(String));
  const rest: string[] = [];
  for await (const line of f) rest.push(line.toString());
  got.push(rest, (await f.readline()).toString());
  await f.close();
  await r.close();
  const [, r2] = await feed(socket, [...Buffer.from('a\nbb\nccc\n')]);
  const f2 = r2.makefile('rb', 0) as unknown as import('../../client/makefile.js').SocketIO;
  got.push((await f2.readlines(2)).map(String));
  await f2.close();
  await r2.close();
  const [, r3] = await feed(socket, [...Buffer.from('a\nbb\nccc\n')]);
  const f3 = r3.makefile('rb') as BufferedReader;
  got.push((await f3.readlines(2)).map(String));
  await f3.close();
  await r3.close();
  t.deepEqual(got, py);
  void w;
});

test('readline on a non-blocking raw SocketIO with nothing to read raises OSError, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyRaisesAll({ x: "w, r = socket.socketpair(); r.setblocking(False); r.makefile('rb', buffering=0).readline()" });
  const [w, r] = await socket.socketpair();
  r.setblocking(false);
  const f = r.makefile('rb', 0) as unknown as import('../../client/makefile.js').SocketIO;
  await raisesLikePython(t, () => f.readline(), OSError, py.x);
  await f.close();
  await r.close();
  await w.close();
});
