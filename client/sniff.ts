// A sniffer socket's read-ahead (socket(AF_INET, SOCK_RAW, IPPROTO_IP) with SIO_RCVALL): one
// CaptureService.Sniff stream per socket, opened by its first recv, brings the packets in batches;
// recv/recvfrom take them from here one at a time. Bounded: past READ_AHEAD_PACKETS or
// READ_AHEAD_BYTES the packets of an arriving batch are dropped (counted in droppedBySdk); from
// half the bound on the stream is paused, so the broker's queue fills, then its ring, and the
// kernel drops (counted there): a slow reader loses packets the way a full socket buffer does,
// never silently.
import type * as grpc from '@grpc/grpc-js';
import { SniffRequest } from '../proto/gen/sockbroker/v1/capture.js';
import { decodeBatchSpans, type WireStats } from '../proto/codec/capture.js';
import { fromServiceError } from './errors.js';
import type { Transport } from './transport.js';

/** Most packets / bytes held read ahead per sniffer socket. */
export const READ_AHEAD_PACKETS = 65536;
export const READ_AHEAD_BYTES = 8 << 20;

/** A sniffer socket's counters: the broker's (as of its latest batch, at most ~1 s old) and the SDK's. */
export interface SniffStats extends WireStats {
  /** Packets the SDK dropped because its read-ahead bound was reached. */
  droppedBySdk: number;
  /** Packets read ahead and not yet returned by recv/recvfrom. */
  readAhead: number;
}

export const ZERO_SNIFF_STATS: SniffStats = {
  received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0, droppedBySdk: 0, readAhead: 0,
};

interface Held {
  buf: Buffer;
  spans: Int32Array;
  count: number;
  next: number;
}

export class SniffReader {
  readonly #call: grpc.ClientReadableStream<Buffer>;
  readonly #held: Held[] = [];
  #packets = 0;
  #bytes = 0;
  #paused = false;
  #stats: WireStats = ZERO_SNIFF_STATS;
  #droppedBySdk = 0;
  #error: Error | undefined;
  #ended = false;
  #closed = false;
  #wake: Array<() => void> = [];

  constructor(t: Transport, handle: number) {
    const req = Buffer.from(SniffRequest.encode({ handle }).finish());
    this.#call = t.serverStream('/sockbroker.v1.CaptureService/Sniff', req, (b: Buffer) => b);
    this.#call.on('data', (m: Buffer) => this.#onData(m));
    this.#call.on('error', (err: grpc.ServiceError) => {
      if (!this.#closed) this.#error = fromServiceError(err);
      this.#finish();
    });
    this.#call.on('end', () => this.#finish());
  }

  /** Packets held. */
  get size(): number {
    return this.#packets;
  }

  /** The stream is over (closed, failed, or ended by the broker): nothing more will come. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Why the stream ended (undefined for a plain end). */
  get error(): Error | undefined {
    return this.#error;
  }

  get stats(): SniffStats {
    return { ...this.#stats, droppedBySdk: this.#droppedBySdk, readAhead: this.#packets };
  }

  #onData(m: Buffer): void {
    const { spans, count, stats } = decodeBatchSpans(m);
    if (stats) this.#stats = stats;
    if (count === 0) return;
    let keep = 0;
    let bytes = 0;
    while (keep < count && this.#packets + keep < READ_AHEAD_PACKETS) {
      const n = spans[2 * keep + 1]! - spans[2 * keep]!;
      if (this.#bytes + bytes + n > READ_AHEAD_BYTES) break;
      bytes += n;
      keep++;
    }
    this.#droppedBySdk += count - keep;
    if (keep > 0) {
      this.#held.push({ buf: m, spans, count: keep, next: 0 });
      this.#packets += keep;
      this.#bytes += bytes;
    }
    if (!this.#paused && (this.#packets >= READ_AHEAD_PACKETS / 2 || this.#bytes >= READ_AHEAD_BYTES / 2)) {
      this.#paused = true;
      this.#call.pause();
    }
    this.#notify();
  }

  /** The next packet (left in place when `peek`), or null when none is held. */
  take(peek: boolean): Buffer | null {
    const h = this.#held[0];
    if (!h) return null;
    const i = 2 * h.next;
    const data = h.buf.subarray(h.spans[i]!, h.spans[i + 1]!);
    if (peek) return data;
    if (++h.next === h.count) this.#held.shift();
    this.#packets--;
    this.#bytes -= data.length;
    if (this.#paused && this.#packets <= READ_AHEAD_PACKETS / 4 && this.#bytes <= READ_AHEAD_BYTES / 4) {
      this.#paused = false;
      this.#call.resume();
    }
    return data;
  }

  /** Resolves true once a packet is held or the stream ended, false at `deadline` (performance.now() ms; null = none). */
  wait(deadline: number | null, signal?: AbortSignal): Promise<boolean> {
    if (this.#packets > 0 || this.#ended) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (v: boolean): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.#wake.indexOf(wake);
        if (i >= 0) this.#wake.splice(i, 1);
        resolve(v);
      };
      const wake = (): void => done(true);
      const onAbort = (): void => done(false);
      this.#wake.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== null) timer = setTimeout(() => done(false), Math.max(0, deadline - performance.now()));
    });
  }

  /** Cancels the stream and drops what is held (close(): as the kernel discards a closed socket's queue). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held.length = 0;
    this.#packets = 0;
    this.#bytes = 0;
    if (!this.#ended) this.#call.cancel();
    this.#finish();
  }

  #finish(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = [];
    for (const f of w) f();
  }
}
