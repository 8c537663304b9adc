// The SDK's thin RPC layer: one session, one long-lived Call stream carrying every socket
// operation in envelopes (matched by call_id, so calls pipeline freely), unary calls for the
// rest. Deals in plain request/response messages; the socket module is built on top.
import * as grpc from '@grpc/grpc-js';
import { SessionServiceClient, type GetModuleInfoResponse } from '../proto/gen/sockbroker/v1/session.js';
import { SocketServiceClient, type CallRequest, type CallResponse, type DataRequest, type DataResponse } from '../proto/gen/sockbroker/v1/socket.js';
import { decodeDataResponse, encodeDataRequest } from '../proto/codec/data.js';
import { NetdbServiceClient, type GetAddrInfoRequest, type GetAddrInfoResponse } from '../proto/gen/sockbroker/v1/netdb.js';
import { fromServiceError, fromStatus, SessionLostError, timeout as TimeoutExc } from './errors.js';

const SESSION_METADATA = 'sockbroker-session';
/** Added to a socket's timeout to make the client-side deadline: the broker enforces the timeout. */
const DEADLINE_MARGIN_MS = 5000;

/** Operation names: the fields of the CallRequest/CallResponse oneofs. */
export type Op = Exclude<keyof CallRequest, 'callId' | 'cancel' | 'ack' | 'ackOnly'>;
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

interface Pending {
  resolve: (res: any) => void;
  reject: (err: Error) => void;
  op: Op;
  timer?: NodeJS.Timeout;
  /** Set when the caller aborted: the reason to reject with once the broker confirms. */
  cancelReason?: Error;
  /** Removes the abort listener (a socket's signal outlives its calls). */
  unlisten?: () => void;
}

export class Transport {
  readonly #sessionClient: SessionServiceClient;
  readonly #socketClient: SocketServiceClient;
  readonly #netdbClient: NetdbServiceClient;
  readonly #metadata = new grpc.Metadata();
  readonly #pending = new Map<number, Pending>();
  /** ack_only calls not yet acknowledged, in increasing call_id order. */
  readonly #ackOnly: number[] = [];
  /** Open Data streams: cancelled when the transport closes. */
  readonly #data = new Set<grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse>>();
  #stream!: grpc.ClientDuplexStream<CallRequest, CallResponse>;
  #nextId = 1;
  #lost: Error | undefined;
  #closed = false;
  sessionId = '';

  private constructor(target: string, opts: TransportOptions) {
    if (opts.token) this.#metadata.set('authorization', `Bearer ${opts.token}`);
    const options: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc-node.flow_control_window': 4 << 20,
    };
    const creds = opts.tls
      ? grpc.credentials.createSsl(opts.tls.ca ?? null, opts.tls.key ?? null, opts.tls.cert ?? null, opts.tls.serverName ? { checkServerIdentity: () => undefined } : {})
      : grpc.credentials.createInsecure();
    if (opts.tls?.serverName) options['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.#sessionClient = new SessionServiceClient(target, creds, options);
    // One channel for all three services: the same connection, so the same identity.
    const channelOverride = this.#sessionClient.getChannel();
    this.#socketClient = new SocketServiceClient(target, creds, { ...options, channelOverride });
    this.#netdbClient = new NetdbServiceClient(target, creds, { ...options, channelOverride });
  }

