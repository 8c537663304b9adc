// sendmsg(2)/recvmsg(2) through ffi-rs: struct msghdr, its iovec array, the address and the
// control buffer are laid out in one block of native memory (malloc'd, so its address is fixed
// while the syscall runs; a JS Buffer may move or be copied by ffi-rs), and the syscall gets a
// pointer to the msghdr in it. The layout is a pure function of the block's address, unit-tested
// byte by byte; cmsg encoding/decoding is pure too. LP64 little-endian glibc only (x86_64,
// aarch64), as the rest of native/.
import { endianness } from 'node:os';
import { DataType, load, open, type JsExternal } from 'ffi-rs';
import { abi } from './constants.js';
import { errnoException } from './errno.js';
import { IOVEC, lastErrno, mallocBlock, MSGHDR } from './libc.js';

export { IOVEC, MSGHDR };

if (endianness() !== 'LE' || abi.sizeof_long !== 8) throw new Error('native/msg: LP64 little-endian hosts only');

open({ library: 'libc', path: '' });

const { I32, I64, External } = DataType;

/** struct cmsghdr: len (size_t), level, type; data follows at CMSG_ALIGN(sizeof(cmsghdr)). */
const CMSG_HDR = abi.sizeof_cmsghdr;
const CMSG_ALIGN = abi.cmsg_align;
const SOCKADDR_MAX = abi.sizeof_sockaddr_storage;

export const cmsgAlign = (n: number): number => (n + CMSG_ALIGN - 1) & ~(CMSG_ALIGN - 1);
/** CMSG_LEN(n): header plus n data bytes. */
export const cmsgLen = (n: number): number => cmsgAlign(CMSG_HDR) + n;
/** CMSG_SPACE(n): header plus n data bytes plus trailing padding. */
export const cmsgSpace = (n: number): number => cmsgAlign(CMSG_HDR) + cmsgAlign(n);

/** One control message as the kernel carries it. */
export interface Cmsg {
  level: number;
  type: number;
  data: Buffer;
}

/** The control buffer for `items`: each one at CMSG_SPACE of its data, zero padded. */
export function encodeCmsgs(items: Cmsg[]): Buffer {
  const out = Buffer.alloc(items.reduce((n, c) => n + cmsgSpace(c.data.length), 0));
  let off = 0;
  for (const c of items) {
    out.writeBigUInt64LE(BigInt(cmsgLen(c.data.length)), off);
    out.writeInt32LE(c.level, off + 8);
    out.writeInt32LE(c.type, off + 12);
    c.data.copy(out, off + cmsgAlign(CMSG_HDR));
    off += cmsgSpace(c.data.length);
  }
  return out;
}

/**
 * The control messages in `ctl` (exactly msg_controllen bytes), walked as CMSG_FIRSTHDR /
 * CMSG_NXTHDR do. An item whose cmsg_len runs past the end keeps the bytes that are there and
 * is marked truncated (CPython returns that part with a RuntimeWarning); a cmsg_len shorter than
 * the header ends the walk. Data never shares memory with ctl.
 */
export function decodeCmsgs(ctl: Buffer): Array<Cmsg & { truncated: boolean }> {
  const out: Array<Cmsg & { truncated: boolean }> = [];
  let off = 0;
  while (off + CMSG_HDR <= ctl.length) {
    const len = Number(ctl.readBigUInt64LE(off));
    if (len < CMSG_HDR) break;
    const start = off + cmsgAlign(CMSG_HDR);
    const end = off + len;
    out.push({
      level: ctl.readInt32LE(off + 8),
      type: ctl.readInt32LE(off + 12),
      data: Buffer.from(ctl.subarray(Math.min(start, ctl.length), Math.min(end, ctl.length))),
      truncated: end > ctl.length,
    });
    // Nothing follows an item that reaches the end; and a cmsg_len of 2^31 or more would wrap
    // cmsgAlign's 32-bit arithmetic to a step of zero or less (an endless walk).
    if (end >= ctl.length) break;
    off += cmsgAlign(len);
  }
  return out;
}

/** Where each part of a message sits in a block that starts at address `base`. */
export interface MsgLayout {
  size: number;
  iov: number;
  name: number;
  control: number;
  /** Offset of each data buffer. */
  data: number[];
}

/**
 * Lays out msghdr, iovecs, address, control and data for a block at `base` and writes the
 * header part (msghdr and iovecs, with absolute pointers) into `block`, when given. Pure.
 * A zero-length name or control is a NULL pointer with length 0, as CPython passes them.
 */
