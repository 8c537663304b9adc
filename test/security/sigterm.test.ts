// SIGTERM drains: with 100 calls blocked in the broker (recv, recvfrom, accept, poll across four
// SDK clients, plus unary calls outside the Call stream), every call ends at once with a clear
// error — the SDK's SessionLostError saying the broker is shutting down — none hangs, and the
// daemon exits 0 within a few seconds.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, SessionLostError, type SocketModule, type Socket } from '../../client/index.js';
import { SocketServiceClient } from '../../proto/gen/sockbroker/v1/socket.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { startDaemon } from '../helpers/daemon.js';

const CLIENTS = 4;
/** Blocking calls per client: 3 accepts, 16 recv/recvfrom, 6 polls. */
const PER_CLIENT = 25;
/** What the daemon says to every pending call when it drains (daemon/server.ts shutdown()). */
const SHUTDOWN = /broker shutting down/;

/** 25 calls that block until the broker ends them: nothing ever connects or sends. */
async function blockingCalls(socket: SocketModule): Promise<Array<Promise<unknown>>> {
  const listeners: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await socket.socket();
    await s.bind(['127.0.0.1', 0]);
    await s.listen();
    listeners.push(s);
  }
  const pairs: Socket[] = [];
  for (let i = 0; i < 8; i++) pairs.push(...(await socket.socketpair()));
  const udp = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await udp.bind(['127.0.0.1', 0]);
  // A few in timeout mode (a long timeout), the rest blocking (None).
  pairs[0]!.settimeout(600);
  listeners[0]!.settimeout(600);
  const calls: Array<Promise<unknown>> = [
    ...listeners.map((s) => s.accept()),
    ...pairs.map((s, i) => (i % 4 === 3 ? s.recvfrom(100) : s.recv(100))),
    ...Array.from({ length: 5 }, (_, i) => socket.poll([pairs[i]!, udp], socket.POLLIN)),
    socket.poll([udp], socket.POLLIN, 600),
  ];
  // One more round trip on the same Call stream: the calls before it reached the broker.
  await listeners[0]!.getsockname();
  return calls;
}

interface Outcome {
  kind: 'answered' | 'error' | 'hang';
  err?: unknown;
  ms: number;
}

function settle(p: Promise<unknown>, t0: () => number, limitMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<Outcome>((resolve) => (timer = setTimeout(() => resolve({ kind: 'hang', ms: limitMs }), limitMs)));
  return Promise.race([
    p.then(() => ({ kind: 'answered' as const, ms: performance.now() - t0() }), (err: unknown) => ({ kind: 'error' as const, err, ms: performance.now() - t0() })),
    hang,
  ]).finally(() => clearTimeout(timer));
}

