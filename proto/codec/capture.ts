// Hand-written codec of the capture stream's hot messages (CapturedPacket inside CaptureBatch
// inside CaptureResponse), shared by the daemon (encode) and the SDK (decode). The encoder writes
// byte for byte what the generated one does, without an object per packet
// (test/capture/encode.test.ts checks it against the generated decoder); the decoder keeps packet
// data as views into the message (no copy) and joins seconds + nanos into one exact bigint of ns.
// Rare messages (armed) go to the generated code.
import { CaptureArmed } from '../gen/sockbroker/v1/capture.js';
import { varintField, varintSize, writeVarint } from './varint.js';

/** Largest encoded size of a CapturedPacket entry (tag + length + fields) besides its data. */
export const PACKET_OVERHEAD = 64;

/**
 * Appends one CapturedPacket as field 1 of a CaptureBatch at `pos` in `b` (which must have
 * PACKET_OVERHEAD + data bytes free); the data is `header` (may be empty) then `src[start, end)`.
 * Returns the new position.
 */
export function writePacket(
  b: Buffer, pos: number, sec: number, nsec: number, originalLength: number, iface: number, ifindex: number,
  direction: number, header: Buffer | null, src: Buffer, start: number, end: number,
): number {
  const dataLen = (header ? header.length : 0) + end - start;
  const inner = (sec ? 1 + varintSize(sec) : 0) + (nsec ? 1 + varintSize(nsec) : 0)
    + (originalLength ? 1 + varintSize(originalLength) : 0)
    + (iface ? 1 + varintSize(iface) : 0)
    + (ifindex ? 1 + varintSize(ifindex) : 0)
    + (direction ? 2 : 0)
    + (dataLen ? 1 + varintSize(dataLen) + dataLen : 0);
  pos = varintField(b, pos, 0x0a, inner);
  if (originalLength) {
    pos = varintField(b, pos, 0x10, originalLength);
  }
  if (iface) {
    pos = varintField(b, pos, 0x18, iface);
  }
  if (ifindex) {
    pos = varintField(b, pos, 0x20, ifindex);
  }
  if (direction) {
    b[pos++] = 0x28;
    b[pos++] = direction;
  }
  if (dataLen) {
    pos = varintField(b, pos, 0x32, dataLen);
    if (header) pos = copyInto(b, pos, header, 0, header.length);
    pos = copyInto(b, pos, src, start, end);
  }
  if (sec) {
    pos = varintField(b, pos, 0x38, sec);
  }
  if (nsec) {
    pos = varintField(b, pos, 0x40, nsec);
  }
  return pos;
}

/**
 * Copies src[start, end) to b at pos; returns the new position. When src is another view of
 * b's memory (the daemon copies ring blocks next to the batch it fills), one copyWithin: a
 * memmove without an allocation (~20 ns for 106 bytes, vs ~60 for copy() or set(subarray),
 * ~170 byte by byte). Else tiny spans byte by byte, the rest by copy().
 */
function copyInto(b: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  const n = end - start;
  if (src.buffer === b.buffer) {
    const delta = src.byteOffset - b.byteOffset;
    b.copyWithin(pos, delta + start, delta + end);
  } else if (n <= 24) {
    for (let i = start; i < end; i++) b[pos + i - start] = src[i]!;
  } else {
    src.copy(b, pos, start, end);
  }
  return pos + n;
}

/** CaptureStats fields, all non-negative integers < 2^53. */
export interface StatsValues {
  received: number;
  captured: number;
  droppedByKernel: number;
  droppedByBroker: number;
  pending: number;
  freezeCount: number;
  capturedBytes: number;
}

function encodeUintFields(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 11);
  let pos = 0;
  values.forEach((v, i) => {
    if (!v) return;
    pos = varintField(b, pos, ((i + 1) << 3) | 0, v);
  });
  return b.subarray(0, pos);
}

/**
 * One CaptureResponse{batch} from encoded packet entries (`packets`, field 1 items), the counters
 * and the watermark (seconds, nanoseconds).
 */
