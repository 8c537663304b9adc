// The in-process backend for handed-off sockets: the same operations, requests and replies as
// the broker's Call stream (so the one Socket class above runs on either), done here with
// native/ syscalls on the real fd and the one reactor/I/O driver the daemon uses. Loaded only
// when the broker hands a socket off (a remote client machine never loads ffi-rs).
//
// What still goes to the broker: host names in addresses (getaddrinfo, unless numeric), and an
// operation that needs the broker's privilege on the socket — a granted port below 1024, a
// granted option — which sends the fd back on the side channel for that one call (the broker
// checks its SO_COOKIE against its record of the hand-off).
import * as libc from '../native/libc.js';
import { errnos, linux as C, os } from '../native/constants.js';
import { decodeSockaddr, encodeSockaddr } from '../native/sockaddr.js';
import { cmsgSpace, decodeCmsgs, encodeCmsgs, recvmsg, sendmsg } from '../native/msg.js';
import { dupCloexec } from '../native/fd.js';
import { ErrnoError, isTimeout, strerror } from '../native/errno.js';
import { Reactor } from '../native/reactor.js';
import { Cancellation, type Cancel } from '../native/cancel.js';
import { andThen, attemptNow, deadlineFor, drive, isAgain, waitReady, type DrivenFd, type Timeout } from '../native/io-driver.js';
import type { Direction } from '../native/reactor.js';
import type { Address } from '../proto/gen/sockbroker/v1/address.js';
import { addressOf } from '../proto/codec/address.js';
import type { ControlMessage, SocketInfo } from '../proto/gen/sockbroker/v1/socket.js';
import { fromControlMessage } from './ancillary.js';
import { makeOSError, OSError, timeout as TimeoutExc, ValueError } from './errors.js';
import type { Transport } from './transport.js';

const TYPE_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
const SIDE_TIMEOUT_S = 10;
const MAX_REPLY = 4096;

/** One reactor for every in-process socket of this process; it waits only while someone does. */
let reactor: Reactor | undefined;
function theReactor(): Reactor {
  return (reactor ??= new Reactor({ idle: 'stop' }));
}

/** A socket this process holds: the fd, and what the broker knows of it. */
interface LocalEntry extends DrivenFd {
  readonly fd: number;
  closed: boolean;
  info: SocketInfo;
  /** Handed off by the broker (it recorded the cookie): privileged calls may be sent back. */
  brokered: boolean;
}

const never = new AbortController().signal;

/**
 * The Cancellation standing for an AbortSignal in waits (a socket's reads share one signal): the
 * reactor adds and removes its listener on each wait, and on a Cancellation that is a Set, not
 * the signal's EventTarget (more code to run and to warm up on every wait).
 */
const cancels = new WeakMap<AbortSignal, Cancellation>();
function cancelOf(signal: AbortSignal): Cancel {
  let c = cancels.get(signal);
  if (!c) {
    const made = (c = new Cancellation());
    if (signal.aborted) made.abort(signal.reason);
    else signal.addEventListener('abort', () => made.abort(signal.reason), { once: true });
    cancels.set(signal, made);
  }
  return c;
}

const ERRNO = new Map(errnos.map(([n, name]) => [name, n] as [string, number]));
/** OSError by errno name, as Python raises it; `text` replaces strerror. */
function osErr(name: string, text?: string) {
  const n = ERRNO.get(name)!;
  return makeOSError(n, text ?? strerror(n), name);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}

/** native errors as Python's: OSError subclasses by errno, socket.timeout. */
function pyError(err: unknown): unknown {
  if (err instanceof ErrnoError) return makeOSError(err.errno, err.strerror, err.code);
  if (isTimeout(err)) return new TimeoutExc('timed out');
  return err;
}

/** MSG_DONTWAIT makes a blocking call non-blocking, as in the daemon. */
function dontWait(timeout: Timeout, flags: number): Timeout {
  return timeout === undefined && (flags & C.MSG_DONTWAIT) !== 0 ? 0 : timeout;
}

