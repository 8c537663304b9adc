// sendmsg/recvmsg with ancillary data rebuilt from a typed allowlist. The client never sends
// kernel bytes for a control message: SCM_RIGHTS names handles of its session (the daemon puts
// dups of their fds in the message), SCM_CREDENTIALS may carry only the caller's own ids (the
// daemon is root: the kernel would let it claim anyone), and the IP/IPv6 items are rebuilt
// from their fields. Raw items ("other") are accepted from host root only. Received items come
// back typed the same way; received fds become new handles of the session (non-sockets are
// closed and dropped; beyond the session's socket quota they are closed and MSG_CTRUNC is set).
import { status as Code } from '@grpc/grpc-js';
import { linux as C } from '../native/constants.js';
import * as libc from '../native/libc.js';
import { decodeCmsgs, encodeCmsgs, recvmsg, sendmsg, type Cmsg } from '../native/msg.js';
import { dupCloexec, makeDaemonFd, socketInfo } from '../native/fd.js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';
import { fromSockaddr, toSockaddr } from './addresses.js';
import { argumentError, BrokerError, osErrorNamed } from './errors.js';
import { drive } from '../native/io-driver.js';
import type { SocketEntry } from './handles.js';
import { noSignal, type CallContext, type SocketOps } from './socket-ops.js';
import { validateBounded, validateInt, validateTimeout } from './op-args.js';
import { refuseSniffer } from './handle-ops.js';
import { ucredOf } from './unix-creds.js';
import type { Timeout } from '../native/io-driver.js';
import { countBytesIn, countBytesOut, countDenial, countQuota } from './metrics.js';

const TYPE_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
const INT = 4;
const UCRED = 12;
const IN_PKTINFO = 12;
const IN6_PKTINFO = 20;
const TIMEVAL = 16;
const { SOL_SOCKET, SCM_RIGHTS, SCM_CREDENTIALS, IPPROTO_IP, IPPROTO_IPV6, IP_PKTINFO, IP_TTL, IP_TOS,
  IPV6_PKTINFO, IPV6_HOPLIMIT, IPV6_TCLASS, MSG_CTRUNC, MSG_PEEK, MSG_DONTWAIT, MSG_CMSG_CLOEXEC } = C;
const SCM_TIMESTAMP = C.SO_TIMESTAMP;

const is = (c: { level: number; type: number }, level: number, type: number): boolean => c.level === level && c.type === type;

/** MSG_DONTWAIT makes a blocking call non-blocking, as CPython (EAGAIN at once). */
function dontWait(timeout: Timeout, flags: number): Timeout {
  return timeout === undefined && (flags & MSG_DONTWAIT) !== 0 ? 0 : timeout;
}

function ipv4(text: string, what: string): Buffer {
  const b = libc.inetPton(C.AF_INET, text);
  if (!b) throw argumentError('value', `${what} must be an IPv4 address, got ${JSON.stringify(text.slice(0, 64))}`, what);
  return b;
}

function ipv6(text: string, what: string): Buffer {
  const b = libc.inetPton(C.AF_INET6, text);
  if (!b) throw argumentError('value', `${what} must be an IPv6 address, got ${JSON.stringify(text.slice(0, 64))}`, what);
  return b;
}

export class MsgOps {
  constructor(readonly ops: SocketOps) {}