export function encodeBatchResponse(packets: Buffer, stats: StatsValues, wmSec: number, wmNsec: number): Buffer {
  const s = encodeUintFields([stats.received, stats.captured, stats.droppedByKernel, stats.droppedByBroker, stats.pending, stats.freezeCount, stats.capturedBytes]);
  const tail = Buffer.alloc(2 + varintSize(s.length) + 11);
  let t = 0;
  t = varintField(tail, t, 0x12, s.length);
  const statsHead = tail.subarray(0, t);
  let w = 0;
  const wm = Buffer.alloc(22);
  if (wmSec) {
    w = varintField(wm, w, 0x20, wmSec);
  }
  if (wmNsec) {
    w = varintField(wm, w, 0x28, wmNsec);
  }
  const batchLen = packets.length + statsHead.length + s.length + w;
  const head = Buffer.alloc(1 + varintSize(batchLen));
  head[0] = 0x12; // CaptureResponse.batch
  writeVarint(head, 1, batchLen);
  return Buffer.concat([head, packets, statsHead, s, wm.subarray(0, w)]);
}

/** Bytes to leave before a batch's packet entries for batchResponseAround(). */
export const BATCH_HEAD_ROOM = 6;
/** Bytes to leave after them (counters and watermark). */
export const BATCH_TAIL_ROOM = 2 + 7 * 11 + 2 + 22 + 8;

/**
 * encodeBatchResponse() in place: `b` holds the packet entries at [start, end), with
 * BATCH_HEAD_ROOM bytes free before and BATCH_TAIL_ROOM after; the message is a view of `b`.
 */
export function batchResponseAround(b: Buffer, start: number, end: number, stats: StatsValues, wmSec: number, wmNsec: number): Buffer {
  let pos = end + 1 + 1; // counters' tag and length (< 128 bytes: one byte)
  const s0 = pos;
  const values = [stats.received, stats.captured, stats.droppedByKernel, stats.droppedByBroker, stats.pending, stats.freezeCount, stats.capturedBytes];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!v) continue;
    pos = varintField(b, pos, (i + 1) << 3, v);
  }
  b[end] = 0x12;
  b[end + 1] = pos - s0;
  if (wmSec) {
    pos = varintField(b, pos, 0x20, wmSec);
  }
  if (wmNsec) {
    pos = varintField(b, pos, 0x28, wmNsec);
  }
  const batchLen = pos - start;
  const head = 1 + varintSize(batchLen);
  if (head > start) throw new RangeError('batchResponseAround: no head room');
  b[start - head] = 0x12; // CaptureResponse.batch
  writeVarint(b, start - head + 1, batchLen);
  return b.subarray(start - head, pos);
}

/** A packet as it came off the wire. */
export interface WirePacket {
  /** Nanoseconds since the epoch (computed when first read: the writers use seconds + nanos). */
  readonly timestampNs: bigint;
  seconds: number;
  nanos: number;
  originalLength: number;
  /** Index into the armed message's interfaces. */
  interface: number;
  ifindex: number;
  /** CaptureDirection: 1 = in, 2 = out, 0 = unknown. */
  direction: number;
  data: Buffer;
}

export interface WireStats {
  received: number;
  captured: number;
  droppedByKernel: number;
  droppedByBroker: number;
  pending: number;
  freezeCount: number;
  capturedBytes: number;
}

export interface WireBatch {
  /** The packets as objects (made on first use from `fields`). */
  readonly packets: WirePacket[];
  stats: WireStats | undefined;
  watermarkNs: bigint;
  /** Packets in the batch. */
  readonly count: number;
  /**
   * Packet i's fields at [i * PACKET_FIELDS, (i + 1) * PACKET_FIELDS): seconds, nanos, original
   * length, interface, ifindex, direction, and its data's [start, end) in `buf` (a writer can copy
   * records straight from the message, without an object per packet).
   */
  readonly fields: Float64Array;
  readonly buf: Buffer;
}

/** Numbers per packet in WireBatch.fields, and their offsets. */
export const PACKET_FIELDS = 8;
export const F_SECONDS = 0, F_NANOS = 1, F_ORIGINAL_LENGTH = 2, F_INTERFACE = 3, F_IFINDEX = 4, F_DIRECTION = 5, F_DATA_START = 6, F_DATA_END = 7;

export type WireResponse = { armed: CaptureArmed; batch?: undefined } | { armed?: undefined; batch: WireBatch };

class Reader {
  pos: number;
  constructor(readonly buf: Buffer, start: number, readonly end: number) {
    this.pos = start;
  }

