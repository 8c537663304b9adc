// The client end of one socket's Data stream (SocketService.Data; see daemon/data-stream.ts):
// large sendall calls as chunks within the daemon's send window, and a read-ahead that recv
// serves from, granting credit back as the caller consumes. Python's semantics stay whole:
// recv(n) returns at most n bytes of what has arrived; the read-ahead's end (EOF or its error)
// is delivered after the bytes before it; and before any other read of the socket, quiesce()
// pauses the read-ahead and gives back what was not delivered, so that read sees it first.
import type * as grpc from '@grpc/grpc-js';
import type { DataRequest, DataResponse } from '../proto/gen/sockbroker/v1/socket.js';
import { fromStatus, streamError, timeout as TimeoutExc } from './errors.js';
import { encodeDataRequest, WRITE_OVERHEAD } from '../proto/codec/data.js';

/** Bytes per sendall chunk (one message). */
const SEND_CHUNK = 1 << 20;
const EMPTY = Buffer.alloc(0);

/** What opens a Data stream (client/transport.ts). */
export interface DataTransport {
  dataStream(): grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse>;
}

interface Waiter {
  resolve: () => void;
}

export class BulkChannel {
  readonly #call: grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse>;
  readonly #maxChunk: number;
  #sendWindow = 0;
  #recvWindow = 0;
  /** Why the stream is unusable (it ended or failed); null while it works. */
  #broken: Error | null = null;
  /** Set by close(): every later or pending call raises it. */
  #closed: Error | null = null;
  #opened!: { resolve: () => void; reject: (err: Error) => void };

  // ---- sendall ----
  #sendOutstanding = 0;
  /**
   * Encode buffers (WRITE_OVERHEAD + maxChunk each, at most sendWindow / maxChunk of them, kept
   * while the stream lives): a full chunk is encoded into a free one instead of a fresh 1 MiB
   * allocation (each costs page faults, and V8 runs a major GC per few MiB of them). One is
   * free again once the broker gave back the credit of its chunk: the broker has received the
   * chunk, so grpc-js (which copies each message into its own frame) is done with it.
   */
  readonly #encodeFree: Buffer[] = [];
  /** Encode buffers in flight, oldest first, with the byte count (#sent) at which each is credited. */
  readonly #encodeBusy: Array<{ buf: Buffer; until: number }> = [];
  #encodeCount = 0;
  /** Bytes sent as chunks, and credited back, since the stream opened. */
  #sent = 0;
  #credited = 0;
  #nextSendall = 0;
  #sendLock: Promise<unknown> = Promise.resolve();
  readonly #results = new Map<number, { resolve: () => void; reject: (err: Error) => void; failed?: Error }>();

  // ---- read-ahead ----
  readonly #ahead: Buffer[] = [];
  #aheadBytes = 0;
  /** The read-ahead's end as received and not yet delivered. */
  #end: { error?: Error } | null = null;
  /** The end was delivered: this stream reads no more. */
  #done = false;
  /** Credit is granted (the daemon may be reading ahead). */
  #running = false;
  /** Bytes consumed since the last grant. */
  #unGranted = 0;
  /** Bumped by each quiesce: a recv waiting across one falls back to the Call stream. */
  #epoch = 0;
  readonly #waiters = new Set<Waiter>();
  #ctl: Promise<unknown> = Promise.resolve();
  readonly #answers: Array<{ kind: 'paused' | 'givenBack'; resolve: () => void; reject: (err: Error) => void }> = [];

