// pcap and pcapng writers: pure encoders that turn captured packets into file bytes, one Buffer
// per call (a whole batch in one allocation, so a 300k packets/s capture costs one write per
// batch). Little-endian, as libpcap writes on this host; readers accept either order.
//   pcap:   https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html
//   pcapng: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html

import { F_DATA_END, F_DATA_START, F_NANOS, F_ORIGINAL_LENGTH, F_SECONDS, PACKET_FIELDS } from '../proto/codec/capture.js';

/** One captured packet, as the writers and the merge see it. */
export interface PacketRecord {
  /** Kernel timestamp: nanoseconds since the Unix epoch. */
  timestampNs: bigint;
  /** The same timestamp as whole seconds and nanoseconds, when known (saves bigint work per packet). */
  seconds?: number;
  nanos?: number;
  /** The captured bytes (caplen = data.length, at most the snap length). */
  data: Uint8Array;
  /** Length of the packet on the wire (>= data.length). */
  originalLength: number;
  /** Direction as the kernel saw it, when known. */
  direction?: 'in' | 'out';
}

/** Well-known link types (LINKTYPE_*, tcpdump.org/linktypes.html). */
export const LINKTYPE = { NULL: 0, ETHERNET: 1, RAW: 101, LINUX_SLL: 113, IPV4: 228, IPV6: 229, LINUX_SLL2: 276 } as const;

/** tcpdump's name for a link type (`listening on ..., link-type EN10MB (Ethernet)`). */
export function linkTypeName(linkType: number): string {
  switch (linkType) {
    case LINKTYPE.NULL: return 'NULL (BSD loopback)';
    case LINKTYPE.ETHERNET: return 'EN10MB (Ethernet)';
    case LINKTYPE.RAW: return 'RAW (Raw IP)';
    case LINKTYPE.LINUX_SLL: return 'LINUX_SLL (Linux cooked v1)';
    case LINKTYPE.LINUX_SLL2: return 'LINUX_SLL2 (Linux cooked v2)';
    default: return `${linkType}`;
  }
}

const NS_PER_S = 1_000_000_000n;

/** A little-endian uint32 at `o` (no range checks: the writers size their buffers). */
function putU32(b: Buffer, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

/**
 * The first `n` bytes of `data` to b at `o`. Small packets byte by byte: a subarray per packet
 * (and set()'s call) costs more than their bytes.
 */
function copyData(b: Buffer, o: number, data: Uint8Array, n: number): void {
  b.set(n === data.length ? data : data.subarray(0, n), o);
}

function checkSnaplen(snaplen: number): void {
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) throw new RangeError(`snap length must be 1..2147483647, not ${snaplen}`);
}

/**
 * Classic pcap: one link type and snap length for the whole file. Timestamps in nanoseconds
 * (magic a1b23c4d) by default, or microseconds (a1b2c3d4, what every old reader knows).
 */
export class PcapWriter {
  readonly linkType: number;
  readonly snaplen: number;
  readonly nanosecond: boolean;

  constructor(opts: { linkType: number; snaplen: number; nanosecond?: boolean }) {
    checkSnaplen(opts.snaplen);
    this.linkType = opts.linkType;
    this.snaplen = opts.snaplen;
    this.nanosecond = opts.nanosecond ?? true;
  }

  /** The 24-byte file header. */
  header(): Buffer {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(this.nanosecond ? 0xa1b23c4d : 0xa1b2c3d4, 0);
    b.writeUInt16LE(2, 4);
    b.writeUInt16LE(4, 6);
    // thiszone and sigfigs stay 0, as libpcap writes them.
    b.writeUInt32LE(this.snaplen, 16);
    b.writeUInt32LE(this.linkType, 20);
    return b;
  }

