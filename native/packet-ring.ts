// An AF_PACKET socket's TPACKET_V3 receive ring: blocks of packets the kernel fills and hands
// over by setting a block's status to TP_STATUS_USER, and takes back when user space writes
// TP_STATUS_KERNEL. No Buffer ever views the mapping: a ready block is copied out (one memcpy)
// and returned to the kernel at once, so unmapping can never leave a dangling view.
//
// Ordering: the kernel fills a block, then (smp_wmb) sets its status. We read the status and
// then copy the block, each in its own FFI call (a compiler barrier); on x86-64 loads are not
// reordered with older loads, and the store returning the block is not reordered with the loads
// of the copy before it (TSO), so no fence is needed. Weakly ordered CPUs would need one: the
// ring refuses to run there.
import { DataType, load, open } from 'ffi-rs';
import { abi, linux, os } from './constants.js';
import { errnoException } from './errno.js';
import { getsockopt, setsockopt } from './libc.js';

open({ library: 'libc', path: '' });

const { I32, I64, U8Array } = DataType;

interface Result {
  value: number;
  errnoCode: number;
}

const call = (funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): Result =>
  load({ library: 'libc', funcName, retType, paramsType, paramsValue, errno: true }) as unknown as Result;

function copyFrom(dst: Buffer, addr: number, n: number): void {
  load({ library: 'libc', funcName: 'memcpy', retType: I64, paramsType: [U8Array, I64, I64], paramsValue: [dst, addr, n] });
}

const KERNEL = Buffer.alloc(4); // TP_STATUS_KERNEL = 0
const BLOCK_STATUS = abi.offsetof_tpacket_block_hdr!; // tpacket_hdr_v1.block_status
const TP_STATUS_USER = os.TP_STATUS_USER ?? 1;

/** Cumulative PACKET_STATISTICS of a socket (the kernel resets its copy on every read). */
export interface RingStats {
  /** Packets that passed the filter, dropped ones included. */
  packets: number;
  drops: number;
  freezes: number;
}

export interface RingGeometry {
  blockSize: number;
  blockCount: number;
  /** Milliseconds after which the kernel hands over a block that is not full. */
  retireMs: number;
}

/** Block geometry for a ring of about `bytes`: power-of-two blocks of 64 KiB .. 1 MiB, at least 4. */
export function ringGeometry(bytes: number, retireMs: number): RingGeometry {
  let blockSize = 1 << 20;
  while (blockSize > 1 << 16 && bytes / blockSize < 4) blockSize >>= 1;
  const blockCount = Math.max(4, Math.min(1024, Math.floor(bytes / blockSize)));
  return { blockSize, blockCount, retireMs: Math.max(1, Math.min(1000, Math.round(retireMs))) };
}

export class PacketRing {
  readonly #fd: number;
  readonly #geo: RingGeometry;
  readonly #addr: number;
  readonly #size: number;
  #next = 0;
  #unmapped = false;
  readonly #status = Buffer.alloc(4);
  readonly #head = Buffer.alloc(24);
  /** Where take() copies a block by default: one per ring (allocated on first use), so no block costs an allocation. */
  #scratch: Buffer | undefined;
  readonly stats: RingStats = { packets: 0, drops: 0, freezes: 0 };