  sendMsg = async (ctx: CallContext, req: pb.SendMsgRequest): Promise<pb.SendMsgResponse> => {
    const syscall = 'sendmsg';
    const { limits } = this.ops.broker;
    const entry = this.ops.entry(ctx, req.handle, syscall);
    if (req.buffers.length > limits.maxIov) {
      throw osErrorNamed('EMSGSIZE', syscall, `Message too long (at most ${limits.maxIov} buffers)`);
    }
    const total = req.buffers.reduce((n, b) => n + b.length, 0);
    const max = this.ops.maxBytes(ctx);
    if (total > max) {
      countQuota('bytes_per_call');
      const err = osErrorNamed('EMSGSIZE', syscall, `Message too long (sockbroker quota: at most ${max} bytes per call, got ${total})`);
      throw new BrokerError(Code.RESOURCE_EXHAUSTED, err.reason, err.message, err.metadata);
    }
    if (req.ancdata.length > limits.maxAncdata) {
      throw argumentError('value', `sendmsg: at most ${limits.maxAncdata} ancillary data items`, 'ancdata');
    }
    const flags = validateInt(req.flags, 'flags');
    const timeout = dontWait(validateTimeout(req.timeout), flags);
    // The same checks as send/sendto: the sniffer socket only receives, link-level addresses and
    // CAN ids are confined by the caller's grants.
    if (entry.link?.rcvall) throw osErrorNamed('EOPNOTSUPP', syscall, 'Operation not supported (the sniffer socket only receives)');
    const sa = req.address ? await toSockaddr(req.address, entry.info.family, syscall, entry.ifs) : null;
    if (sa) this.ops.link.checkAddress(ctx, entry, sa, syscall);
    this.ops.link.checkCanSend(ctx, entry, req.buffers.length === 1 ? req.buffers[0]! : Buffer.concat(req.buffers), syscall);
    const unixPath = sa !== null && entry.info.family === C.AF_UNIX;
    if (unixPath) this.ops.enforce(ctx, { op: 'unix', path: req.address!.unix!.path, syscall: 'sendto' }, syscall);
    // Dups of the fds named by SCM_RIGHTS, so a handle closed meanwhile can never send another fd.
    const dups: number[] = [];
    try {
      const cmsgs = this.#controlMessages(ctx, entry, req.ancdata, dups);
      const control = encodeCmsgs(cmsgs);
      const send = (): number => sendmsg(entry.fd, req.buffers, control, flags | noSignal(entry), sa);
      const sent = await entry.writes.run(() =>
        drive(this.ops.broker.reactor, entry, 'write', timeout, ctx.signal, syscall, () =>
          unixPath ? this.ops.withCallerIds(ctx, send) : send(),
        ),
      );
      countBytesOut(ctx.session, sent);
      return { sent };
    } finally {
      for (const fd of dups) libc.close(fd);
    }
  };

