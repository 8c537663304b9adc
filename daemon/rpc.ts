// Glue between grpc-js calls and the handlers: resolving the caller's session, running one
// handler for a unary call or for an envelope on the Call stream, and turning failures into
// rich statuses. One handler per operation serves both paths.
import type { Metadata, ServerUnaryCall, sendUnaryData, ServerDuplexStream, ServiceError } from '@grpc/grpc-js';
import { status as Code } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BrokerError, sessionError, toBrokerError, toServiceError, toStatus } from './errors.js';
import { isTimeout } from '../native/errno.js';
import { remoteIdentity, type Identity } from './identity.js';
import { tokenDigest } from './policy-file.js';
import type { Session, Sessions } from './sessions.js';
import type { CallContext } from './socket-ops.js';
import type { CallRequest, CallResponse } from '../proto/gen/sockbroker/v1/socket.js';
import { countCall, countQuota, outcomeOf } from './metrics.js';
import { CallState } from './call-state.js';
import { Cancellation } from '../native/cancel.js';
import { encodeCallResponse, encodeCalls } from '../proto/codec/call.js';

export const SESSION_METADATA = 'sockbroker-session';
/** A resumable session's Call stream silent for two of these is ended (its client pings every 2-3 s). */
const CLIENT_SILENCE_CHECK_MS = 7500;

export class CancelledError extends BrokerError {
  constructor(why = 'call cancelled') {
    super(Code.CANCELLED, 'CANCELLED', why, { kind: 'cancelled' });
  }
}

/** A connection as the daemon accepted it. */
export type Peer =
  | { kind: 'local'; identity: Identity; netns: string | null }
  | { kind: 'remote'; identity: Identity | null; address: string; tcp?: TcpEnds };

/** A TCP connection's two ends, as the daemon accepted it. */
export interface TcpEnds {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/**
 * Connections by tag (what call.getPeer() returns), and how a call's identity is found: local
 * callers by the credentials read at accept; remote callers by their verified certificate, or
 * else by a bearer token (`authorization: Bearer TOKEN` metadata) listed in the config.
 */
export class Peers {
  readonly #byTag = new Map<string, Peer>();
  /** sha256(token) hex → token name; replaced on reload. */
  tokens = new Map<string, string>();

  add(tag: string, peer: Peer): void {
    this.#byTag.set(tag, peer);
  }

  remove(tag: string): Peer | undefined {
    const peer = this.#byTag.get(tag);
    this.#byTag.delete(tag);
    return peer;
  }

  values(): IterableIterator<Peer> {
    return this.#byTag.values();
  }

  peerOf(call: { getPeer(): string }): Peer {
    const peer = this.#byTag.get(call.getPeer());
    if (!peer) throw sessionError('caller identity unknown', Code.UNAUTHENTICATED);
    return peer;
  }

  identityOf(call: { getPeer(): string; metadata: Metadata }): Identity {
    const peer = this.peerOf(call);
    if (peer.identity) return peer.identity;
    const auth = call.metadata.get('authorization')[0];
    const m = typeof auth === 'string' ? /^Bearer ([\x21-\x7e]{1,4096})$/.exec(auth) : null;
    const name = m ? this.tokens.get(tokenDigest(m[1]!)) : undefined;
    if (!name) throw sessionError('remote callers need a client certificate from the configured CA or a valid bearer token', Code.UNAUTHENTICATED);
    return remoteIdentity({ token: name });
  }
}

export function identityOf(peers: Peers, call: { getPeer(): string; metadata: Metadata }): Identity {
  return peers.identityOf(call);
}

export function sessionOf(sessions: Sessions, peers: Peers, call: { getPeer(): string; metadata: Metadata }): Session {
  const identity = peers.identityOf(call);
  const id = call.metadata.get(SESSION_METADATA)[0];
  if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id)) {
    throw sessionError(`missing or malformed ${SESSION_METADATA} metadata`, Code.UNAUTHENTICATED);
  }
  return sessions.get(id, identity);
}

/** The session a stream names; null once the stream has been ended with why it has none. */
export function streamSession(sessions: Sessions, peers: Peers, stream: ServerDuplexStream<unknown, unknown>): Session | null {
  try {
    return sessionOf(sessions, peers, stream);
  } catch (err) {
    stream.emit('error', toServiceError(toBrokerError(err)));
    return null;
  }
}

