// The broker's side of session resume, spoken raw: in a resumable session responses are numbered
// along the session, kept until acknowledged and replayed on a resumed stream; a resent call_id
// never runs twice; a resume tells a restarted broker, an expired session and an overflowed
// replay record apart.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { SessionServiceClient, type OpenSessionRequest, type OpenSessionResponse } from '../../proto/gen/sockbroker/v1/session.js';
import { SocketServiceClient, type CallRequest, type CallResponse } from '../../proto/gen/sockbroker/v1/socket.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { withDaemon, publicTempDir } from '../helpers/daemon.js';
import { serve } from '../../daemon/server.js';

interface Stream {
  send(req: Partial<CallRequest>): void;
  next(): Promise<CallResponse>;
  /** Responses that arrive within `ms` (none expected: resolves with what came). */
  quiet(ms: number): Promise<CallResponse[]>;
  cut(): void;
}

class Client {
  readonly sessions: SessionServiceClient;
  readonly sockets: SocketServiceClient;
  readonly md = new grpc.Metadata();
  constructor(address: string) {
    this.sessions = new SessionServiceClient(address, grpc.credentials.createInsecure());
    this.sockets = new SocketServiceClient(address, grpc.credentials.createInsecure(), { channelOverride: this.sessions.getChannel() });
  }
  open(req: Partial<OpenSessionRequest>): Promise<OpenSessionResponse> {
    return new Promise((resolve, reject) =>
      this.sessions.openSession({ resumeSessionId: '', hostNetwork: false, ...req }, (err, res) => {
        if (err) return reject(err);
        this.md.set('sockbroker-session', res!.sessionId);
        resolve(res!);
      }),
    );
  }
  stream(): Stream {
    const s = this.sockets.call(this.md);
    const got: CallResponse[] = [];
    const waiting: Array<() => void> = [];
    s.on('data', (r: CallResponse) => {
      got.push(r);
      waiting.shift()?.();
    });
    s.on('error', () => undefined);
    return {
      send: (req) => s.write(req as CallRequest),
      async next() {
        while (got.length === 0) await new Promise<void>((resolve) => waiting.push(resolve));
        return got.shift()!;
      },
      async quiet(ms) {
        await new Promise((r) => setTimeout(r, ms));
        return got.splice(0);
      },
      cut: () => s.cancel(),
    };
  }
  close(): void {
    this.sessions.close();
  }
}

/** The `lost` reason of a failed OpenSession. */
function lostOf(err: grpc.ServiceError): string | undefined {
  const raw = err.metadata.get('grpc-status-details-bin')[0] as Buffer;
  const info = ErrorInfo.decode(Status.decode(raw).details[0]!.value);
  return info.metadata.lost;
}