  /** A varint as a number (exact up to 2^53). */
  varint(): number {
    const b = this.buf;
    let x = b[this.pos++]!;
    if (x < 0x80) return x;
    x &= 0x7f;
    let mul = 0x80;
    for (;;) {
      const c = b[this.pos++];
      if (c === undefined || this.pos > this.end) throw new RangeError('truncated capture message');
      x += (c & 0x7f) * mul;
      if (c < 0x80) return x;
      mul *= 0x80;
    }
  }

  /** Bounds of a length-delimited field's contents. */
  len(): [number, number] {
    const n = this.varint();
    const start = this.pos;
    this.pos += n;
    if (this.pos > this.end) throw new RangeError('truncated capture message');
    return [start, this.pos];
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.pos += 8; break;
      case 2: this.len(); break;
      case 5: this.pos += 4; break;
      default: throw new RangeError(`bad wire type ${wireType} in capture message`);
    }
    if (this.pos > this.end) throw new RangeError('truncated capture message');
  }
}

class Packet implements WirePacket {
  seconds = 0;
  nanos = 0;
  originalLength = 0;
  interface = 0;
  ifindex = 0;
  direction = 0;
  data: Buffer = EMPTY;
  #ns: bigint | undefined;
  get timestampNs(): bigint {
    return (this.#ns ??= BigInt(this.seconds) * NS + BigInt(this.nanos));
  }
}

/** A varint at `pos` in `buf` (exact up to 2^53), read without a Reader: its end is VARINT_END. */
let VARINT_END = 0;
function varintAt(buf: Buffer, pos: number, end: number): number {
  let x = buf[pos++]!;
  if (x >= 0x80) {
    x &= 0x7f;
    let mul = 0x80;
    for (;;) {
      const c = buf[pos++];
      if (c === undefined || pos > end) throw new RangeError('truncated capture message');
      x += (c & 0x7f) * mul;
      if (c < 0x80) break;
      mul *= 0x80;
    }
  }
  VARINT_END = pos;
  return x;
}

/** One CapturedPacket in buf[start, end) into f[o, o + PACKET_FIELDS): no Reader, tuple or object per packet. */
function packetFields(buf: Buffer, start: number, end: number, f: Float64Array, o: number): void {
  let sec = 0, nanos = 0, originalLength = 0, iface = 0, ifindex = 0, direction = 0, ds = start, de = start;
  let pos = start;
  while (pos < end) {
    const tag = varintAt(buf, pos, end);
    pos = VARINT_END;
    if ((tag & 7) === 0) {
      const v = varintAt(buf, pos, end);
      pos = VARINT_END;
      switch (tag) {
        case 56: sec = v; break;
        case 64: nanos = v; break;
        case 16: originalLength = v; break;
        case 24: iface = v; break;
        case 32: ifindex = v; break;
        case 40: direction = v; break;
        default: break;
      }
    } else if (tag === 50) {
      const n = varintAt(buf, pos, end);
      const s = VARINT_END;
      pos = s + n;
      if (pos > end) throw new RangeError('truncated capture message');
      ds = s;
      de = pos;
    } else {
      const r = new Reader(buf, pos, end);
      r.skip(tag & 7);
      pos = r.pos;
    }
  }
  f[o + F_SECONDS] = sec;
  f[o + F_NANOS] = nanos;
  f[o + F_ORIGINAL_LENGTH] = originalLength;
  f[o + F_INTERFACE] = iface;
  f[o + F_IFINDEX] = ifindex;
  f[o + F_DIRECTION] = direction;
  f[o + F_DATA_START] = ds;
  f[o + F_DATA_END] = de;
}

class Batch implements WireBatch {
  stats: WireStats | undefined = undefined;
  watermarkNs = 0n;
  count = 0;
  fields = EMPTY_FIELDS;
  #packets: WirePacket[] | undefined;
  constructor(readonly buf: Buffer) {}

