// The SDK's thin RPC layer: one session, one long-lived Call stream carrying every socket
// operation in envelopes (matched by call_id, so calls pipeline freely), unary calls for the
// rest. Deals in plain request/response messages; the socket module is built on top.
//
// The session is resumable: call ids and the broker's response numbers run along the session,
// the broker keeps each result until acknowledged, and this side keeps each call until answered.
// When the connection drops (or goes silent: the Call stream is pinged end to end), it
// reconnects with jittered backoff, resumes the session, reads the replayed results and resends
// what was not answered; the broker never runs a call twice. Only a session the broker no longer
// has (grace period over, broker restarted, another identity) is lost.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { SessionServiceClient, type GetModuleInfoResponse, type OpenSessionResponse } from '../proto/gen/sockbroker/v1/session.js';
import { SocketServiceClient, type CallRequest, type CallResponse, type DataRequest, type DataResponse } from '../proto/gen/sockbroker/v1/socket.js';
import { decodeDataResponse, encodeDataRequest } from '../proto/codec/data.js';
import { decodeCallResponse, encodeCallRequest, encodeCalls } from '../proto/codec/call.js';
import { NetdbServiceClient, type GetAddrInfoRequest, type GetAddrInfoResponse } from '../proto/gen/sockbroker/v1/netdb.js';
import { fromServiceError, fromStatus, sessionLost, SessionLostError, timeout as TimeoutExc, type LostReason } from './errors.js';

const SESSION_METADATA = 'sockbroker-session';
/** Added to a socket's timeout to make the client-side deadline: the broker enforces the timeout. */
const DEADLINE_MARGIN_MS = 5000;
// Liveness: a ping after PING_AFTER_MS without a message from the broker; the connection counts
// as dead after DEAD_AFTER_MS of silence. Checked every TICK_MS: a silent peer is found within
// DEAD_AFTER_MS + TICK_MS + TICK_MS (8 s).
const TICK_MS = 1000;
const PING_AFTER_MS = 2000;
const DEAD_AFTER_MS = 6000;
/** Acknowledge at least every this many responses (else with the next request or tick). */
const ACK_EVERY = 64;
/** Reconnect backoff: jittered exponential from the first to the last delay; each attempt's deadline. */
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2000;
const ATTEMPT_MS = 3000;

/** Operation names: the fields of the CallRequest/CallResponse oneofs. */
export type Op = Exclude<keyof CallRequest, 'callId' | 'cancel' | 'ack' | 'ackOnly' | 'ackedSeq' | 'ping' | 'batch'>;
type Req<K extends Op> = NonNullable<CallRequest[K]>;
type Res<K extends Op> = NonNullable<CallResponse[K & keyof CallResponse]>;

/** How to reach and authenticate to a broker. */
export interface TransportOptions {
  /** TLS for tcp: addresses: the CA that signed the broker's certificate, and a client certificate for mTLS. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
  /** Bearer token for a remote broker (sent as `authorization: Bearer TOKEN`). */
  token?: string;
  /** Ask for sockets in the broker host's network namespace (needs a grant for a caller in another one). */
  hostNetwork?: boolean;
  /**
   * Take the real fd of each socket the broker's policy lets leave it (local callers on a unix:
   * address; default true): the socket then runs in this process. false keeps every socket on
   * the broker.
   */
  handoff?: boolean;
}

/** What the session's events carry (Transport is an EventEmitter: 'reconnecting', 'resumed', 'lost'). */
export interface ReconnectingEvent {
  /** Why the connection was given up. */
  reason: string;
}
export interface ResumedEvent {
  /** Reconnect attempts it took, and how long the session was without a connection. */
  attempts: number;
  downMs: number;
}

interface Pending {
  resolve: (res: any, tag?: number) => void;
  reject: (err: Error, tag?: number) => void;
  /** An ack_only call's: passed back to its callback (resolve and reject are that callback). */
  tag?: number;
  op: Op;
  /** The request, kept until answered: a resumed stream resends it. */
  msg: CallRequest;
  /** Written on some stream (else it waits for the connection: its timer is the bare timeout). */
  sent: boolean;
  timeoutMs?: number;
  timer?: NodeJS.Timeout;
  /** Set when the caller aborted: the reason to reject with once the broker confirms. */
  cancelReason?: Error;
  /** The calls its abort signal cancels, this one among them until it settles (see #watch). */
  watched?: Set<number>;
}

