// Handle operations against python3: dup, detach + fromfd / socket(fileno=), the inheritable flag,
// close details (double close, use after close, close while another call waits), and
// share/fromshare (once, only for the named process, never after the token went stale).
import test from 'ava';
import { connect, OSError, PermissionError } from '../../client/index.js';
import { stillPending, useDaemon } from '../socket/helpers/fixture.js';
import { pyRaisesAll, pyValue, raisesLikePython } from '../socket/helpers/py.js';
import { runAsNobody } from '../helpers/daemon.js';

const fx = useDaemon(test);

test('dup(): a second handle on the same socket, non-inheritable, with the timeout copied, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    'a, b = socket.socketpair(); a.settimeout(2.5); a.set_inheritable(True); d = a.dup()\n' +
      "d.sendall(b'via dup'); x = b.recv(100).decode(); d.close(); a.sendall(b'still'); y = b.recv(100).decode()\n" +
      'result = [d.fileno() != a.fileno(), a.get_inheritable(), socket.socketpair()[0].dup().get_inheritable(), d.gettimeout() if False else a.dup().gettimeout(), x, y]',
  );
  const [a, b] = await socket.socketpair();
  a.settimeout(2.5);
  await a.setInheritable(true);
  const d = await a.dup();
  await d.sendall(Buffer.from('via dup'));
  const x = (await b.recv(100)).toString();
  const dupFresh = await (await socket.socketpair())[0].dup();
  const dd = await a.dup();
  const got = [d.fileno() !== a.fileno(), await a.getInheritable(), await dupFresh.getInheritable(), dd.gettimeout(), x];
  await d.close();
  await a.sendall(Buffer.from('still'));
  got.push((await b.recv(100)).toString());
  t.deepEqual(got, py);
  t.deepEqual(py, [true, true, false, 2.5, 'via dup', 'still']);
  for (const s of [a, b, dupFresh, dd]) await s.close();
});

test('detach(): the object is closed, the handle stays open for socket(fileno=) or fromfd(), as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyValue<unknown[]>(
    'a, b = socket.socketpair(); fd = b.detach(); r = [fd > 0, b.fileno(), b.detach(), str(b).startswith("<socket.socket [closed] fd=-1")]\n' +
      "w = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd); a.sendall(b'one'); r.append(w.recv(10).decode())\n" +
      "f = socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM); a.sendall(b'two'); r.append(f.recv(10).decode()); r.append([f.family, f.type, f.proto])\n" +
      'result = r',
  );
  const [a, b] = await socket.socketpair();
  const fd = await b.detach();
  const got: unknown[] = [fd > 0, b.fileno(), await b.detach(), String(b).startsWith('<socket.socket [closed] fd=-1')];
  const w = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd);
  await a.sendall(Buffer.from('one'));
  got.push((await w.recv(10)).toString());
  const f = await socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM);
  await a.sendall(Buffer.from('two'));
  got.push((await f.recv(10)).toString(), [f.family, f.type, f.proto]);
  t.deepEqual(got, py);
  // The detached handle was taken over by fromfd: it is closed now (python3 keeps both fds; the
  // broker releases a detached handle once fromfd has duplicated it).
  await t.throwsAsync(w.recv(1), { instanceOf: OSError, message: '[Errno 9] Bad file descriptor' });
  // fromfd of an ordinary handle leaves it open.
  const g = await socket.fromfd(f.fileno(), socket.AF_UNIX, socket.SOCK_STREAM);
  await a.sendall(Buffer.from('3'));
  t.is((await f.recv(1)).toString(), '3');
  for (const s of [a, f, g]) await s.close();
});

