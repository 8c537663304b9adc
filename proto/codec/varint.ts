// Varint sizing and writing for the hand-written codecs (call, data, capture): one definition,
// exact for non-negative integers below 2^53, byte for byte what the generated encoders write.

/** Bytes a varint of `v` (an integer 0 .. 2^53) takes. */
export function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  if (v < 0x800000000) return 5;
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes a varint of a non-negative integer < 2^53 at `pos`; returns the new position. */
export function writeVarint(b: Buffer, pos: number, v: number): number {
  if (v <= 0xffffffff) {
    // 32 bits (timestamps, lengths): shifts instead of divisions.
    let u = v >>> 0;
    while (u >= 0x80) {
      b[pos++] = (u & 0x7f) | 0x80;
      u >>>= 7;
    }
    b[pos++] = u;
    return pos;
  }
  while (v >= 128) {
    b[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  b[pos++] = v;
  return pos;
}

/** A one-byte key, then a varint value, at `pos`; returns the new position. */
export function varintField(b: Buffer, pos: number, key: number, v: number): number {
  b[pos] = key;
  return writeVarint(b, pos + 1, v);
}