  private constructor(call: grpc.ClientDuplexStream<DataRequest | Buffer, DataResponse>, maxChunk: number) {
    this.#call = call;
    this.#maxChunk = Math.max(1, Math.min(SEND_CHUNK, maxChunk));
    call.on('data', (res: DataResponse) => this.#onData(res));
    call.on('error', (err: grpc.ServiceError) => this.#onBroken(streamError(err)));
    call.on('end', () => this.#onBroken(new Error('the broker ended the Data stream')));
  }

  /** Opens a Data stream for `handle`; null when the broker refuses one (quota, socket kind). */
  static async open(t: DataTransport, handle: number, maxChunk: number): Promise<BulkChannel | null> {
    let ch: BulkChannel;
    try {
      ch = new BulkChannel(t.dataStream(), maxChunk);
    } catch {
      return null;
    }
    const opened = new Promise<void>((resolve, reject) => (ch.#opened = { resolve, reject }));
    ch.#call.write({ open: { handle } });
    try {
      await opened;
      return ch;
    } catch {
      ch.#call.cancel();
      return null;
    }
  }

  /** True while bytes or an end are held here, or the daemon may be reading ahead. */
  get active(): boolean {
    return this.#running || this.#aheadBytes > 0 || this.#end !== null;
  }

  /** True once the stream failed or ended: nothing more goes through it. */
  get broken(): boolean {
    return this.#broken !== null;
  }

  /** True once the read-ahead's end was delivered or the stream broke: reads go the usual way. */
  get finished(): boolean {
    return this.#done || this.#broken !== null;
  }

  #onData(res: DataResponse): void {
    if (res.chunk) {
      this.#ahead.push(res.chunk);
      this.#aheadBytes += res.chunk.length;
      this.#wake();
    } else if (res.credit) {
      this.#sendOutstanding -= res.credit.bytes;
      this.#credited += res.credit.bytes;
      const busy = this.#encodeBusy;
      while (busy.length > 0 && busy[0]!.until <= this.#credited) this.#encodeFree.push(busy.shift()!.buf);
      this.#wake();
    } else if (res.sent) {
      const r = this.#results.get(res.sent.sendallId);
      this.#results.delete(res.sent.sendallId);
      r?.resolve();
    } else if (res.sendError) {
      const r = this.#results.get(res.sendError.sendallId);
      const err = res.sendError.error ? fromStatus(res.sendError.error) : new Error('sendall failed');
      if (r) r.failed = err;
      this.#results.delete(res.sendError.sendallId);
      r?.reject(err);
      this.#wake();
    } else if (res.readEnd) {
      this.#end = res.readEnd.error ? { error: fromStatus(res.readEnd.error) } : {};
      this.#running = false;
      this.#wake();
    } else if (res.paused || res.givenBack) {
      const a = this.#answers.shift();
      a?.resolve();
      this.#wake();
    } else if (res.opened) {
      this.#sendWindow = res.opened.sendWindow;
      this.#recvWindow = res.opened.recvWindow;
      this.#opened.resolve();
    }
  }

  #onBroken(err: Error): void {
    if (this.#broken) return;
    this.#broken = err;
    this.#encodeFree.length = 0;
    this.#encodeBusy.length = 0;
    // A read-ahead running when the stream broke may have had bytes on the way that are lost:
    // the next read raises the error (after the bytes that did arrive), never a silent gap.
    if (this.#running && !this.#end && !this.#closed) this.#end = { error: err };
    this.#running = false;
    this.#opened?.reject(err);
    for (const r of this.#results.values()) r.reject(err);
    this.#results.clear();
    for (const a of this.#answers.splice(0)) a.reject(err);
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters) w.resolve();
    this.#waiters.clear();
  }

  /** Resolves at the next event (data, credit, an answer, an end), the deadline or the signal. */
  #event(deadline: number, signal?: AbortSignal): Promise<'event' | 'timeout'> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        this.#waiters.delete(w);
        clearTimeout(timer);
        reject(signal!.reason);
      };
      const w: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve('event');
        },
      };
      if (deadline !== Infinity) {
        timer = setTimeout(() => {
          this.#waiters.delete(w);
          signal?.removeEventListener('abort', onAbort);
          resolve('timeout');
        }, Math.max(0, deadline - performance.now()));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(w);
    });
  }

  #write(req: DataRequest | Buffer): void {
    if (!this.#broken) this.#call.write(req);
  }

  // ---- sendall ----

  /**
   * Sends all of `data` (blocking or timeout mode; the broker enforces the timeout): `queued`
   * resolves once every chunk is encoded and on its way (`data` is no longer referenced), `done`
   * once the broker has sent it all (or rejects with the error). Sendall calls keep their order.
   */
  sendall(data: Buffer, flags: number, timeoutS: number | null): { queued: Promise<void>; done: Promise<void> } {
    let done!: Promise<void>;
    const queued = this.#sendLock.then(() => {
      done = this.#sendall(data, flags, timeoutS);
      done.catch(() => undefined); // raised through `all` below when the caller waits for it
      return this.#handedOver;
    });
    this.#sendLock = queued.catch(() => undefined);
    const all = queued.then(() => done);
    all.catch(() => undefined); // a caller that stops at `queued` still learns the outcome later
    return { queued, done: all };
  }

  /** Set by #sendall once its last chunk is written. */
  #handedOver: Promise<void> = Promise.resolve();

