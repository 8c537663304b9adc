// The reactor's interest stays armed between waits (edge-triggered): a wait after a read that
// emptied the socket needs no epoll_ctl, yet nothing may hang or spin because of it.
import test from 'ava';
import { setImmediate as turn } from 'node:timers/promises';
import { Reactor } from '../../native/reactor.js';
import { drive } from '../../native/io-driver.js';
import { linux as C } from '../../native/constants.js';
import { recv, send, socketpair } from '../../native/libc.js';
import { checkNoFdLeaks, fdTracker } from './helpers/fds.js';

checkNoFdLeaks(test);

const never = new AbortController().signal;
const pair = (t: Parameters<typeof fdTracker>[0]) => {
  const fds = fdTracker(t);
  return { fds, ends: fds.add(socketpair(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0)) };
};
const recvOn = (r: Reactor, fd: number, timeout?: number) => {
  const buf = Buffer.alloc(64);
  return drive(r, { fd, closed: false }, 'read', timeout, never, 'recv', () => recv(fd, buf, 0)).then((n) => buf.toString('latin1', 0, n));
};

test('round trips each wait on the registration the first one armed', async (t) => {
  const r = new Reactor();
  t.teardown(() => r.stop());
  const { ends: [a, b] } = pair(t);
  for (let i = 0; i < 50; i++) {
    const got = recvOn(r, b);
    setImmediate(() => send(a, Buffer.from(`m${i}`), 0));
    t.is(await got, `m${i}`);
    t.is(r.registered, 1);
  }
});

test('a busy fd nobody waits on leaves the set after two edges; a later wait arms it again', async (t) => {
  const r = new Reactor();
  t.teardown(() => r.stop());
  const { ends: [a, b] } = pair(t);
  const first = recvOn(r, b);
  send(a, Buffer.from('x'), 0);
  t.is(await first, 'x');
  for (let i = 0; i < 4 && r.registered > 0; i++) {
    send(a, Buffer.from('y'), 0); // read without waiting later: its edge finds no reader
    for (let k = 0; k < 5; k++) await turn();
  }
  t.is(r.registered, 0);
  t.is(recv(b, Buffer.alloc(64), 0) > 0, true);
  const again = recvOn(r, b, 2);
  setImmediate(() => send(a, Buffer.from('z'), 0));
  t.is(await again, 'z');
});

test('an fd closed through libc leaves the set: its number, reused by a new socket, is waited on afresh', async (t) => {
  const r = new Reactor();
  t.teardown(() => r.stop());
  const first = pair(t);
  const [a, b] = first.ends;
  const got = recvOn(r, b);
  send(a, Buffer.from('one'), 0);
  t.is(await got, 'one');
  t.is(r.registered, 1);
  first.fds.close(b); // no forget(): the close itself must drop it
  t.is(r.registered, 0);
  const second = pair(t);
  const [c, d] = second.ends;
  const reused = c === b ? c : d === b ? d : c;
  const peer = reused === c ? d : c;
  const again = recvOn(r, reused, 2); // a timeout, not a hang, if the stale registration were trusted
  setImmediate(() => send(peer, Buffer.from('two'), 0));
  t.is(await again, 'two');
});
