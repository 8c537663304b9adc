// One handler per SocketService operation. Each takes the call's context and the decoded
// request, validates it (the wire is never trusted), asks the policy before any syscall, and
// returns the response message. Both the unary RPCs and the Call stream run these.
import type { Logger } from 'pino';
import { status as Code } from '@grpc/grpc-js';
import * as libc from '../native/libc.js';
import { AGAIN } from '../native/libc.js';
import { linux as C, os } from '../native/constants.js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';
import { argumentError, BrokerError, osError, osErrorNamed } from './errors.js';
import { attemptNow, deadlineFor, drive, isAgain, waitReady, type Timeout } from '../native/io-driver.js';
import type { Reactor } from '../native/reactor.js';
import type { Cancel } from '../native/cancel.js';
import type { HandleTable, SocketEntry, SocketInfo } from './handles.js';
import type { Session, Sessions } from './sessions.js';
import type { Limits } from './limits.js';
import { decide, isPingSocket, type Action, type NetSysctls, type Policy } from './policy.js';
import { netSysctls } from './net-sysctls.js';
import { ErrnoError } from '../native/errno.js';
import type { NetnsRegistry } from './netns.js';
import { isSnifferSocket, LinkOps } from './link-ops.js';
import { setThreadEgid, setThreadEuid, setThreadGroups, getThreadGroups } from '../native/creds.js';
import { DAEMON_IS_ROOT, describe } from './identity.js';
import { fromSockaddr, portOf, toSockaddr } from './addresses.js';
import { sendmsg } from '../native/msg.js';
import { callerCredentials } from './unix-creds.js';
import { isTimeout } from '../native/errno.js';
import { countBytesIn, countBytesOut, countDenial, countQuota, countReadAheadDropped } from './metrics.js';
import { recvmmsg, sendmmsg, MMSG_COUNT, MMSG_SLOT, SENDMMSG_NAME, SENDMMSG_SLOT } from '../native/mmsg.js';

export interface Broker {
  reactor: Reactor;
  /** Parks a new socket for hand-off when the policy lets it leave (set by the server). */
  handoff?: { offer(ctx: CallContext, fd: number, info: SocketInfo): Buffer | null };
  sessions: Sessions;
  limits: Limits;
  log: Logger;
  /** The policy in force (replaced on reload). */
  policy: Policy;
  netns: NetnsRegistry;
}

export interface CallContext {
  session: Session;
  /** Aborted when the client cancels the call or its stream ends. */
  signal: Cancel;
  /** Set by a handler that consumed data: called when its reply cannot be delivered. */
  onUndelivered?: () => void;
}

const TYPE_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;

/** The syscall a refused action would make, tried as the caller (`asCaller` switches to its ids). */
type Probe = (asCaller: (fn: () => void) => void) => void;
const INT_MIN = -0x80000000;
const INT_MAX = 0x7fffffff;
// setfsuid(-1)/setfsgid(-1) change nothing and return the current id.
const CURRENT_ID = 0xffffffff;

/**
 * Whether a recv may read datagrams ahead (RecvRequest.batch): UDP and raw IPv4/IPv6 sockets
 * with no link-level confinement or emulation (those filter what they read, link-ops.ts).
 */
function readsAhead(entry: SocketEntry): boolean {
  const { family, type } = entry.info;
  return (family === C.AF_INET || family === C.AF_INET6) && (type === C.SOCK_DGRAM || type === C.SOCK_RAW) && !entry.link;
}

// ---- validators: tiny, named, each throws the Python-shaped error ----

function validateInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw argumentError('type', `${name} must be an integer`, name);
  if (value < INT_MIN) throw argumentError('overflow', `${name}: signed integer is less than minimum`, name);
  if (value > INT_MAX) throw argumentError('overflow', `${name}: signed integer is greater than maximum`, name);
  return value;
}

/** Seconds: undefined = blocking, 0 = non-blocking, > 0 = timeout; negative or NaN is refused. */
function validateTimeout(value: number | undefined): Timeout {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw argumentError('value', 'Timeout value out of range', 'timeout');
  return value;
}

/** MSG_DONTWAIT makes a blocking call non-blocking (CPython calls a blocking socket's syscall
 * without waiting, so EAGAIN is raised); a timeout still waits for readiness first, as CPython. */
function dontWait(timeout: Timeout, flags: number): Timeout {
  return timeout === undefined && (flags & C.MSG_DONTWAIT) !== 0 ? 0 : timeout;
}

function validateSize(value: number, max: number, syscall: string): number {
  if (!Number.isInteger(value) || value < 0) throw argumentError('value', `negative buffersize in ${syscall}`, 'bufsize');
  if (value > max) throw argumentError('value', `${syscall}: bufsize ${value} is above the broker's limit of ${max} bytes`, 'bufsize');
  return value;
}