test('results are numbered, replayed after a cut until acknowledged, and a resent call never runs twice', async (t) => {
  await withDaemon(async (d) => {
    const c = new Client(d.address);
    const opened = await c.open({ resumable: true });
    t.regex(opened.brokerInstance, /^[0-9a-f]{32}$/);
    let s = c.stream();
    s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
    const first = await s.next();
    t.is(first.seq, 1);
    const { handleA: a, handleB: b } = first.socketpair!;
    // A recv waits on b while the connection is cut: it goes on without a stream.
    s.send({ callId: 2, ackedSeq: 1, recv: { handle: b, bufsize: 64, flags: 0, wantAddress: false } });
    await s.quiet(100);
    s.cut();
    await c.open({ resumeSessionId: opened.sessionId, receivedSeq: 1, brokerInstance: opened.brokerInstance });
    s = c.stream();
    s.send({ callId: 3, sendAll: { handle: a, data: Buffer.from('hello'), flags: 0 } });
    const two = [await s.next(), await s.next()].sort((x, y) => x.callId - y.callId);
    t.deepEqual(two.map((r) => r.callId), [2, 3]);
    t.is(Buffer.from(two[0]!.recv!.data).toString(), 'hello');
    const seqs = two.map((r) => r.seq ?? 0);
    // Cut again before acknowledging them: the next stream starts with both, same numbers.
    s.cut();
    await c.open({ resumeSessionId: opened.sessionId, receivedSeq: 1, brokerInstance: opened.brokerInstance });
    s = c.stream();
    const again = [await s.next(), await s.next()].sort((x, y) => x.callId - y.callId);
    t.deepEqual(again.map((r) => r.seq), seqs, 'replayed with their numbers');
    t.is(Buffer.from(again[0]!.recv!.data).toString(), 'hello');
    const ack = await s.next();
    t.is(ack.callId, 0, 'a bare acknowledgement ends the replay');
    // Resent ids are answered from the record (already replayed): no second send happens.
    s.send({ callId: 2, recv: { handle: b, bufsize: 64, flags: 0, wantAddress: false } });
    s.send({ callId: 3, sendAll: { handle: a, data: Buffer.from('hello'), flags: 0 } });
    s.send({ callId: 4, ackedSeq: Math.max(...seqs), recv: { handle: b, bufsize: 64, flags: 0, wantAddress: false, timeout: 0.3 } });
    const timedOut = await s.next();
    t.is(timedOut.callId, 4);
    t.truthy(timedOut.error, 'nothing more arrived on b: the resent sendall did not run');
    t.deepEqual(await s.quiet(100), []);
    // Once acknowledged, a result leaves the record: a resend of its id is refused, not run.
    s.send({ callId: 3, ackedSeq: timedOut.seq, sendAll: { handle: a, data: Buffer.from('x'), flags: 0 } });
    const refused = await s.next();
    t.is(refused.callId, 3);
    t.regex(refused.error!.message, /answered and acknowledged/);
    // A ping is answered at once and not numbered.
    s.send({ callId: 0, ping: { nonce: 7 } });
    const pong = await s.next();
    t.deepEqual([pong.pong?.nonce, pong.seq ?? 0], [7, 0]);
    s.cut();
    c.close();
  });
});

test('ack_only calls survive a cut: done ones are covered by acked, a resend is not run again', async (t) => {
  await withDaemon(async (d) => {
    const c = new Client(d.address);
    const opened = await c.open({ resumable: true });
    let s = c.stream();
    s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
    const { handleA: a, handleB: b } = (await s.next()).socketpair!;
    s.send({ callId: 2, ackOnly: true, sendAll: { handle: a, data: Buffer.from('one'), flags: 0 } });
    s.send({ callId: 3, ackOnly: true, sendAll: { handle: a, data: Buffer.from('two'), flags: 0 } });
    s.send({ callId: 0, ack: {} });
    t.is((await s.next()).acked, 3);
    s.cut();
    await c.open({ resumeSessionId: opened.sessionId, receivedSeq: 1, brokerInstance: opened.brokerInstance });
    s = c.stream();
    t.is((await s.next()).acked, 3, 'the resumed stream starts with where ack_only calls stand');
    // The client resends what it had not seen acknowledged: nothing runs twice.
    s.send({ callId: 2, ackOnly: true, sendAll: { handle: a, data: Buffer.from('one'), flags: 0 } });
    s.send({ callId: 3, ackOnly: true, sendAll: { handle: a, data: Buffer.from('two'), flags: 0 } });
    s.send({ callId: 4, recv: { handle: b, bufsize: 64, flags: 0, wantAddress: false } });
    t.is(Buffer.from((await s.next()).recv!.data).toString(), 'onetwo');
    s.send({ callId: 5, recv: { handle: b, bufsize: 64, flags: 0, wantAddress: false, timeout: 0.3 } });
    t.truthy((await s.next()).error, 'no second copy');
    s.cut();
    c.close();
  });
});

test('a resume tells a restarted broker from an expired session', async (t) => {
  await withDaemon(
    async (d) => {
      const c = new Client(d.address);
      const opened = await c.open({ resumable: true });
      const err1 = await t.throwsAsync(c.open({ resumeSessionId: opened.sessionId, brokerInstance: 'f'.repeat(32) }));
      t.is(lostOf(err1 as grpc.ServiceError), 'restarted');
      t.regex(err1!.message, /broker restarted/);
      // No stream attached: the 1 s grace runs out.
      await new Promise((r) => setTimeout(r, 1500));
      const err2 = await t.throwsAsync(c.open({ resumeSessionId: opened.sessionId, brokerInstance: opened.brokerInstance }));
      t.is(lostOf(err2 as grpc.ServiceError), 'expired');
      c.close();
    },
    { graceSeconds: 1 },
  );
});