/** What `capture` took from the promise it ran for (read right after `new Promise(capture)`). */
const captured: { resolve: (res: any) => void; reject: (err: Error) => void } = { resolve: () => undefined, reject: () => undefined };
function capture(resolve: (res: any) => void, reject: (err: Error) => void): void {
  captured.resolve = resolve;
  captured.reject = reject;
}

/** A Pending with every field set (one object shape for all calls: #settle's loads stay monomorphic). */
function pending(resolve: Pending['resolve'], reject: Pending['reject'], tag: number | undefined, op: Op, msg: CallRequest, sent: boolean): Pending {
  return { resolve, reject, tag, op, msg, sent, timeoutMs: undefined, timer: undefined, cancelReason: undefined, watched: undefined };
}

/** A pending call no longer waits: its timer and its abort signal's hold on it go. */
function release(p: Pending): void {
  clearTimeout(p.timer);
  p.watched?.delete(p.msg.callId);
}

/** Rejects a pending call (an ack_only call's callback gets its tag too). */
function fail(p: Pending, err: Error): void {
  p.reject(err, p.tag);
}

export class Transport extends EventEmitter {
  // One channel for all three services (the same connection, so the same identity); replaced on
  // each reconnect, since a connection gone silent may still look open to it.
  #sessionClient!: SessionServiceClient;
  #socketClient!: SocketServiceClient;
  #netdbClient!: NetdbServiceClient;
  readonly #newChannel: () => void;
  readonly #metadata = new grpc.Metadata();
  readonly #pending = new Map<number, Pending>();
  /**
   * The pending calls of each abort signal: one listener per signal, not one added and removed
   * per call (a socket's signal serves every read it makes).
   */
  readonly #bySignal = new WeakMap<AbortSignal, Set<number>>();
  /** ack_only calls not yet acknowledged, in increasing call_id order. */
  readonly #ackOnly: number[] = [];
  /** Open Data streams: cancelled when the transport closes. */
  readonly #data = new Set<grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse>>();
  /** The Call stream; null while reconnecting. */
  #stream: grpc.ClientDuplexStream<CallRequest | Buffer, CallResponse> | null = null;
  /**
   * Requests written in this turn of the event loop: they go at the end of it (a
   * process.nextTick, before any I/O, so no later than grpc-js would send them), several as one
   * batch encoded in one buffer. grpc-js has one message in flight per stream: a request
   * written behind another would wait for that one's HTTP/2 write to complete. null when
   * nothing waits. A recv or an ack_only call (whose data its caller copied, see callAckOnly)
   * is encoded then, every other request at once: its bytes may be the caller's.
   */
  #queue: Array<CallRequest | Buffer> | null = null;
  #nextId = 1;
  #lost: SessionLostError | undefined;
  #closed = false;
  sessionId = '';
  readonly #hostNetwork: boolean;
  /** The broker process the session lives in, and its grace period. */
  #instance = '';
  #graceMs = 30_000;
  /** Highest response seq received, and the last one told to the broker. */
  #rxSeq = 0;
  #ackTold = 0;
  // Liveness: a message arrived since the last tick; when one last did (as of a tick).
  #rxSeen = false;
  #lastRx = 0;
  #pingOut = false;
  #tick: NodeJS.Timeout | undefined;
  #downSince = 0;
  /** Resolved when the session has a stream again (or is lost). */
  #up: { promise: Promise<void>; resolve: () => void } | null = null;

