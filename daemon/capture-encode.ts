// Hand-written protobuf encoding of the capture stream's hot messages (CapturedPacket inside
// CaptureBatch inside CaptureResponse), byte for byte what the generated encoder writes, without
// an object per packet. test/capture/encode.test.ts checks it against the generated decoder.

/** Bytes a varint of `v` (an integer 0 .. 2^53) takes. */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes a varint of a non-negative integer < 2^53 at `pos`; returns the new position. */
export function writeVarint(b: Buffer, pos: number, v: number): number {
  while (v >= 128) {
    b[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  b[pos++] = v;
  return pos;
}

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
  b[pos++] = 0x0a;
  pos = writeVarint(b, pos, inner);
  if (originalLength) {
    b[pos++] = 0x10;
    pos = writeVarint(b, pos, originalLength);
  }
  if (iface) {
    b[pos++] = 0x18;
    pos = writeVarint(b, pos, iface);
  }
  if (ifindex) {
    b[pos++] = 0x20;
    pos = writeVarint(b, pos, ifindex);
  }
  if (direction) {
    b[pos++] = 0x28;
    b[pos++] = direction;
  }
  if (dataLen) {
    b[pos++] = 0x32;
    pos = writeVarint(b, pos, dataLen);
    if (header) pos += header.copy(b, pos);
    pos += src.copy(b, pos, start, end);
  }
  if (sec) {
    b[pos++] = 0x38;
    pos = writeVarint(b, pos, sec);
  }
  if (nsec) {
    b[pos++] = 0x40;
    pos = writeVarint(b, pos, nsec);
  }
  return pos;
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
    b[pos++] = ((i + 1) << 3) | 0;
    pos = writeVarint(b, pos, v);
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
  tail[t++] = 0x12;
  t = writeVarint(tail, t, s.length);
  const statsHead = tail.subarray(0, t);
  let w = 0;
  const wm = Buffer.alloc(22);
  if (wmSec) {
    wm[w++] = 0x20;
    w = writeVarint(wm, w, wmSec);
  }
  if (wmNsec) {
    wm[w++] = 0x28;
    w = writeVarint(wm, w, wmNsec);
  }
  const batchLen = packets.length + statsHead.length + s.length + w;
  const head = Buffer.alloc(1 + varintSize(batchLen));
  head[0] = 0x12; // CaptureResponse.batch
  writeVarint(head, 1, batchLen);
  return Buffer.concat([head, packets, statsHead, s, wm.subarray(0, w)]);
}