test('the replay record is bounded: past it the oldest results go, counted, and a resume that needs them fails', async (t) => {
  const dir = publicTempDir();
  const log = pino({ level: 'warn' }, pino.destination({ dest: `${dir}/log`, sync: true }));
  const server = await serve({ listen: [{ kind: 'unix', path: `${dir}/sb.sock`, mode: 0o666 }], graceSeconds: 5, limits: { maxReplayEntries: 4 }, log });
  try {
    const c = new Client(`unix:${dir}/sb.sock`);
    const opened = await c.open({ resumable: true });
    let s = c.stream();
    for (let id = 1; id <= 6; id++) s.send({ callId: id, poll: { entries: [], timeout: 0 } });
    for (let i = 0; i < 6; i++) await s.next();
    const session = [...server.sessions.all()][0]!;
    t.is(session.calls!.entries, 4);
    t.is(session.calls!.dropped, 2);
    // Acknowledging shrinks it; a resume that received everything still works.
    s.send({ callId: 0, ackedSeq: 5 });
    s.send({ callId: 7, poll: { entries: [], timeout: 0 } });
    await s.next();
    t.is(session.calls!.entries, 2);
    s.cut();
    const resumed = await c.open({ resumeSessionId: opened.sessionId, receivedSeq: 5, brokerInstance: opened.brokerInstance });
    t.true(resumed.resumed);
    s = c.stream();
    t.deepEqual([(await s.next()).seq, (await s.next()).seq], [6, 7]);
    s.cut();
    // One that missed a dropped result is refused, naming the overflow.
    const err = await t.throwsAsync(c.open({ resumeSessionId: opened.sessionId, receivedSeq: 1, brokerInstance: opened.brokerInstance }));
    t.is(lostOf(err as grpc.ServiceError), 'overflow');
    t.regex(err!.message, /replay record overflowed \(2 unacknowledged results dropped\)/);
    c.close();
  } finally {
    await server.shutdown();
  }
});

test('a resumable Call stream whose client falls silent is ended by the broker (within 15 s)', async (t) => {
  await withDaemon(async (d) => {
    const c = new Client(d.address);
    await c.open({ resumable: true });
    const s = c.sockets.call(c.md);
    s.on('data', () => undefined);
    const t0 = Date.now();
    const err = await new Promise<grpc.ServiceError>((resolve) => s.on('error', resolve));
    const took = Date.now() - t0;
    t.log(`ended after ${took} ms`);
    t.regex(err.details, /no message from the client/);
    t.true(took >= 7000 && took <= 16_000, `after ${took} ms`);
    c.close();
  });
});

test('the record counts what it keeps: a small recv result from a large bufsize keeps only its bytes', async (t) => {
  const dir = publicTempDir();
  const log = pino({ level: 'warn' }, pino.destination({ dest: `${dir}/log`, sync: true }));
  const server = await serve({ listen: [{ kind: 'unix', path: `${dir}/sb.sock`, mode: 0o666 }], graceSeconds: 5, log });
  try {
    const c = new Client(`unix:${dir}/sb.sock`);
    await c.open({ resumable: true });
    const s = c.stream();
    s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
    const { handleA: a, handleB: b } = (await s.next()).socketpair!;
    s.send({ callId: 2, ackedSeq: 1, sendAll: { handle: a, data: Buffer.from('hello'), flags: 0 } });
    await s.next();
    s.send({ callId: 3, ackedSeq: 2, recv: { handle: b, bufsize: 4 << 20, flags: 0, wantAddress: false } });
    t.is(Buffer.from((await s.next()).recv!.data).toString(), 'hello');
    const calls = [...server.sessions.all()][0]!.calls!;
    t.is(calls.entries, 1);
    t.true(calls.bytes < 1024, `${calls.bytes} bytes counted`);
    const kept: CallResponse[] = [];
    calls.replay((r) => kept.push(r));
    t.true(kept[0]!.recv!.data.buffer.byteLength <= Buffer.poolSize, 'not the 4 MiB allocation the recv read into');
    s.cut();
    c.close();
  } finally {
    await server.shutdown();
  }
});
