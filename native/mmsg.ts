// recvmmsg(2) into one C arena (malloc'd once, never freed: the daemon's main thread is its only
// user, and a call copies out before returning), so a batch of datagrams costs one syscall plus
// one copy each instead of a recvfrom each. The arena is read and reset through a view of its
// memory, so the batch is one ffi call, and each datagram costs a copy of the bytes it holds.
// Layout: COUNT struct mmsghdr (64 bytes each, the array the kernel walks), COUNT pairs of
// struct iovec (32), COUNT sockaddr slots (40), then COUNT small data slots (SMALL bytes) and
// COUNT overflow slots for the rest of a large datagram.
import { DataType, load, open } from 'ffi-rs';
import { errnoException } from './errno.js';
import { AGAIN, lastErrno, mallocBlock } from './libc.js';
import { linux } from './constants.js';

open({ library: 'libc', path: '' });

const { I32, I64, U32 } = DataType;

/** Most datagrams one call returns. */
export const MMSG_COUNT = 64;
/** Largest datagram kept (bytes): an IP packet's maximum. */
export const MMSG_SLOT = 65536;
const MSG = 64;
const NAME_LEN = 40;
const SMALL = 2048;
const BIG = MMSG_SLOT - SMALL;
const IOV_AT = MMSG_COUNT * MSG;
const NAME_AT = IOV_AT + MMSG_COUNT * 32;
const DATA_AT = NAME_AT + MMSG_COUNT * NAME_LEN;
const BIG_AT = DATA_AT + MMSG_COUNT * SMALL;
const SIZE = BIG_AT + MMSG_COUNT * BIG;

/** The arena's address (for the kernel's pointers) and a view of it; the headers as written fresh. */
let arena: { at: number; view: Buffer; headers: Buffer } | undefined;

function setup(): NonNullable<typeof arena> {
  const { addr: at, view } = mallocBlock(SIZE);
  const headers = Buffer.alloc(DATA_AT);
  for (let i = 0; i < MMSG_COUNT; i++) writeHeader(headers, at, i);
  headers.copy(view);
  return { at, view, headers };
}

/** struct mmsghdr { struct msghdr { name, namelen, iov, iovlen, control, controllen, flags }; unsigned len; } */
function writeHeader(headers: Buffer, base: number, i: number): void {
  const h = i * MSG;
  headers.writeBigUInt64LE(BigInt(base + NAME_AT + i * NAME_LEN), h); // msg_name
  headers.writeUInt32LE(NAME_LEN, h + 8); // msg_namelen
  headers.writeBigUInt64LE(BigInt(base + IOV_AT + i * 32), h + 16); // msg_iov
  headers.writeBigUInt64LE(2n, h + 24); // msg_iovlen
  const iov = IOV_AT + i * 32;
  headers.writeBigUInt64LE(BigInt(base + DATA_AT + i * SMALL), iov);
  headers.writeBigUInt64LE(BigInt(SMALL), iov + 8);
  headers.writeBigUInt64LE(BigInt(base + BIG_AT + i * BIG), iov + 16);
  headers.writeBigUInt64LE(BigInt(BIG), iov + 24);
}

export interface Datagram {
  /** Bytes received (cut at the slot size; `length` says how long it was). */
  data: Buffer;
  length: number;
  addr: Buffer;
}

/**
 * Up to `max` datagrams waiting on `fd`, without blocking (MSG_DONTWAIT); AGAIN when none is
 * waiting. Each datagram's data is copied out, at most `keep` bytes of it; all of a batch's data
 * and addresses share one new buffer of just their size.
 */