  /** The kernel control messages for a request's typed items (see the top of this file). */
  #controlMessages(ctx: CallContext, entry: SocketEntry, items: pb.ControlMessage[], dups: number[]): Cmsg[] {
    const { limits } = this.ops.broker;
    const id = ctx.session.identity;
    const out: Cmsg[] = [];
    let fds = 0;
    let creds = false;
    items.forEach((c, i) => {
      const level = validateInt(c.level, 'cmsg_level');
      const type = validateInt(c.type, 'cmsg_type');
      const where = `ancillary data item ${i} (level ${level}, type ${type})`;
      const mismatch = (): BrokerError => argumentError('value', `sendmsg: ${where} does not take this kind of data`, 'ancdata');
      let data: Buffer;
      if (c.rights !== undefined) {
        if (!is(c, SOL_SOCKET, SCM_RIGHTS)) throw mismatch();
        fds += c.rights.handles.length;
        if (fds > limits.maxCmsgFds) throw osErrorNamed('EINVAL', 'sendmsg', `Invalid argument (at most ${limits.maxCmsgFds} fds per message)`);
        data = Buffer.alloc(INT * c.rights.handles.length);
        c.rights.handles.forEach((h, k) => {
          const e = this.ops.entry(ctx, h, 'sendmsg');
          refuseSniffer(e, 'sendmsg');
          // A received fd arrives unconfined: a socket confined to interfaces travels only for host root.
          if (e.link && e.link.interfaces !== null && !id.hostRoot) {
            throw osErrorNamed('EPERM', 'sendmsg', 'Operation not permitted (sockbroker: a link-level socket confined by the policy cannot be passed with SCM_RIGHTS)');
          }
          const fd = dupCloexec(e.fd);
          dups.push(fd);
          data.writeInt32LE(fd, k * INT);
        });
      } else if (c.credentials !== undefined) {
        if (!is(c, SOL_SOCKET, SCM_CREDENTIALS)) throw mismatch();
        const { pid, uid, gid } = c.credentials;
        if (!id.hostRoot && (id.kind !== 'local' || pid !== id.pid || uid !== id.uid || gid !== id.gid)) {
          countDenial('scm_credentials');
          this.ops.audit(ctx, 'policy.deny', { action: { op: 'scm_credentials', pid, uid, gid }, outcome: 'denied' });
          throw osErrorNamed('EPERM', 'sendmsg', `Operation not permitted (sockbroker: SCM_CREDENTIALS may carry only the caller's own pid ${id.pid}, uid ${id.uid} and gid ${id.gid})`);
        }
        creds = true;
        data = Buffer.alloc(UCRED);
        data.writeInt32LE(validateInt(pid, 'pid'), 0);
        data.writeUInt32LE(uid >>> 0, 4);
        data.writeUInt32LE(gid >>> 0, 8);
      } else if (c.inPktinfo !== undefined) {
        if (!is(c, IPPROTO_IP, IP_PKTINFO)) throw mismatch();
        data = Buffer.alloc(IN_PKTINFO);
        data.writeInt32LE(validateInt(c.inPktinfo.ifindex, 'ipi_ifindex'), 0);
        ipv4(c.inPktinfo.specDst, 'ipi_spec_dst').copy(data, 4);
        ipv4(c.inPktinfo.addr, 'ipi_addr').copy(data, 8);
      } else if (c.in6Pktinfo !== undefined) {
        if (!is(c, IPPROTO_IPV6, IPV6_PKTINFO)) throw mismatch();
        data = Buffer.alloc(IN6_PKTINFO);
        ipv6(c.in6Pktinfo.addr, 'ipi6_addr').copy(data, 0);
        data.writeUInt32LE(c.in6Pktinfo.ifindex >>> 0, 16);
      } else if (c.intValue !== undefined) {
        if (!is(c, IPPROTO_IP, IP_TTL) && !is(c, IPPROTO_IP, IP_TOS) && !is(c, IPPROTO_IPV6, IPV6_HOPLIMIT) && !is(c, IPPROTO_IPV6, IPV6_TCLASS)) throw mismatch();
        data = Buffer.alloc(INT);
        data.writeInt32LE(validateInt(c.intValue, 'cmsg_data'));
      } else if (c.byteValue !== undefined) {
        if (!is(c, IPPROTO_IP, IP_TOS)) throw mismatch();
        if (!Number.isInteger(c.byteValue) || c.byteValue < 0 || c.byteValue > 255) throw argumentError('value', 'IP_TOS byte must be 0..255', 'ancdata');
        data = Buffer.from([c.byteValue]);
      } else if (c.timeval !== undefined) {
        if (!is(c, SOL_SOCKET, SCM_TIMESTAMP)) throw mismatch();
        data = Buffer.alloc(TIMEVAL);
        data.writeBigInt64LE(BigInt(Math.trunc(c.timeval.sec)), 0);
        data.writeBigInt64LE(BigInt(Math.trunc(c.timeval.usec)), 8);
      } else if (c.other !== undefined) {
        // Raw bytes could name a daemon fd (SCM_RIGHTS) or anything else the allowlist exists for.
        if (is(c, SOL_SOCKET, SCM_RIGHTS) || is(c, SOL_SOCKET, SCM_CREDENTIALS) || !id.hostRoot) {
          countDenial('ancillary_data');
          this.ops.audit(ctx, 'policy.deny', { action: { op: 'cmsg', level, type }, outcome: 'denied' });
          throw osErrorNamed('EPERM', 'sendmsg', `Operation not permitted (sockbroker: ancillary data of level ${level}, type ${type} is not in the typed allowlist)`);
        }
        if (c.other.length > limits.maxAncBufSize) throw argumentError('value', `sendmsg: an ancillary data item holds at most ${limits.maxAncBufSize} bytes`, 'ancdata');
        data = Buffer.from(c.other);
      } else {
        throw argumentError('type', `sendmsg: ${where} has no data`, 'ancdata');
      }
      out.push({ level, type, data });
    });
    // Without explicit credentials the kernel would attach the daemon's own (uid 0) for a
    // receiver with SO_PASSCRED: attach the caller's instead.
    if (!creds && !id.hostRoot && entry.info.family === C.AF_UNIX) {
      out.push({ level: SOL_SOCKET, type: SCM_CREDENTIALS, data: ucredOf(id) });
    }
    return out;
  }

  recvMsg = async (ctx: CallContext, req: pb.RecvMsgRequest): Promise<pb.RecvMsgResponse> => {
    const syscall = 'recvmsg';
    const { limits } = this.ops.broker;
    const entry = this.ops.entry(ctx, req.handle, syscall);
    const bufsize = validateBounded(req.bufsize, limits.maxRecvBytes, 'bufsize', syscall);
    const ancbufsize = validateBounded(req.ancbufsize, limits.maxAncBufSize, 'ancbufsize', syscall);
    const flags = validateInt(req.flags, 'flags');
    const timeout = dontWait(validateTimeout(req.timeout), flags);
    // The sniffer socket filters what it delivers in recv/recvfrom; recvmsg would bypass that.
    if (entry.link?.rcvall) throw osErrorNamed('EOPNOTSUPP', syscall, 'Operation not supported (use recvfrom on the sniffer socket)');
    const peek = (flags & MSG_PEEK) !== 0;
    const buffered = entry.take(bufsize, peek);
    if (buffered) {
      if (!peek) this.#undelivered(ctx, entry, buffered, []);
      return { data: buffered, nbytes: buffered.length, ancdata: [], msgFlags: 0, address: undefined };
    }
    const r = await drive(this.ops.broker.reactor, entry, 'read', timeout, ctx.signal, syscall, () =>
      recvmsg(entry.fd, bufsize, ancbufsize, flags | MSG_CMSG_CLOEXEC),
    );
    let msgFlags = r.msgFlags;
    if ((flags & MSG_CMSG_CLOEXEC) === 0) msgFlags &= ~MSG_CMSG_CLOEXEC;
    const received: SocketEntry[] = [];
    const ancdata: pb.ControlMessage[] = [];
    for (const c of decodeCmsgs(r.control)) {
      if (is(c, SOL_SOCKET, SCM_RIGHTS)) {
        const handles: number[] = [];
        for (let k = 0; k + INT <= c.data.length; k += INT) {
          const got = this.#adopt(ctx, c.data.readInt32LE(k));
          if (got === 'quota') msgFlags |= MSG_CTRUNC;
          else if (got) {
            received.push(got);
            handles.push(got.handle);
          }
        }
        if (handles.length) ancdata.push({ level: c.level, type: c.type, rights: { handles } });
        continue;
      }
      ancdata.push(typedItem(c));
    }
    const address = r.addr.length > 0 ? fromSockaddr(r.addr, entry.info.family, entry.ifs) : undefined;
    this.#undelivered(ctx, entry, peek ? Buffer.alloc(0) : r.data, received);
    if (!peek) countBytesIn(ctx.session, r.data.length);
    return { data: r.data, nbytes: r.n, ancdata, msgFlags, address };
  }

  /** A received fd as a new handle; null (closed) when it is not a socket, 'quota' (closed) beyond the quota. */
  #adopt(ctx: CallContext, fd: number): SocketEntry | null | 'quota' {
    try {
      const info = socketInfo(fd);
      if (!info) {
        libc.close(fd);
        return null;
      }
      const table = ctx.session.table;
      if (table.size >= table.maxSockets || ctx.session.ended) {
        libc.close(fd);
        return 'quota';
      }
      makeDaemonFd(fd);
      return this.ops.register(ctx, fd, { ...info, type: info.type & ~TYPE_FLAGS });
    } catch (err) {
      try {
        libc.close(fd);
      } catch {
        // already closed
      }
      this.ops.broker.log.warn({ event: 'recvmsg.fd_dropped', err: String(err) });
      return null;
    }
  }

  /** A reply that cannot be delivered: its data goes back to the socket's buffer, its new handles close. */
  #undelivered(ctx: CallContext, entry: SocketEntry, data: Buffer, handles: SocketEntry[]): void {
    ctx.onUndelivered = () => {
      entry.unshift(data);
      for (const h of handles) void this.ops.closeEntry(ctx.session.table, h);
    };
    if (ctx.signal.aborted) {
      ctx.onUndelivered();
      throw ctx.signal.reason;
    }
  }
}

