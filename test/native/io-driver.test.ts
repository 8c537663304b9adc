// The shared reactor and I/O driver speak fds and errnos only: a wait is woken by readiness, a
// deadline passing is a native TimeoutError, a closed fd EBADF; the daemon maps them to statuses.
import test from 'ava';
import { Reactor } from '../../native/reactor.js';
import { drive } from '../../native/io-driver.js';
import { Cancellation } from '../../native/cancel.js';
import { ErrnoError, TimeoutError } from '../../native/errno.js';
import { linux as C } from '../../native/constants.js';
import { recv, send, socketpair } from '../../native/libc.js';
import { toBrokerError } from '../../daemon/errors.js';
import { checkNoFdLeaks, fdTracker } from './helpers/fds.js';

checkNoFdLeaks(test);

const pair = (t: Parameters<typeof fdTracker>[0]) => fdTracker(t).add(socketpair(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0));

test('drive waits for readiness and retries the syscall', async (t) => {
  const reactor = new Reactor();
  t.teardown(() => reactor.stop());
  const [a, b] = pair(t);
  const buf = Buffer.alloc(8);
  const got = drive(reactor, { fd: b, closed: false }, 'read', undefined, new AbortController().signal, 'recv', () => recv(b, buf, 0));
  setTimeout(() => send(a, Buffer.from('ping'), 0), 20);
  t.is(await got, 4);
  t.is(buf.subarray(0, 4).toString(), 'ping');
});

test('a deadline passing is a TimeoutError the daemon reports as socket.timeout', async (t) => {
  const reactor = new Reactor();
  t.teardown(() => reactor.stop());
  const [, b] = pair(t);
  const err = await t.throwsAsync(
    drive(reactor, { fd: b, closed: false }, 'read', 0.02, new AbortController().signal, 'recv', () => recv(b, Buffer.alloc(1), 0)),
  );
  t.true(err instanceof TimeoutError);
  t.like(toBrokerError(err), { reason: 'TIMEOUT', message: 'timed out', metadata: { kind: 'timeout', syscall: 'recv' } });
});

test('non-blocking mode raises EAGAIN at once; a closed entry or a forgotten fd is EBADF', async (t) => {
  const reactor = new Reactor();
  t.teardown(() => reactor.stop());
  const [, b] = pair(t);
  const signal = new AbortController().signal;
  const attempt = (): number => recv(b, Buffer.alloc(1), 0);
  const again = await t.throwsAsync(drive(reactor, { fd: b, closed: false }, 'read', 0, signal, 'recv', attempt));
  t.like(again, { code: 'EAGAIN' });
  const closed = await t.throwsAsync(drive(reactor, { fd: b, closed: true }, 'read', undefined, signal, 'recv', attempt));
  t.true(closed instanceof ErrnoError);
  t.like(closed, { code: 'EBADF', syscall: 'recv' });
  const waiting = drive(reactor, { fd: b, closed: false }, 'read', undefined, signal, 'recv', attempt);
  while (reactor.watching === 0) await new Promise((r) => setTimeout(r, 5)); // the wait is armed
  reactor.forget(b);
  const forgotten = await t.throwsAsync(waiting);
  t.like(forgotten, { code: 'EBADF', syscall: 'recv' });
  t.like(toBrokerError(forgotten), { reason: 'EBADF', metadata: { kind: 'os', errno: '9' } });
});

test('a Cancellation aborts a wait, blocking or with a deadline, with its reason; listeners run once, never after the abort', async (t) => {
  const reactor = new Reactor();
  t.teardown(() => reactor.stop());
  const [, b] = pair(t);
  const attempt = (): number => recv(b, Buffer.alloc(1), 0);
  for (const timeout of [undefined, 30]) {
    const c = new Cancellation();
    const waiting = drive(reactor, { fd: b, closed: false }, 'read', timeout, c, 'recv', attempt);
    while (reactor.watching === 0) await new Promise((r) => setTimeout(r, 5)); // the wait is armed
    const why = new Error(`cancelled (timeout ${timeout})`);
    c.abort(why);
    t.is(await t.throwsAsync(waiting), why);
    t.is(reactor.watching, 0, 'the waiter is gone');
    // Aborted before the call: it fails at once, before any syscall.
    t.is(await t.throwsAsync(drive(reactor, { fd: b, closed: false }, 'read', timeout, c, 'recv', () => t.fail('no syscall') as never)), why);
  }
  const c = new Cancellation();
  let runs = 0;
  const kept = (): number => runs++;
  const removed = (): void => t.fail('a removed listener ran');
  c.addEventListener('abort', kept);
  c.addEventListener('abort', removed);
  c.removeEventListener('abort', removed);
  c.abort('first');
  c.abort('second');
  c.addEventListener('abort', () => t.fail('a listener added after the abort ran'));
  t.is(runs, 1);
  t.true(c.aborted);
  t.is(c.reason, 'first');
});
