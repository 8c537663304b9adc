// The three socket modes of the seed's "Notes on socket timeouts" on recv, accept, connect and
// sendall: blocking waits for the event, non-blocking raises BlockingIOError at once (EAGAIN;
// EINPROGRESS for connect), timeout mode raises socket.timeout('timed out') after about the
// timeout. Timings are asserted in generous ranges only. python3 gives the reference errors.
import test from 'ava';
import { BlockingIOError, OSError, Socket, TimeoutError, timeout as SocketTimeout, type SocketModule } from '../../client/index.js';
import { useDaemon, listener, portOf, stillPending, timed } from './helpers/fixture.js';
import { pyRaises, pyValue, raisesLikePython } from './helpers/py.js';

const fx = useDaemon(test);

const TIMEOUT_S = 0.5;
/** A timeout-mode call must take at least about the timeout, and end well before forever. */
const MIN_MS = TIMEOUT_S * 1000 - 50;
const MAX_MS = 30_000;

/** socket.timeout as python3 raises it (its TimeoutError, named 'timeout' by the helper). */
const PY_TIMEOUT = () => pyRaises('a, b = socket.socketpair(); a.settimeout(0.1); a.recv(1)');

/** A 2 MiB payload: far more than an AF_UNIX socketpair buffers (about 200 KiB). */
const BIG = Buffer.alloc(2 << 20, 0x61);

async function assertTimesOut(t: import('ava').ExecutionContext, fn: () => Promise<unknown>): Promise<void> {
  const expected = await PY_TIMEOUT();
  t.deepEqual(expected, { cls: 'timeout', errno: null, message: 'timed out' });
  const { ms, error } = await timed(fn);
  t.true(error instanceof SocketTimeout, `expected socket.timeout, got ${String(error)}`);
  t.true(error instanceof OSError && !(error instanceof TimeoutError), 'socket.timeout is an OSError, not a TimeoutError (3.4)');
  const e = error as SocketTimeout;
  t.deepEqual({ cls: e.name, errno: e.errno, message: e.message }, expected);
  t.true(ms >= MIN_MS && ms < MAX_MS, `timed out after ${Math.round(ms)} ms, timeout ${TIMEOUT_S} s`);
}

// ---- recv ----

test('recv, blocking: waits until data arrives', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  t.is(a.gettimeout(), null);
  const got = a.recv(100);
  t.is(await stillPending(got, 300), 'pending');
  await b.send(Buffer.from('now'));
  t.deepEqual(await got, Buffer.from('now'));
  await a.close();
  await b.close();
});

test('recv, non-blocking: BlockingIOError errno 11 at once, as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  a.setblocking(false);
  const expected = await pyRaises('a, b = socket.socketpair(); a.setblocking(False); a.recv(1)');
  t.deepEqual(expected, { cls: 'BlockingIOError', errno: 11, message: '[Errno 11] Resource temporarily unavailable' });
  const { ms } = await timed(() => raisesLikePython(t, () => a.recv(100), BlockingIOError, expected));
  t.true(ms < 5000, `took ${ms} ms`);
  // recvfrom, recv_into and recvfrom_into too.
  await raisesLikePython(t, () => a.recvfrom(100), BlockingIOError, expected);
  await raisesLikePython(t, () => a.recvInto(Buffer.alloc(4)), BlockingIOError, expected);
  await raisesLikePython(t, () => a.recvfromInto(Buffer.alloc(4)), BlockingIOError, expected);
  // Data already there is returned in non-blocking mode.
  await b.send(Buffer.from('ready'));
  await socket.poll([a], socket.POLLIN, 10);
  t.deepEqual(await a.recv(100), Buffer.from('ready'));
  await a.close();
  await b.close();
});

test('recv, timeout mode: socket.timeout "timed out" after about the timeout, data before it is returned', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  a.settimeout(TIMEOUT_S);
  await assertTimesOut(t, () => a.recv(100));
  await assertTimesOut(t, () => a.recvfrom(100));
  // Data within the timeout arrives normally, and the socket still works after a timeout.
  a.settimeout(10);
  const got = a.recv(100);
  setTimeout(() => void b.send(Buffer.from('in time')), 200);
  t.deepEqual(await got, Buffer.from('in time'));
  await a.close();
  await b.close();
});

// ---- accept ----

test('accept, blocking: waits for a connection', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  const got = l.accept();
  t.is(await stillPending(got, 300), 'pending');
  await using c = await socket.socket();
  await c.connect((await l.getsockname())!);
  const [conn, addr] = await got;
  t.deepEqual(addr, await c.getsockname());
  await conn.close();
});

test('accept, non-blocking: BlockingIOError errno 11, as python3', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  l.setblocking(false);
  const expected = await pyRaises("l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(); l.setblocking(False); l.accept()");
  t.is(expected?.errno, 11);
  await raisesLikePython(t, () => l.accept(), BlockingIOError, expected);
});

test('accept, timeout mode: socket.timeout after about the timeout', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  l.settimeout(TIMEOUT_S);
  await assertTimesOut(t, () => l.accept());
});

// ---- connect (a listener whose backlog is full makes a loopback connect hang) ----

/** A listener with backlog 0 and one established, unaccepted connection: further SYNs are dropped. */
async function fullListener(socket: SocketModule): Promise<{ l: Socket; port: number; queued: Socket }> {
  const l = await listener(socket, socket.AF_INET, 0);
  const queued = await socket.socket();
  await queued.connect((await l.getsockname())!);
  return { l, port: await portOf(l), queued };
}