  private constructor(target: string, opts: TransportOptions) {
    super();
    this.#hostNetwork = Boolean(opts.hostNetwork);
    if (opts.token) this.#metadata.set('authorization', `Bearer ${opts.token}`);
    const options: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc-node.flow_control_window': 4 << 20,
      // The session's own backoff paces reconnects; the channel's must not add minutes to it.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      // A channel of its own: a reconnect must not reuse the old connection.
      'grpc.use_local_subchannel_pool': 1,
      // channelz's per-message bookkeeping (a Date per message) serves no one here.
      'grpc.enable_channelz': 0,
    };
    const creds = opts.tls
      ? grpc.credentials.createSsl(opts.tls.ca ?? null, opts.tls.key ?? null, opts.tls.cert ?? null, opts.tls.serverName ? { checkServerIdentity: () => undefined } : {})
      : grpc.credentials.createInsecure();
    if (opts.tls?.serverName) options['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.#newChannel = () => {
      this.#sessionClient = new SessionServiceClient(target, creds, options);
      const channelOverride = this.#sessionClient.getChannel();
      this.#socketClient = new SocketServiceClient(target, creds, { ...options, channelOverride });
      this.#netdbClient = new NetdbServiceClient(target, creds, { ...options, channelOverride });
    };
    this.#newChannel();
  }

  /** Connects, opens a session and its Call stream. */
  static async open(target: string, opts: TransportOptions = {}): Promise<Transport> {
    const t = new Transport(target, opts);
    try {
      const res = await t.#unary<OpenSessionResponse>((cb) =>
        t.#sessionClient.openSession({ resumeSessionId: '', hostNetwork: t.#hostNetwork, resumable: true, batchResponses: true }, t.#metadata, cb),
      );
      t.sessionId = res.sessionId;
      t.#instance = res.brokerInstance;
      t.#graceMs = res.graceSeconds * 1000;
      t.#metadata.set(SESSION_METADATA, res.sessionId);
      t.#openStream();
      t.#tick = setInterval(() => t.#onTick(), TICK_MS).unref();
    } catch (err) {
      t.#sessionClient.close();
      throw err;
    }
    return t;
  }

  #openStream(): void {
    // The hot messages (sendall, recv and its result) with the hand-written codec.
    const stream = this.#socketClient.makeBidiStreamRequest<CallRequest | Buffer, CallResponse>(
      '/sockbroker.v1.SocketService/Call',
      (m: CallRequest | Buffer) => (Buffer.isBuffer(m) ? m : encodeCallRequest(m)),
      decodeCallResponse,
      this.#metadata,
    );
    // Events of a stream given up on (a reconnect replaced it) change nothing. A batch's
    // responses are settled in order, as if each had come alone: the calls they let go on write
    // in this same turn, so their requests leave together too.
    stream.on('data', (res: CallResponse) => {
      if (this.#stream !== stream) return;
      if (res.batch) for (const one of res.batch.responses) this.#settle(one);
      else this.#settle(res);
    });
    stream.on('error', (err: grpc.ServiceError) => this.#stream === stream && this.#broken(err));
    stream.on('end', () => this.#stream === stream && this.#down('the broker ended the Call stream'));
    this.#stream = stream;
    this.#queue = null;
    this.#lastRx = Date.now();
    this.#pingOut = false;
  }

  #settle(res: CallResponse): void {
    this.#rxSeen = true;
    const seq = res.seq;
    if (seq) {
      // A replayed result already received: once is all.
      if (seq <= this.#rxSeq) return;
      this.#rxSeq = seq;
      if (seq - this.#ackTold >= ACK_EVERY) this.#write({ callId: 0, ackedSeq: seq } as CallRequest);
    }
    const p = this.#pending.get(res.callId);
    if (p) {
      this.#pending.delete(res.callId);
      release(p);
      if (res.error) fail(p, p.cancelReason && res.error.code === grpc.status.CANCELLED ? p.cancelReason : fromStatus(res.error));
      else if (p.tag !== undefined) p.resolve(null, p.tag);
      else p.resolve((res as any)[p.op]);
    }
    // After the call's own result: a failed ack_only call is answered before an `acked` covering it.
    const acked = Number(res.acked ?? 0);
    while (this.#ackOnly.length > 0 && this.#ackOnly[0]! <= acked) {
      const id = this.#ackOnly.shift()!;
      const q = this.#pending.get(id);
      if (!q) continue;
      this.#pending.delete(id);
      q.resolve(null, q.tag);
    }
  }

  /** Writes on the Call stream (carrying the acknowledgement); false while there is none. */
  #write(msg: CallRequest): boolean {
    const stream = this.#stream;
    if (!stream) return false;
    msg.ackedSeq = this.#ackTold = this.#rxSeq;
    if (!this.#queue) {
      this.#queue = [];
      process.nextTick(this.#flushTurn);
    }
    this.#queue.push(msg.recv !== undefined || msg.ackOnly ? msg : encodeCallRequest(msg));
    return true;
  }

  /**
   * Writes what this turn queued: one message, or batches within the bounds. One function for
   * every turn; a queue is only ever for the current stream (#openStream drops what was left).
   */
  readonly #flushTurn = (): void => {
    const queue = this.#queue;
    const stream = this.#stream;
    if (!stream || !queue) return;
    this.#queue = null;
    for (const m of encodeCalls(queue)) stream.write(m);
  };

  /** The Call stream failed: a status about the session ends it; anything else is the connection. */
  #broken(err: grpc.ServiceError): void {
    const e = fromServiceError(err);
    if (e instanceof SessionLostError && e.reason) return this.#lose(e.reason, e.message.replace(/^sockbroker: /, ''));
    this.#down(err.details || `gRPC code ${err.code}`);
  }

  /** Liveness and acknowledgement, once a tick. */
  #onTick(): void {
    if (!this.#stream) return;
    const now = Date.now();
    if (this.#rxSeen) {
      this.#rxSeen = false;
      this.#lastRx = now;
      this.#pingOut = false;
    }
    const silent = now - this.#lastRx;
    if (silent >= DEAD_AFTER_MS) return this.#down(`no message from the broker for ${silent} ms (pinged)`);
    if (silent >= PING_AFTER_MS && !this.#pingOut) {
      this.#pingOut = true;
      this.#write({ callId: 0, ping: { nonce: now } } as CallRequest);
    } else if (this.#rxSeq > this.#ackTold) this.#write({ callId: 0 } as CallRequest);
  }

  /** The connection is gone: reconnect and resume (calls wait; new ones queue). */
  #down(why: string): void {
    const stream = this.#stream;
    if (!stream || this.#closed || this.#lost) return;
    this.#stream = null;
    stream.cancel();
    // Data streams do not resume (see README): what was on them fails, sockets go on without.
    for (const call of this.#data) call.cancel();
    this.#sessionClient.close();
    this.#newChannel();
    this.#downSince = Date.now();
    let resolve!: () => void;
    this.#up = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    this.emit('reconnecting', { reason: why } satisfies ReconnectingEvent);
    void this.#resume();
  }

  async #resume(): Promise<void> {
    let delay = BACKOFF_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed || this.#lost) return;
      const left = this.#downSince + this.#graceMs - Date.now();
      if (left <= 0) return this.#lose('expired', `no connection to the broker within the session's grace period (${this.#graceMs / 1000} s)`);
      try {
        const res = await new Promise<OpenSessionResponse>((resolve, reject) =>
          this.#sessionClient.openSession(
            { resumeSessionId: this.sessionId, hostNetwork: this.#hostNetwork, resumable: true, receivedSeq: this.#rxSeq, brokerInstance: this.#instance },
            this.#metadata,
            { deadline: Date.now() + Math.min(ATTEMPT_MS, left) },
            (err, r) => (err ? reject(err) : resolve(r!)),
          ),
        );
        if (this.#closed || this.#lost) return;
        if (res.brokerInstance !== this.#instance) return this.#lose('restarted', 'the broker restarted (its sessions ended with it)');
        this.#ackTold = this.#rxSeq;
        this.#openStream();
        // Everything not answered goes again, in call_id order: the broker runs only what it never saw.
        for (const p of this.#pending.values()) {
          this.#write(p.msg);
          if (!p.sent) {
            p.sent = true;
            if (p.timeoutMs !== undefined) {
              clearTimeout(p.timer);
              p.timer = setTimeout(() => this.#cancel(p.msg.callId, new TimeoutExc('timed out')), p.timeoutMs + DEADLINE_MARGIN_MS);
            }
          }
          if (p.cancelReason) this.#write({ callId: p.msg.callId, cancel: {} } as CallRequest);
        }
        this.#up?.resolve();
        this.#up = null;
        this.emit('resumed', { attempts: attempt, downMs: Date.now() - this.#downSince } satisfies ResumedEvent);
        return;
      } catch (err) {
        const e = fromServiceError(err as grpc.ServiceError);
        if (e instanceof SessionLostError && e.reason) return this.#lose(e.reason, e.message.replace(/^sockbroker: /, ''));
        const code = (err as grpc.ServiceError).code;
        if (code === grpc.status.UNAUTHENTICATED || code === grpc.status.PERMISSION_DENIED) return this.#lose('identity', e.message.replace(/^sockbroker: /, ''));
      }
      // Full jitter within [delay/2, delay]; the timer keeps the process alive only while calls wait.
      await new Promise<void>((r) => {
        const timer = setTimeout(r, delay * (0.5 + Math.random() / 2));
        if (this.#pending.size === 0) timer.unref();
      });
      delay = Math.min(delay * 2, BACKOFF_MAX_MS);
    }
  }

  /** The session is gone: every call, pending or later, fails with why. */
  #lose(reason: LostReason, why: string): void {
    if (this.#lost || this.#closed) return;
    const lost = (this.#lost = sessionLost(reason, `sockbroker: session lost (${reason}): ${why.replace(/^session lost: /, '')}`));
    clearInterval(this.#tick);
    const stream = this.#stream;
    this.#stream = null;
    stream?.cancel();
    for (const call of this.#data) call.cancel();
    for (const p of this.#pending.values()) {
      release(p);
      fail(p, lost);
    }
    this.#pending.clear();
    this.#ackOnly.length = 0;
    this.#up?.resolve();
    this.#up = null;
    this.emit('lost', lost);
  }

  /** The session's state: 'open', 'reconnecting', 'lost' or 'closed'. */
  get state(): 'open' | 'reconnecting' | 'lost' | 'closed' {
    return this.#closed ? 'closed' : this.#lost ? 'lost' : this.#stream ? 'open' : 'reconnecting';
  }

  /** @internal Drops the connection as if the network had (tests of resume). */
  _drop(): void {
    this.#down('dropped on request');
  }

  /**
   * Runs one operation on the Call stream. `timeoutS` is the socket timeout sent with it (the
   * broker enforces it); the client gives up only after it plus a margin. While the session
   * reconnects a call waits for it, up to its bare timeout. An aborted `signal` cancels the call
   * on the broker too.
   */
  call<K extends Op>(op: K, req: Req<K>, timeoutS?: number | null, signal?: AbortSignal): Promise<Res<K>> {
    if (this.#lost) return Promise.reject(this.#lost);
    if (this.#closed) return Promise.reject(new SessionLostError('sockbroker: connection closed'));
    const callId = this.#nextId++;
    if (signal?.aborted) return Promise.reject(signal.reason);
    // One shared executor (no closure and context per call): it hands over resolve and reject.
    const promise = new Promise<Res<K>>(capture);
    const msg = { callId, ackedSeq: 0, [op]: req } as CallRequest;
    const p = pending(captured.resolve, captured.reject, undefined, op, msg, this.#stream !== null);
    if (typeof timeoutS === 'number' && timeoutS > 0) {
      p.timeoutMs = timeoutS * 1000;
      p.timer = setTimeout(() => this.#cancel(callId, new TimeoutExc('timed out')), p.sent ? p.timeoutMs + DEADLINE_MARGIN_MS : p.timeoutMs);
    }
    // Cancellation is a request: the broker answers either CANCELLED or, if the call had
    // already completed, its result, which is then delivered (nothing read is lost).
    if (signal) p.watched = this.#watch(signal, callId);
    this.#pending.set(callId, p);
    this.#write(msg);
    return promise;
  }

  /**
   * An operation answered only by the stream's cumulative acknowledgement if it succeeds (its
   * own response if it fails): one message less per call. No timeout or cancellation. `req`
   * (its bytes too) must not change afterwards: it is encoded at the end of the turn, and kept
   * for a resend. `done(null, tag)` once it succeeded, `done(err, tag)` if it failed.
   */
  callAckOnly<K extends Op>(op: K, req: Req<K>, done: (err: Error | null, tag: number) => void, tag: number): void {
    if (this.#lost) return done(this.#lost, tag);
    if (this.#closed) return done(new SessionLostError('sockbroker: connection closed'), tag);
    const callId = this.#nextId++;
    // Kept until `acked` covers it: a resumed stream resends it (the broker runs it once).
    const msg = { callId, ackedSeq: 0, ackOnly: true, [op]: req } as CallRequest;
    // A callback, not a promise: no promise, executor or reaction closures per pipelined call.
    const cb = done as Pending['resolve'];
    this.#pending.set(callId, pending(cb, cb, tag, op, msg, this.#stream !== null));
    this.#ackOnly.push(callId);
    this.#write(msg);
  }

  /** Asks the broker to acknowledge the ack_only calls sent so far as soon as they are done
   * (it otherwise tells with its next response): for a caller about to wait for them. */
  requestAck(): void {
    if (this.#ackOnly.length > 0 && !this.#lost && !this.#closed) this.#write({ callId: 0, ack: {} } as CallRequest);
  }

  /** Adds `callId` to the calls `signal` cancels when it aborts. */
  #watch(signal: AbortSignal, callId: number): Set<number> {
    let ids = this.#bySignal.get(signal);
    if (!ids) {
      const calls = (ids = new Set<number>());
      this.#bySignal.set(signal, calls);
      signal.addEventListener(
        'abort',
        () => {
          for (const id of calls) this.#requestCancel(id, signal.reason);
          calls.clear();
        },
        { once: true },
      );
    }
    ids.add(callId);
    return ids;
  }

  #requestCancel(callId: number, reason: Error): void {
    const p = this.#pending.get(callId);
    if (!p) return;
    p.cancelReason = reason;
    // Without a stream it goes with the resend (see #resume).
    if (!this.#lost && !this.#closed) this.#write({ callId, cancel: {} } as CallRequest);
  }

  /** Gives up on a call the broker does not answer (its deadline passed): rejects at once. */
  #cancel(callId: number, reason: Error): void {
    const p = this.#pending.get(callId);
    if (!p) return;
    this.#pending.delete(callId);
    release(p);
    if (p.sent && !this.#lost && !this.#closed) this.#write({ callId, cancel: {} } as CallRequest);
    fail(p, reason);
  }

  /** A new Data stream (a socket's bulk stream), with the hand-written codec of its hot messages. */
  dataStream(): grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse> {
    if (this.#lost) throw this.#lost;
    if (this.#closed) throw new SessionLostError('sockbroker: connection closed');
    const call = this.#socketClient.makeBidiStreamRequest<DataRequest | Buffer, DataResponse>('/sockbroker.v1.SocketService/Data', encodeDataRequest, decodeDataResponse, this.#metadata);
    this.#data.add(call);
    const forget = (): void => void this.#data.delete(call);
    call.once('close', forget).once('error', forget);
    return call;
  }

  #unary<T>(start: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      start((err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    });
  }

  /**
   * A unary call of the session (netdb, module info): while reconnecting it waits for the
   * session; one that fails because the connection dropped goes again once it is back.
   */
  async #sessionUnary<T>(start: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<T> {
    for (let tries = 0; ; tries++) {
      if (this.#up) await this.#up.promise;
      if (this.#lost) throw this.#lost;
      try {
        return await new Promise<T>((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res))));
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        const dropped = (code === grpc.status.UNAVAILABLE || code === grpc.status.CANCELLED) && !(err as grpc.ServiceError).metadata?.get('grpc-status-details-bin')?.length;
        if (!dropped || tries >= 3 || this.#closed) throw fromServiceError(err as grpc.ServiceError);
        // The Call stream notices the drop too; wait for its reconnect (or give it a moment).
        if (!this.#up) await new Promise((r) => setTimeout(r, BACKOFF_FIRST_MS << tries));
      }
    }
  }

  moduleInfo(): Promise<GetModuleInfoResponse> {
    return this.#sessionUnary((cb) => this.#sessionClient.getModuleInfo({}, this.#metadata, cb));
  }

  getAddrInfo(req: GetAddrInfoRequest): Promise<GetAddrInfoResponse> {
    return this.#sessionUnary((cb) => this.#netdbClient.getAddrInfo(req, this.#metadata, cb));
  }

  /** A unary NetdbService call by its method name (getNameInfo, getHostByName, ...). */
  netdb<Res>(method: string, req: object): Promise<Res> {
    const fn = (this.#netdbClient as unknown as Record<string, Function>)[method]!;
    return this.#sessionUnary((cb) => fn.call(this.#netdbClient, req, this.#metadata, cb));
  }

  /**
   * A server-streaming call on this session's channel, with its metadata (identity, session),
   * taking an encoded request and decoding responses with `deserialize` (capture's hot path).
   */
  serverStream<Res>(method: string, request: Buffer, deserialize: (b: Buffer) => Res): grpc.ClientReadableStream<Res> {
    if (this.#lost) throw this.#lost;
    if (this.#closed) throw new SessionLostError('sockbroker: connection closed');
    return this.#sessionClient.makeServerStreamRequest(method, (b: Buffer) => b, deserialize, request, this.#metadata);
  }

  /** Ends the session (its sockets close) and the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (!this.#lost) {
      await this.#unary((cb) => this.#sessionClient.closeSession({}, this.#metadata, { deadline: Date.now() + ATTEMPT_MS }, cb)).catch(() => undefined);
    }
    this.#closed = true;
    clearInterval(this.#tick);
    this.#stream?.end();
    this.#stream = null;
    this.#up?.resolve();
    for (const call of this.#data) call.cancel();
    this.#data.clear();
    for (const p of this.#pending.values()) {
      release(p);
      fail(p, sessionLost('closed', 'sockbroker: connection closed'));
    }
    this.#pending.clear();
    this.#sessionClient.close();
  }
}