  /** Records for `packets`, in one Buffer. A packet longer than the snap length is cut to it. */
  packets(packets: readonly PacketRecord[]): Buffer {
    let size = 0;
    for (const p of packets) size += 16 + Math.min(p.data.length, this.snaplen);
    const b = Buffer.allocUnsafe(size);
    let o = 0;
    for (const p of packets) {
      const caplen = Math.min(p.data.length, this.snaplen);
      let sec = p.seconds;
      let frac = p.nanos;
      if (sec === undefined || frac === undefined) {
        const s = p.timestampNs / NS_PER_S;
        sec = Number(s);
        frac = Number(p.timestampNs - s * NS_PER_S);
      }
      putU32(b, o, sec);
      putU32(b, o + 4, this.nanosecond ? frac : Math.floor(frac / 1000));
      putU32(b, o + 8, caplen);
      putU32(b, o + 12, Math.max(p.originalLength, caplen));
      copyData(b, o + 16, p.data, caplen);
      o += 16 + caplen;
    }
    return b;
  }
}

/**
 * Records for packets [0, count) of a received batch, copied straight from the message `buf`
 * (fields as in WireBatch.fields): one Buffer, no object per packet.
 */
export function pcapRecordsFromWire(w: PcapWriter, buf: Buffer, fields: Float64Array, count: number): Buffer {
  let size = 0;
  for (let i = 0, o = 0; i < count; i++, o += PACKET_FIELDS) size += 16 + Math.min(fields[o + F_DATA_END]! - fields[o + F_DATA_START]!, w.snaplen);
  // The message goes behind the records in a scratch buffer kept for the next batch, so each
  // packet's data moves by a copyWithin (a memmove, no allocation: ~20 vs ~70 ns for copy() of a
  // 106-byte packet); the records are then copied out whole.
  if (scratch.length < size + buf.length) scratch = Buffer.allocUnsafe(Math.max(size + buf.length, 2 * scratch.length));
  const whole = scratch;
  buf.copy(whole, size);
  const b = whole;
  let at = 0;
  for (let i = 0, o = 0; i < count; i++, o += PACKET_FIELDS) {
    const start = fields[o + F_DATA_START]!;
    const caplen = Math.min(fields[o + F_DATA_END]! - start, w.snaplen);
    const nanos = fields[o + F_NANOS]!;
    putU32(b, at, fields[o + F_SECONDS]!);
    putU32(b, at + 4, w.nanosecond ? nanos : Math.floor(nanos / 1000));
    putU32(b, at + 8, caplen);
    putU32(b, at + 12, Math.max(fields[o + F_ORIGINAL_LENGTH]!, caplen));
    whole.copyWithin(at + 16, size + start, size + start + caplen);
    at += 16 + caplen;
  }
  return Buffer.from(b.subarray(0, size));
}

let scratch = Buffer.alloc(0);

/** An interface of a pcapng section (one Interface Description Block). */
export interface PcapngInterface {
  linkType: number;
  snaplen: number;
  /** if_name, e.g. `eth0` or `broker-a/eth0`. */
  name: string;
  /** if_description, e.g. which broker it was captured on. */
  description?: string;
}

/** Counters of one interface at a moment (an Interface Statistics Block). */
export interface PcapngStatistics {
  /** When the counters were read (ns since the epoch). */
  timestampNs: bigint;
  /** Packets the filter accepted (tcpdump's "received by filter"). */
  received: bigint;
  /** Packets delivered to this file (tcpdump's "captured"). */
  captured: bigint;
  /** Packets the kernel dropped (ring full). */
  droppedByKernel: bigint;
  /** Packets the broker dropped under its backpressure policy. */
  droppedByBroker: bigint;
  /** When the capture started, for isb_starttime (ns since the epoch). */
  startNs?: bigint;
}

const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_ISB = 0x00000005;
const BT_EPB = 0x00000006;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;
const ISB_FILTERACCEPT = 6;
const ISB_OSDROP = 7;
const ISB_USRDELIV = 8;

/**
 * sec * 1e9 + nanos as 32-bit halves, exactly, in doubles (sec < 2^32): every partial product
 * stays below 2^53.
 */