export function layoutMsg(
  base: bigint, iovLens: number[], nameLen: number, controlLen: number, block?: Buffer,
): MsgLayout {
  const iov = MSGHDR.size;
  const name = iov + IOVEC.size * iovLens.length;
  const control = cmsgAlign(name + nameLen);
  let at = control + cmsgAlign(controlLen);
  const data = iovLens.map((n) => {
    const here = at;
    at += n;
    return here;
  });
  const layout = { size: Math.max(at, 1), iov, name, control, data };
  if (block) {
    block.fill(0, 0, name);
    block.writeBigUInt64LE(nameLen ? base + BigInt(name) : 0n, MSGHDR.name);
    block.writeUInt32LE(nameLen, MSGHDR.namelen);
    block.writeBigUInt64LE(iovLens.length ? base + BigInt(iov) : 0n, MSGHDR.iov);
    block.writeBigUInt64LE(BigInt(iovLens.length), MSGHDR.iovlen);
    block.writeBigUInt64LE(controlLen ? base + BigInt(control) : 0n, MSGHDR.control);
    block.writeBigUInt64LE(BigInt(controlLen), MSGHDR.controllen);
    iovLens.forEach((n, i) => {
      block.writeBigUInt64LE(base + BigInt(data[i]!), iov + i * IOVEC.size + IOVEC.base);
      block.writeBigUInt64LE(BigInt(n), iov + i * IOVEC.size + IOVEC.len);
    });
  }
  return layout;
}

/** A block of native memory: its address and a Buffer over it (no copy). */
interface Block {
  ptr: JsExternal;
  addr: bigint;
  size: number;
  buf: Buffer;
}

function malloc(size: number): Block {
  const b = mallocBlock(size);
  return { ptr: b.ptr, addr: BigInt(b.addr), size, buf: b.view };
}

function free(b: Block): void {
  load({ library: 'libc', funcName: 'free', retType: DataType.Void, paramsType: [External], paramsValue: [b.ptr] });
}

// One reusable block for ordinary calls (the daemon makes these syscalls on its main thread,
// one at a time); larger ones get a block of their own, freed after the call.
const KEEP = 64 * 1024;
let shared: Block | undefined;

function withBlock<T>(size: number, fn: (b: Block) => T): T {
  if (size > KEEP) {
    const b = malloc(size);
    try {
      return fn(b);
    } finally {
      free(b);
    }
  }
  shared ??= malloc(KEEP);
  return fn(shared);
}

// errno is read as libc.ts reads it (lastErrno, only on -1).
const sys = {
  sendmsg: (fd: number, msg: bigint, flags: number) =>
    load({ library: 'libc', funcName: 'sendmsg', retType: I64, paramsType: [I32, I64, I32], paramsValue: [fd, Number(msg), flags] }) as unknown as number,
  recvmsg: (fd: number, msg: bigint, flags: number) =>
    load({ library: 'libc', funcName: 'recvmsg', retType: I64, paramsType: [I32, I64, I32], paramsValue: [fd, Number(msg), flags] }) as unknown as number,
};

/**
 * sendmsg(2): gathers `buffers` into one message with the control bytes `control` (already
 * encoded, may be empty) to `addr` (a sockaddr, or null for none). Returns bytes sent.
 */
export function sendmsg(fd: number, buffers: Buffer[], control: Buffer, flags: number, addr: Buffer | null): number {
  const lens = buffers.map((b) => b.length);
  const nameLen = addr?.length ?? 0;
  const plan = layoutMsg(0n, lens, nameLen, control.length);
  return withBlock(plan.size, (b) => {
    const l = layoutMsg(b.addr, lens, nameLen, control.length, b.buf);
    if (addr) addr.copy(b.buf, l.name);
    control.copy(b.buf, l.control);
    buffers.forEach((d, i) => d.copy(b.buf, l.data[i]!));
    const r = sys.sendmsg(fd, b.addr, flags);
    if (r === -1) throw errnoException(lastErrno(), 'sendmsg');
    return r;
  });
}

/** What recvmsg(2) gave. */
export interface Received {
  /** The syscall's return value (with MSG_TRUNC on a datagram socket: the datagram's real size). */
  n: number;
  /** The data, at most bufsize bytes (a copy). */
  data: Buffer;
  /** The control bytes, exactly msg_controllen long (a copy). */
  control: Buffer;
  msgFlags: number;
  /** The sender's sockaddr, exactly msg_namelen long (empty when none). */
  addr: Buffer;
}

/** recvmsg(2) with one buffer of `bufsize` bytes and a control buffer of `ancbufsize` bytes. */
export function recvmsg(fd: number, bufsize: number, ancbufsize: number, flags: number): Received {
  const lens = [bufsize];
  const plan = layoutMsg(0n, lens, SOCKADDR_MAX, ancbufsize);
  return withBlock(plan.size, (b) => {
    const l = layoutMsg(b.addr, lens, SOCKADDR_MAX, ancbufsize, b.buf);
    const r = sys.recvmsg(fd, b.addr, flags);
    if (r === -1) throw errnoException(lastErrno(), 'recvmsg');
    const namelen = Math.min(b.buf.readUInt32LE(MSGHDR.namelen), SOCKADDR_MAX);
    const controllen = Math.min(Number(b.buf.readBigUInt64LE(MSGHDR.controllen)), ancbufsize);
    return {
      n: r,
      data: Buffer.from(b.buf.subarray(l.data[0]!, l.data[0]! + Math.min(r, bufsize))),
      control: Buffer.from(b.buf.subarray(l.control, l.control + controllen)),
      msgFlags: b.buf.readInt32LE(MSGHDR.flags),
      addr: Buffer.from(b.buf.subarray(l.name, l.name + namelen)),
    };
  });
}
