// Thin synchronous wrappers over libc through ffi-rs. Each returns the C
// result or throws errnoException(errno, name) on -1, with errno read from the
// same ffi-rs call (`errno: true`), never by a second call.
//
// Cost per call, loops of 10k calls, median of 5 runs (Node 20.20, 2 vCPU AMD
// EPYC VM, other work running): getpid ~2.9 us (= a bare ffi-rs load());
// recv -> EAGAIN thrown and caught ~12.5-13 us, of which the FFI call with a
// Buffer and errno ~7 us and building the ErrnoError (stack capture) ~3.5 us;
// send + recv of 64 B on a unix socketpair ~16 us; poll of 1 fd ~7 us;
// getsockopt ~10 us; epollWait(timeout 0) through the threadpool ~65-80 us.

import { endianness } from 'node:os';
import { createExternalBuffer, DataType, isNullPointer, load, open, type JsExternal } from 'ffi-rs';
import { abi, linux, os } from './constants.js';
import { errnoException } from './errno.js';

// Every struct below is read and written little-endian (x86_64, aarch64).
if (endianness() !== 'LE') throw new Error('native/libc: little-endian hosts only');

open({ library: 'libc', path: '' });

interface Result {
  value: number;
  errnoCode: number;
}

const { I32, I64, U32, U64, U8Array, External } = DataType;

// This thread's errno, read in place after a call. ffi-rs's `errno: true` formats a strerror
// message and builds an object on every call (~1 µs), success or not; nothing between the C
// call's return and ffi-rs's sets errno (1M failing calls amid GC: none read differently).
// Synchronous calls run on the thread that loaded this module, whose errno cell this is.
const errnoCell = createExternalBuffer(
  load({ library: 'libc', funcName: '__errno_location', retType: External, paramsType: [], paramsValue: [] }) as unknown as JsExternal,
  4,
);

/** errno as the last synchronous call through ffi-rs on this thread left it (for calls made with `errno: false`). */
export function lastErrno(): number {
  return errnoCell.readInt32LE(0);
}

// A function made once. Each call still needs a fresh params object: ffi-rs
// replaces params.paramsType with one sized to that call's buffers.
function fn(funcName: string, retType: DataType, paramsType: DataType[]) {
  return (...paramsValue: unknown[]): Result => {
    const value = load({ library: 'libc', funcName, retType, paramsType, paramsValue }) as unknown as number;
    return { value, errnoCode: errnoCell.readInt32LE(0) };
  };
}

// Same, run on the libuv threadpool: for calls that block (epoll_wait, a
// lingering close). Buffers are written in place there too; the caller must
// keep them referenced until the promise settles.
function fnOffThread(funcName: string, retType: DataType, paramsType: DataType[]) {
  return (...paramsValue: unknown[]): Promise<Result> =>
    load({
      library: 'libc', funcName, retType, paramsType, paramsValue, errno: true, runInNewThread: true,
    }) as unknown as Promise<Result>;
}

function check(r: Result, syscall: string): number {
  if (r.value === -1) throw errnoException(r.errnoCode, syscall);
  return r.value;
}

/** What the recv*Bytes calls return for EAGAIN instead of throwing it: the I/O driver waits on
 * it without building an error (~1.5 µs on the path of every read that waits). */
export const AGAIN: unique symbol = Symbol('EAGAIN');

function checkTry(r: Result, syscall: string): number | typeof AGAIN {
  if (r.value === -1) {
    if (r.errnoCode === linux.EAGAIN) return AGAIN;
    throw errnoException(r.errnoCode, syscall);
  }
  return r.value;
}