/** Runs `finish` however the stream ends (each way may come, in any order); a client's half-close gets ours. */
export function onStreamEnd(stream: ServerDuplexStream<unknown, unknown>, finish: () => void): void {
  stream.on('end', () => {
    finish();
    stream.end();
  });
  stream.on('cancelled', finish);
  stream.on('error', finish);
  stream.on('close', finish);
}

type Handler<Req, Res> = (ctx: CallContext, req: Req) => Promise<Res>;

/** What a tolerant streaming decoder yields for a message it cannot decode. */
export interface Malformed {
  malformed: string;
}

export function isMalformed(req: unknown): req is Malformed {
  return typeof (req as Malformed | undefined)?.malformed === 'string' && Object.keys(req as object).length === 1;
}

/**
 * The service definition with decoders that never throw on its streaming methods: an
 * undecodable message reaches the handler as a Malformed, which ends the stream itself. When
 * grpc-js's decoder throws instead, it ends the stream while messages decoded before the bad one
 * are still being handled, and a reply written for one of them after that end loses the
 * status: the client never learns that the stream is over (it hangs until its deadline).
 */
export function tolerantStreams<D extends Record<string, any>>(def: D): D {
  const out: Record<string, any> = { ...def };
  for (const [name, m] of Object.entries(def)) {
    if (!m.requestStream) continue;
    out[name] = {
      ...m,
      requestDeserialize: (b: Buffer): unknown => {
        try {
          return m.requestDeserialize(b);
        } catch (err) {
          return { malformed: String((err as Error)?.message ?? err) } satisfies Malformed;
        }
      },
    };
  }
  return out as D;
}

/** The status ending a stream that carried an undecodable message. */
export function malformedError(what: string, req: Malformed): Partial<ServiceError> {
  return toServiceError(new BrokerError(Code.INVALID_ARGUMENT, 'MALFORMED_MESSAGE', `malformed ${what}: ${req.malformed}`, { kind: 'value' }));
}

function logUnexpected(log: Logger, err: unknown, op: string): void {
  if (!(err instanceof BrokerError) && !(err as { errno?: unknown }).errno && !isTimeout(err)) log.error({ event: 'internal', op, err: String((err as Error)?.stack ?? err) });
}

/** A grpc-js unary handler running `handler` in the caller's session. */
export function unary<Req, Res>(
  sessions: Sessions,
  peers: Peers,
  log: Logger,
  op: string,
  handler: Handler<Req, Res>,
  /** Pending calls' abort functions: shutdown fails each with its reason. */
  live?: Set<(reason: BrokerError) => void>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    let ctx: CallContext;
    const ac = new Cancellation();
    const abort = (reason: BrokerError): void => ac.abort(reason);
    try {
      call.on('cancelled', () => ac.abort(new CancelledError()));
      ctx = { session: sessionOf(sessions, peers, call), signal: ac };
    } catch (err) {
      const e = toBrokerError(err);
      countCall(op, outcomeOf(e));
      callback(toServiceError(e));
      return;
    }
    live?.add(abort);
    handler(ctx, call.request).finally(() => live?.delete(abort)).then(
      (res) => {
        countCall(op, 'ok');
        if (call.cancelled) ctx.onUndelivered?.();
        else callback(null, res);
      },
      (err) => {
        logUnexpected(log, err, op);
        const e = toBrokerError(err);
        countCall(op, outcomeOf(e));
        callback(toServiceError(e));
      },
    );
  };
}

/** Writes `responses` as few messages as the batch bounds allow (encodeCalls); a response alone goes as itself. */
function writeBatched(stream: ServerDuplexStream<CallRequest, CallResponse>, responses: CallResponse[]): void {
  if (responses.length === 1) return void stream.write(responses[0]!);
  // Already encoded: the stream's serializer writes a Buffer as it is.
  for (const m of encodeCalls(responses.map(encodeCallResponse))) stream.write(m as unknown as CallResponse);
}