export function nsHalves(sec: number, nanos: number): [number, number] {
  const x = (sec >>> 16) * 1e9; // sec's high 16 bits × 1e9, to be shifted by 2^16; < 2^46
  const y = (sec & 0xffff) * 1e9 + nanos; // < 2^47
  const low = (x % 65536) * 65536 + y; // x = xh·2^16 + xl, so x·2^16 = xh·2^32 + xl·2^16
  return [Math.floor(x / 65536) + Math.floor(low / 4294967296), low % 4294967296];
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** Options as TLVs (padded to 32 bits), ending with opt_endofopt; empty when there are none. */
function options(opts: Array<[number, Buffer]>): Buffer {
  if (opts.length === 0) return Buffer.alloc(0);
  const b = Buffer.alloc(opts.reduce((n, [, v]) => n + 4 + pad4(v.length), 0) + 4);
  let o = 0;
  for (const [code, value] of opts) {
    b.writeUInt16LE(code, o);
    b.writeUInt16LE(value.length, o + 2);
    value.copy(b, o + 4);
    o += 4 + pad4(value.length);
  }
  return b; // the last 4 bytes are opt_endofopt (code 0, length 0)
}

/** A block: type, total length, body (already padded), total length again. */
function block(type: number, body: Buffer): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(b.length, 4);
  body.copy(b, 8);
  b.writeUInt32LE(b.length, b.length - 4);
  return b;
}

const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

/** A pcapng timestamp as its two 32-bit halves, in nanoseconds (our if_tsresol is 9). */
const tsOption = (ns: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(Number(ns >> 32n), 0);
  b.writeUInt32LE(Number(ns & 0xffffffffn), 4);
  return b;
};

/**
 * pcapng: one section (SHB), an Interface Description Block per interface (each with its own
 * link type, if_name, if_description and nanosecond if_tsresol), Enhanced Packet Blocks with
 * the interface id and direction flags, and Interface Statistics Blocks carrying the counters.
 * Interfaces may be added at any time before their first packet.
 */
export class PcapngWriter {
  #interfaces: PcapngInterface[] = [];

  /** The Section Header Block (with shb_userappl naming the writer). */
  header(application = 'sockbroker'): Buffer {
    const fixed = Buffer.alloc(16);
    fixed.writeUInt32LE(0x1a2b3c4d, 0);
    fixed.writeUInt16LE(1, 4);
    fixed.writeUInt16LE(0, 6);
    fixed.writeBigInt64LE(-1n, 8); // section length unknown (we stream)
    return block(BT_SHB, Buffer.concat([fixed, options([[SHB_USERAPPL, Buffer.from(application)]])]));
  }

