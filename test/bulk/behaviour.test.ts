// The Data stream's behaviour beyond byte counts: modes and timeouts, a peer's reset, a reader
// or a peer that stops (flow control bounds what the daemon buffers, both ways), close during a
// transfer, a client killed mid-transfer, and makefile over it.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { BlockingIOError, BrokenPipeError, ConnectionResetError, OSError, timeout as SocketTimeout, connect, type Socket, type SocketModule } from '../../client/index.js';
import { startDaemon, publicTempDir, worldCopy, DIST, until, type Daemon } from '../helpers/daemon.js';
import { tcpPair } from '../socket/helpers/fixture.js';

const MiB = 1 << 20;
let d: Daemon;

test.before(async () => {
  d = await startDaemon({ logLevel: 'debug' });
});
test.after.always(async () => {
  await d?.stop();
});

/** A session of the test's own (each session's buffered_bytes quota limits its Data streams). */
async function session(t: ExecutionContext): Promise<SocketModule> {
  const socket = await connect(d.address);
  t.teardown(() => socket.disconnect());
  return socket;
}

/** The daemon's debug lines for `event` about handle `h` of the session. */
function events(socket: SocketModule, event: string, h: number): Array<Record<string, number>> {
  return d.logs.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l)).filter((e) => e.handle === h && e.session === socket.sessionId.slice(0, 8));
}

/** Waits for the daemon's line saying handle `h` opened a Data stream. */
function opened(socket: SocketModule, h: number): Promise<boolean> {
  return until(() => events(socket, 'data.open', h).length === 1, 10_000);
}

/** Two large reads: the socket's read-ahead is on from then. */
async function startReadAhead(c: Socket, from: Socket): Promise<void> {
  await from.sendall(randomBytes(2 * MiB));
  let got = 0;
  while (got < 2 * MiB) got += (await c.recv(MiB)).length;
}

test('timeout mode: a recv served by the read-ahead raises socket.timeout, and later bytes still come', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  c.settimeout(30);
  await startReadAhead(c, a);
  c.settimeout(0.3);
  t.true(await opened(socket, c.fileno()), 'the reads went through a Data stream');
  const err = await t.throwsAsync(c.recv(MiB), { instanceOf: SocketTimeout });
  t.is(err?.message, 'timed out');
  c.settimeout(30);
  await a.sendall(Buffer.from('after'));
  t.is((await c.recv(MiB)).toString(), 'after');
  for (const s of [c, a, l]) await s.close();
});

test('non-blocking mode after reading ahead: every byte once, then BlockingIOError', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  await startReadAhead(c, a);
  const data = randomBytes(3 * MiB + 1);
  await a.sendall(data);
  c.setblocking(false);
  const parts: Buffer[] = [];
  let got = 0;
  while (got < data.length) {
    try {
      const part = await c.recv(MiB);
      parts.push(Buffer.from(part));
      got += part.length;
    } catch (err) {
      if (!(err instanceof BlockingIOError)) throw err;
      await socket.poll([c], socket.POLLIN, 10);
    }
  }
  t.true(Buffer.concat(parts).equals(data));
  await t.throwsAsync(c.recv(MiB), { instanceOf: BlockingIOError });
  for (const s of [c, a, l]) await s.close();
});

test('a sendall on the Data stream to a peer that does not read raises socket.timeout in timeout mode', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  c.settimeout(0.5);
  const err = await t.throwsAsync(c.sendall(Buffer.alloc(64 * MiB)), { instanceOf: SocketTimeout });
  t.is(err?.message, 'timed out');
  t.true(await opened(socket, c.fileno()), 'the sendall went through a Data stream');
  for (const s of [c, a, l]) await s.close();
});

/** Makes `s` reset its connection when closed (SO_LINGER on, zero seconds). */
async function resetOnClose(socket: SocketModule, s: Socket): Promise<void> {
  const linger = Buffer.alloc(8);
  linger.writeInt32LE(1, 0);
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger);
}