/** The Call stream: envelopes in, results out in completion order, per-call cancellation. */
export function callStream(
  sessions: Sessions,
  peers: Peers,
  log: Logger,
  maxPending: number,
  handlers: Record<string, Handler<any, any>>,
  /** Open streams' abort functions: shutdown fails every pending call with its reason. */
  live: Set<(reason: BrokerError) => void>,
): (stream: ServerDuplexStream<CallRequest, CallResponse>) => void {
  const ops = Object.keys(handlers);
  return (stream) => {
    const session = streamSession(sessions, peers, stream);
    if (!session) return;
    // A resumable session keeps its calls, acknowledgement and replay record across streams; it
    // has one Call stream at a time: a new one replaces the last, whose connection may be dead
    // without the broker knowing yet.
    const st = session.calls ?? new CallState(false);
    const resumable = st.resumable;
    st.endStream?.('replaced by a resumed Call stream');
    sessions.attach(session);
    let open = true;
    // A client that reads batches gets what is written in one turn (the reactor's wake-up, a
    // request's calls) as one message, at its end (process.nextTick: before any I/O): one
    // message per turn instead of one per response on both sides.
    let queue: CallResponse[] | null = null;
    const flush = (): void => {
      const q = queue;
      queue = null;
      if (q && open && !stream.cancelled && !stream.destroyed) writeBatched(stream, q);
    };
    const send = session.batchResponses
      ? (res: CallResponse): void => {
          if (queue) return void queue.push(res);
          queue = [res];
          process.nextTick(flush);
        }
      : (res: CallResponse): void => {
          if (open && !stream.cancelled && !stream.destroyed) stream.write(res);
        };
    // Ending the stream: what was written before goes first.
    const fail = (err: Partial<ServiceError>): void => {
      flush();
      stream.emit('error', err);
    };
    // Shutdown: the pending calls end and so does the stream, with the reason as its status (the
    // client fails every call it still waits for with it).
    const shutdown = (reason: BrokerError): void => {
      st.abortAll(reason);
      if (open) fail(toServiceError(reason));
    };
    live.add(shutdown);
    const finish = (): void => {
      if (!open) return;
      open = false;
      live.delete(shutdown);
      if (st.out === send) st.out = st.endStream = null;
      clearInterval(watch);
      // A resumable session's calls go on: their results wait in the record for a resume.
      if (!resumable) st.abortAll(new CancelledError('stream ended'));
      sessions.detach(session);
    };
    st.out = send;
    st.endStream = (why, lost) => {
      if (open) fail(toServiceError(sessionError(why, Code.UNAVAILABLE, lost)));
    };
    // A resumable session's client speaks at least every few seconds (acknowledgements, pings):
    // a stream silent for two checks is a dead connection, ended so the grace period starts.
    let heard = true;
    const watch = resumable
      ? setInterval(() => {
          if (!heard) st.endStream?.(`no message from the client for ${(2 * CLIENT_SILENCE_CHECK_MS) / 1000} s`);
          heard = false;
        }, CLIENT_SILENCE_CHECK_MS).unref()
      : undefined;
    // What the client has not acknowledged goes again, in order, then where ack_only calls stand.
    if (resumable && (st.replay(send) > 0 || st.lastAckOnly > 0)) send({ callId: 0, acked: (st.ackSent = st.ackedNow()) } as CallResponse);
    // Every response carries the acknowledgement: a pipelined sendall needs no reply of its own.
    const write = (res: CallResponse): void => {
      if (st.lastAckOnly > 0) res.acked = st.ackSent = st.ackedNow();
      if (resumable && st.record(res) > 0) {
        countQuota('replay_record');
        if (st.dropped === 1) log.warn({ event: 'replay.dropped', session: session.id.slice(0, 8), entries: st.entries, bytes: st.bytes });
      }
      st.out?.(res);
    };
    const flushAck = (): void => {
      if (st.ackWanted > 0 && st.ackedNow() >= st.ackWanted) {
        st.ackWanted = 0;
        if (st.ackedNow() > st.ackSent) st.out?.({ callId: 0, acked: (st.ackSent = st.ackedNow()) } as CallResponse);
      }
    };
    const refuse = (callId: number, code: Code, reason: string, message: string): void =>
      write({ callId, error: toStatus(new BrokerError(code, reason, message, { kind: 'value' })) } as CallResponse);
    const deliver = (callId: number, ctx: CallContext, res: Partial<CallResponse>, ackOnly: boolean): void => {
      st.pending.delete(callId);
      if (resumable ? session.ended : !open || stream.cancelled || stream.destroyed) {
        ctx.onUndelivered?.();
        return;
      }
      if (ackOnly) {
        st.unacked.delete(callId);
        if (!res.error) return flushAck();
      }
      write({ callId, ...res } as CallResponse);
      flushAck();
    };
    stream.on('data', (req: CallRequest | Malformed) => {
      if (!open) return;
      heard = true;
      if (isMalformed(req)) {
        // The stream ends here (finish() runs from the 'error' listener): nothing more is written.
        fail(malformedError('CallRequest', req));
        return;
      }
      // A batch is how the client's transport wrote them (bounded by the decoder): each call
      // runs as if it had come alone, in order.
      if (req.batch) {
        if (resumable && req.ackedSeq) st.ack(req.ackedSeq);
        for (const one of req.batch.calls) {
          if (one.batch) refuse(one.callId, Code.INVALID_ARGUMENT, 'NESTED_BATCH', 'a batch inside a batch');
          else onCall(one);
        }
        return;
      }
      onCall(req);
    });
    const onCall = (req: CallRequest): void => {
      const callId = req.callId;
      if (resumable && req.ackedSeq) st.ack(req.ackedSeq);
      if (req.cancel) {
        st.pending.get(callId)?.ac.abort(new CancelledError());
        return;
      }
      if (req.ack) {
        if (st.lastAckOnly === 0) return;
        st.ackWanted = st.lastAckOnly;
        if (st.ackedNow() >= st.ackWanted && st.ackedNow() <= st.ackSent) st.ackWanted = 0; // already told
        return flushAck();
      }
      if (req.ping) return send({ callId: 0, pong: { nonce: req.ping.nonce } } as CallResponse);
      const op = ops.find((name) => (req as any)[name] !== undefined);
      if (!op) {
        if (resumable && callId === 0) return; // a bare acknowledgement
        return refuse(callId, Code.INVALID_ARGUMENT, 'EMPTY_CALL', 'call names no operation');
      }
      const ackOnly = req.ackOnly === true;
      if (resumable) {
        if (callId <= st.maxCallId) {
          // A resend after a reconnect never runs twice: a running call is answered when done,
          // a recorded result was replayed, a done ack_only call is covered by `acked`.
          if (st.pending.has(callId) || st.recorded(callId) || (ackOnly && callId <= st.lastAckOnly)) return;
          return refuse(callId, Code.INVALID_ARGUMENT, 'DUPLICATE_CALL_ID', `call_id ${callId} was answered and acknowledged already`);
        }
        st.maxCallId = callId;
      } else if (st.pending.has(callId)) return refuse(callId, Code.INVALID_ARGUMENT, 'DUPLICATE_CALL_ID', `call_id ${callId} is already pending`);
      if (st.pending.size >= maxPending) {
        countQuota('pending_calls');
        return refuse(callId, Code.RESOURCE_EXHAUSTED, 'TOO_MANY_CALLS', `at most ${maxPending} calls may be pending on one stream`);
      }
      if (ackOnly) {
        if (callId <= st.lastAckOnly) return refuse(callId, Code.INVALID_ARGUMENT, 'ACK_ORDER', `ack_only call_id ${callId} does not exceed ${st.lastAckOnly}`);
        st.lastAckOnly = callId;
        st.unacked.add(callId);
      }
      // No AbortController per call: most calls are never cancelled, and one costs microseconds.
      const ac = new Cancellation();
      const ctx: CallContext = { session, signal: ac };
      st.pending.set(callId, { ac, ctx });
      handlers[op]!(ctx, (req as any)[op]).then(
        (res) => {
          countCall(op, 'ok');
          deliver(callId, ctx, { [op]: res }, ackOnly);
        },
        (err) => {
          logUnexpected(log, err, op);
          const e = toBrokerError(err);
          countCall(op, outcomeOf(e));
          deliver(callId, ctx, { error: toStatus(e) }, ackOnly);
        },
      );
    };
    onStreamEnd(stream, finish);
  };
}