/** Rethrows a native error as Python's (for promise rejections). */
function rethrowPy(err: unknown): never {
  throw pyError(err);
}

/**
 * One I/O call under the socket's mode: the syscall made now, and only if the socket is not
 * ready a wait on the reactor (drive). A ready socket's result comes back with no promise.
 */
function io<T>(e: LocalEntry, dir: Direction, timeout: Timeout, signal: AbortSignal, syscall: string, attempt: () => T | typeof libc.AGAIN): T | Promise<T> {
  const r = attemptNow(e, timeout, signal, syscall, attempt);
  return r === libc.AGAIN ? drive(theReactor(), e, dir, timeout, cancelOf(signal), syscall, attempt) : r;
}

function fromSockaddr(buf: Buffer, family: number): Address | undefined {
  if (buf.length === 0) return family === C.AF_UNIX ? { unix: { path: Buffer.alloc(0) } } : undefined;
  return addressOf(decodeSockaddr(buf));
}

type Req = Record<string, any>;

/** A host as the kernel takes it; `numeric` when it was already an address (its sockaddr is kept). */
interface Resolved {
  host: string;
  scopeId?: number;
  numeric?: boolean;
}

/** Side-channel requests in flight at once per module (the broker caps connections per identity). */
const SIDE_CONCURRENCY = 4;

export class LocalSockets {
  readonly #entries = new Map<number, LocalEntry>();
  #sideBusy = 0;
  readonly #sideQueue: Array<() => void> = [];
  /** The last numeric inet address encoded, and its sockaddr (never written to). */
  #lastKey: string | undefined;
  #lastSa: Buffer | undefined;

  constructor(
    readonly transport: Transport,
    /** The broker's side channel (`<unix path>.handoff`). */
    readonly sidePath: string,
  ) {}

  /** Whether `fd` is a socket of this backend (socket(fileno=), fromfd, poll). */
  has(fd: number): boolean {
    return this.#entries.has(fd);
  }