/** A quota breach: EMSGSIZE with RESOURCE_EXHAUSTED, naming the quota. */
function validateData(data: Buffer, max: number, syscall: string): Buffer {
  if (data.length > max) {
    countQuota('bytes_per_call');
    const text = `Message too long (sockbroker quota: at most ${max} bytes per call, got ${data.length})`;
    const err = osErrorNamed('EMSGSIZE', syscall, text);
    throw new BrokerError(Code.RESOURCE_EXHAUSTED, err.reason, err.message, err.metadata);
  }
  return data;
}

/** Resolves at `deadline` (never when Infinity); rejects with the signal's reason on abort. */
function sleepUntil(deadline: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // Node timers top out at 2^31-1 ms; the caller loops until the deadline really passed.
    const timer = deadline === Infinity ? undefined : setTimeout(resolve, Math.min(2 ** 31 - 1, Math.max(0, deadline - performance.now())));
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * MSG_NOSIGNAL for the families whose sends can raise SIGPIPE (Node ignores the signal anyway;
 * this keeps the daemon safe if that changes). Others, like RDS, refuse unknown flags.
 */
export function noSignal(entry: SocketEntry): number {
  const f = entry.info.family;
  return f === C.AF_INET || f === C.AF_INET6 || f === C.AF_UNIX ? C.MSG_NOSIGNAL : 0;
}

/**
 * Whether no send on `entry` can meet an error an ICMP message left (the kernel keeps one only for
 * a connected socket or one with IP_RECVERR/IPV6_RECVERR): sendmmsg loses the error of a datagram
 * after its first, and a send alone would have raised it.
 */
function noPendingErrors(entry: SocketEntry): boolean {
  try {
    libc.getpeername(entry.fd);
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOTCONN') return false;
  }
  try {
    const on = (level: number, name: number): boolean => libc.getsockopt(entry.fd, level, name, 4).readInt32LE(0) !== 0;
    if (on(C.IPPROTO_IP, C.IP_RECVERR)) return false;
    return entry.info.family !== C.AF_INET6 || !on(C.IPPROTO_IPV6, C.IPV6_RECVERR);
  } catch {
    return false;
  }
}

/** A datagram waiting for its turn's sendmmsg (see SocketOps.send). */
interface QueuedSend {
  data: Buffer;
  addr: Buffer | null;
  timeout: Timeout;
  signal: Cancel;
  syscall: string;
  resolve: (sent: number) => void;
  reject: (err: unknown) => void;
}

/** A turn in which a datagram was sent at once on a socket: later ones of the same turn queue. */
export interface SendTurn {
  flags: number;
  queue: QueuedSend[] | null;
  /** Starts the queued sends (set once they are). */
  end?: () => void;
}

// ---- the broker-wide pieces every handler uses ----

export class SocketOps {
  readonly link: LinkOps;

  constructor(readonly broker: Broker) {
    this.link = new LinkOps(this);
  }

  /** @internal Asks the policy before a syscall: a refusal is PermissionError and a log line, a privileged permission an audit line. */
  enforce(ctx: CallContext, action: Action, syscall: string, probe?: Probe): void {
    const decision = decide(this.broker.policy, ctx.session.identity, action, this.sysctlsFor(ctx, action));
    const logged = { ...action, ...('value' in action ? { value: undefined } : {}), ...('path' in action ? { path: action.path.toString('latin1') } : {}) };
    if (!decision.allowed) {
      // The errno is the kernel's for an unprivileged process with the caller's ids; only where
      // that process would succeed (or be refused for want of privilege) does the policy speak.
      const kernel = probe ? this.probeAsCaller(ctx, probe) : null;
      if (kernel && kernel.code !== 'EPERM' && kernel.code !== 'EACCES') throw kernel;
      const errno = (kernel?.code as 'EPERM' | 'EACCES' | undefined) ?? decision.errno;
      countDenial(decision.grant);
      this.audit(ctx, 'policy.deny', { action: logged, what: decision.what, grant: decision.grant, outcome: 'denied' });
      const strerror = errno === 'EPERM' ? 'Operation not permitted' : 'Permission denied';
      throw osErrorNamed(errno, syscall, `${strerror} (sockbroker policy: ${decision.what}; grant: ${decision.grant})`);
    }
    if (decision.privileged) this.audit(ctx, 'policy.allow', { action: logged, by: decision.by, outcome: 'allowed' });
  }

  /** The caller's namespace's sysctls, read only where they can widen the default (a low port, a ping socket). */
  private sysctlsFor(ctx: CallContext, a: Action): NetSysctls | undefined {
    const id = ctx.session.identity;
    if (id.hostRoot || id.kind !== 'local') return undefined;
    const wanted = (a.op === 'bind' && a.port !== 0 && a.port < 1024) || (a.op === 'socket' && isPingSocket(a));
    return wanted ? netSysctls(this.broker.netns, ctx.session.netns) : undefined;
  }

  /** Runs `probe` in the caller's namespace: the kernel's errno for the caller's ids, or null if it succeeds. */
  private probeAsCaller(ctx: CallContext, probe: Probe): ErrnoError | null {
    try {
      this.broker.netns.run(ctx.session.netns, () => probe((fn) => this.withCallerIds(ctx, fn)));
      return null;
    } catch (err) {
      if (err instanceof ErrnoError) return err;
      throw err;
    }
  }

  /**
   * Runs `fn` (one synchronous syscall that creates a socket) in the session's network namespace
   * with the caller's fsuid/fsgid, so the kernel attributes the socket to the caller while the
   * daemon's capabilities still allow what the policy granted.
   */
  asCaller<T>(ctx: CallContext, fn: () => T): T {
    const { uid, gid, hostRoot } = ctx.session.identity;
    if (hostRoot) return fn();
    return this.broker.netns.run(ctx.session.netns, () => {
      const oldGid = libc.setfsgid(gid);
      const oldUid = libc.setfsuid(uid);
      try {
        // setfsuid reports no error: without CAP_SETUID/CAP_SETGID the ids silently stay root's.
        if (libc.setfsuid(CURRENT_ID) !== uid || libc.setfsgid(CURRENT_ID) !== gid) {
          throw osErrorNamed('EPERM', 'setfsuid', "Operation not permitted (sockbroker: cannot act with the caller's ids: the daemon lacks CAP_SETUID or CAP_SETGID)");
        }
        return fn();
      } finally {
        libc.setfsuid(oldUid);
        libc.setfsgid(oldGid);
      }
    });
  }

  /**
   * Runs `fn` (a bind/connect/sendto naming an AF_UNIX path) with this thread's effective ids
   * and groups set to the caller's: the kernel checks the path with the caller's rights and the
   * peer's SO_PEERCRED shows the caller, never root.
   */
  withCallerIds<T>(ctx: CallContext, fn: () => T): T {
    const { uid, gid, groups, hostRoot } = ctx.session.identity;
    // A daemon run by an ordinary user already has that user's ids, and could not switch back.
    if (hostRoot || !DAEMON_IS_ROOT) return fn();
    const saved = getThreadGroups();
    setThreadGroups(groups);
    setThreadEgid(gid);
    setThreadEuid(uid);
    try {
      return fn();
    } finally {
      setThreadEuid(0);
      setThreadEgid(0);
      setThreadGroups(saved);
    }
  }

  /** The session's per-call byte bound. */
  maxBytes(ctx: CallContext): number {
    return Math.min(this.broker.limits.maxSendBytes, ctx.session.quotas.bytesPerCall);
  }

  audit(ctx: CallContext, event: string, fields: Record<string, unknown>): void {
    this.broker.log.info({ event, session: ctx.session.id.slice(0, 8), ...describe(ctx.session.identity), ...fields });
  }

  /** Closes one socket: off the reactor first, then the fd (off the event loop if SO_LINGER may block). */
  async closeEntry(table: HandleTable, entry: SocketEntry): Promise<void> {
    if (entry.closed) return;
    entry.closed = true;
    table.remove(entry);
    entry.onClose?.();
    this.broker.reactor.forget(entry.fd);
    let lingers = false;
    try {
      const l = libc.getsockopt(entry.fd, C.SOL_SOCKET, C.SO_LINGER, 8);
      lingers = l.length >= 8 && l.readInt32LE(0) !== 0 && l.readInt32LE(4) > 0;
    } catch {
      // Not every family has SO_LINGER; such a close never blocks.
    }
    try {
      if (lingers) await libc.closeOffThread(entry.fd);
      else libc.close(entry.fd);
    } catch (err) {
      this.broker.log.warn({ event: 'close.error', fd: entry.fd, err: String(err) });
    }
  }

  entry(ctx: CallContext, handle: number, syscall: string): SocketEntry {
    return ctx.session.table.get(validateInt(handle, 'handle'), syscall);
  }

  register(ctx: CallContext, fd: number, info: SocketInfo): SocketEntry {
    if (ctx.session.ended) {
      libc.close(fd);
      throw osErrorNamed('EBADF', 'socket', 'Bad file descriptor (session ended)');
    }
    const entry = ctx.session.table.add(fd, info);
    entry.ifs = this.link.ifs(ctx);
    return entry;
  }

  // ---- operations ----

  create = async (ctx: CallContext, req: pb.CreateRequest): Promise<pb.CreateResponse> => {
    const family = validateInt(req.family, 'family');
    const type = validateInt(req.type, 'type');
    const protocol = validateInt(req.protocol, 'proto');
    const info = { family, type: type & ~TYPE_FLAGS, protocol };
    // The seed's sniffer socket is the broker's own (Linux has none): a grant is the whole answer.
    const probe: Probe = (asCaller) => asCaller(() => libc.close(libc.socket(family, info.type | TYPE_FLAGS, protocol)));
    this.enforce(ctx, { op: 'socket', ...info, pair: false }, 'socket', isSnifferSocket(info) ? undefined : probe);
    ctx.session.table.reserve(1);
    const special = this.link.create(ctx, info);
    if (special) return { handle: special.handle, info };
    const make = () => libc.socket(family, info.type | TYPE_FLAGS, protocol);
    // The kernel admits a ping socket by the creator's groups (ping_group_range), not by capability.
    const fd = this.asCaller(ctx, () => (isPingSocket(info) ? this.withCallerIds(ctx, make) : make()));
    if (req.handoff && !ctx.session.ended) {
      const ticket = this.#offer(ctx, fd, info);
      if (ticket) return { handle: 0, info, handoffTicket: ticket };
    }
    const entry = this.register(ctx, fd, info);
    return { handle: entry.handle, info };
  };

  #offer(ctx: CallContext, fd: number, info: SocketInfo): Buffer | null {
    try {
      return this.broker.handoff?.offer(ctx, fd, info) ?? null;
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  socketpair = async (ctx: CallContext, req: pb.SocketpairRequest): Promise<pb.SocketpairResponse> => {
    const family = validateInt(req.family, 'family');
    const type = validateInt(req.type, 'type');
    const protocol = validateInt(req.protocol, 'proto');
    const info = { family, type: type & ~TYPE_FLAGS, protocol };
    this.enforce(ctx, { op: 'socket', ...info, pair: true }, 'socketpair', (asCaller) => asCaller(() => libc.socketpair(family, info.type | TYPE_FLAGS, protocol).forEach((fd) => libc.close(fd))));
    ctx.session.table.reserve(2);
    // With the caller's ids, so each end's SO_PEERCRED names the caller (an end passed on to
    // another process must not vouch for root).
    const [a, b] = this.asCaller(ctx, () => this.withCallerIds(ctx, () => libc.socketpair(family, info.type | TYPE_FLAGS, protocol)));
    const ea = this.register(ctx, a, info);
    const eb = this.register(ctx, b, info);
    return { handleA: ea.handle, handleB: eb.handle, info };
  };

  bind = async (ctx: CallContext, req: pb.BindRequest): Promise<pb.BindResponse> => {
    const entry = this.entry(ctx, req.handle, 'bind');
    const sniffer = await this.link.bind(ctx, entry, req);
    if (sniffer) return sniffer;
    const sa = await toSockaddr(req.address, entry.info.family, 'bind', entry.ifs);
    this.live(entry, 'bind');
    if (entry.info.family === C.AF_PACKET || entry.info.family === C.AF_CAN) {
      this.link.checkAddress(ctx, entry, sa, 'bind');
      libc.bind(entry.fd, sa);
    } else if (entry.info.family === C.AF_UNIX) {
      this.enforce(ctx, { op: 'unix', path: req.address!.unix!.path, syscall: 'bind' }, 'bind');
      this.withCallerIds(ctx, () => libc.bind(entry.fd, sa));
    } else {
      this.enforce(ctx, { op: 'bind', family: entry.info.family, port: portOf(req.address) }, 'bind');
      libc.bind(entry.fd, sa);
    }
    return { local: this.name(entry, libc.getsockname) };
  };

  listen = async (ctx: CallContext, req: pb.ListenRequest): Promise<pb.ListenResponse> => {
    const entry = this.entry(ctx, req.handle, 'listen');
    // Python >= 3.5: default min(SOMAXCONN, 128); a negative backlog is taken as 0.
    const backlog = Math.max(0, req.backlog === undefined ? Math.min(C.SOMAXCONN, 128) : validateInt(req.backlog, 'backlog'));
    libc.listen(entry.fd, backlog);
    return {};
  };

  accept = async (ctx: CallContext, req: pb.AcceptRequest): Promise<pb.AcceptResponse> => {
    const entry = this.entry(ctx, req.handle, 'accept');
    const timeout = validateTimeout(req.timeout);
    ctx.session.table.reserve(1);
    const { fd, addr } = await drive(this.broker.reactor, entry, 'read', timeout, ctx.signal, 'accept', () =>
      this.asCaller(ctx, () => libc.accept4(entry.fd, TYPE_FLAGS)),
    );
    if (ctx.signal.aborted) {
      // The caller is gone: nobody will ever learn this handle.
      libc.close(fd);
      throw ctx.signal.reason;
    }
    const child = this.register(ctx, fd, entry.info);
    return {
      handle: child.handle,
      info: entry.info,
      address: fromSockaddr(addr, entry.info.family, entry.ifs),
      local: this.name(child, libc.getsockname),
    };
  };

  connect = async (ctx: CallContext, req: pb.ConnectRequest): Promise<pb.ConnectResponse> => {
    const entry = this.entry(ctx, req.handle, 'connect');
    const timeout = validateTimeout(req.timeout);
    const sa = await toSockaddr(req.address, entry.info.family, 'connect', entry.ifs);
    this.link.checkAddress(ctx, entry, sa, 'connect');
    const unix = entry.info.family === C.AF_UNIX;
    if (unix) this.enforce(ctx, { op: 'unix', path: req.address!.unix!.path, syscall: 'connect' }, 'connect');
    const connect = (): void => (unix ? this.withCallerIds(ctx, () => libc.connect(entry.fd, sa)) : libc.connect(entry.fd, sa));
    const deadline = deadlineFor(timeout);
    this.live(entry, 'connect');
    try {
      connect();
      return this.ends(entry);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'EINPROGRESS' && !isAgain(err) && code !== 'EINTR') throw err;
      if (timeout === 0) throw err;
    }
    // In progress: wait for writability, then the outcome is in SO_ERROR.
    await waitReady(this.broker.reactor, entry, 'write', deadline, ctx.signal, 'connect');
    this.live(entry, 'connect');
    const soError = libc.getsockopt(entry.fd, C.SOL_SOCKET, C.SO_ERROR, 4).readInt32LE(0);
    // Linux leaves the socket "connecting" until connect() is called again: that call moves it to
    // connected or, after a failure, back to unconnected. Without it the user's next connect()
    // would succeed once instead of raising EISCONN, or raise ECONNABORTED instead of retrying.
    try {
      connect();
    } catch {
      // Its outcome is already in soError.
    }
    if (soError !== 0) throw osError(soError, 'connect');
    return this.ends(entry);
  };

  send = async (ctx: CallContext, req: pb.SendRequest): Promise<pb.SendResponse> => {
    const syscall = req.address ? 'sendto' : 'send';
    const entry = this.entry(ctx, req.handle, syscall);
    const data = validateData(req.data, this.maxBytes(ctx), syscall);
    const flags = validateInt(req.flags, 'flags');
    const timeout = dontWait(validateTimeout(req.timeout), flags);
    if (entry.link?.rcvall) throw osErrorNamed('EOPNOTSUPP', syscall, 'Operation not supported (the sniffer socket only receives)');
    // At once for a numeric host: the datagrams of one turn then meet below.
    const to = req.address ? toSockaddr(req.address, entry.info.family, syscall, entry.ifs) : null;
    const sa = to instanceof Promise ? await to : to;
    if (sa) this.link.checkAddress(ctx, entry, sa, syscall);
    this.link.checkCanSend(ctx, entry, data, syscall);
    const unix = sa !== null && entry.info.family === C.AF_UNIX;
    if (unix) this.enforce(ctx, { op: 'unix', path: req.address!.unix!.path, syscall: 'sendto' }, syscall);
    // AF_UNIX: the caller's own credentials travel with the data (daemon/unix-creds.ts).
    const creds = callerCredentials(ctx.session.identity, entry);
    const out = flags | noSignal(entry);
    const sendto = (): number | typeof AGAIN => (creds ? sendmsg(entry.fd, [data], creds, out, sa) : libc.sendtoTry(entry.fd, data, out, sa));
    const attempt = unix ? () => this.withCallerIds(ctx, sendto) : sendto;
    // A client's concurrent sendto calls on a datagram socket (one CallBatch) arrive in one turn:
    // the first is sent at once, the rest wait for its end and go out in one sendmmsg, each
    // with its own result; one sendmmsg stops at is sent alone, for its own error or wait.
    const together = !creds && !unix && (entry.info.type === C.SOCK_DGRAM || entry.info.type === C.SOCK_RAW) && data.length <= SENDMMSG_SLOT && (sa === null || sa.length <= SENDMMSG_NAME);
    const turn = entry.sendTurn;
    let sent: number | typeof AGAIN;
    if (together && turn !== undefined && turn.flags === out && (turn.queue !== null || entry.writes.idle)) {
      if (turn.queue === null) {
        const queue: QueuedSend[] = (turn.queue = []);
        void entry.writes.run(async () => {
          await new Promise<void>((resolve) => (turn.end = resolve));
          await this.#sendQueued(entry, queue, out);
        });
      }
      sent = await new Promise<number>((resolve, reject) => turn.queue!.push({ data, addr: sa, timeout, signal: ctx.signal, syscall, resolve, reject }));
    } else {
      sent = entry.writes.idle ? attemptNow(entry, timeout, ctx.signal, syscall, attempt) : AGAIN;
      if (sent === AGAIN) sent = await entry.writes.run(() => drive(this.broker.reactor, entry, 'write', timeout, ctx.signal, syscall, attempt));
      else if (together && turn === undefined) {
        const t: SendTurn = (entry.sendTurn = { flags: out, queue: null });
        queueMicrotask(() => {
          entry.sendTurn = undefined;
          t.end?.();
        });
      }
    }
    countBytesOut(ctx.session, sent);
    return { sent };
  };

  /** The datagrams queued in a turn, in order, under the write lock (see send). */
  async #sendQueued(entry: SocketEntry, queue: QueuedSend[], flags: number): Promise<void> {
    let i = 0;
    let together: boolean | undefined;
    try {
      while (i < queue.length) {
        // The longest run of calls not cancelled, in one sendmmsg that stops at the first datagram it could not send.
        let j = i;
        while (j < queue.length && j - i < MMSG_COUNT && !queue[j]!.signal.aborted) j++;
        if (j - i > 1 && !entry.closed) together ??= noPendingErrors(entry);
        const sent = j - i > 1 && !entry.closed && together ? sendmmsg(entry.fd, queue.slice(i, j), flags) : [];
        for (const n of sent) queue[i++]!.resolve(n);
        if (i === queue.length) break;
        // The next one alone, as if it had come alone: its error, its wait, EBADF or its cancellation.
        const q = queue[i++]!;
        try {
          q.resolve(await drive(this.broker.reactor, entry, 'write', q.timeout, q.signal, q.syscall, () => libc.sendtoTry(entry.fd, q.data, flags, q.addr)));
        } catch (err) {
          q.reject(err);
        }
      }
    } catch (err) {
      for (; i < queue.length; i++) queue[i]!.reject(err);
    }
  }

  sendAll = async (ctx: CallContext, req: pb.SendAllRequest): Promise<pb.SendAllResponse> => {
    const entry = this.entry(ctx, req.handle, 'sendall');
    const data = validateData(req.data, this.maxBytes(ctx), 'sendall');
    this.link.checkCanSend(ctx, entry, data, 'sendall');
    const flags = validateInt(req.flags, 'flags') | noSignal(entry);
    const timeout = dontWait(validateTimeout(req.timeout), flags);
    const deadline = deadlineFor(timeout);
    const creds = callerCredentials(ctx.session.identity, entry);
    // With credentials each attempt copies its data into native memory: at most 256 KiB at a time on a stream.
    const step = creds && entry.info.type === C.SOCK_STREAM ? 256 * 1024 : Infinity;
    // The first send at once when nothing else writes here (an echo's whole sendall); the rest,
    // or all of it when it would wait, in order under the lock. At least one send, as CPython's.
    const first = entry.writes.idle && !creds ? attemptNow(entry, timeout, ctx.signal, 'sendall', () => libc.sendTry(entry.fd, data, flags)) : AGAIN;
    if (first === AGAIN || first < data.length) {
      await entry.writes.run(async () => {
        let offset = first === AGAIN ? 0 : first;
        do {
          offset += await drive(this.broker.reactor, entry, 'write', timeout, ctx.signal, 'sendall', () =>
            creds ? sendmsg(entry.fd, [data.subarray(offset, offset + step)], creds, flags, null) : libc.sendTry(entry.fd, data.subarray(offset), flags), deadline,
          );
        } while (offset < data.length);
      });
    }
    countBytesOut(ctx.session, data.length);
    return {};
  };

  recv = async (ctx: CallContext, req: pb.RecvRequest): Promise<pb.RecvResponse> => {
    const syscall = req.wantAddress ? 'recvfrom' : 'recv';
    const entry = this.entry(ctx, req.handle, syscall);
    const bufsize = validateSize(req.bufsize, this.broker.limits.maxRecvBytes, syscall);
    const flags = validateInt(req.flags, 'flags');
    const timeout = dontWait(validateTimeout(req.timeout), flags);
    const buffered = entry.take(bufsize, (flags & C.MSG_PEEK) !== 0);
    let data: Buffer;
    let address;
    let queued: pb.QueuedDatagram[] = [];
    if (buffered) {
      data = buffered;
      if (req.wantAddress) address = fromSockaddr(libc.getpeername(entry.fd), entry.info.family, entry.ifs);
    } else {
      // The sniffer socket's packets are in its ring, read in batches by CaptureService.Sniff.
      if (entry.link?.rcvall) throw osErrorNamed('EOPNOTSUPP', syscall, 'Operation not supported (the sniffer socket is read through CaptureService.Sniff)');
      const batch = flags === 0 ? Math.min(validateInt(req.batch ?? 0, 'batch'), MMSG_COUNT - 1) : 0;
      if (batch > 0 && readsAhead(entry)) {
        // The first datagram is this call's (cut at bufsize, as recvfrom cuts it); those already
        // waiting behind it come whole, in the same recvmmsg.
        const got = await drive(this.broker.reactor, entry, 'read', timeout, ctx.signal, syscall, () => recvmmsg(entry.fd, 1 + batch, MMSG_SLOT));
        const [first, ...rest] = got;
        data = first!.data.subarray(0, Math.min(first!.length, bufsize));
        if (req.wantAddress && first!.addr.length > 0) address = fromSockaddr(first!.addr, entry.info.family, entry.ifs);
        queued = rest.map((d) => ({ data: d.data, address: d.addr.length > 0 ? fromSockaddr(d.addr, entry.info.family, entry.ifs) : undefined }));
        countBytesIn(ctx.session, got.reduce((n, d) => n + d.length, 0));
      } else {
        // recv*Bytes: native memory up to 64 KiB and a fresh buffer of what came; AGAIN, not a thrown EAGAIN, when it waits.
        const r = await drive(this.broker.reactor, entry, 'read', timeout, ctx.signal, syscall, () =>
          req.wantAddress ? libc.recvfromBytes(entry.fd, bufsize, flags) : libc.recvBytes(entry.fd, bufsize, flags));
        data = r.data;
        if ((flags & C.MSG_PEEK) === 0) countBytesIn(ctx.session, data.length);
        const addr = (r as { addr?: Buffer }).addr;
        if (addr && addr.length > 0) address = fromSockaddr(addr, entry.info.family, entry.ifs);
        // No address (addrlen 0: a stream socket, an unnamed AF_UNIX peer) is None in Python.
      }
    }
    if ((flags & C.MSG_PEEK) === 0) {
      // Datagrams read ahead for a reply that is lost are dropped (and counted), as UDP may drop any.
      ctx.onUndelivered = () => {
        entry.unshift(data);
        if (queued.length > 0) countReadAheadDropped(queued.length);
      };
      if (ctx.signal.aborted) {
        ctx.onUndelivered();
        throw ctx.signal.reason;
      }
    }
    return { data, address, queued };
  };

  shutdown = async (ctx: CallContext, req: pb.ShutdownRequest): Promise<pb.ShutdownResponse> => {
    const entry = this.entry(ctx, req.handle, 'shutdown');
    libc.shutdown(entry.fd, validateInt(req.how, 'how'));
    return {};
  };

  close = async (ctx: CallContext, req: pb.CloseSocketRequest): Promise<pb.CloseSocketResponse> => {
    const entry = this.entry(ctx, req.handle, 'close');
    await this.closeEntry(ctx.session.table, entry);
    return {};
  };

  getSockOpt = async (ctx: CallContext, req: pb.GetSockOptRequest): Promise<pb.GetSockOptResponse> => {
    const entry = this.entry(ctx, req.handle, 'getsockopt');
    const level = validateInt(req.level, 'level');
    const name = validateInt(req.name, 'optname');
    // A sniffer's PACKET_STATISTICS comes from its ring's running totals (they reset on read).
    const sniffer = level === os.SOL_PACKET && name === os.PACKET_STATISTICS && entry.link?.rcvall?.ring !== undefined;
    if (req.buflen === undefined) {
      const v = sniffer ? this.link.snifferStats(entry)! : libc.getsockopt(entry.fd, level, name, 4);
      return { value: v.length >= 4 ? v.readInt32LE(0) : v.length ? v.readInt8(0) : 0, data: Buffer.alloc(0) };
    }
    if (!Number.isInteger(req.buflen) || req.buflen <= 0 || req.buflen > this.broker.limits.maxOptBytes) {
      throw new BrokerError(Code.INVALID_ARGUMENT, 'OS_ERROR', 'getsockopt buflen out of range', { kind: 'os' });
    }
    if (sniffer) return { value: 0, data: this.link.snifferStats(entry)!.subarray(0, req.buflen) };
    return { value: 0, data: libc.getsockopt(entry.fd, level, name, req.buflen) };
  };

  setSockOpt = async (ctx: CallContext, req: pb.SetSockOptRequest): Promise<pb.SetSockOptResponse> => {
    const entry = this.entry(ctx, req.handle, 'setsockopt');
    const level = validateInt(req.level, 'level');
    const name = validateInt(req.name, 'optname');
    let value: Buffer;
    let policyValue: number | Buffer;
    if (req.bytesValue !== undefined) {
      if (req.bytesValue.length > this.broker.limits.maxOptBytes) {
        throw argumentError('value', `setsockopt: at most ${this.broker.limits.maxOptBytes} bytes`, 'value');
      }
      value = req.bytesValue;
      policyValue = value;
    } else if (req.intValue !== undefined) {
      policyValue = validateInt(req.intValue, 'value');
      value = Buffer.alloc(4);
      value.writeInt32LE(policyValue);
    } else {
      throw argumentError('type', 'setsockopt() takes a value: an int or a bytes-like object', 'value');
    }
    if (this.link.setsockopt(ctx, entry, level, name, value)) return {};
    this.enforce(ctx, { op: 'setsockopt', level, name, value: policyValue }, 'setsockopt', (asCaller) => {
      // On a throwaway socket of the same kind (the caller's own must not change): an option the
      // kernel does not know, or that does not fit the socket, fails the same way there.
      let probe: number;
      try {
        probe = libc.socket(entry.info.family, entry.info.type | TYPE_FLAGS, entry.info.protocol);
      } catch {
        return;
      }
      try {
        asCaller(() => libc.setsockopt(probe, level, name, value));
      } finally {
        libc.close(probe);
      }
    });
    libc.setsockopt(entry.fd, level, name, value);
    return {};
  };

  getSockName = async (ctx: CallContext, req: pb.GetSockNameRequest): Promise<pb.GetSockNameResponse> => {
    const entry = this.entry(ctx, req.handle, 'getsockname');
    const r = entry.link?.rcvall;
    if (r) return { address: { inet: { host: r.host || '0.0.0.0', port: 0 } } };
    return { address: fromSockaddr(libc.getsockname(entry.fd), entry.info.family, entry.ifs) };
  };

  getPeerName = async (ctx: CallContext, req: pb.GetPeerNameRequest): Promise<pb.GetPeerNameResponse> => {
    const entry = this.entry(ctx, req.handle, 'getpeername');
    return { address: fromSockaddr(libc.getpeername(entry.fd), entry.info.family, entry.ifs) };
  };

  /**
   * The broker's select: poll(2) semantics over handles. Checks at once; if nothing is ready
   * and time is left, waits on the reactor for any of the handles, then checks again.
   */
  poll = async (ctx: CallContext, req: pb.PollRequest): Promise<pb.PollResponse> => {
    if (req.entries.length > this.broker.limits.maxPollHandles) {
      throw argumentError('value', `poll: at most ${this.broker.limits.maxPollHandles} handles`, 'entries');
    }
    const timeout = validateTimeout(req.timeout);
    const deadline = deadlineFor(timeout);
    const wanted = req.entries.map((e) => ({ handle: validateInt(e.handle, 'handle'), events: validateInt(e.events, 'events') }));
    for (;;) {
      const ready = this.#pollOnce(ctx, wanted);
      if (ready.length > 0 || timeout === 0) return { ready };
      if (performance.now() >= deadline) return { ready: [] };
      const ac = new AbortController();
      const onAbort = (): void => ac.abort(ctx.signal.reason);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const waits = wanted.flatMap(({ handle, events }) => {
          const entry = ctx.session.table.find(handle);
          if (!entry) return [];
          const dirs: Array<'read' | 'write'> = [];
          if (events & (os.POLLIN | os.POLLPRI)) dirs.push('read');
          if (events & os.POLLOUT) dirs.push('write');
          if (dirs.length === 0) dirs.push('read'); // errors and hangups are always reported
          return dirs.map((dir) => waitReady(this.broker.reactor, entry, dir, deadline, ac.signal, 'poll'));
        });
        // Nothing to watch: like poll(2) with nfds 0, just wait out the timeout (or a cancel).
        if (waits.length === 0) waits.push(sleepUntil(deadline, ac.signal));
        await Promise.any(waits).catch((err: AggregateError) => {
          const first = err.errors[0];
          if (isTimeout(first)) return;
          throw first;
        });
      } finally {
        ac.abort();
        ctx.signal.removeEventListener('abort', onAbort);
      }
      if (ctx.signal.aborted) throw ctx.signal.reason;
    }
  };

  #pollOnce(ctx: CallContext, wanted: Array<{ handle: number; events: number }>): pb.PollEntry[] {
    const live: Array<{ handle: number; events: number; entry: SocketEntry }> = [];
    const ready: pb.PollEntry[] = [];
    for (const w of wanted) {
      const entry = ctx.session.table.find(w.handle);
      if (!entry || entry.closed) ready.push({ handle: w.handle, events: os.POLLNVAL });
      else live.push({ ...w, entry });
    }
    const revents = live.length ? libc.poll(live.map((l) => ({ fd: l.entry.fd, events: l.events })), 0) : [];
    live.forEach((l, i) => {
      let ev = revents[i] ?? 0;
      if ((l.entry.unreadBytes > 0 || l.entry.pendingError !== undefined) && l.events & os.POLLIN) ev |= os.POLLIN;
      if (ev) ready.push({ handle: l.handle, events: ev });
    });
    return ready;
  }

  /** getsockname/getpeername for a reply's repr fields; undefined when the kernel has none. */
  name(entry: SocketEntry, get: (fd: number) => Buffer): pb.GetSockNameResponse['address'] {
    try {
      return fromSockaddr(get(entry.fd), entry.info.family, entry.ifs);
    } catch {
      return undefined;
    }
  }

  ends(entry: SocketEntry): pb.ConnectResponse {
    return { local: this.name(entry, libc.getsockname), peer: this.name(entry, libc.getpeername) };
  }

  live(entry: SocketEntry, syscall: string): void {
    if (entry.closed) throw osErrorNamed('EBADF', syscall);
  }
}
