// The Call stream's cumulative acknowledgement: an ack_only call gets no response of its own when
// it succeeds (a later response's `acked` covers it), a failing one is answered before any
// `acked` covering it, an AckRequest is answered once they are done, and ids must increase.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { SessionServiceClient } from '../../proto/gen/sockbroker/v1/session.js';
import { SocketServiceClient, type CallRequest, type CallResponse } from '../../proto/gen/sockbroker/v1/socket.js';
import { withDaemon } from '../helpers/daemon.js';

/** A session's Call stream with a queue of its responses (and of its messages: a batch is one). */
async function open(address: string, opts: { batchResponses?: boolean } = {}) {
  const sessions = new SessionServiceClient(address, grpc.credentials.createInsecure());
  const { sessionId } = await new Promise<{ sessionId: string }>((resolve, reject) =>
    sessions.openSession({ resumeSessionId: '', hostNetwork: false, ...opts }, (err, res) => (err ? reject(err) : resolve(res))),
  );
  const md = new grpc.Metadata();
  md.set('sockbroker-session', sessionId);
  const sockets = new SocketServiceClient(address, grpc.credentials.createInsecure(), { channelOverride: sessions.getChannel() });
  const stream = sockets.call(md);
  const got: CallResponse[] = [];
  const messages: CallResponse[] = [];
  const waiting: Array<() => void> = [];
  stream.on('data', (r: CallResponse) => {
    messages.push(r);
    for (const one of r.batch ? r.batch.responses : [r]) {
      got.push(one);
      waiting.shift()?.();
    }
  });
  const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  return {
    ended,
    messages,
    send: (req: Partial<CallRequest>) => stream.write(req as CallRequest),
    async next(): Promise<CallResponse> {
      if (got.length === 0) await new Promise<void>((resolve) => waiting.push(resolve));
      return got.shift()!;
    },
    close() {
      stream.end();
      sessions.close();
    },
  };
}

test('ack_only sendall: no reply on success, the error first on failure, acked on the next reply', async (t) => {
  await withDaemon(async (d) => {
    const s = await open(d.address);
    s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
    const pair = (await s.next()).socketpair!;
    const [a, b] = [pair.handleA, pair.handleB];
    s.send({ callId: 2, ackOnly: true, sendAll: { handle: a, data: Buffer.from('ping'), flags: 0 } });
    s.send({ callId: 3, ackOnly: true, sendAll: { handle: 999, data: Buffer.from('x'), flags: 0 } });
    s.send({ callId: 4, recv: { handle: b, bufsize: 16, flags: 0, wantAddress: false } });
    const failed = await s.next();
    t.is(Number(failed.callId), 3, 'the failing ack_only call is answered');
    t.truthy(failed.error);
    const recv = await s.next();
    t.is(Number(recv.callId), 4);
    t.is(Buffer.from(recv.recv!.data).toString(), 'ping', 'the acknowledged sendall was done');
    t.is(Number(recv.acked), 3, 'acked covers both ack_only calls');
    // An AckRequest is answered (call_id 0) once the ack_only calls before it are done.
    s.send({ callId: 5, ackOnly: true, sendAll: { handle: a, data: Buffer.from('pong'), flags: 0 } });
    s.send({ callId: 0, ack: {} });
    const ack = await s.next();
    t.is(Number(ack.callId), 0);
    t.is(Number(ack.acked), 5);
    // ack_only ids must increase.
    s.send({ callId: 2, ackOnly: true, sendAll: { handle: a, data: Buffer.from('x'), flags: 0 } });
    const refused = await s.next();
    t.is(Number(refused.callId), 2);
    t.is(refused.error?.code, grpc.status.INVALID_ARGUMENT);
    s.close();
  });
});

test('a batch runs its calls as if they had come one by one; a batch inside one ends the stream', async (t) => {
  await withDaemon(async (d) => {
    const s = await open(d.address);
    s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
    const pair = (await s.next()).socketpair!;
    const [a, b] = [pair.handleA, pair.handleB];
    s.send({
      callId: 0,
      batch: {
        calls: [
          { callId: 2, ackOnly: true, sendAll: { handle: a, data: Buffer.from('ping'), flags: 0 } },
          { callId: 3, ackOnly: true, sendAll: { handle: 999, data: Buffer.from('x'), flags: 0 } },
          { callId: 4, recv: { handle: b, bufsize: 16, flags: 0, wantAddress: false } },
        ] as CallRequest[],
      },
    });
    const failed = await s.next();
    t.is(Number(failed.callId), 3, 'the failing ack_only call is answered');
    t.truthy(failed.error);
    const recv = await s.next();
    t.is(Number(recv.callId), 4);
    t.is(Buffer.from(recv.recv!.data).toString(), 'ping', 'the batch ran in order');
    // The recv may finish before the sendall's completion is counted: an AckRequest then tells.
    if (Number(recv.acked ?? 0) < 3) {
      s.send({ callId: 0, ack: {} });
      t.is(Number((await s.next()).acked), 3, 'acked covers both ack_only calls');
    }
    s.send({ callId: 0, batch: { calls: [{ callId: 5, batch: { calls: [] } }] as CallRequest[] } });
    const err = await s.ended;
    t.is(err.code, grpc.status.INVALID_ARGUMENT);
    t.regex(err.details, /batch inside a batch/);
    s.close();
  });
});

test('a session opened with batch_responses gets what the broker writes in one turn as one message; others never a batch', async (t) => {
  await withDaemon(async (d) => {
    for (const batchResponses of [true, false]) {
      const s = await open(d.address, { batchResponses });
      s.send({ callId: 1, socketpair: { family: 1, type: 1, protocol: 0 } });
      const pair = (await s.next()).socketpair!;
      const first = s.messages.length;
      // Three calls that complete at once, in one request: their results are written in one turn.
      s.send({
        callId: 0,
        batch: {
          calls: [
            { callId: 2, getSockName: { handle: pair.handleA } },
            { callId: 3, getSockName: { handle: 999 } },
            { callId: 4, getSockName: { handle: pair.handleB } },
          ] as CallRequest[],
        },
      });
      const results = [await s.next(), await s.next(), await s.next()];
      t.deepEqual(results.map((r) => Number(r.callId)), [2, 3, 4], 'in order');
      t.truthy(results[0]!.getSockName && results[2]!.getSockName);
      t.truthy(results[1]!.error, 'the bad handle fails alone');
      const messages = s.messages.slice(first);
      if (batchResponses) {
        t.is(messages.length, 1, 'one message');
        t.is(messages[0]!.batch?.responses.length, 3);
        t.is(Number(messages[0]!.callId), 0);
        t.is(messages[0]!.seq, undefined);
      } else {
        t.is(messages.length, 3);
        t.true(messages.every((m) => m.batch === undefined));
      }
      s.close();
    }
  });
});