/** A received item other than SCM_RIGHTS, typed when it is one of the allowlist's with its exact size. */
function typedItem(c: Cmsg & { truncated: boolean }): pb.ControlMessage {
  const { level, type, data } = c;
  const n = data.length;
  if (!c.truncated) {
    if (is(c, SOL_SOCKET, SCM_CREDENTIALS) && n === UCRED) {
      return { level, type, credentials: { pid: data.readInt32LE(0), uid: data.readUInt32LE(4), gid: data.readUInt32LE(8) } };
    }
    if (is(c, IPPROTO_IP, IP_PKTINFO) && n === IN_PKTINFO) {
      return { level, type, inPktinfo: { ifindex: data.readInt32LE(0), specDst: libc.inetNtop(C.AF_INET, data.subarray(4, 8)), addr: libc.inetNtop(C.AF_INET, data.subarray(8, 12)) } };
    }
    if (is(c, IPPROTO_IPV6, IPV6_PKTINFO) && n === IN6_PKTINFO) {
      return { level, type, in6Pktinfo: { addr: libc.inetNtop(C.AF_INET6, data.subarray(0, 16)), ifindex: data.readUInt32LE(16) } };
    }
    const intItem = is(c, IPPROTO_IP, IP_TTL) || is(c, IPPROTO_IP, IP_TOS) || is(c, IPPROTO_IPV6, IPV6_HOPLIMIT) || is(c, IPPROTO_IPV6, IPV6_TCLASS);
    if (intItem && n === INT) return { level, type, intValue: data.readInt32LE(0) };
    if (is(c, IPPROTO_IP, IP_TOS) && n === 1) return { level, type, byteValue: data[0]! };
    if (is(c, SOL_SOCKET, SCM_TIMESTAMP) && n === TIMEVAL) {
      return { level, type, timeval: { sec: Number(data.readBigInt64LE(0)), usec: Number(data.readBigInt64LE(8)) } };
    }
  }
  return { level, type, other: data };
}