test('SIGTERM ends 100 in-flight blocking calls with a clear error and the daemon exits 0', async (t) => {
  t.timeout(90_000);
  const d = await startDaemon();
  const sockets: SocketModule[] = [];
  const unaryClients: SocketServiceClient[] = [];
  try {
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < CLIENTS; i++) {
      const socket = await connect(d.address);
      sockets.push(socket);
      calls.push(...(await blockingCalls(socket)));
    }
    t.is(calls.length, CLIENTS * PER_CLIENT);
    // Unary calls block in the broker too (grpcurl's way in): a recv on a socket of each session.
    const unary: Array<Promise<unknown>> = [];
    for (const socket of sockets) {
      const client = new SocketServiceClient(d.address, grpc.credentials.createInsecure());
      unaryClients.push(client);
      const md = new grpc.Metadata();
      md.set('sockbroker-session', socket.sessionId);
      const [a] = await socket.socketpair();
      unary.push(new Promise((resolve, reject) => {
        client.recv({ handle: a.fileno(), bufsize: 10, flags: 0, wantAddress: false }, md, (err, res) => (err ? reject(err) : resolve(res)));
      }));
    }
    // A KeepAlive stream (how a client in another language holds its session) ends too.
    const keepAliveClient = new grpc.Client(d.address, grpc.credentials.createInsecure());
    unaryClients.push(keepAliveClient as SocketServiceClient);
    const kmd = new grpc.Metadata();
    kmd.set('sockbroker-session', sockets[0]!.sessionId);
    const keepAlive = keepAliveClient.makeBidiStreamRequest('/sockbroker.v1.SessionService/KeepAlive', (b: Buffer) => b, (b: Buffer) => b, kmd);
    const keepAliveEnd = new Promise<grpc.ServiceError | null>((resolve) => {
      keepAlive.on('error', (err: grpc.ServiceError) => resolve(err));
      keepAlive.on('status', (s: grpc.StatusObject) => resolve(s.code === grpc.status.OK ? null : (s as unknown as grpc.ServiceError)));
    });
    // Its echo shows the stream attached to the session.
    const echoed = new Promise<boolean>((resolve) => {
      keepAlive.once('data', () => resolve(true));
      keepAliveEnd.then(() => resolve(false));
    });
    keepAlive.on('data', () => undefined);
    keepAlive.write(Buffer.from([0x08, 0x01]));
    t.true(await echoed, 'the KeepAlive stream echoed before SIGTERM');
    const fdsBefore = d.fdCount();
    let start = 0;
    const outcomes = Promise.all([...calls, ...unary].map((p) => settle(p, () => start, 15_000)));
    start = performance.now();
    d.proc.kill('SIGTERM');
    const results = await outcomes;
    const code = await d.waitExit(15_000);
    const exitMs = performance.now() - start;

    const sdk = results.slice(0, calls.length);
    const raw = results.slice(calls.length);
    const messages = new Map<string, number>();
    for (const r of sdk) {
      const key = r.kind === 'error' ? `${(r.err as Error).constructor.name}: ${(r.err as Error).message}` : r.kind;
      messages.set(key, (messages.get(key) ?? 0) + 1);
    }
    t.log(`${results.length} calls ended within ${Math.max(...results.map((r) => r.ms)).toFixed(0)} ms of SIGTERM; daemon exited ${code} after ${exitMs.toFixed(0)} ms (${fdsBefore} fds before)`);
    t.log(`SDK outcomes: ${JSON.stringify(Object.fromEntries(messages))}`);
    t.is(sdk.filter((r) => r.kind === 'hang').length, 0, 'no SDK call hangs');
    t.is(sdk.filter((r) => r.kind === 'answered').length, 0, 'no call was answered as if data had come');
    for (const r of sdk) {
      t.true(r.err instanceof SessionLostError, `a SessionLostError, not ${String(r.err)}`);
      t.regex((r.err as Error).message, SHUTDOWN);
    }
    // Unary calls: a status with the same clear reason.
    for (const r of raw) {
      t.is(r.kind, 'error', `a unary call ended: ${r.kind}`);
      const err = r.err as grpc.ServiceError;
      const bin = err.metadata?.get('grpc-status-details-bin')[0];
      const info = bin instanceof Buffer ? ErrorInfo.decode(Status.decode(bin).details[0]!.value) : undefined;
      t.log(`unary: ${grpc.status[err.code]} ${err.details} ${JSON.stringify(info?.metadata ?? {})}`);
      t.is(err.code, grpc.status.UNAVAILABLE);
      t.regex(err.details, SHUTDOWN);
    }
    const ka = await Promise.race([keepAliveEnd, sleep(10_000).then(() => 'hang' as const)]);
    t.not(ka, 'hang', 'the KeepAlive stream ended');
    if (ka !== 'hang') {
      t.log(`KeepAlive stream: ${ka ? `${grpc.status[ka.code]} ${ka.details}` : 'OK'}`);
      t.is(ka?.code, grpc.status.UNAVAILABLE);
      t.regex(ka?.details ?? '', SHUTDOWN);
    }
    t.is(code, 0, 'the daemon exits 0');
    t.true(exitMs < 5000, `it exits within a few seconds (${exitMs.toFixed(0)} ms)`);
    const ended = d.logs.filter((l) => l.includes('"event":"session.end"') && l.includes('broker shutting down')).length;
    t.is(ended, CLIENTS, 'every session ended by the drain');
    t.true(await d.logged((l) => l.includes('"event":"stopped"')));
    // A call after the broker is gone fails clearly, without hanging.
    const after = await settle(sockets[0]!.socket(), () => start, 10_000);
    t.is(after.kind, 'error');
    t.true(after.err instanceof SessionLostError, String(after.err));
  } finally {
    for (const c of unaryClients) c.close();
    await Promise.all(sockets.map((s) => s.disconnect().catch(() => undefined)));
    await d.stop();
  }
});