test('a peer reset mid-transfer: the read-ahead delivers the bytes before it, then ConnectionResetError, then b""', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  await startReadAhead(c, a);
  const data = randomBytes(MiB + 5);
  await a.sendall(data);
  await resetOnClose(socket, a);
  await a.close();
  const parts: Buffer[] = [];
  const err = await t.throwsAsync(async () => {
    for (;;) {
      const part = await c.recv(MiB);
      if (part.length === 0) throw new Error('EOF instead of a reset');
      parts.push(Buffer.from(part));
    }
  }, { instanceOf: ConnectionResetError });
  t.is(err?.errno, 104);
  const got = Buffer.concat(parts);
  t.true(data.subarray(0, got.length).equals(got), 'what came is a prefix of what was sent');
  t.is((await c.recv(MiB)).length, 0, 'then end of stream, as python3 on Linux');
  for (const s of [c, l]) await s.close();
});

test('a peer reset mid-sendall: a later sendall (or the next call) raises ConnectionResetError or BrokenPipeError', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  const chunk = randomBytes(MiB);
  await c.sendall(chunk);
  await resetOnClose(socket, a);
  t.is((await a.recv(1000)).length > 0, true);
  await a.close();
  let raised: unknown;
  for (let i = 0; i < 1000 && !raised; i++) {
    try {
      await c.sendall(chunk);
    } catch (err) {
      raised = err;
    }
  }
  t.true(raised instanceof ConnectionResetError || raised instanceof BrokenPipeError, `raised ${String(raised)}`);
  for (const s of [c, l]) await s.close();
});

test('a client that stops reading: the daemon buffers at most its windows while the peer is held back', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  await startReadAhead(c, a);
  // The peer writes until nothing moves any more: the read-ahead stopped at its credit, the
  // kernel's buffers filled behind it, and the peer's sends wait.
  a.setblocking(false);
  const chunk = Buffer.alloc(256 * 1024, 7);
  let sent = 0;
  for (;;) {
    try {
      sent += await a.send(chunk);
    } catch (err) {
      if (!(err instanceof BlockingIOError)) throw err;
      if ((await socket.poll([a], socket.POLLOUT, 1)).length === 0) break;
    }
  }
  const h = c.fileno();
  await c.close();
  t.true(await until(() => events(socket, 'data.end', h).length === 1, 10_000), 'the Data stream ended with the socket');
  const [end] = events(socket, 'data.end', h);
  t.log(`peer sent ${(sent / MiB).toFixed(1)} MiB before it was held back; the daemon buffered at most ${end!.maxBuffered} bytes (bound ${end!.bound})`);
  t.true(end!.bound <= 8 * MiB);
  t.true(end!.maxBuffered <= end!.bound, `buffered ${end!.maxBuffered} > bound ${end!.bound}`);
  t.true(sent > 2 * MiB, 'the peer did fill the way');
  for (const s of [a, l]) await s.close();
});

test('a peer that does not read: back-to-back blocking sendall calls stop within the window, the daemon buffering at most its windows', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  const chunk = Buffer.alloc(MiB, 3);
  // Each resolves once its bytes are on the way (pipelined); the next follows at once. With the
  // peer not reading, the kernel's buffers fill and the calls stop resolving.
  let accepted = 0;
  let pending: Promise<unknown> | undefined;
  while (!pending) {
    const call = c.sendall(chunk).then(() => true);
    const r = await Promise.race([call, new Promise<false>((res) => setTimeout(() => res(false), 2000))]);
    if (r) accepted += chunk.length;
    else pending = call.catch(() => undefined); // the close below fails it (EBADF)
    t.true(accepted < 64 * MiB, 'sendall calls stop resolving');
  }
  const h = c.fileno();
  await a.close();
  await c.close().catch(() => undefined);
  await pending;
  t.true(await until(() => events(socket, 'data.end', h).length === 1, 10_000), 'the Data stream ended with the socket');
  const [end] = events(socket, 'data.end', h);
  t.log(`${(accepted / MiB).toFixed(0)} MiB of sendall calls resolved; the daemon buffered at most ${end!.maxBuffered} bytes (bound ${end!.bound})`);
  t.true(end!.maxBuffered <= end!.bound, `buffered ${end!.maxBuffered} > bound ${end!.bound}`);
  t.true(accepted >= 4 * MiB, 'the calls did run ahead of the peer');
  await l.close();
});