test('close(): twice is fine, use after close is EBADF, fromfd of a closed or unknown handle is EBADF, as python3', async (t) => {
  const socket = fx.socket();
  const py = await pyRaisesAll({
    recv: 'c = socket.socket(); c.close(); c.close(); c.recv(1)',
    dup: 'c = socket.socket(); c.close(); c.dup()',
    inh: 'c = socket.socket(); c.close(); c.get_inheritable()',
    fromfd: 'socket.fromfd(-1, socket.AF_INET, socket.SOCK_STREAM)',
  });
  const c = await socket.socket();
  await c.close();
  await c.close();
  t.is(c.fileno(), -1);
  t.is(await c.detach(), -1);
  await raisesLikePython(t, () => c.recv(1), OSError, py.recv);
  await raisesLikePython(t, () => c.dup(), OSError, py.dup);
  await raisesLikePython(t, () => c.getInheritable(), OSError, py.inh);
  await raisesLikePython(t, () => socket.fromfd(-1, socket.AF_INET, socket.SOCK_STREAM), OSError, py.fromfd);
  const [x] = await socket.socketpair();
  const h = x.fileno();
  await x.close();
  await t.throwsAsync(socket.fromfd(h, socket.AF_UNIX, socket.SOCK_STREAM), { instanceOf: OSError, message: '[Errno 9] Bad file descriptor' });
});

test('close while another call waits on the socket: the waiter gets EBADF', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const same = await socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, a.fileno());
  const waiting = a.recv(10);
  // A later call's reply on the same stream: the recv has reached the broker and is waiting.
  await b.getsockname();
  t.is(await stillPending(waiting, 0), 'pending');
  await same.close();
  const err = await t.throwsAsync(waiting);
  t.true(err instanceof OSError);
  t.is((err as OSError).errno, 9);
  await b.close();
});

test('share(pid)/fromshare(token): works once, only in a session of that process, never after the sharing session ended', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const token = await a.share(process.pid);
  t.true(Buffer.isBuffer(token));
  // Closing the shared socket afterwards is safe (the token holds its own duplicate).
  await a.close();
  // Another process (nobody, so another identity too) cannot redeem it.
  const r = await runAsNobody(`
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
try { await socket.fromshare(Buffer.from(process.env.TOKEN, 'hex')); console.log('redeemed'); }
catch (e) { console.log(e.constructor.name + ':' + e.errno); }
await socket.disconnect();
`, { SOCKBROKER_ADDRESS: fx.daemon().address, TOKEN: token.toString('hex') });
  t.is(r.stdout.trim(), 'PermissionError:1', r.stderr);
  // A session of this process (another connection) redeems it, once.
  const other = await connect(fx.daemon().address);
  try {
    const s = await other.fromshare(token);
    t.deepEqual([s.family, s.type], [socket.AF_UNIX, socket.SOCK_STREAM]);
    await s.sendall(Buffer.from('shared'));
    t.is((await b.recv(100)).toString(), 'shared');
    const again = await t.throwsAsync(other.fromshare(token));
    t.true(again instanceof OSError);
    t.is((again as OSError).errno, 22);
    await t.throwsAsync(other.fromshare(Buffer.from('not a token')), { instanceOf: OSError });
    // A token dies with the session that made it.
    const third = await connect(fx.daemon().address);
    const [c] = await third.socketpair();
    const stale = await c.share(process.pid);
    await third.disconnect();
    const e2 = await t.throwsAsync(other.fromshare(stale));
    t.is((e2 as OSError).errno, 22);
    // A pid with no process.
    await t.throwsAsync(b.share(0x7ffffffe), { instanceOf: OSError });
    await s.close();
  } finally {
    await other.disconnect();
  }
  // The token is never logged.
  t.false(fx.daemon().logs.some((l) => l.includes(token.toString('hex')) || l.includes(token.toString('base64'))));
  await b.close();
});

test('as nobody, sharing with a process of another uid needs the share grant', async (t) => {
  const r = await runAsNobody(`
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const [a] = await socket.socketpair();
const out = {};
try { await a.share(Number(process.env.ROOT_PID)); out.other = 'ok'; } catch (e) { out.other = e.constructor.name + ':' + e.errno; }
try { out.self = (await a.share(process.pid)).length; } catch (e) { out.self = e.constructor.name + ':' + e.errno; }
console.log(JSON.stringify(out));
await socket.disconnect();
`, { SOCKBROKER_ADDRESS: fx.daemon().address, ROOT_PID: String(process.pid) });
  t.deepEqual(JSON.parse(r.stdout.trim()), { other: 'PermissionError:1', self: 32 });
  t.true(PermissionError.name === 'PermissionError');
});
