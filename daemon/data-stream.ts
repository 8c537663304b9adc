// SocketService.Data: one socket's bulk stream. Two independent flows, each within credit the
// receiving side granted, so the daemon never holds more than two windows per stream:
//   sendall: chunks arrive within `send_window`; they are written to the kernel in order (under
//     the socket's write lock, one deadline per sendall), and the window comes back as credit as
//     they are written. `sent` / `send_error` answer a sendall's last chunk.
//   read-ahead: while the client's credit lasts, the daemon drains the socket's unread buffer,
//     then reads the kernel, and sends chunks (read into a small pool of reused buffers, framed in
//     place). EOF or an error ends it (`read_end`). `pause` stops it; the client then gives back
//     what it did not deliver, which goes to the front of the unread buffer every read drains.
// Only connected TCP sockets (AF_INET/AF_INET6 SOCK_STREAM) have one: their reads carry no
// ancillary data that a plain recv would lose, and their sends carry no credentials.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as Code } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import * as libc from '../native/libc.js';
import { linux as C } from '../native/constants.js';
import type { DataRequest, DataResponse, DataWrite } from '../proto/gen/sockbroker/v1/socket.js';
import { CHUNK_HEADROOM, frameChunk } from '../proto/codec/data.js';
import { BrokerError, osErrorNamed, sessionError, toBrokerError, toServiceError, toStatus } from './errors.js';
import { deadlineFor, drive, type Timeout } from '../native/io-driver.js';
import { CancelledError, isMalformed, malformedError, onStreamEnd, streamSession, type Malformed, type Peers } from './rpc.js';
import type { SocketEntry } from './handles.js';
import type { Session, Sessions } from './sessions.js';
import type { CallContext, SocketOps } from './socket-ops.js';

/** Bytes per read-ahead chunk (and per pooled buffer). */
export const READ_CHUNK = 1 << 20;
/** Smallest window worth a stream: below it the session's budget is spent, and the stream is refused. */
const MIN_WINDOW = 256 * 1024;

type Out = DataResponse | Buffer;

/** Bytes of buffered_bytes quota each session's open Data streams have reserved. */
const reserved = new WeakMap<Session, number>();
/** The entry's open Data stream (one per socket). */
const streams = new WeakMap<SocketEntry, DataStream>();

export interface DataDeps {
  sessions: Sessions;
  peers: Peers;
  log: Logger;
  ops: SocketOps;
  /** Largest window per direction, bytes. */
  window: number;
  /** Open streams' abort functions: shutdown ends each with its reason. */
  live: Set<(reason: BrokerError) => void>;
}

/** The grpc-js handler of SocketService.Data. */
export function dataStream(deps: DataDeps): (stream: ServerDuplexStream<DataRequest | Malformed, Out>) => void {
  return (stream) => {
    const session = streamSession(deps.sessions, deps.peers, stream);
    if (!session) return;
    let ds: DataStream | undefined;
    const fail = (err: BrokerError): void => {
      ds?.end();
      if (!stream.destroyed) stream.emit('error', toServiceError(err));
    };
    stream.on('data', (req: DataRequest | Malformed) => {
      if (isMalformed(req)) return fail(new BrokerError(Code.INVALID_ARGUMENT, 'MALFORMED_MESSAGE', malformedError('DataRequest', req).details ?? 'malformed', { kind: 'value' }));
      try {
        if (!ds) {
          if (!req.open) throw protocolError('the first message of a Data stream must be `open`');
          ds = new DataStream(deps, session, req.open.handle, stream, fail);
          return;
        }
        ds.handle(req);
      } catch (err) {
        fail(toBrokerError(err));
      }
    });
    onStreamEnd(stream, () => ds?.end());
  };
}

function protocolError(message: string, code = Code.INVALID_ARGUMENT): BrokerError {
  return new BrokerError(code, 'DATA_PROTOCOL', `Data stream: ${message}`, { kind: 'value' });
}

interface Sendall {
  id: number;
  timeout: Timeout;
  deadline: number;
  flags: number;
}

class DataStream {
  readonly #deps: DataDeps;
  readonly #session: Session;
  readonly #entry: SocketEntry;
  readonly #stream: ServerDuplexStream<DataRequest | Malformed, Out>;
  readonly #fail: (err: BrokerError) => void;
  readonly #ctx: CallContext;
  readonly #ac = new AbortController();
  readonly #sendWindow: number;
  readonly #recvWindow: number;
  #open = true;
  /** Buffered now and at most, bytes (sendall chunks not yet written + read-ahead not yet flushed). */
  #buffered = 0;
  #maxBuffered = 0;