export function recvmmsg(fd: number, max: number, keep: number): Datagram[] | typeof AGAIN {
  const a = (arena ??= setup());
  const n = Math.max(1, Math.min(MMSG_COUNT, max));
  // Reset the in/out fields the kernel wrote last time (namelen, msg_len, flags).
  a.headers.copy(a.view, 0, 0, n * MSG);
  const got = load({
    library: 'libc', funcName: 'recvmmsg', retType: I32, paramsType: [I32, I64, U32, I32, I64],
    paramsValue: [fd, a.at, n, linux.MSG_DONTWAIT!, 0],
  }) as unknown as number;
  if (got === -1) {
    const errno = lastErrno();
    if (errno === linux.EAGAIN) return AGAIN;
    throw errnoException(errno, 'recvmmsg');
  }
  const v = a.view;
  let total = 0;
  for (let i = 0; i < got; i++) total += Math.min(v.readUInt32LE(i * MSG + 56), keep, MMSG_SLOT) + Math.min(v.readUInt32LE(i * MSG + 8), NAME_LEN);
  const out = Buffer.allocUnsafe(total);
  const list: Datagram[] = [];
  let at = 0;
  for (let i = 0; i < got; i++) {
    const h = i * MSG;
    const length = v.readUInt32LE(h + 56); // msg_len
    const namelen = Math.min(v.readUInt32LE(h + 8), NAME_LEN);
    const take = Math.min(length, keep, MMSG_SLOT);
    const start = at;
    at += v.copy(out, at, DATA_AT + i * SMALL, DATA_AT + i * SMALL + Math.min(take, SMALL));
    if (take > SMALL) at += v.copy(out, at, BIG_AT + i * BIG, BIG_AT + i * BIG + take - SMALL);
    const data = out.subarray(start, at);
    const name = at;
    at += v.copy(out, at, NAME_AT + i * NAME_LEN, NAME_AT + i * NAME_LEN + namelen);
    list.push({ data, length, addr: out.subarray(name, at) });
  }
  return list;
}

/** Largest datagram, and sockaddr, sendmmsg takes here (bytes); larger ones are sent alone. */
export const SENDMMSG_SLOT = 2048;
export const SENDMMSG_NAME = 32;
const S_IOV_AT = MMSG_COUNT * MSG;
const S_NAME_AT = S_IOV_AT + MMSG_COUNT * 16;
const S_DATA_AT = S_NAME_AT + MMSG_COUNT * SENDMMSG_NAME;
const S_SIZE = S_DATA_AT + MMSG_COUNT * SENDMMSG_SLOT;

/** The send arena: headers pointing at their iovec, name and data slot, written once. */
let sendArena: { at: number; view: Buffer } | undefined;

function setupSend(): NonNullable<typeof sendArena> {
  const { addr: at, view } = mallocBlock(S_SIZE);
  view.fill(0);
  for (let i = 0; i < MMSG_COUNT; i++) {
    const h = i * MSG;
    view.writeBigUInt64LE(BigInt(at + S_NAME_AT + i * SENDMMSG_NAME), h); // msg_name
    view.writeBigUInt64LE(BigInt(at + S_IOV_AT + i * 16), h + 16); // msg_iov
    view.writeBigUInt64LE(1n, h + 24); // msg_iovlen
    view.writeBigUInt64LE(BigInt(at + S_DATA_AT + i * SENDMMSG_SLOT), S_IOV_AT + i * 16); // iov_base
  }
  return { at, view };
}

/**
 * sendmmsg(2) of up to MMSG_COUNT datagrams (each at most SENDMMSG_SLOT bytes, its address at
 * most SENDMMSG_NAME, or null for the connected peer) with one `flags`: the bytes sent of each
 * datagram sent, in order, maybe fewer than given. An error, or EAGAIN, of the first datagram
 * sends none (an empty list): the caller sends that one alone, to learn its own outcome.
 */
export function sendmmsg(fd: number, msgs: ReadonlyArray<{ data: Buffer; addr: Buffer | null }>, flags: number): number[] {
  const a = (sendArena ??= setupSend());
  const v = a.view;
  const n = Math.min(msgs.length, MMSG_COUNT);
  for (let i = 0; i < n; i++) {
    const { data, addr } = msgs[i]!;
    if (data.length > SENDMMSG_SLOT || (addr !== null && addr.length > SENDMMSG_NAME)) throw new RangeError('sendmmsg: a datagram or address beyond its slot');
    const h = i * MSG;
    data.copy(v, S_DATA_AT + i * SENDMMSG_SLOT);
    v.writeUInt32LE(data.length, S_IOV_AT + i * 16 + 8); // iov_len (the high half stays 0)
    if (addr) addr.copy(v, S_NAME_AT + i * SENDMMSG_NAME);
    v.writeUInt32LE(addr ? addr.length : 0, h + 8); // msg_namelen: 0 is no address
  }
  const got = load({
    library: 'libc', funcName: 'sendmmsg', retType: I32, paramsType: [I32, I64, U32, I32],
    paramsValue: [fd, a.at, n, flags],
  }) as unknown as number;
  const sent: number[] = [];
  for (let i = 0; i < got; i++) sent.push(v.readUInt32LE(i * MSG + 56));
  return sent;
}