test('connect, blocking: waits while the backlog is full, completes once the listener accepts', async (t) => {
  const socket = fx.socket();
  const { l, port, queued } = await fullListener(socket);
  const c = await socket.socket();
  const connecting = c.connect(['127.0.0.1', port]);
  t.is(await stillPending(connecting, 500), 'pending');
  // Drain the queue until our connection is through (the kernel retransmits the SYN).
  let done = false;
  const accepted: Socket[] = [];
  l.settimeout(0.5);
  const draining = (async () => {
    while (!done) {
      try {
        accepted.push((await l.accept())[0]);
      } catch (err) {
        if (!(err instanceof SocketTimeout)) throw err;
      }
    }
  })();
  await connecting.finally(() => (done = true));
  await draining;
  t.deepEqual(await c.getpeername(), ['127.0.0.1', port]);
  for (const s of [c, queued, l, ...accepted]) await s.close();
});

test('connect, non-blocking: BlockingIOError errno 115 (EINPROGRESS), then it completes', async (t) => {
  const socket = fx.socket();
  await using l = await listener(socket);
  await using c = await socket.socket();
  c.setblocking(false);
  const port = await portOf(l);
  const expected = await pyRaises(`s = socket.socket(); s.setblocking(False); s.connect(('127.0.0.1', ${port}))`);
  t.deepEqual(expected, { cls: 'BlockingIOError', errno: 115, message: '[Errno 115] Operation now in progress' });
  await raisesLikePython(t, () => c.connect(['127.0.0.1', port]), BlockingIOError, expected);
  // Writable once connected, SO_ERROR 0; then connect_ex reports completion (0) once and
  // EISCONN after, as python3 does for the same sequence.
  t.deepEqual(await socket.poll([c], socket.POLLOUT, 10), [[c, socket.POLLOUT]]);
  t.is(await c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0);
  const py = await pyValue<number[]>(
    `import select\nc = socket.socket(); c.setblocking(False); r = [c.connect_ex(('127.0.0.1', ${port}))]; select.select([], [c], [], 10)\n` +
      `r += [c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), c.connect_ex(('127.0.0.1', ${port})), c.connect_ex(('127.0.0.1', ${port}))]; result = r`,
  );
  t.deepEqual(py, [115, 0, 0, 106]);
  t.deepEqual([await c.connectEx(['127.0.0.1', port]), await c.connectEx(['127.0.0.1', port])], py.slice(2));
  // Drain the two connections (ours and python3's) from the listener.
  l.settimeout(10);
  const [a] = await l.accept();
  await a.close();
});

test('connect, timeout mode: socket.timeout after about the timeout (full backlog), as python3', async (t) => {
  const socket = fx.socket();
  const { l, port, queued } = await fullListener(socket);
  const c = await socket.socket();
  c.settimeout(TIMEOUT_S);
  const expected = await pyRaises(`s = socket.socket(); s.settimeout(0.2); s.connect(('127.0.0.1', ${port}))`);
  t.deepEqual(expected, { cls: 'timeout', errno: null, message: 'timed out' });
  await assertTimesOut(t, () => c.connect(['127.0.0.1', port]));
  // connect_ex reports a timeout as EWOULDBLOCK (11), as CPython does.
  const c2 = await socket.socket();
  c2.settimeout(TIMEOUT_S);
  t.is(await c2.connectEx(['127.0.0.1', port]), 11);
  for (const s of [c, c2, queued, l]) await s.close();
});

// ---- sendall (the peer does not read: its buffer fills) ----

test('sendall, blocking: waits while the peer buffer is full, completes as the peer reads', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  const sending = a.sendall(BIG);
  t.is(await stillPending(sending, 500), 'pending');
  let n = 0;
  while (n < BIG.length) {
    const chunk = await b.recv(1 << 20);
    t.true(chunk.length > 0);
    n += chunk.length;
  }
  await sending;
  t.is(n, BIG.length);
  await a.close();
  await b.close();
});

test('sendall, non-blocking: BlockingIOError errno 11 once the buffer is full, as python3', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  a.setblocking(false);
  const expected = await pyRaises(`a, b = socket.socketpair(); a.setblocking(False); a.sendall(b'a' * ${BIG.length})`);
  t.deepEqual(expected, { cls: 'BlockingIOError', errno: 11, message: '[Errno 11] Resource temporarily unavailable' });
  await raisesLikePython(t, () => a.sendall(BIG), BlockingIOError, expected);
  // send() too, now that the buffer is full.
  await raisesLikePython(t, () => a.send(Buffer.from('x')), BlockingIOError, expected);
  await a.close();
  await b.close();
});

test('sendall, timeout mode: socket.timeout after about the timeout', async (t) => {
  const socket = fx.socket();
  const [a, b] = await socket.socketpair();
  a.settimeout(TIMEOUT_S);
  const expected = await pyRaises(`a, b = socket.socketpair(); a.settimeout(0.2); a.sendall(b'a' * ${BIG.length})`);
  t.deepEqual(expected, { cls: 'timeout', errno: null, message: 'timed out' });
  await assertTimesOut(t, () => a.sendall(BIG));
  await a.close();
  await b.close();
});