test('close during a transfer: a waiting read-ahead recv and a stalled sendall raise EBADF', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  await startReadAhead(c, a);
  const recv = t.throwsAsync(c.recv(MiB), { instanceOf: OSError });
  const [x, y, l2] = await tcpPair(socket);
  // x's sendall stalls: y never reads.
  const send = t.throwsAsync(x.sendall(Buffer.alloc(64 * MiB)), { instanceOf: OSError });
  await opened(socket, x.fileno());
  await Promise.all([c.close(), x.close()]);
  t.is((await recv)?.errno, 9);
  t.is((await send)?.errno, 9);
  // The daemon still serves the others.
  await a.sendall(Buffer.from('ok'));
  for (const s of [a, l, y, l2]) await s.close();
});

test('makefile readline over a large stream goes through the read-ahead and keeps every line', async (t) => {
  const socket = await session(t);
  const [c, a, l] = await tcpPair(socket);
  const lines: Buffer[] = [];
  for (let i = 0; i < 40_000; i++) lines.push(Buffer.concat([randomBytes(i % 251).map((b) => (b === 10 ? 11 : b)), Buffer.from('\n')]));
  const all = Buffer.concat(lines);
  const f = a.makefile('rb') as import('../../client/makefile.js').BufferedReader;
  const sending = c.sendall(all).then(() => c.shutdown(socket.SHUT_WR));
  const got: Buffer[] = [];
  for (;;) {
    const line = await f.readline();
    if (line.length === 0) break;
    got.push(line);
  }
  await sending;
  t.is(got.length, lines.length);
  t.true(Buffer.concat(got).equals(all));
  t.true(await opened(socket, a.fileno()), 'the file read through a Data stream');
  await f.close();
  for (const s of [c, a, l]) await s.close();
});

/** A client that moves bytes through two sockets of its session, says "ready" and keeps going. */
const PUMP_CLIENT = (clientPath: string): string => `
import { connect } from ${JSON.stringify(clientPath)};
const socket = await connect(process.env.ADDR);
const l = await socket.socket();
await l.bind(['127.0.0.1', 0]);
await l.listen();
const c = await socket.socket();
await c.connect(await l.getsockname());
const [a] = await l.accept();
const chunk = Buffer.alloc(1 << 20, 1);
(async () => { for (;;) await c.sendall(chunk); })();
let got = 0;
let said = false;
for (;;) {
  got += (await a.recv(1 << 20)).length;
  if (!said && got > (8 << 20)) { said = true; console.log('ready'); }
}
`;

test('a client SIGKILLed mid-transfer leaves the daemon at its fd baseline after the grace period', async (t) => {
  t.timeout(60_000);
  const warm = await connect(d.address);
  await (await warm.socket()).close();
  await warm.disconnect();
  const baseline = d.fdCount();
  const dir = publicTempDir('sb-bulk-');
  const file = join(dir, 'pump.mjs');
  const build = process.env.SOCKBROKER_WORLD_COPY ? join(worldCopy(), 'dist') : DIST;
  writeFileSync(file, PUMP_CLIENT(join(build, 'client', 'index.js')));
  try {
    const child = spawn(process.execPath, [file], { env: { ...process.env, ADDR: d.address }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => (out += b));
    child.stderr!.on('data', (b: Buffer) => (err += b));
    const ready = await Promise.race([until(() => out.includes('ready'), 40_000), exited.then(() => false)]);
    t.true(ready, `the client moved 8 MiB: ${out} ${err}`);
    t.true(d.fdCount() > baseline, 'its sockets hold daemon fds');
    child.kill('SIGKILL');
    await exited;
    t.true(await until(() => d.fdCount() <= baseline, 20_000), `fd count back to ${baseline}, is ${d.fdCount()}`);
    t.is(d.proc.exitCode, null, 'the daemon still runs');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