  /** Sets TPACKET_V3 on `fd` (an AF_PACKET socket, not yet bound), creates the ring and maps it. */
  constructor(fd: number, geo: RingGeometry) {
    if (process.arch !== 'x64') throw new Error('the TPACKET_V3 ring relies on x86-64 memory ordering');
    this.#fd = fd;
    this.#geo = geo;
    const v = Buffer.alloc(4);
    v.writeInt32LE(os.TPACKET_V3!);
    setsockopt(fd, os.SOL_PACKET!, os.PACKET_VERSION!, v);
    // struct tpacket_req3 { block_size, block_nr, frame_size, frame_nr, retire_blk_tov, sizeof_priv, feature_req_word }
    const frameSize = 2048; // V3 frames are variable; frame_nr only has to match the blocks
    const req = Buffer.alloc(abi.sizeof_tpacket_req3!);
    req.writeUInt32LE(geo.blockSize, 0);
    req.writeUInt32LE(geo.blockCount, 4);
    req.writeUInt32LE(frameSize, 8);
    req.writeUInt32LE((geo.blockSize / frameSize) * geo.blockCount, 12);
    req.writeUInt32LE(geo.retireMs, 16);
    setsockopt(fd, os.SOL_PACKET!, os.PACKET_RX_RING!, req);
    this.#size = geo.blockSize * geo.blockCount;
    const r = call('mmap', I64, [I64, I64, I32, I32, I32, I64], [0, this.#size, os.PROT_READ! | os.PROT_WRITE!, os.MAP_SHARED!, fd, 0]);
    if (r.value === -1) throw errnoException(r.errnoCode, 'mmap');
    this.#addr = r.value;
  }

  get bytes(): number {
    return this.#size;
  }

  get blockSize(): number {
    return this.#geo.blockSize;
  }

  /**
   * The next block the kernel has handed over, copied out (its blk_len bytes), with the block
   * already given back; null when the next block is still the kernel's. Blocks come in ring order.
   * The copy is in `dst` (at least blockSize bytes) or else the ring's scratch buffer: valid
   * until the next take().
   */
  take(dst?: Buffer): Buffer | null {
    if (this.#unmapped) return null;
    const base = this.#addr + this.#next * this.#geo.blockSize;
    copyFrom(this.#status, base + BLOCK_STATUS, 4);
    if ((this.#status.readUInt32LE(0) & TP_STATUS_USER) === 0) return null;
    const head = this.#head;
    copyFrom(head, base, 24);
    const len = Math.min(head.readUInt32LE(20), this.#geo.blockSize); // blk_len
    if (dst && dst.length < this.#geo.blockSize) throw new RangeError('take: destination smaller than a block');
    const block = (dst ?? (this.#scratch ??= Buffer.allocUnsafe(this.#geo.blockSize))).subarray(0, len);
    copyFrom(block, base, len);
    // Last: the block goes back to the kernel only after the copy.
    load({ library: 'libc', funcName: 'memcpy', retType: I64, paramsType: [I64, U8Array, I64], paramsValue: [base + BLOCK_STATUS, KERNEL, 4] });
    this.#next = (this.#next + 1) % this.#geo.blockCount;
    return block;
  }

  /** Reads PACKET_STATISTICS (which resets the kernel's counters) into the running totals. */
  readStats(): RingStats {
    const b = getsockopt(this.#fd, os.SOL_PACKET!, os.PACKET_STATISTICS!, abi.sizeof_tpacket_stats_v3!);
    this.stats.packets += b.readUInt32LE(0);
    this.stats.drops += b.readUInt32LE(4);
    if (b.length >= 12) this.stats.freezes += b.readUInt32LE(8);
    return this.stats;
  }

  /** Unmaps the ring (the socket is closed by its owner). Idempotent. */
  unmap(): void {
    if (this.#unmapped) return;
    this.#unmapped = true;
    call('munmap', I32, [I64, I64], [this.#addr, this.#size]);
  }
}

/** One packet of a copied block: offsets into the block Buffer. */
export interface RingPacket {
  sec: number;
  nsec: number;
  /** Captured bytes (tp_snaplen) at `offset` in the block. */
  caplen: number;
  /** Length on the wire. */
  len: number;
  offset: number;
  /** Network header offset in the block (for cooked sockets data starts here). */
  ifindex: number;
  hatype: number;
  pkttype: number;
  /** sll_protocol in network byte order, as read (2 bytes). */
  protocol: number;
  halen: number;
  /** Offset of sll_addr (8 bytes) in the block. */
  addrOffset: number;
}

const SLL_OFFSET = 48; // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))

/** Little-endian reads without Buffer#readUInt*'s argument checks (offsets are checked by the walk). */
const u32 = (b: Buffer, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const u16 = (b: Buffer, o: number): number => b[o]! | (b[o + 1]! << 8);

/** Calls `fn` for each packet of a block copied by take(). */
export function forEachPacket(block: Buffer, fn: (p: RingPacket) => void): void {
  const count = u32(block, 12); // num_pkts
  let off = u32(block, 16); // offset_to_first_pkt
  const p: RingPacket = { sec: 0, nsec: 0, caplen: 0, len: 0, offset: 0, ifindex: 0, hatype: 0, pkttype: 0, protocol: 0, halen: 0, addrOffset: 0 };
  const size = block.length;
  for (let i = 0; i < count && off > 0 && off + SLL_OFFSET + 20 <= size; i++) {
    const next = u32(block, off);
    p.sec = u32(block, off + 4);
    p.nsec = u32(block, off + 8);
    p.caplen = u32(block, off + 12);
    p.len = u32(block, off + 16);
    p.offset = off + u16(block, off + 24); // tp_mac
    const sll = off + SLL_OFFSET;
    p.protocol = (block[sll + 2]! << 8) | block[sll + 3]!;
    p.ifindex = u32(block, sll + 4) | 0;
    p.hatype = u16(block, sll + 8);
    p.pkttype = block[sll + 10]!;
    p.halen = Math.min(block[sll + 11]!, 8);
    p.addrOffset = sll + 12;
    if (p.offset + p.caplen > size) break;
    fn(p);
    if (next === 0) break;
    off += next;
  }
}

/** The ARPHRD_* type of interface `ifname` (SIOCGIFHWADDR on any socket `fd` of its namespace). */
export function hardwareType(fd: number, ifname: string): number {
  const ifr = Buffer.alloc(40);
  ifr.write(ifname, 0, 15, 'utf8');
  const r = call('ioctl', I32, [I32, I64, U8Array], [fd, os.SIOCGIFHWADDR!, ifr]);
  if (r.value === -1) throw errnoException(r.errnoCode, 'ioctl');
  return ifr.readUInt16LE(16);
}

/** SO_ATTACH_FILTER with `prog` (encoded sock_filter array), then SO_LOCK_FILTER: it can never change. */
export function attachLockedFilter(fd: number, prog: Buffer): void {
  attachFilter(fd, prog);
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  setsockopt(fd, linux.SOL_SOCKET!, os.SO_LOCK_FILTER!, one);
}

/** SO_ATTACH_FILTER with `prog` (encoded sock_filter array); replaces the socket's filter at once. */
export function attachFilter(fd: number, prog: Buffer): void {
  const n = prog.length / 8;
  const mem = Number(load({ library: 'libc', funcName: 'malloc', retType: I64, paramsType: [I64], paramsValue: [prog.length] }));
  if (!mem) throw errnoException(12, 'malloc');
  try {
    load({ library: 'libc', funcName: 'memcpy', retType: I64, paramsType: [I64, U8Array, I64], paramsValue: [mem, prog, prog.length] });
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; } on LP64.
    const fprog = Buffer.alloc(abi.sizeof_sock_fprog!);
    fprog.writeUInt16LE(n, 0);
    fprog.writeBigUInt64LE(BigInt(mem), 8);
    setsockopt(fd, linux.SOL_SOCKET!, os.SO_ATTACH_FILTER!, fprog);
  } finally {
    load({ library: 'libc', funcName: 'free', retType: DataType.Void, paramsType: [I64], paramsValue: [mem] });
  }
}
