// A small independent pcapng reader for the tests (little-endian sections only): blocks with
// their bodies and options, so tests can check what tshark does not print (ISB counters).
export interface Block {
  type: number;
  body: Buffer;
  options: Map<number, Buffer>;
}

/** Fixed-part sizes before the options, by block type. */
const FIXED: Record<number, number | ((body: Buffer) => number)> = {
  0x0a0d0d0a: 16,
  1: 8,
  5: 12,
  6: (body) => 20 + ((body.readUInt32LE(12) + 3) & ~3),
};

export function readPcapngBlocks(file: Buffer): Block[] {
  const out: Block[] = [];
  let o = 0;
  while (o < file.length) {
    const type = file.readUInt32LE(o);
    const len = file.readUInt32LE(o + 4);
    if (len < 12 || o + len > file.length || file.readUInt32LE(o + len - 4) !== len) throw new Error(`bad pcapng block at ${o}`);
    const body = file.subarray(o + 8, o + len - 4);
    const fixed = FIXED[type];
    const options = new Map<number, Buffer>();
    if (fixed !== undefined) {
      let p = typeof fixed === 'number' ? fixed : fixed(body);
      while (p + 4 <= body.length) {
        const code = body.readUInt16LE(p);
        const l = body.readUInt16LE(p + 2);
        if (code === 0) break;
        options.set(code, body.subarray(p + 4, p + 4 + l));
        p += 4 + ((l + 3) & ~3);
      }
    }
    out.push({ type, body, options });
    o += len;
  }
  return out;
}