  /** Adds an interface: resolves to its id (for packets/statistics) and the IDB to write now. */
  addInterface(i: PcapngInterface): { id: number; block: Buffer } {
    checkSnaplen(i.snaplen);
    const fixed = Buffer.alloc(8);
    fixed.writeUInt16LE(i.linkType, 0);
    fixed.writeUInt32LE(i.snaplen, 4);
    const opts: Array<[number, Buffer]> = [[IF_NAME, Buffer.from(i.name)]];
    if (i.description) opts.push([IF_DESCRIPTION, Buffer.from(i.description)]);
    opts.push([IF_TSRESOL, Buffer.from([9])]);
    this.#interfaces.push(i);
    return { id: this.#interfaces.length - 1, block: block(BT_IDB, Buffer.concat([fixed, options(opts)])) };
  }

  get interfaces(): readonly PcapngInterface[] {
    return this.#interfaces;
  }

  /** Enhanced Packet Blocks for `packets` of interface `id`, in one Buffer. */
  packets(id: number, packets: readonly PacketRecord[]): Buffer {
    const snaplen = this.#iface(id).snaplen;
    let size = 0;
    for (const p of packets) size += 32 + pad4(Math.min(p.data.length, snaplen)) + (p.direction ? 12 : 0);
    const b = Buffer.alloc(size);
    let o = 0;
    for (const p of packets) o = this.#epb(b, o, id, snaplen, p);
    return b;
  }

  /** EPBs for packets of several interfaces, in the order given (a merged stream). */
  mixed(items: ReadonlyArray<{ id: number; packet: PacketRecord }>): Buffer {
    let size = 0;
    for (const { id, packet: p } of items) size += 32 + pad4(Math.min(p.data.length, this.#iface(id).snaplen)) + (p.direction ? 12 : 0);
    const b = Buffer.alloc(size);
    let o = 0;
    for (const { id, packet } of items) o = this.#epb(b, o, id, this.#interfaces[id]!.snaplen, packet);
    return b;
  }

  #iface(id: number): PcapngInterface {
    const i = this.#interfaces[id];
    if (!i) throw new RangeError(`no pcapng interface ${id}`);
    return i;
  }

  #epb(b: Buffer, start: number, id: number, snaplen: number, p: PacketRecord): number {
    const caplen = Math.min(p.data.length, snaplen);
    const len = 32 + pad4(caplen) + (p.direction ? 12 : 0);
    let o = start;
    putU32(b, o, BT_EPB);
    putU32(b, o + 4, len);
    putU32(b, o + 8, id);
    if (p.seconds !== undefined && p.nanos !== undefined) {
      const [hi, lo] = nsHalves(p.seconds, p.nanos);
      putU32(b, o + 12, hi);
      putU32(b, o + 16, lo);
    } else {
      putU32(b, o + 12, Number(p.timestampNs >> 32n));
      putU32(b, o + 16, Number(p.timestampNs & 0xffffffffn));
    }
    putU32(b, o + 20, caplen);
    putU32(b, o + 24, Math.max(p.originalLength, caplen));
    copyData(b, o + 28, p.data, caplen);
    o += 28 + pad4(caplen);
    if (p.direction) {
      // epb_flags bits 0-1: 01 inbound, 10 outbound; then opt_endofopt.
      b.writeUInt16LE(EPB_FLAGS, o);
      b.writeUInt16LE(4, o + 2);
      b.writeUInt32LE(p.direction === 'in' ? 1 : 2, o + 4);
      o += 12;
    }
    b.writeUInt32LE(len, o);
    return start + len;
  }

  /**
   * An Interface Statistics Block for interface `id`: isb_filteraccept = received by filter,
   * isb_osdrop = dropped by the kernel, isb_ifdrop = dropped by the broker (the capture's
   * interface between kernel and file), isb_usrdeliv = captured, plus a comment in tcpdump's words.
   */
  statistics(id: number, s: PcapngStatistics): Buffer {
    this.#iface(id);
    const fixed = Buffer.alloc(12);
    fixed.writeUInt32LE(id, 0);
    fixed.writeUInt32LE(Number(s.timestampNs >> 32n), 4);
    fixed.writeUInt32LE(Number(s.timestampNs & 0xffffffffn), 8);
    const opts: Array<[number, Buffer]> = [];
    if (s.startNs !== undefined) opts.push([ISB_STARTTIME, tsOption(s.startNs)]);
    opts.push(
      [ISB_ENDTIME, tsOption(s.timestampNs)],
      [ISB_IFRECV, u64(s.received)],
      [ISB_IFDROP, u64(s.droppedByBroker)],
      [ISB_FILTERACCEPT, u64(s.received)],
      [ISB_OSDROP, u64(s.droppedByKernel)],
      [ISB_USRDELIV, u64(s.captured)],
      [OPT_COMMENT, Buffer.from(`${s.captured} packets captured, ${s.received} received by filter, ${s.droppedByKernel} dropped by kernel, ${s.droppedByBroker} dropped by broker`)],
    );
    return block(BT_ISB, Buffer.concat([fixed, options(opts)]));
  }
}