const c = {
  socket: fn('socket', I32, [I32, I32, I32]),
  socketpair: fn('socketpair', I32, [I32, I32, I32, U8Array]),
  bind: fn('bind', I32, [I32, U8Array, U32]),
  connect: fn('connect', I32, [I32, U8Array, U32]),
  listen: fn('listen', I32, [I32, I32]),
  accept4: fn('accept4', I32, [I32, U8Array, U8Array, I32]),
  send: fn('send', I64, [I32, U8Array, U64, I32]),
  sendmsgP: fn('sendmsg', I64, [I32, External, I32]),
  recvmsgP: fn('recvmsg', I64, [I32, External, I32]),
  epollCtlP: fn('epoll_ctl', I32, [I32, I32, I32, External]),
  epollWaitP: fn('epoll_wait', I32, [I32, External, I32, I32]),
  sendto: fn('sendto', I64, [I32, U8Array, U64, I32, U8Array, U32]),
  recv: fn('recv', I64, [I32, U8Array, U64, I32]),
  recvfrom: fn('recvfrom', I64, [I32, U8Array, U64, I32, U8Array, U8Array]),
  shutdown: fn('shutdown', I32, [I32, I32]),
  close: fn('close', I32, [I32]),
  getsockoptP: fn('getsockopt', I32, [I32, I32, I32, External, External]),
  setsockopt: fn('setsockopt', I32, [I32, I32, I32, U8Array, U32]),
  getsocknameP: fn('getsockname', I32, [I32, External, External]),
  getpeernameP: fn('getpeername', I32, [I32, External, External]),
  // Variadic in C; glibc reads the third argument as a pointer-sized value.
  fcntl: fn('fcntl', I32, [I32, I32, I64]),
  setfsuid: fn('setfsuid', I32, [U32]),
  setfsgid: fn('setfsgid', I32, [U32]),
  epollCreate1: fn('epoll_create1', I32, [I32]),
  epollCtl: fn('epoll_ctl', I32, [I32, I32, I32, U8Array]),
  epollWait: fn('epoll_wait', I32, [I32, U8Array, I32, I32]),
  eventfd: fn('eventfd', I32, [U32, I32]),
  read: fn('read', I64, [I32, U8Array, U64]),
  write: fn('write', I64, [I32, U8Array, U64]),
  poll: fn('poll', I32, [U8Array, U64, I32]),
  getrlimit: fn('getrlimit', I32, [I32, U8Array]),
  setrlimit: fn('setrlimit', I32, [I32, U8Array]),
  getpid: fn('getpid', I32, []),
  inetPton: fn('inet_pton', I32, [I32, U8Array, U8Array]),
  // Returns a char* (or NULL): only compared with 0, the text is read from dst.
  inetNtop: fn('inet_ntop', I64, [I32, U8Array, U8Array, U32]),
};

const offThread = {
  close: fnOffThread('close', I32, [I32]),
  epollWait: fnOffThread('epoll_wait', I32, [I32, U8Array, I32, I32]),
};

const SOCKADDR_MAX = abi.sizeof_sockaddr_storage;

/** struct msghdr on LP64 glibc: name, namelen(u32), iov, iovlen(size_t), control, controllen(size_t), flags(int). */
export const MSGHDR = { size: 56, name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48 } as const;
/** struct iovec: base, len. */
export const IOVEC = { size: 16, base: 0, len: 8 } as const;

/** malloc(3) of `size` bytes: the pointer, its address (for pointers written into native structs) and a Buffer over it (no copy). */
export function mallocBlock(size: number): { ptr: JsExternal; addr: number; view: Buffer } {
  const ptr = load({ library: 'libc', funcName: 'malloc', retType: External, paramsType: [U64], paramsValue: [size] }) as unknown as JsExternal;
  if (isNullPointer(ptr)) throw errnoException(12 /* ENOMEM */, 'malloc');
  // memcpy(p, p, 0) returns p: the address as a number.
  const addr = load({ library: 'libc', funcName: 'memcpy', retType: I64, paramsType: [External, External, U64], paramsValue: [ptr, ptr, 0] }) as unknown as number;
  return { ptr, addr, view: createExternalBuffer(ptr, size) };
}