  // ---- sendall ----
  /** Chunks received and not yet written (or discarded), in order. */
  readonly #queue: DataWrite[] = [];
  #queuedBytes = 0;
  #wakeWriter: (() => void) | undefined;
  #writing = false;
  #lastId = 0;
  /** A sendall that failed: its later chunks are discarded. */
  #failedId = -1;

  // ---- read-ahead ----
  /** Bytes the client allows the daemon to send now. */
  #credit = 0;
  #reading = false;
  /** The read-ahead ended (EOF or error) and the client has not given that end back. */
  #ended: { error?: BrokerError } | undefined;
  #readLoop: Promise<void> | undefined;
  #readAbort = new AbortController();
  /** Bytes sent as chunks and not yet given back (what a give-back may return at most). */
  #sentNotReturned = 0;
  readonly #pool: Buffer[] = [];
  #poolSize = 0;
  #poolWaiter: (() => void) | undefined;
  readonly #onEnd = (): void => this.#fail(sessionError('session ended', Code.UNAVAILABLE));
  readonly #onShutdown = (reason: BrokerError): void => this.#fail(reason);

  constructor(deps: DataDeps, session: Session, handle: number, stream: ServerDuplexStream<DataRequest | Malformed, Out>, fail: (err: BrokerError) => void) {
    this.#deps = deps;
    this.#session = session;
    this.#stream = stream;
    this.#fail = fail;
    this.#ctx = { session, signal: this.#ac.signal };
    const entry = deps.ops.entry(this.#ctx, handle, 'recv');
    const { family, type } = entry.info;
    if ((family !== C.AF_INET && family !== C.AF_INET6) || type !== C.SOCK_STREAM) {
      throw osErrorNamed('EOPNOTSUPP', 'recv', 'Operation not supported (a Data stream carries AF_INET/AF_INET6 SOCK_STREAM sockets only)');
    }
    if (streams.has(entry)) throw osErrorNamed('EBUSY', 'recv', 'Device or resource busy (this socket already has a Data stream)');
    // Both windows come out of the session's buffered_bytes quota.
    const left = session.quotas.bufferedBytes - (reserved.get(session) ?? 0);
    const window = Math.min(deps.window, Math.floor(left / 2));
    if (window < MIN_WINDOW) {
      throw new BrokerError(Code.RESOURCE_EXHAUSTED, 'QUOTA', `Data stream: the session's buffered_bytes quota (${session.quotas.bufferedBytes} bytes) is spent by its open Data streams`, { kind: 'os' });
    }
    this.#entry = entry;
    this.#sendWindow = window;
    this.#recvWindow = window;
    reserved.set(session, (reserved.get(session) ?? 0) + 2 * window);
    streams.set(entry, this);
    session.onEnd.add(this.#onEnd);
    deps.live.add(this.#onShutdown);
    deps.log.debug({ event: 'data.open', session: session.id.slice(0, 8), handle, window });
    this.#write({ opened: { sendWindow: window, recvWindow: window } });
  }

  /** One client message (after `open`). */
  handle(req: DataRequest): void {
    if (!this.#open) return;
    if (req.write) this.#onWrite(req.write);
    else if (req.credit) this.#onCredit(req.credit.bytes);
    else if (req.pause) this.#onPause();
    else if (req.giveBack) this.#onGiveBack(req.giveBack.data, req.giveBack.end);
    else throw protocolError('empty or repeated `open` message');
  }

  /** Ends the stream's work (idempotent): undelivered bytes go back to the socket. */
  end(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#ac.abort(new CancelledError('stream ended'));
    this.#readAbort.abort(new CancelledError('stream ended'));
    this.#wakeWriter?.();
    this.#poolWaiter?.();
    streams.delete(this.#entry);
    reserved.set(this.#session, (reserved.get(this.#session) ?? 0) - 2 * this.#sendWindow);
    this.#session.onEnd.delete(this.#onEnd);
    this.#deps.live.delete(this.#onShutdown);
    this.#queue.length = 0;
    this.#deps.log.debug({ event: 'data.end', session: this.#session.id.slice(0, 8), handle: this.#entry.handle, maxBuffered: this.#maxBuffered, bound: this.#sendWindow + this.#recvWindow });
  }

  #write(msg: Out, done?: () => void): boolean {
    if (!this.#open || this.#stream.destroyed || this.#stream.cancelled) return false;
    this.#stream.write(msg, done);
    return true;
  }

  #account(delta: number): void {
    this.#buffered += delta;
    if (this.#buffered > this.#maxBuffered) this.#maxBuffered = this.#buffered;
  }

  // ---- sendall ----

  #onWrite(w: DataWrite): void {
    const n = w.data.length;
    if (n > this.#deps.ops.maxBytes(this.#ctx)) throw protocolError(`a chunk of ${n} bytes is above the bytes_per_call quota`, Code.RESOURCE_EXHAUSTED);
    if (this.#queuedBytes + n > this.#sendWindow) throw protocolError(`the client sent beyond its send window of ${this.#sendWindow} bytes`, Code.RESOURCE_EXHAUSTED);
    if (!Number.isSafeInteger(w.sendallId) || w.sendallId < this.#lastId) throw protocolError('sendall ids must increase');
    if (w.sendallId === this.#failedId) {
      this.#write({ credit: { bytes: n } });
      return;
    }
    this.#lastId = w.sendallId;
    this.#queue.push(w);
    this.#queuedBytes += n;
    this.#account(n);
    if (this.#wakeWriter) this.#wakeWriter();
    else if (!this.#writing) void this.#runWriter();
  }

  /** The next queued chunk, waiting for one; undefined once the stream ended. */
  async #next(): Promise<DataWrite | undefined> {
    while (this.#open && this.#queue.length === 0) await new Promise<void>((resolve) => (this.#wakeWriter = resolve));
    this.#wakeWriter = undefined;
    return this.#open ? this.#queue[0] : undefined;
  }

  #dequeue(w: DataWrite): void {
    this.#queue.shift();
    this.#queuedBytes -= w.data.length;
    this.#account(-w.data.length);
    this.#write({ credit: { bytes: w.data.length } });
  }

  async #runWriter(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#open && this.#queue.length > 0) {
        const first = this.#queue[0]!;
        const timeout = first.timeout;
        const sendall: Sendall = { id: first.sendallId, timeout, deadline: deadlineFor(timeout), flags: first.flags };
        await this.#entry.writes.run(() => this.#writeSendall(sendall));
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Writes one sendall's chunks as they come, until its last one or an error. */
  async #writeSendall(s: Sendall): Promise<void> {
    const { reactor } = this.#deps.ops.broker;
    const flags = s.flags | C.MSG_NOSIGNAL;
    try {
      if (s.timeout !== undefined && (!Number.isFinite(s.timeout) || s.timeout < 0)) throw new BrokerError(Code.INVALID_ARGUMENT, 'VALUE_ERROR', 'Timeout value out of range', { kind: 'value' });
      for (;;) {
        const w = await this.#next();
        if (!w) return;
        if (w.sendallId !== s.id) throw protocolError(`sendall ${s.id} ended without its last chunk`);
        const data = w.data;
        let offset = 0;
        while (offset < data.length) {
          offset += await drive(reactor, this.#entry, 'write', s.timeout, this.#ac.signal, 'sendall', () => libc.send(this.#entry.fd, data.subarray(offset), flags), s.deadline);
        }
        this.#dequeue(w);
        if (w.last) {
          this.#write({ sent: { sendallId: s.id } });
          return;
        }
      }
    } catch (err) {
      if (!this.#open) return;
      const e = toBrokerError(err);
      if (e.reason === 'DATA_PROTOCOL') return this.#fail(e);
      this.#failedId = s.id;
      this.#write({ sendError: { sendallId: s.id, error: toStatus(e) } });
      // Its chunks still queued are discarded; the window comes back.
      while (this.#queue.length > 0 && this.#queue[0]!.sendallId === s.id) this.#dequeue(this.#queue[0]!);
    }
  }

  // ---- read-ahead ----

  #onCredit(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || this.#credit + bytes > this.#recvWindow) {
      throw protocolError(`credit beyond the read window of ${this.#recvWindow} bytes`, Code.RESOURCE_EXHAUSTED);
    }
    this.#credit += bytes;
    this.#reading = true;
    this.#readLoop ??= this.#runReader().finally(() => (this.#readLoop = undefined));
  }

  #onPause(): void {
    this.#reading = false;
    this.#credit = 0;
    this.#readAbort.abort(PAUSED);
    this.#poolWaiter?.();
    const loop = this.#readLoop ?? Promise.resolve();
    // The loop sends what it read before it stops: `paused` follows the last chunk.
    void loop.then(() => this.#write({ paused: {} }));
  }

  #onGiveBack(data: Buffer, end: boolean): void {
    if (this.#reading || this.#readLoop) throw protocolError('give back only after `paused`');
    if (data.length > this.#sentNotReturned) throw protocolError('gave back more than was sent');
    this.#sentNotReturned -= data.length;
    // A copy: the message's buffer is grpc-js's, and these bytes may stay a while.
    this.#entry.unshift(Buffer.from(data));
    if (end && this.#ended) {
      // The client did not deliver the end: the next read raises its error (EOF repeats by itself).
      if (this.#ended.error) this.#entry.pendingError = this.#ended.error;
      this.#ended = undefined;
    }
    this.#write({ givenBack: {} });
  }

  /** A pooled buffer (CHUNK_HEADROOM + READ_CHUNK), waiting while all of them are in flight. */
  async #buffer(): Promise<Buffer | undefined> {
    for (;;) {
      if (!this.#open || !this.#reading) return undefined;
      const b = this.#pool.pop();
      if (b) return b;
      if (this.#poolSize * READ_CHUNK < this.#recvWindow) {
        this.#poolSize++;
        return Buffer.allocUnsafeSlow(CHUNK_HEADROOM + READ_CHUNK);
      }
      await new Promise<void>((resolve) => (this.#poolWaiter = resolve));
      this.#poolWaiter = undefined;
    }
  }

  #release(b: Buffer): void {
    this.#pool.push(b);
    const w = this.#poolWaiter;
    this.#poolWaiter = undefined;
    w?.();
  }

  /** Sends `n` bytes that sit in `b` at CHUNK_HEADROOM; false if the stream is gone (the caller keeps them). */
  #sendChunk(b: Buffer, n: number): boolean {
    this.#credit -= n;
    this.#sentNotReturned += n;
    this.#account(n);
    const ok = this.#write(frameChunk(b, n), () => {
      this.#account(-n);
      this.#release(b);
    });
    if (!ok) {
      this.#account(-n);
      this.#sentNotReturned -= n;
      this.#release(b);
    }
    return ok;
  }

  async #runReader(): Promise<void> {
    const entry = this.#entry;
    const { reactor } = this.#deps.ops.broker;
    while (this.#open && this.#reading && this.#credit > 0 && !this.#ended) {
      const b = await this.#buffer();
      if (!b || !this.#reading) {
        if (b) this.#release(b);
        return;
      }
      const room = Math.min(this.#credit, READ_CHUNK);
      // The unread buffer first (a cancelled call's bytes, or bytes given back), then its error.
      let early: Buffer | null;
      try {
        early = entry.take(room, false);
      } catch (err) {
        this.#release(b);
        this.#endRead({ error: toBrokerError(err) });
        return;
      }
      if (early) {
        early.copy(b, CHUNK_HEADROOM);
        if (!this.#sendChunk(b, early.length)) entry.unshift(early);
        continue;
      }
      if (this.#readAbort.signal.aborted) this.#readAbort = new AbortController();
      let n: number;
      try {
        n = await drive(reactor, entry, 'read', undefined, this.#readAbort.signal, 'recv', () => libc.recv(entry.fd, b.subarray(CHUNK_HEADROOM, CHUNK_HEADROOM + room), 0));
      } catch (err) {
        this.#release(b);
        if (err === PAUSED || !this.#open) return;
        this.#endRead({ error: toBrokerError(err) });
        return;
      }
      if (n === 0) {
        this.#release(b);
        this.#endRead({});
        return;
      }
      if (!this.#sendChunk(b, n)) {
        // The stream is gone: nothing read is lost.
        entry.unshift(Buffer.from(b.subarray(CHUNK_HEADROOM, CHUNK_HEADROOM + n)));
        return;
      }
    }
  }

  #endRead(end: { error?: BrokerError }): void {
    this.#ended = end;
    this.#reading = false;
    this.#credit = 0;
    this.#write({ readEnd: end.error ? { error: toStatus(end.error) } : {} });
  }
}

/** The reason a paused read-ahead's wait is aborted with. */
const PAUSED = Symbol('paused');