  #sendall(data: Buffer, flags: number, timeoutS: number | null): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#broken) return Promise.reject(this.#broken);
    const id = ++this.#nextSendall;
    const result = new Promise<void>((resolve, reject) => this.#results.set(id, { resolve, reject }));
    const entry = this.#results.get(id)!;
    result.catch(() => undefined);
    this.#handedOver = (async () => {
      for (let off = 0; off < data.length; ) {
        const chunk = data.subarray(off, off + this.#maxChunk);
        while (!this.#broken && !entry.failed && this.#sendOutstanding + chunk.length > this.#sendWindow) await this.#event(Infinity);
        if (this.#broken || entry.failed) throw this.#closed ?? entry.failed ?? this.#broken;
        off += chunk.length;
        this.#sendOutstanding += chunk.length;
        // Encoded now (the one copy): the caller may reuse `data` once `queued` resolved.
        const into = this.#encodeBuffer(chunk.length);
        this.#write(encodeDataRequest({ write: { sendallId: id, data: chunk, last: off >= data.length, flags, timeout: timeoutS ?? undefined } }, into));
        this.#sent += chunk.length;
        if (into) this.#encodeBusy.push({ buf: into, until: this.#sent });
      }
    })();
    return this.#handedOver.then(() => result, () => result);
  }

  /** A free encode buffer for a full chunk of `n` bytes; undefined (encode allocates) otherwise. */
  #encodeBuffer(n: number): Buffer | undefined {
    if (n < this.#maxChunk || this.#broken) return undefined;
    const free = this.#encodeFree.pop();
    if (free) return free;
    if (this.#encodeCount >= Math.floor(this.#sendWindow / this.#maxChunk)) return undefined;
    this.#encodeCount++;
    return Buffer.allocUnsafeSlow(WRITE_OVERHEAD + this.#maxChunk);
  }

  // ---- read-ahead ----

  /**
   * recv(n) from the read-ahead (n > 0; blocking or timeout mode): at most n bytes of what has
   * arrived, b'' at end of stream, the read's error after the bytes before it, socket.timeout
   * after `timeoutS`. Null when this stream cannot serve it (broken, finished, or paused under
   * the caller's feet): the caller then uses the Call stream.
   */
  async recv(n: number, timeoutS: number | null, signal?: AbortSignal): Promise<Buffer | null> {
    const deadline = timeoutS === null ? Infinity : performance.now() + timeoutS * 1000;
    const epoch = this.#epoch;
    for (;;) {
      if (this.#closed) throw this.#closed;
      if (signal?.aborted) throw signal.reason;
      if (this.#aheadBytes > 0) return this.#take(n);
      if (this.#end) {
        const end = this.#end;
        this.#end = null;
        this.#done = true;
        if (end.error) throw end.error;
        return EMPTY;
      }
      if (this.#broken || this.#done || epoch !== this.#epoch) return null;
      if (!this.#running) {
        await this.#ctl;
        if (epoch !== this.#epoch) return null;
        if (!this.#running && !this.#broken && !this.#end) {
          this.#running = true;
          this.#unGranted = 0;
          this.#write({ credit: { bytes: this.#recvWindow - this.#aheadBytes } });
        }
        continue;
      }
      if ((await this.#event(deadline, signal)) === 'timeout' && this.#aheadBytes === 0 && !this.#end) throw new TimeoutExc('timed out');
    }
  }

  #take(n: number): Buffer {
    const head = this.#ahead[0]!;
    let out: Buffer;
    if (head.length <= n) {
      this.#ahead.shift();
      out = head;
    } else {
      out = head.subarray(0, n);
      this.#ahead[0] = head.subarray(n);
    }
    this.#aheadBytes -= out.length;
    if (this.#running) {
      this.#unGranted += out.length;
      if (this.#unGranted >= this.#recvWindow / 4) {
        this.#write({ credit: { bytes: this.#unGranted } });
        this.#unGranted = 0;
      }
    }
    return out;
  }

  /**
   * Before any other read of the socket: stops the read-ahead and gives back what was not
   * delivered (the bytes and an end), so the broker's read paths see them first.
   */
  quiesce(): Promise<void> {
    const run = this.#ctl.then(() => this.#quiesce());
    this.#ctl = run.catch(() => undefined);
    return run;
  }

  async #quiesce(): Promise<void> {
    this.#epoch++;
    if (this.#broken) return;
    if (this.#running) {
      this.#running = false;
      await this.#ask('paused', { pause: {} });
      this.#unGranted = 0;
    }
    if (this.#aheadBytes > 0 || this.#end) {
      const data = this.#ahead.length === 1 ? this.#ahead[0]! : Buffer.concat(this.#ahead);
      const end = this.#end !== null;
      this.#ahead.length = 0;
      this.#aheadBytes = 0;
      this.#end = null;
      await this.#ask('givenBack', { giveBack: { data, end } });
    }
  }

  #ask(kind: 'paused' | 'givenBack', req: DataRequest): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#answers.push({ kind, resolve, reject });
      this.#write(req);
    });
  }

  /** Ends the stream (the socket is closing): pending and later calls raise `err`. */
  close(err: Error): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#wake();
    for (const r of this.#results.values()) r.reject(err);
    this.#results.clear();
    if (!this.#broken) this.#call.end();
    this.#broken ??= err;
  }
}