  get packets(): WirePacket[] {
    if (this.#packets) return this.#packets;
    const f = this.fields;
    const out: WirePacket[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) {
      const o = i * PACKET_FIELDS;
      const p = new Packet();
      p.seconds = f[o + F_SECONDS]!;
      p.nanos = f[o + F_NANOS]!;
      p.originalLength = f[o + F_ORIGINAL_LENGTH]!;
      p.interface = f[o + F_INTERFACE]!;
      p.ifindex = f[o + F_IFINDEX]!;
      p.direction = f[o + F_DIRECTION]!;
      p.data = this.buf.subarray(f[o + F_DATA_START], f[o + F_DATA_END]);
      out[i] = p;
    }
    return (this.#packets = out);
  }
}

function decodeStats(buf: Buffer, start: number, end: number): WireStats {
  const r = new Reader(buf, start, end);
  const s: WireStats = { received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0 };
  const keys = [undefined, 'received', 'captured', 'droppedByKernel', 'droppedByBroker', 'pending', 'freezeCount', 'capturedBytes'] as const;
  while (r.pos < end) {
    const tag = r.varint();
    const key = keys[tag >>> 3];
    if ((tag & 7) === 0 && key) s[key] = r.varint();
    else r.skip(tag & 7);
  }
  return s;
}

const EMPTY_FIELDS = new Float64Array(0);

/** Packet entries (field 1) in a CaptureBatch at buf[start, end): a cheap pass, to size the fields once. */
function countEntries(buf: Buffer, start: number, end: number): number {
  const r = new Reader(buf, start, end);
  let n = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 10) n++;
    r.skip(tag & 7);
  }
  return n;
}

function batch(buf: Buffer, start: number, end: number): WireBatch {
  const r = new Reader(buf, start, end);
  const b = new Batch(buf);
  b.fields = new Float64Array(PACKET_FIELDS * countEntries(buf, start, end));
  let sec = 0;
  let nanos = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 10) {
      const n = r.varint();
      const s = r.pos;
      r.pos += n;
      if (r.pos > end) throw new RangeError('truncated capture message');
      packetFields(buf, s, r.pos, b.fields, b.count * PACKET_FIELDS);
      b.count++;
    } else if (tag === 18) {
      const [s, e] = r.len();
      b.stats = decodeStats(buf, s, e);
    } else if (tag === 32) {
      sec = r.varint();
    } else if (tag === 40) {
      nanos = r.varint();
    } else {
      r.skip(tag & 7);
    }
  }
  if (sec || nanos) b.watermarkNs = BigInt(sec) * NS + BigInt(nanos);
  return b;
}

/** Decodes one CaptureResponse message. */
export function decodeCaptureResponse(buf: Buffer): WireResponse {
  const r = new Reader(buf, 0, buf.length);
  let out: WireResponse | undefined;
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag === 10) {
      const [s, e] = r.len();
      out = { armed: CaptureArmed.decode(buf.subarray(s, e)) };
    } else if (tag === 18) {
      const [s, e] = r.len();
      out = { batch: batch(buf, s, e) };
    } else {
      r.skip(tag & 7);
    }
  }
  if (!out) throw new RangeError('empty capture message');
  return out;
}

const EMPTY = Buffer.alloc(0);
const NS = 1_000_000_000n;

/**
 * The packets' data of one CaptureResponse{batch} (or SniffResponse) as [start, end) offsets
 * into `buf`, without an object per packet (a sniffer socket's read-ahead), and the counters.
 */
export function decodeBatchSpans(buf: Buffer): { spans: Int32Array; count: number; stats: WireStats | undefined } {
  const r = new Reader(buf, 0, buf.length);
  let spans = new Int32Array(0);
  let count = 0;
  let stats: WireStats | undefined;
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag !== 18) {
      r.skip(tag & 7);
      continue;
    }
    const [bs, be] = r.len();
    const b = new Reader(buf, bs, be);
    while (b.pos < be) {
      const t = b.varint();
      if (t === 10) {
        if (2 * count === spans.length) {
          const grown = new Int32Array(Math.max(1024, spans.length * 2));
          grown.set(spans);
          spans = grown;
        }
        const [ps, pe] = b.len();
        const p = new Reader(buf, ps, pe);
        let ds = ps, de = ps;
        while (p.pos < pe) {
          const pt = p.varint();
          if (pt === 50) [ds, de] = p.len();
          else p.skip(pt & 7);
        }
        spans[2 * count] = ds;
        spans[2 * count + 1] = de;
        count++;
      } else if (t === 18) {
        const [ss, se] = b.len();
        stats = decodeStats(buf, ss, se);
      } else {
        b.skip(t & 7);
      }
    }
  }
  return { spans, count, stats };
}