  /** Connects, opens a session and its Call stream. */
  static async open(target: string, opts: TransportOptions = {}): Promise<Transport> {
    const t = new Transport(target, opts);
    try {
      const res = await t.#unary<{ sessionId: string }>((cb) =>
        t.#sessionClient.openSession({ resumeSessionId: '', hostNetwork: Boolean(opts.hostNetwork) }, t.#metadata, cb),
      );
      t.sessionId = res.sessionId;
      t.#metadata.set(SESSION_METADATA, res.sessionId);
      t.#openStream();
    } catch (err) {
      t.#sessionClient.close();
      throw err;
    }
    return t;
  }

  #openStream(): void {
    const stream = this.#socketClient.call(this.#metadata);
    stream.on('data', (res: CallResponse) => this.#settle(res));
    stream.on('error', (err: grpc.ServiceError) => this.#fail(err));
    stream.on('end', () => this.#fail(undefined));
    this.#stream = stream;
  }

  #settle(res: CallResponse): void {
    const p = this.#pending.get(res.callId);
    if (p) {
      this.#pending.delete(res.callId);
      clearTimeout(p.timer);
      p.unlisten?.();
      if (res.error) p.reject(p.cancelReason && res.error.code === grpc.status.CANCELLED ? p.cancelReason : fromStatus(res.error));
      else p.resolve((res as any)[p.op]);
    }
    // After the call's own result: a failed ack_only call is answered before an `acked` covering it.
    const acked = Number(res.acked ?? 0);
    while (this.#ackOnly.length > 0 && this.#ackOnly[0]! <= acked) {
      const id = this.#ackOnly.shift()!;
      const q = this.#pending.get(id);
      if (!q) continue;
      this.#pending.delete(id);
      q.resolve({});
    }
  }

  #fail(err: grpc.ServiceError | undefined): void {
    if (this.#closed) return;
    const why = err && err.code !== grpc.status.CANCELLED ? fromServiceError(err).message.replace(/^sockbroker: /, '') : 'the broker ended the session stream';
    this.#lost = new SessionLostError(`sockbroker: session lost: ${why}`);
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.unlisten?.();
      p.reject(this.#lost);
    }
    this.#pending.clear();
  }

  /**
   * Runs one operation on the Call stream. `timeoutS` is the socket timeout sent with it (the
   * broker enforces it); the client gives up only after it plus a margin. An aborted `signal`
   * cancels the call on the broker too.
   */
  call<K extends Op>(op: K, req: Req<K>, timeoutS?: number | null, signal?: AbortSignal): Promise<Res<K>> {
    if (this.#lost) return Promise.reject(this.#lost);
    if (this.#closed) return Promise.reject(new SessionLostError('sockbroker: connection closed'));
    const callId = this.#nextId++;
    return new Promise<Res<K>>((resolve, reject) => {
      const p: Pending = { resolve, reject, op };
      if (typeof timeoutS === 'number' && timeoutS > 0) {
        p.timer = setTimeout(() => this.#cancel(callId, new TimeoutExc('timed out')), timeoutS * 1000 + DEADLINE_MARGIN_MS);
      }
      if (signal) {
        if (signal.aborted) return reject(signal.reason);
        // Cancellation is a request: the broker answers either CANCELLED or, if the call had
        // already completed, its result, which is then delivered (nothing read is lost).
        const onAbort = (): void => this.#requestCancel(callId, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        p.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
      this.#pending.set(callId, p);
      this.#stream.write({ callId, [op]: req } as CallRequest);
    });
  }

  /**
   * An operation answered only by the stream's cumulative acknowledgement if it succeeds (its
   * own response if it fails): one message less per call. No timeout or cancellation.
   */
  callAckOnly<K extends Op>(op: K, req: Req<K>): Promise<Res<K>> {
    if (this.#lost) return Promise.reject(this.#lost);
    if (this.#closed) return Promise.reject(new SessionLostError('sockbroker: connection closed'));
    const callId = this.#nextId++;
    return new Promise<Res<K>>((resolve, reject) => {
      this.#pending.set(callId, { resolve, reject, op });
      this.#ackOnly.push(callId);
      this.#stream.write({ callId, ackOnly: true, [op]: req } as CallRequest);
    });
  }

  /** Asks the broker to acknowledge the ack_only calls sent so far as soon as they are done
   * (it otherwise tells with its next response): for a caller about to wait for them. */
  requestAck(): void {
    if (this.#ackOnly.length > 0 && !this.#lost && !this.#closed) this.#stream.write({ callId: 0, ack: {} } as CallRequest);
  }

  #requestCancel(callId: number, reason: Error): void {
    const p = this.#pending.get(callId);
    if (!p) return;
    p.cancelReason = reason;
    if (!this.#lost && !this.#closed) this.#stream.write({ callId, cancel: {} } as CallRequest);
  }

  /** Gives up on a call the broker does not answer (its deadline passed): rejects at once. */
  #cancel(callId: number, reason: Error): void {
    const p = this.#pending.get(callId);
    if (!p) return;
    this.#pending.delete(callId);
    clearTimeout(p.timer);
    p.unlisten?.();
    if (!this.#lost && !this.#closed) this.#stream.write({ callId, cancel: {} } as CallRequest);
    p.reject(reason);
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

  moduleInfo(): Promise<GetModuleInfoResponse> {
    return this.#unary((cb) => this.#sessionClient.getModuleInfo({}, this.#metadata, cb));
  }

  getAddrInfo(req: GetAddrInfoRequest): Promise<GetAddrInfoResponse> {
    return this.#unary((cb) => this.#netdbClient.getAddrInfo(req, this.#metadata, cb));
  }

  /** A unary NetdbService call by its method name (getNameInfo, getHostByName, ...). */
  netdb<Res>(method: string, req: object): Promise<Res> {
    const fn = (this.#netdbClient as unknown as Record<string, Function>)[method]!;
    return this.#unary((cb) => fn.call(this.#netdbClient, req, this.#metadata, cb));
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
      await this.#unary((cb) => this.#sessionClient.closeSession({}, this.#metadata, cb)).catch(() => undefined);
    }
    this.#closed = true;
    this.#stream.end();
    for (const call of this.#data) call.cancel();
    this.#data.clear();
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.unlisten?.();
      p.reject(new SessionLostError('sockbroker: connection closed'));
    }
    this.#pending.clear();
    this.#sessionClient.close();
  }
}
