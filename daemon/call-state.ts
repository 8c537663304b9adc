// What the Call stream knows between messages: the calls running, the cumulative acknowledgement
// of ack_only calls and, for a resumable session, the replay record. A plain session has one per
// stream (its calls end with the stream); a resumable one keeps one for its life, so its calls
// outlive a dropped connection and their results wait, numbered, until the client acknowledges
// them (CallResponse.seq / CallRequest.acked_seq) or a resumed stream replays them.
import type { CallContext } from './socket-ops.js';
import type { Cancellation } from '../native/cancel.js';
import type { CallResponse } from '../proto/gen/sockbroker/v1/socket.js';

interface Recorded {
  seq: number;
  callId: number;
  res: CallResponse;
  bytes: number;
}

/**
 * A response's size for the record's byte bound: its data buffers plus a little per field. A
 * kept buffer that is a small view of a large allocation (a recv's bytes within its bufsize)
 * is copied out, so the record holds and counts only the bytes.
 */
function sizeOf(v: unknown, depth: number): number {
  if (v === null || typeof v !== 'object' || depth > 3) return 8;
  let n = 16;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = o[k];
    if (x instanceof Uint8Array) {
      if (x.buffer.byteLength > Buffer.poolSize && x.length * 2 < x.buffer.byteLength) o[k] = Buffer.from(x);
      n += x.length;
    } else n += sizeOf(x, depth + 1);
  }
  return n;
}

export class CallState {
  readonly pending = new Map<number, { ac: Cancellation; ctx: CallContext }>();
  /** ack_only calls running, in increasing call_id order (the first is the least). */
  readonly unacked = new Set<number>();
  lastAckOnly = 0;
  /** The last `acked` written, and the one an AckRequest waits for (0 = none). */
  ackSent = 0;
  ackWanted = 0;
  /** Highest call_id seen: in a resumable session one not above it is a resend. */
  maxCallId = 0;
  /** The attached stream's writer, and how to end that stream; null while none is attached. */
  out: ((res: CallResponse) => void) | null = null;
  endStream: ((why: string, lost?: 'ended') => void) | null = null;
  /** Last seq given; record's bytes; results dropped at the bound and the highest seq dropped. */
  seq = 0;
  bytes = 0;
  dropped = 0;
  droppedSeq = 0;
  readonly #record: Recorded[] = [];
  #head = 0;
  readonly #byCall = new Map<number, Recorded>();

  constructor(
    readonly resumable: boolean,
    readonly maxEntries = 0,
    readonly maxBytes = 0,
  ) {}

  ackedNow(): number {
    for (const id of this.unacked) return id - 1;
    return this.lastAckOnly;
  }

  /** Numbers `res` and keeps it until acknowledged; at the bound the oldest results go (counted). */
  record(res: CallResponse): number {
    const e: Recorded = { seq: ++this.seq, callId: res.callId, res, bytes: sizeOf(res, 0) };
    res.seq = e.seq;
    this.#record.push(e);
    this.#byCall.set(e.callId, e);
    this.bytes += e.bytes;
    let dropped = 0;
    while (this.#record.length - this.#head > 1 && (this.#record.length - this.#head > this.maxEntries || this.bytes > this.maxBytes)) {
      this.droppedSeq = this.#shift().seq;
      dropped++;
    }
    this.dropped += dropped;
    return dropped;
  }

  /** The client received every response up to `seq`: they leave the record. */
  ack(seq: number): void {
    while (this.#head < this.#record.length && this.#record[this.#head]!.seq <= seq) this.#shift();
  }

  #shift(): Recorded {
    const e = this.#record[this.#head]!;
    this.#record[this.#head++] = undefined as never;
    if (this.#byCall.get(e.callId) === e) this.#byCall.delete(e.callId);
    this.bytes -= e.bytes;
    if (this.#head >= 1024 && this.#head * 2 >= this.#record.length) {
      this.#record.splice(0, this.#head);
      this.#head = 0;
    }
    return e;
  }

  /** True while the result of `callId` is in the record. */
  recorded(callId: number): boolean {
    return this.#byCall.has(callId);
  }

  get entries(): number {
    return this.#record.length - this.#head;
  }

  /** Writes every recorded result, in order (the start of a resumed stream). */
  replay(write: (res: CallResponse) => void): number {
    for (let i = this.#head; i < this.#record.length; i++) write(this.#record[i]!.res);
    return this.#record.length - this.#head;
  }

  /** Ends every running call (the stream or the session ended). */
  abortAll(reason: Error): void {
    for (const { ac } of this.pending.values()) ac.abort(reason);
  }
}
