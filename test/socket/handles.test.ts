// Handle-level methods: dup(), detach(), get_inheritable()/set_inheritable(), compared with
// what python3 does with file descriptors for the same calls.
import test from 'ava';
import { OSError } from '../../client/index.js';
import { useDaemon, tcpPair } from './helpers/fixture.js';
import { pyRaises, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

test('dup(): a new handle on the same socket, same family/type/proto/timeout; closing one leaves the other', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  c.settimeout(2.5);
  const d = await c.dup();
  const py = await pyValue<unknown[]>(
    "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); c = socket.socket(); c.connect(l.getsockname()); a, _ = l.accept(); c.settimeout(2.5)\n" +
      "d = c.dup(); r = [d.fileno() != c.fileno(), [d.family, d.type, d.proto], d.gettimeout(), d.getsockname() == c.getsockname(), d.get_inheritable()]\n" +
      "c.close(); d.sendall(b'via dup'); r.append(a.recv(10).decode()); result = r",
  );
  t.deepEqual(py, [true, [socket.AF_INET, socket.SOCK_STREAM, 0], 2.5, true, false, 'via dup']);
  const got: unknown[] = [d.fileno() !== c.fileno(), [d.family, d.type, d.proto], d.gettimeout(), JSON.stringify(await d.getsockname()) === JSON.stringify(await c.getsockname()), await d.getInheritable()];
  await c.close();
  await d.sendall(Buffer.from('via dup'));
  got.push((await a.recv(10)).toString());
  t.deepEqual(got, py);
  for (const s of [d, a, l]) await s.close();
});

test('detach(): returns the handle, the object is closed, the socket stays open for socket(fileno=)', async (t) => {
  const socket = fx.socket();
  const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await s.bind(['127.0.0.1', 0]);
  const name = await s.getsockname();
  const fd = s.fileno();
  const py = await pyValue<unknown[]>(
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); n = s.getsockname(); fd = s.fileno()\n" +
      "r = [s.detach() == fd, s.fileno()]; w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fd); r.append(w.getsockname() == n); w.close(); result = r",
  );
  t.deepEqual(py, [true, -1, true]);
  const got: unknown[] = [(await s.detach()) === fd, s.fileno()];
  const w = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fd);
  got.push(JSON.stringify(await w.getsockname()) === JSON.stringify(name));
  t.deepEqual(got, py);
  // The detached object is closed: EBADF, as python3.
  const expected = await pyRaises('s = socket.socket(); s.detach(); s.getsockname()');
  await raisesLikePython(t, () => s.getsockname(), OSError, expected);
  await w.close();
});

test('get_inheritable()/set_inheritable(): False for new sockets, then as set (python3)', async (t) => {
  const socket = fx.socket();
  await using s = await socket.socket();
  const py = await pyValue<boolean[]>('s = socket.socket(); r = [s.get_inheritable()]; s.set_inheritable(True); r.append(s.get_inheritable()); s.set_inheritable(False); r.append(s.get_inheritable()); result = r');
  t.deepEqual(py, [false, true, false]);
  const got = [await s.getInheritable()];
  await s.setInheritable(true);
  got.push(await s.getInheritable());
  await s.setInheritable(false);
  got.push(await s.getInheritable());
  t.deepEqual(got, py);
});