// Native memory for the hot synchronous calls of this (the main) thread: a pointer parameter
// costs ffi-rs ~1.5 µs less than a Buffer one. Each block is reused by every call (JS runs one
// call at a time; the threadpool calls above never use them) and lives as long as the process.
const block = mallocBlock;
/** Data of a send or recv up to this size goes through native memory (a copy is cheaper than the Buffer parameter). */
const SMALL = 64 * 1024;
const data = block(SMALL);
const name = block(SOCKADDR_MAX);
/** A socklen_t for getsockname/getpeername (their name goes to the name block) and getsockopt (its value to the data block). */
const nameLen = block(8);

// A small send, sendto, recv or recvfrom is a sendmsg/recvmsg of one struct msghdr kept in native
// memory that names the data and name blocks: 3 arguments instead of 4 or 6 (ffi-rs charges
// ~0.4 µs per argument: ~0.4 or ~1.5 µs a call), and the same kernel path
// (sock_sendmsg/sock_recvmsg) underneath. Each call sets only msg_namelen (0: no address) and the
// iovec's length.
const HDR_NAMELEN = MSGHDR.namelen;
const IOV_LEN = MSGHDR.size + IOVEC.len;
const msgHdr = block(MSGHDR.size + IOVEC.size);
{
  const v = msgHdr.view;
  v.fill(0); // no control data, msg_flags 0, the high half of iov_len 0
  v.writeBigUInt64LE(BigInt(name.addr), MSGHDR.name);
  v.writeBigUInt64LE(BigInt(msgHdr.addr + MSGHDR.size), MSGHDR.iov); // the iovec right after the header
  v.writeBigUInt64LE(1n, MSGHDR.iovlen);
  v.writeBigUInt64LE(BigInt(data.addr), MSGHDR.size + IOVEC.base);
}

/**
 * sendmsg(2) or recvmsg(2) through the kept header: `n` bytes of the data block, the sockaddr of
 * `namelen` bytes in the name block (0: none; a recvmsg's kernel writes the sender's length there).
 */
function small(call: (fd: number, msg: JsExternal, flags: number) => Result, fd: number, n: number, namelen: number, flags: number): Result {
  msgHdr.view.writeUInt32LE(namelen, HDR_NAMELEN);
  msgHdr.view.writeUInt32LE(n, IOV_LEN);
  return call(fd, msgHdr.ptr, flags);
}

/** A socklen_t in/out parameter holding `n`. */
function socklen(n: number): Buffer {
  const b = Buffer.alloc(abi.sizeof_socklen_t);
  b.writeUInt32LE(n);
  return b;
}

/** socket(2); fds are plain ints. */
export function socket(family: number, type: number, proto: number): number {
  return check(c.socket(family, type, proto), 'socket');
}