  #add(fd: number, info: SocketInfo, brokered: boolean): LocalEntry {
    const e: LocalEntry = { fd, closed: false, info, brokered };
    this.#entries.set(fd, e);
    return e;
  }

  /** Redeems a hand-off ticket on the side channel: the socket's fd, now this process's own. */
  async claim(ticket: Uint8Array, info: SocketInfo): Promise<number> {
    const { fd } = await this.#side({ op: 'claim', ticket: Buffer.from(ticket).toString('hex') });
    if (fd === undefined) throw new OSError('sockbroker: the broker sent no fd for the hand-off');
    this.#add(fd, info, true);
    return fd;
  }

  /** socketpair() made here: with the caller's own credentials, as the kernel sees them. */
  socketpair(family: number, type: number, proto: number): [number, number] {
    try {
      const [a, b] = libc.socketpair(family, type | TYPE_FLAGS, proto);
      const info = { family, type: type & ~TYPE_FLAGS, protocol: proto };
      this.#add(a, info, false);
      this.#add(b, info, false);
      return [a, b];
    } catch (err) {
      throw pyError(err);
    }
  }

  /** One request on the side channel (a connection each), with `fd` attached when given. */
  async #side(req: Record<string, unknown>, fd?: number): Promise<{ fd?: number; token?: string }> {
    // A finished request hands its slot straight to the next in line (the count stays).
    if (this.#sideBusy >= SIDE_CONCURRENCY) await new Promise<void>((resolve) => this.#sideQueue.push(resolve));
    else this.#sideBusy++;
    try {
      return await this.#sideOnce(req, fd);
    } finally {
      const next = this.#sideQueue.shift();
      if (next) next();
      else this.#sideBusy--;
    }
  }

  async #sideOnce(req: Record<string, unknown>, fd?: number): Promise<{ fd?: number; token?: string }> {
    const r = theReactor();
    const s = libc.socket(C.AF_UNIX, C.SOCK_SEQPACKET | TYPE_FLAGS, 0);
    const entry = { fd: s, closed: false };
    const got: number[] = [];
    try {
      const sa = encodeSockaddr({ family: 'unix', path: Buffer.from(this.sidePath) });
      await drive(r, entry, 'write', SIDE_TIMEOUT_S, never, 'connect', () => {
        try {
          libc.connect(s, sa);
        } catch (err) {
          if ((err as { code?: string }).code !== 'EISCONN') throw err;
        }
      });
      const body = Buffer.from(JSON.stringify({ ...req, session: this.transport.sessionId }));
      const control = fd === undefined ? Buffer.alloc(0) : encodeCmsgs([{ level: C.SOL_SOCKET, type: C.SCM_RIGHTS, data: int32(fd) }]);
      await drive(r, entry, 'write', SIDE_TIMEOUT_S, never, 'sendmsg', () => sendmsg(s, [body], control, C.MSG_NOSIGNAL, null));
      const res = await drive(r, entry, 'read', SIDE_TIMEOUT_S, never, 'recvmsg', () => recvmsg(s, MAX_REPLY, cmsgSpace(4), C.MSG_CMSG_CLOEXEC));
      for (const c of decodeCmsgs(res.control)) {
        if (c.level === C.SOL_SOCKET && c.type === C.SCM_RIGHTS) for (let i = 0; i + 4 <= c.data.length; i += 4) got.push(c.data.readInt32LE(i));
      }
      if (res.n === 0) throw new OSError('sockbroker: the broker closed the side channel without a reply');
      const reply = JSON.parse(res.data.toString('utf8')) as { ok: boolean; kind?: string; errno?: number; message?: string; token?: string };
      if (!reply.ok) {
        if (reply.kind === 'os' && typeof reply.errno === 'number') throw makeOSError(reply.errno, reply.message ?? '', errnoCode(reply.errno));
        throw new OSError(`sockbroker: ${reply.message ?? 'side channel request failed'}`);
      }
      const mine = got.shift();
      return { ...(mine === undefined ? {} : { fd: mine }), ...(typeof reply.token === 'string' ? { token: reply.token } : {}) };
    } catch (err) {
      throw pyError(err);
    } finally {
      for (const extra of got) libc.close(extra);
      r.forget(s);
      libc.close(s);
    }
  }

  #entry(handle: number, syscall: string): LocalEntry {
    const e = this.#entries.get(handle);
    if (!e || e.closed) throw osErr('EBADF');
    void syscall;
    return e;
  }

  /** The kernel sockaddr for a proto address; host names resolve on the broker (getaddrinfo), the rest now. */
  #sockaddr(a: Address | undefined, family: number, syscall: string): Buffer | Promise<Buffer> {
    if (family === C.AF_INET || family === C.AF_INET6) {
      const v = family === C.AF_INET ? a?.inet : a?.inet6;
      if (!v) throw new TypeError(`${syscall}(): ${family === C.AF_INET ? 'AF_INET' : 'AF_INET6'} address must be tuple, not ${a?.unix ? 'str' : 'NoneType'}`);
      const v6 = a!.inet6;
      // A loop of sendto to one numeric address encodes it once (inet_pton is an ffi call).
      const key = `${family} ${v.host} ${v.port} ${v6?.flowinfo} ${v6?.scopeId}`;
      if (key === this.#lastKey) return this.#lastSa!;
      return andThen(this.#resolve(v.host, family), ({ host, scopeId, numeric }) => {
        const sa = family === C.AF_INET
          ? encodeSockaddr({ family: 'inet', host, port: v.port })
          : encodeSockaddr({ family: 'inet6', host, port: v6!.port, flowinfo: v6!.flowinfo, scopeId: v6!.scopeId || scopeId || 0 });
        if (numeric) [this.#lastKey, this.#lastSa] = [key, sa];
        return sa;
      });
    }
    if (family === C.AF_UNIX) {
      if (!a?.unix) throw new TypeError(`${syscall}(): AF_UNIX address must be str or bytes, not tuple`);
      if (a.unix.path.length >= 108 + (a.unix.path[0] === 0 ? 1 : 0)) throw new OSError('AF_UNIX path too long');
      return encodeSockaddr({ family: 'unix', path: Buffer.from(a.unix.path) });
    }
    if (family === C.AF_NETLINK && a?.netlink) return encodeSockaddr({ family: 'netlink', pid: a.netlink.pid, groups: a.netlink.groups });
    throw osErr('EAFNOSUPPORT');
  }

  /** As CPython's setipaddr: '' the wildcard, '<broadcast>', numeric as is, else the broker's getaddrinfo. */
  #resolve(host: string, family: number): Resolved | Promise<Resolved> {
    if (host === '') return { host: family === C.AF_INET ? '0.0.0.0' : '::', numeric: true };
    if (host === '<broadcast>') {
      if (family !== C.AF_INET) throw new OSError('address family mismatched');
      return { host: '255.255.255.255', numeric: true };
    }
    if (!host.includes('\0') && libc.inetPton(family, host)) return { host, numeric: true };
    return this.#lookup(host, family);
  }

  async #lookup(host: string, family: number): Promise<Resolved> {
    const res = await this.transport.getAddrInfo({ host, port: undefined, family, type: C.SOCK_DGRAM, protocol: 0, flags: 0 } as never);
    const first = res.results[0]?.address;
    if (first?.inet) return { host: first.inet.host };
    if (first?.inet6) return { host: first.inet6.host, scopeId: first.inet6.scopeId };
    throw osErr('EAFNOSUPPORT');
  }

  #name(e: LocalEntry, get: (fd: number) => Buffer): Address | undefined {
    try {
      return fromSockaddr(get(e.fd), e.info.family);
    } catch {
      return undefined;
    }
  }

  /** Runs one operation, as Transport.call does on the broker: one promise, settled at once
   * when the operation did not have to wait. */
  call(op: string, req: Req, _timeoutS?: number | null, signal?: AbortSignal): Promise<any> {
    const fn = (this as unknown as Record<string, (req: Req, signal: AbortSignal) => unknown>)[`op_${op}`];
    if (!fn) return Promise.reject(new OSError(`sockbroker: ${op} is not available on a handed-off socket`));
    try {
      const r = fn.call(this, req, signal ?? never);
      return r instanceof Promise ? r.catch(rethrowPy) : Promise.resolve(r);
    } catch (err) {
      return Promise.reject(pyError(err));
    }
  }

  // ---- the operations (names match the Call stream's) ----

  async op_bind(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'bind');
    const sa = await this.#sockaddr(req.address, e.info.family, 'bind');
    try {
      libc.bind(e.fd, sa);
    } catch (err) {
      if (!this.#sendBackable(e, err)) throw err;
      await this.#side({ op: 'bind', sockaddr: sa.toString('hex') }, e.fd);
    }
    return { local: this.#name(e, libc.getsockname) };
  }

  /** A refusal the broker's grant may overturn: EPERM/EACCES on a socket it handed off. */
  #sendBackable(e: LocalEntry, err: unknown): boolean {
    const code = (err as { code?: string }).code;
    return e.brokered && (code === 'EPERM' || code === 'EACCES');
  }

  async op_listen(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'listen');
    const backlog = Math.max(0, req.backlog === undefined ? Math.min(C.SOMAXCONN, 128) : req.backlog);
    libc.listen(e.fd, backlog);
    return {};
  }

  async op_accept(req: Req, signal: AbortSignal): Promise<unknown> {
    const e = this.#entry(req.handle, 'accept');
    const { fd, addr } = await drive(theReactor(), e, 'read', req.timeout, signal, 'accept', () => libc.accept4(e.fd, TYPE_FLAGS));
    const child = this.#add(fd, e.info, false);
    return { handle: fd, info: e.info, address: fromSockaddr(addr, e.info.family), local: this.#name(child, libc.getsockname) };
  }

  async op_connect(req: Req, signal: AbortSignal): Promise<unknown> {
    const e = this.#entry(req.handle, 'connect');
    const timeout: Timeout = req.timeout;
    const sa = await this.#sockaddr(req.address, e.info.family, 'connect');
    const deadline = deadlineFor(timeout);
    const ends = () => ({ local: this.#name(e, libc.getsockname), peer: this.#name(e, libc.getpeername) });
    try {
      libc.connect(e.fd, sa);
      return ends();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'EINPROGRESS' && !isAgain(err) && code !== 'EINTR') throw err;
      if (timeout === 0) throw err;
    }
    await waitReady(theReactor(), e, 'write', deadline, signal, 'connect');
    if (e.closed) throw osErr('EBADF');
    const soError = libc.getsockopt(e.fd, C.SOL_SOCKET, C.SO_ERROR, 4).readInt32LE(0);
    // As the daemon: a second connect moves Linux's socket out of "connecting".
    try {
      libc.connect(e.fd, sa);
    } catch {
      // its outcome is in soError
    }
    if (soError !== 0) throw new ErrnoError(soError, 'connect');
    return ends();
  }

  op_send(req: Req, signal: AbortSignal): unknown {
    const e = this.#entry(req.handle, 'send');
    const flags = req.flags | C.MSG_NOSIGNAL;
    const send = (sa: Buffer | null) =>
      andThen(io(e, 'write', dontWait(req.timeout, req.flags), signal, sa ? 'sendto' : 'send', () => libc.sendtoTry(e.fd, req.data, flags, sa)), (sent) => ({ sent }));
    return req.address ? andThen(this.#sockaddr(req.address, e.info.family, 'sendto'), send) : send(null);
  }

  op_sendAll(req: Req, signal: AbortSignal): unknown {
    const e = this.#entry(req.handle, 'sendall');
    const data: Buffer = req.data;
    const flags = req.flags | C.MSG_NOSIGNAL;
    const timeout = dontWait(req.timeout, req.flags);
    const deadline = deadlineFor(timeout);
    // Most sendall calls go out whole in the first send: no promise for those.
    const first = attemptNow(e, timeout, signal, 'sendall', () => libc.sendTry(e.fd, data, flags));
    if (first !== libc.AGAIN && first >= data.length) return {};
    return (async () => {
      let offset = first === libc.AGAIN ? 0 : first;
      do {
        offset += await drive(theReactor(), e, 'write', timeout, cancelOf(signal), 'sendall', () => libc.sendTry(e.fd, data.subarray(offset), flags), deadline);
      } while (offset < data.length);
      return {};
    })();
  }

  op_recv(req: Req, signal: AbortSignal): unknown {
    const e = this.#entry(req.handle, req.wantAddress ? 'recvfrom' : 'recv');
    const timeout = dontWait(req.timeout, req.flags);
    if (!req.wantAddress) return andThen(io(e, 'read', timeout, signal, 'recv', () => libc.recvBytes(e.fd, req.bufsize, req.flags)), (r) => ({ data: r.data }));
    return andThen(io(e, 'read', timeout, signal, 'recvfrom', () => libc.recvfromBytes(e.fd, req.bufsize, req.flags)), (r) => ({
      data: r.data,
      address: r.addr.length > 0 ? fromSockaddr(r.addr, e.info.family) : undefined,
    }));
  }

  async op_shutdown(req: Req): Promise<unknown> {
    libc.shutdown(this.#entry(req.handle, 'shutdown').fd, req.how);
    return {};
  }

  async op_close(req: Req): Promise<unknown> {
    const e = this.#entries.get(req.handle);
    if (!e || e.closed) return {};
    e.closed = true;
    this.#entries.delete(e.fd);
    theReactor().forget(e.fd);
    let lingers = false;
    try {
      const l = libc.getsockopt(e.fd, C.SOL_SOCKET, C.SO_LINGER, 8);
      lingers = l.length >= 8 && l.readInt32LE(0) !== 0 && l.readInt32LE(4) > 0;
    } catch {
      // no SO_LINGER: never blocks
    }
    if (lingers) await libc.closeOffThread(e.fd);
    else libc.close(e.fd);
    return {};
  }

  async op_getSockOpt(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'getsockopt');
    if (req.buflen === undefined) {
      const v = libc.getsockopt(e.fd, req.level, req.name, 4);
      return { value: v.length >= 4 ? v.readInt32LE(0) : v.length ? v.readInt8(0) : 0, data: Buffer.alloc(0) };
    }
    return { value: 0, data: libc.getsockopt(e.fd, req.level, req.name, req.buflen) };
  }

  async op_setSockOpt(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'setsockopt');
    const value = req.bytesValue !== undefined ? Buffer.from(req.bytesValue) : int32(req.intValue);
    try {
      libc.setsockopt(e.fd, req.level, req.name, value);
    } catch (err) {
      if (!this.#sendBackable(e, err)) throw err;
      const v = req.bytesValue !== undefined ? { bytes: value.toString('hex') } : { int: req.intValue };
      await this.#side({ op: 'setsockopt', level: req.level, name: req.name, ...v }, e.fd);
    }
    return {};
  }

  async op_getSockName(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'getsockname');
    return { address: fromSockaddr(libc.getsockname(e.fd), e.info.family) };
  }

  async op_getPeerName(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'getpeername');
    return { address: fromSockaddr(libc.getpeername(e.fd), e.info.family) };
  }

  async op_sendMsg(req: Req, signal: AbortSignal): Promise<unknown> {
    const e = this.#entry(req.handle, 'sendmsg');
    // The typed items back to the bytes the kernel takes (the same packing the SDK receives).
    const control = encodeCmsgs((req.ancdata as ControlMessage[]).map((c) => {
      const [level, type, data] = fromControlMessage(c);
      return { level, type, data };
    }));
    const sa = req.address ? await this.#sockaddr(req.address, e.info.family, 'sendmsg') : null;
    const sent = await drive(theReactor(), e, 'write', dontWait(req.timeout, req.flags), signal, 'sendmsg', () =>
      sendmsg(e.fd, req.buffers, control, req.flags | C.MSG_NOSIGNAL, sa));
    return { sent };
  }

  async op_recvMsg(req: Req, signal: AbortSignal): Promise<unknown> {
    const e = this.#entry(req.handle, 'recvmsg');
    const r = await drive(theReactor(), e, 'read', dontWait(req.timeout, req.flags), signal, 'recvmsg', () => recvmsg(e.fd, req.bufsize, req.ancbufsize, req.flags));
    // Received items stay the kernel's bytes (SCM_RIGHTS: real fds of this process, as in Python).
    const ancdata: ControlMessage[] = decodeCmsgs(r.control).map((c) => ({ level: c.level, type: c.type, other: c.data }));
    return { data: r.data, nbytes: r.n, ancdata, msgFlags: r.msgFlags, address: r.addr.length ? fromSockaddr(r.addr, e.info.family) : undefined };
  }

  async op_dup(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'dup');
    const fd = dupCloexec(e.fd);
    this.#add(fd, e.info, e.brokered);
    return { handle: fd };
  }

  /** fromfd(fd): a duplicate, as Python's (the fd stays this process's). */
  async op_fromFd(req: Req): Promise<unknown> {
    return this.op_dup(req);
  }

  async op_detach(req: Req): Promise<unknown> {
    this.#entry(req.handle, 'detach');
    // The fd stays open and known, for socket(fileno=) or fromfd(); Python leaves it to the caller.
    return {};
  }

  async op_getInheritable(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'get_inheritable');
    return { inheritable: (libc.fcntl(e.fd, os.F_GETFD!, 0) & os.FD_CLOEXEC!) === 0 };
  }

  async op_setInheritable(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'set_inheritable');
    const flags = libc.fcntl(e.fd, os.F_GETFD!, 0);
    libc.fcntl(e.fd, os.F_SETFD!, req.inheritable ? flags & ~os.FD_CLOEXEC! : flags | os.FD_CLOEXEC!);
    return {};
  }

  async op_ioctl(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'ioctl');
    const k = this.ioctlCodes;
    if (req.control === k.SIO_KEEPALIVE_VALS && req.keepalive) {
      const secs = (ms: number) => Math.min(32767, Math.max(1, Math.ceil(ms / 1000)));
      for (const [level, name, v] of [
        [C.SOL_SOCKET, C.SO_KEEPALIVE, req.keepalive.onoff ? 1 : 0],
        [C.IPPROTO_TCP, C.TCP_KEEPIDLE, secs(req.keepalive.keepalivetime)],
        [C.IPPROTO_TCP, C.TCP_KEEPINTVL, secs(req.keepalive.keepaliveinterval)],
      ] as Array<[number, number, number]>) libc.setsockopt(e.fd, level, name, int32(v));
      return {};
    }
    if (req.control === k.SIO_LOOPBACK_FAST_PATH && req.value !== undefined) return {};
    throw new ValueError(`invalid ioctl command ${req.control}`);
  }

  /** The Winsock codes, from the broker's module constants (set by the module). */
  ioctlCodes: { SIO_KEEPALIVE_VALS?: number; SIO_LOOPBACK_FAST_PATH?: number } = {};

  /** share(pid): the fd goes back to the broker, which makes the token as for its own sockets. */
  async op_share(req: Req): Promise<unknown> {
    const e = this.#entry(req.handle, 'share');
    if (!e.brokered) {
      throw osErr('EOPNOTSUPP', 'Operation not supported (the broker never saw this socket: pass the fd itself by SCM_RIGHTS)');
    }
    const { token } = await this.#side({ op: 'share', pid: req.pid }, e.fd);
    if (!token) throw new OSError('sockbroker: the broker sent no share token');
    return { token: Buffer.from(token, 'hex') };
  }

  /** poll(2) over handed-off sockets, waiting on the reactor (never blocking the event loop). */
  async poll(entries: Array<{ handle: number; events: number }>, timeout: number | null, signal: AbortSignal = never): Promise<Array<{ handle: number; events: number }>> {
    const deadline = timeout === null ? Infinity : performance.now() + timeout * 1000;
    try {
      for (;;) {
        if (signal.aborted) return [];
        const live = entries.filter((p) => this.#entries.get(p.handle) && !this.#entries.get(p.handle)!.closed);
        const ready = entries.filter((p) => !live.includes(p)).map((p) => ({ handle: p.handle, events: os.POLLNVAL! }));
        const revents = live.length ? libc.poll(live.map((l) => ({ fd: l.handle, events: l.events })), 0) : [];
        live.forEach((l, i) => revents[i] && ready.push({ handle: l.handle, events: revents[i]! }));
        if (ready.length > 0 || timeout === 0 || performance.now() >= deadline) return ready;
        const ac = new AbortController();
        const onAbort = (): void => ac.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        const waits = live.flatMap(({ handle, events }) => {
          const dirs: Array<'read' | 'write'> = [];
          if (events & (os.POLLIN! | os.POLLPRI!)) dirs.push('read');
          if (events & os.POLLOUT!) dirs.push('write');
          if (dirs.length === 0) dirs.push('read');
          return dirs.map((dir) => waitReady(theReactor(), this.#entries.get(handle)!, dir, deadline, ac.signal, 'poll'));
        });
        if (waits.length === 0) {
          await new Promise<void>((r) => {
            const timer = setTimeout(r, Math.min(2 ** 31 - 1, Math.max(0, deadline - performance.now())));
            ac.signal.addEventListener('abort', () => (clearTimeout(timer), r()), { once: true });
          });
          signal.removeEventListener('abort', onAbort);
          continue;
        }
        try {
          await Promise.any(waits).catch((err: AggregateError) => {
            if (!isTimeout(err.errors[0]) && !signal.aborted) throw err.errors[0];
          });
        } finally {
          signal.removeEventListener('abort', onAbort);
          ac.abort();
        }
      }
    } catch (err) {
      throw pyError(err);
    }
  }
}

function errnoCode(n: number): string {
  return new ErrnoError(n, '').code;
}