/** socketpair(2): the two connected fds. */
export function socketpair(family: number, type: number, proto: number): [number, number] {
  const sv = Buffer.alloc(2 * abi.sizeof_int);
  check(c.socketpair(family, type, proto, sv), 'socketpair');
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** bind(2); sa is the whole sockaddr, its length is the addrlen. */
export function bind(fd: number, sa: Buffer): void {
  check(c.bind(fd, sa, sa.length), 'bind');
}

/** connect(2); a non-blocking socket throws EINPROGRESS, then read SO_ERROR. */
export function connect(fd: number, sa: Buffer): void {
  check(c.connect(fd, sa, sa.length), 'connect');
}

/** listen(2). */
export function listen(fd: number, backlog: number): void {
  check(c.listen(fd, backlog), 'listen');
}

/** accept4(2): the new fd and the peer's sockaddr bytes (empty for an unnamed unix peer). */
export function accept4(fd: number, flags: number): { fd: number; addr: Buffer } {
  const addr = Buffer.alloc(SOCKADDR_MAX);
  const len = socklen(addr.length);
  const newFd = check(c.accept4(fd, addr, len, flags), 'accept4');
  return { fd: newFd, addr: addr.subarray(0, Math.min(len.readUInt32LE(), addr.length)) };
}

/** send(2): bytes sent (EAGAIN thrown). */
export function send(fd: number, buf: Buffer, flags: number): number {
  return orThrow(sendTry(fd, buf, flags), 'send');
}

/** sendto(2): bytes sent (EAGAIN thrown); a null address is send(2), since ffi-rs cannot pass NULL for a buffer. */
export function sendto(fd: number, buf: Buffer, flags: number, sa: Buffer | null): number {
  return orThrow(sendtoTry(fd, buf, flags, sa), 'sendto');
}

function orThrow(n: number | typeof AGAIN, syscall: string): number {
  if (n === AGAIN) throw errnoException(linux.EAGAIN!, syscall);
  return n;
}

/** send(2) that returns AGAIN instead of throwing EAGAIN (the I/O driver waits on it without an error). */
export function sendTry(fd: number, buf: Buffer, flags: number): number | typeof AGAIN {
  if (buf.length > SMALL) return checkTry(c.send(fd, buf, buf.length, flags), 'send');
  buf.copy(data.view);
  return checkTry(small(c.sendmsgP, fd, buf.length, 0, flags), 'send');
}

/** sendto(2) that returns AGAIN instead of throwing EAGAIN; a null address is send(2). */
export function sendtoTry(fd: number, buf: Buffer, flags: number, sa: Buffer | null): number | typeof AGAIN {
  if (buf.length > SMALL || (sa !== null && sa.length > SOCKADDR_MAX)) {
    if (sa === null) return checkTry(c.send(fd, buf, buf.length, flags), 'sendto');
    return checkTry(c.sendto(fd, buf, buf.length, flags, sa, sa.length), 'sendto');
  }
  buf.copy(data.view);
  if (sa === null) return checkTry(small(c.sendmsgP, fd, buf.length, 0, flags), 'sendto');
  return checkTry(small(c.sendmsgP, fd, buf.length, sa.copy(name.view), flags), 'sendto');
}

/** recv(2) into buf: bytes received, 0 at end of stream. */
export function recv(fd: number, buf: Buffer, flags: number): number {
  return check(c.recv(fd, buf, buf.length, flags), 'recv');
}

/** recv(2) of up to size bytes: a fresh Buffer of what came (as Python's recv returns new bytes),
 * or AGAIN. `n` is the call's result (with MSG_TRUNC a datagram's whole length, more than data holds). */
export function recvBytes(fd: number, size: number, flags: number): { data: Buffer; n: number } | typeof AGAIN {
  if (size > SMALL) {
    const buf = Buffer.allocUnsafe(size);
    const n = checkTry(c.recv(fd, buf, buf.length, flags), 'recv');
    return n === AGAIN ? n : { data: buf.subarray(0, Math.min(n, size)), n };
  }
  // msg_namelen 0: no sender's address, as recv(2) (the kernel writes its length there, nothing else).
  const n = checkTry(small(c.recvmsgP, fd, size, 0, flags), 'recv');
  return n === AGAIN ? n : { data: Buffer.from(data.view.subarray(0, Math.min(n, size))), n };
}

/** recvfrom(2) of up to size bytes: a fresh Buffer of what came and the sender's sockaddr bytes, or AGAIN. */
export function recvfromBytes(fd: number, size: number, flags: number): { data: Buffer; n: number; addr: Buffer } | typeof AGAIN {
  if (size > SMALL) {
    const buf = Buffer.allocUnsafe(size);
    const addr = Buffer.alloc(SOCKADDR_MAX);
    const len = socklen(addr.length);
    const n = checkTry(c.recvfrom(fd, buf, buf.length, flags, addr, len), 'recvfrom');
    return n === AGAIN ? n : { data: buf.subarray(0, Math.min(n, size)), n, addr: addr.subarray(0, Math.min(len.readUInt32LE(), addr.length)) };
  }
  const n = checkTry(small(c.recvmsgP, fd, size, SOCKADDR_MAX, flags), 'recvfrom');
  if (n === AGAIN) return n;
  const len = Math.min(msgHdr.view.readUInt32LE(HDR_NAMELEN), SOCKADDR_MAX);
  return { data: Buffer.from(data.view.subarray(0, Math.min(n, size))), n, addr: Buffer.from(name.view.subarray(0, len)) };
}

/** recvfrom(2) into buf: bytes received and the sender's sockaddr bytes (may be empty). */
export function recvfrom(fd: number, buf: Buffer, flags: number): { n: number; addr: Buffer } {
  const addr = Buffer.alloc(SOCKADDR_MAX);
  const len = socklen(addr.length);
  const n = check(c.recvfrom(fd, buf, buf.length, flags, addr, len), 'recvfrom');
  return { n, addr: addr.subarray(0, Math.min(len.readUInt32LE(), addr.length)) };
}

/** shutdown(2); how is SHUT_RD, SHUT_WR or SHUT_RDWR. */
export function shutdown(fd: number, how: number): void {
  check(c.shutdown(fd, how), 'shutdown');
}

const closing = new Set<(fd: number) => void>();

/** Calls `fn(fd)` before every close through this module (the reactor drops the fd from its
 * epoll set while the number still names it); returns the unhook. */
export function onClose(fn: (fd: number) => void): () => void {
  closing.add(fn);
  return () => closing.delete(fn);
}

/** close(2) on the calling thread; can block on a socket with SO_LINGER set. */
export function close(fd: number): void {
  for (const fn of closing) fn(fd);
  check(c.close(fd), 'close');
}

/** close(2) on the libuv threadpool, for closes that may block (SO_LINGER). */
export async function closeOffThread(fd: number): Promise<void> {
  for (const fn of closing) fn(fd);
  check(await offThread.close(fd), 'close');
}

/** getsockopt(2) with a buflen-byte buffer: the bytes the kernel returned. */
export function getsockopt(fd: number, level: number, name: number, buflen: number): Buffer {
  if (!Number.isInteger(buflen) || buflen < 0 || buflen > 65536) {
    throw new RangeError(`getsockopt buflen must be an integer in 0..65536, got ${buflen}`);
  }
  // Into the data block through pointers (buflen <= SMALL), as getsockname: a copy of what the kernel wrote.
  // Zeroed first: some options read their input from the value (IP_MSFILTER's group, say), and the
  // block still holds the last send's or recv's bytes (in the daemon, any session's).
  data.view.fill(0, 0, buflen);
  nameLen.view.writeUInt32LE(buflen, 0);
  check(c.getsockoptP(fd, level, name, data.ptr, nameLen.ptr), 'getsockopt');
  return Buffer.from(data.view.subarray(0, Math.min(nameLen.view.readUInt32LE(0), buflen)));
}

/** setsockopt(2); value's length is the optlen. */
export function setsockopt(fd: number, level: number, name: number, value: Buffer): void {
  check(c.setsockopt(fd, level, name, value, value.length), 'setsockopt');
}

/** getsockname(2) or getpeername(2) into the name block (pointers: ~6 µs less than two Buffers): a copy of the sockaddr bytes. */
function nameCall(call: (fd: number, name: JsExternal, len: JsExternal) => Result, fd: number, syscall: string): Buffer {
  nameLen.view.writeUInt32LE(SOCKADDR_MAX, 0);
  check(call(fd, name.ptr, nameLen.ptr), syscall);
  return Buffer.from(name.view.subarray(0, Math.min(nameLen.view.readUInt32LE(0), SOCKADDR_MAX)));
}

/** getsockname(2): the local sockaddr bytes. */
export function getsockname(fd: number): Buffer {
  return nameCall(c.getsocknameP, fd, 'getsockname');
}

/** getpeername(2): the peer's sockaddr bytes; ENOTCONN if not connected. */
export function getpeername(fd: number): Buffer {
  return nameCall(c.getpeernameP, fd, 'getpeername');
}

/** fcntl(2) with an integer argument (F_GETFL, F_SETFL, F_GETFD, F_SETFD). */
export function fcntl(fd: number, cmd: number, arg: number): number {
  return check(c.fcntl(fd, cmd, arg), 'fcntl');
}

/** setfsuid(2): the previous fsuid; it never fails with an errno (compare to learn if it took). */
export function setfsuid(uid: number): number {
  return c.setfsuid(uid).value;
}

/** setfsgid(2): the previous fsgid; it never fails with an errno. */
export function setfsgid(gid: number): number {
  return c.setfsgid(gid).value;
}

/** SO_PEERCRED of a connected unix socket: the peer's credentials at connect/socketpair time. */
export function peerCred(fd: number): { pid: number; uid: number; gid: number } {
  const b = getsockopt(fd, os.SOL_SOCKET, os.SO_PEERCRED, abi.sizeof_ucred);
  return { pid: b.readInt32LE(0), uid: b.readUInt32LE(4), gid: b.readUInt32LE(8) };
}

/** epoll_create1(EPOLL_CLOEXEC). */
export function epollCreate(): number {
  return check(c.epollCreate1(os.EPOLL_CLOEXEC), 'epoll_create1');
}

// struct epoll_event is packed on x86_64 (12 bytes, data at 4) and padded
// elsewhere (16, data at 8): take both from the generated abi.
const EV_SIZE = abi.sizeof_epoll_event;
const EV_DATA = abi.offsetof_epoll_event_data;

/** epoll_ctl(2) with data.fd = fd; events is an EPOLL* mask (EPOLLET is bit 31). */
export function epollCtl(epfd: number, op: number, fd: number, events: number): void {
  ctlEvent.view.writeUInt32LE(events >>> 0, 0);
  ctlEvent.view.writeInt32LE(fd, EV_DATA);
  check(c.epollCtlP(epfd, op, fd, ctlEvent.ptr), 'epoll_ctl');
}

const ctlEvent = block(EV_SIZE);
/** The most events one epollWaitNow reads. */
export const EPOLL_NOW_MAX = 256;
const nowEvents = block(EPOLL_NOW_MAX * EV_SIZE);

/**
 * epoll_wait(2) on the libuv threadpool (it blocks): the ready fds and their
 * event masks. timeoutMs -1 waits forever; each pending wait holds one
 * threadpool thread (UV_THREADPOOL_SIZE, default 4). EINTR is thrown as is.
 */
export async function epollWait(
  epfd: number, maxEvents: number, timeoutMs: number,
): Promise<Array<{ fd: number; events: number }>> {
  if (!Number.isInteger(maxEvents) || maxEvents < 1 || maxEvents > 65536) {
    throw new RangeError(`epollWait maxEvents must be an integer in 1..65536, got ${maxEvents}`);
  }
  const evs = Buffer.alloc(maxEvents * EV_SIZE);
  const n = check(await offThread.epollWait(epfd, evs, maxEvents, timeoutMs), 'epoll_wait');
  const out: Array<{ fd: number; events: number }> = [];
  for (let i = 0; i < n; i++) {
    const at = i * EV_SIZE;
    out.push({ fd: evs.readInt32LE(at + EV_DATA), events: evs.readUInt32LE(at) });
  }
  return out;
}

/**
 * epoll_wait(2) with timeout 0 on this thread (it does not block) for at most EPOLL_NOW_MAX
 * events: calls `each(fd, events)` per ready fd; returns their count.
 */
export function epollWaitNow(epfd: number, each: (fd: number, events: number) => void): number {
  const n = check(c.epollWaitP(epfd, nowEvents.ptr, EPOLL_NOW_MAX, 0), 'epoll_wait');
  // Read them all before calling back: a callback may make another call that reuses the block.
  const evs = nowEvents.view;
  const got: number[] = [];
  for (let i = 0; i < n; i++) got.push(evs.readInt32LE(i * EV_SIZE + EV_DATA), evs.readUInt32LE(i * EV_SIZE));
  for (let i = 0; i < got.length; i += 2) each(got[i]!, got[i + 1]!);
  return n;
}

/** eventfd(2); flags EFD_NONBLOCK | EFD_CLOEXEC. */
export function eventfd(initval: number, flags: number): number {
  return check(c.eventfd(initval, flags), 'eventfd');
}

/** Adds value to an eventfd counter (write(2) of a u64). */
export function eventfdWrite(fd: number, value: bigint | number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  check(c.write(fd, b, 8), 'write');
}

/** Reads and resets an eventfd counter (read(2) of a u64); EAGAIN if zero and non-blocking. */
export function eventfdRead(fd: number): bigint {
  const b = Buffer.alloc(8);
  check(c.read(fd, b, 8), 'read');
  return b.readBigUInt64LE();
}

/** poll(2): revents per entry, in order. The daemon only uses timeout 0 (it blocks otherwise). */
export function poll(fds: Array<{ fd: number; events: number }>, timeoutMs: number): Array<number> {
  const size = abi.sizeof_pollfd;
  const b = Buffer.alloc(fds.length * size);
  fds.forEach((p, i) => {
    b.writeInt32LE(p.fd, i * size);
    b.writeInt16LE((p.events << 16) >> 16, i * size + 4);
  });
  check(c.poll(b, fds.length, timeoutMs), 'poll');
  return fds.map((_, i) => b.readUInt16LE(i * size + 6));
}

const RLIM_INFINITY = 0xffffffffffffffffn;

/** getrlimit(RLIMIT_NOFILE); RLIM_INFINITY reads as Infinity. */
export function getNofileLimit(): { soft: number; hard: number } {
  const b = Buffer.alloc(abi.sizeof_rlimit);
  check(c.getrlimit(os.RLIMIT_NOFILE, b), 'getrlimit');
  const num = (v: bigint) => (v === RLIM_INFINITY ? Infinity : Number(v));
  return { soft: num(b.readBigUInt64LE(0)), hard: num(b.readBigUInt64LE(8)) };
}

/** setrlimit(RLIMIT_NOFILE); Infinity means RLIM_INFINITY. */
export function setNofileLimit(soft: number, hard: number): void {
  const big = (v: number) => (v === Infinity ? RLIM_INFINITY : BigInt(v));
  const b = Buffer.alloc(abi.sizeof_rlimit);
  b.writeBigUInt64LE(big(soft), 0);
  b.writeBigUInt64LE(big(hard), 8);
  check(c.setrlimit(os.RLIMIT_NOFILE, b), 'setrlimit');
}

/** getpid(2). */
export function getpid(): number {
  return c.getpid().value;
}

const ADDR_BYTES: Record<number, number> = { [linux.AF_INET]: 4, [linux.AF_INET6]: 16 };

/**
 * inet_pton(3): the 4 or 16 address bytes, or null if text is not an address
 * of that family. Throws EAFNOSUPPORT for another family.
 */
export function inetPton(family: number, text: string): Buffer | null {
  // Printable ASCII only: anything else is never an address, and a NUL or a
  // char above U+00FF would otherwise change what the C side sees.
  if (!/^[\x21-\x7e]*$/.test(text)) return null;
  const dst = Buffer.alloc(16);
  const r = c.inetPton(family, Buffer.from(`${text}\0`, 'latin1'), dst);
  if (r.value === -1) throw errnoException(r.errnoCode, 'inet_pton');
  if (r.value === 0) return null;
  return dst.subarray(0, ADDR_BYTES[family]);
}

/** inet_ntop(3): glibc's text for 4 (AF_INET) or 16 (AF_INET6) address bytes. */
export function inetNtop(family: number, bytes: Buffer): string {
  const want = ADDR_BYTES[family];
  if (want !== undefined && bytes.length !== want) {
    throw new RangeError(`inetNtop needs ${want} address bytes for family ${family}, got ${bytes.length}`);
  }
  const dst = Buffer.alloc(46); // INET6_ADDRSTRLEN
  const r = c.inetNtop(family, bytes, dst, dst.length);
  if (r.value === 0) throw errnoException(r.errnoCode, 'inet_ntop');
  return dst.toString('latin1', 0, dst.indexOf(0));
}
