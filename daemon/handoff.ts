// Local fd hand-off. A socket the policy lets leave the broker is created exactly as any other
// (the caller's netns and fsuid, grants checked), then parked under a one-time ticket that the
// Create reply carries. The SDK redeems the ticket on the side channel — an AF_UNIX
// SOCK_SEQPACKET socket next to the gRPC listener (`<path>.handoff`) — where the kernel tells us
// who connected (SO_PEERCRED and namespaces, as for gRPC); only the session's own identity gets
// the fd, by SCM_RIGHTS, and the daemon then closes its copy: the socket belongs to the caller.
//
// An operation that needs the broker's privilege on a handed-off socket (a granted port below
// 1024, a granted option) sends the fd back on the side channel for that one call: the daemon
// checks its SO_COOKIE against the record it made at creation, asks the policy, does the call
// and closes its copy again.
//
// One request per connection (JSON, at most 4 KiB, plus at most one fd); everything is bounded:
// tickets expire, each session has at most MAX_PENDING of them, connections per identity and in
// all are capped, and a peer that does not send its request in time is dropped. All I/O runs
// on the daemon's reactor; nothing blocks the event loop.
import { setMaxListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import { chmodSync, unlinkSync } from 'node:fs';
import * as libc from '../native/libc.js';
import { linux as C, os } from '../native/constants.js';
import { encodeSockaddr, decodeSockaddr } from '../native/sockaddr.js';
import { cmsgSpace, decodeCmsgs, encodeCmsgs, recvmsg, sendmsg } from '../native/msg.js';
import { drive, type DrivenFd } from '../native/io-driver.js';
import { dupCloexec } from '../native/fd.js';
import type { SocketInfo } from './handles.js';
import type { Session } from './sessions.js';
import type { CallContext, SocketOps } from './socket-ops.js';
import { identifyLocal, ownNamespaces, describe, type Identity } from './identity.js';
import { handoffDecision } from './policy.js';
import { isSnifferSocket } from './link-ops.js';
import { BrokerError, errnoOf, osErrorNamed, toBrokerError } from './errors.js';
import { countHandoff } from './metrics.js';

/** The side channel of a gRPC Unix listener at `path`. */
export const sideChannelPath = (path: string): string => `${path}.handoff`;

const TICKET_TTL_MS = Number(process.env.SOCKBROKER_HANDOFF_TTL_MS ?? 10_000);
/** Unredeemed tickets per session; beyond it sockets stay on the broker. */
const MAX_PENDING = 64;
const MAX_CONNS_PER_IDENTITY = 32;
const MAX_CONNS = 256;
/** Seconds a side-channel peer has to send its request, and the daemon to send its reply. */
const IO_TIMEOUT_S = 5;
const MAX_REQUEST = 4096;
const SCM_RIGHTS = C.SCM_RIGHTS;

interface Ticket {
  session: Session;
  fd: number;
  info: SocketInfo;
  cookie: string;
  timer: NodeJS.Timeout;
}

interface Request {
  op?: unknown;
  session?: unknown;
  ticket?: unknown;
  sockaddr?: unknown;
  level?: unknown;
  name?: unknown;
  pid?: unknown;
  int?: unknown;
  bytes?: unknown;
}

type Reply = { ok: true; token?: string } | { ok: false; kind: string; errno?: number; message: string };

/** A socket's SO_COOKIE: a 64-bit id unique for the boot, as decimal text. */
export function cookieOf(fd: number): string {
  return libc.getsockopt(fd, C.SOL_SOCKET, os.SO_COOKIE!, 8).readBigUInt64LE(0).toString();
}

/** A plain fd as the I/O driver wants it. */
function driven(fd: number): DrivenFd {
  return { fd, closed: false };
}

export class Handoff {
  readonly #tickets = new Map<string, Ticket>();
  readonly #pendingBySession = new Map<Session, Set<string>>();
  /** Sessions whose end already drops their tickets. */
  readonly #watched = new WeakSet<Session>();
  /** Cookies of the sockets handed off per session (for send-back), oldest first, capped. */
  readonly #records = new WeakMap<Session, Map<string, SocketInfo>>();
  readonly #connsByIdentity = new Map<string, number>();
  #conns = 0;
  /** Refused or dropped side-channel connections (over a cap, slow, bad request), for the log. */
  dropped = 0;
  readonly #listeners: Array<{ fd: number; path: string }> = [];
  #stopping = false;
  readonly #stop = new AbortController();

  /** share(pid) of a broker handle (handle-ops.ts), for a handed-off socket sent back to be shared. */
  share?: (ctx: CallContext, req: { handle: number; pid: number }) => Promise<{ token: Uint8Array }>;

  constructor(readonly ops: SocketOps) {
    // Every side-channel connection's timed wait listens on #stop (at most MAX_CONNS at once, and
    // the accept loop): not a leak, so no MaxListenersExceededWarning when many clients connect.
    setMaxListeners(MAX_CONNS + 2, this.#stop.signal);
  }

  get pending(): number {
    return this.#tickets.size;
  }

  /**
   * Parks `fd` (just created for `ctx`'s session) under a ticket if the policy lets it leave the
   * broker; returns the ticket, or null (the caller then registers a handle as usual).
   */
  offer(ctx: CallContext, fd: number, info: SocketInfo): Buffer | null {
    const { session } = ctx;
    const identity = session.identity;
    if (identity.kind !== 'local' || isSnifferSocket(info) || this.#listeners.length === 0) return null;
    const ownNetns = session.netns !== null || identity.netNs === ownNamespaces.net;
    const d = handoffDecision(this.ops.broker.policy, identity, info, ownNetns);
    if (!d.allowed) return null;
    let pending = this.#pendingBySession.get(session);
    if ((pending?.size ?? 0) >= MAX_PENDING) return null;
    const cookie = cookieOf(fd);
    const ticket = randomBytes(16);
    const key = ticket.toString('hex');
    if (!pending) {
      pending = new Set();
      this.#pendingBySession.set(session, pending);
    }
    // Once per session (not per ticket: a long session would pile up handlers).
    if (!this.#watched.has(session)) {
      this.#watched.add(session);
      session.onEnd.add(() => this.#dropSession(session));
    }
    pending.add(key);
    const timer = setTimeout(() => this.#expire(key), TICKET_TTL_MS);
    timer.unref();
    this.#tickets.set(key, { session, fd, info, cookie, timer });
    this.#remember(session, cookie, info);
    countHandoff('offered');
    this.ops.audit(ctx, 'handoff.offer', { family: info.family, type: info.type, protocol: info.protocol, cookie, by: d.by });
    return ticket;
  }

  #remember(session: Session, cookie: string, info: SocketInfo): void {
    let m = this.#records.get(session);
    if (!m) this.#records.set(session, (m = new Map()));
    m.set(cookie, info);
    // The client never tells us when it closes a handed fd: keep the newest ones.
    while (m.size > session.quotas.socketsPerSession) m.delete(m.keys().next().value!);
  }

  #take(key: string): Ticket | undefined {
    const t = this.#tickets.get(key);
    if (!t) return undefined;
    this.#tickets.delete(key);
    clearTimeout(t.timer);
    const pending = this.#pendingBySession.get(t.session);
    pending?.delete(key);
    if (pending?.size === 0) this.#pendingBySession.delete(t.session);
    return t;
  }

  #expire(key: string): void {
    const t = this.#take(key);
    if (!t) return;
    libc.close(t.fd);
    countHandoff('expired');
    this.ops.broker.log.info({ event: 'handoff.expired', session: t.session.id.slice(0, 8), cookie: t.cookie });
  }

  #dropSession(session: Session): void {
    for (const key of [...(this.#pendingBySession.get(session) ?? [])]) {
      const t = this.#take(key);
      if (t) libc.close(t.fd);
    }
  }

  /** Opens the side channel next to a gRPC Unix listener (same mode). */
  listen(grpcPath: string, mode: number): string {
    const path = sideChannelPath(grpcPath);
    const fd = libc.socket(C.AF_UNIX, C.SOCK_SEQPACKET | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0);
    try {
      try {
        libc.bind(fd, encodeSockaddr({ family: 'unix', path: Buffer.from(path) }));
      } catch (err) {
        if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
        // A stale socket of a previous run (the gRPC path next to it was found unused).
        unlinkQuiet(path);
        libc.bind(fd, encodeSockaddr({ family: 'unix', path: Buffer.from(path) }));
      }
      chmodSync(path, mode);
      libc.listen(fd, 128);
    } catch (err) {
      libc.close(fd);
      throw err;
    }
    this.#listeners.push({ fd, path });
    void this.#acceptLoop(fd);
    return path;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stop.abort(new Error('stopping'));
    for (const l of this.#listeners) {
      this.ops.broker.reactor.forget(l.fd);
      libc.close(l.fd);
      unlinkQuiet(l.path);
    }
    this.#listeners.length = 0;
    for (const key of [...this.#tickets.keys()]) {
      const t = this.#take(key);
      if (t) libc.close(t.fd);
    }
  }

  async #acceptLoop(lfd: number): Promise<void> {
    const entry = driven(lfd);
    while (!this.#stopping) {
      let fd: number;
      try {
        ({ fd } = await drive(this.ops.broker.reactor, entry, 'read', undefined, this.#stop.signal, 'accept', () =>
          libc.accept4(lfd, C.SOCK_NONBLOCK | C.SOCK_CLOEXEC)));
      } catch (err) {
        if (this.#stopping) return;
        // Out of fds (EMFILE/ENFILE) or a peer gone before accept: back off briefly, never spin.
        this.ops.broker.log.warn({ event: 'handoff.accept_error', err: String((err as Error).message ?? err) });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      void this.#serve(fd);
    }
  }

  async #serve(fd: number): Promise<void> {
    let identity: Identity | undefined;
    let counted = false;
    const received: number[] = [];
    try {
      if (this.#conns >= MAX_CONNS) throw new Error('too many side-channel connections');
      const peer = identifyLocal(fd);
      if (peer.netnsFd >= 0) libc.close(peer.netnsFd);
      identity = peer.identity;
      const n = this.#connsByIdentity.get(identity.key) ?? 0;
      if (n >= MAX_CONNS_PER_IDENTITY) throw new Error(`more than ${MAX_CONNS_PER_IDENTITY} side-channel connections`);
      this.#connsByIdentity.set(identity.key, n + 1);
      this.#conns++;
      counted = true;
      const got = await drive(this.ops.broker.reactor, driven(fd), 'read', IO_TIMEOUT_S, this.#stop.signal, 'recvmsg', () =>
        recvmsg(fd, MAX_REQUEST, cmsgSpace(4 * 4), C.MSG_CMSG_CLOEXEC));
      for (const c of decodeCmsgs(got.control)) {
        if (c.level !== C.SOL_SOCKET || c.type !== SCM_RIGHTS) continue;
        for (let i = 0; i + 4 <= c.data.length; i += 4) received.push(c.data.readInt32LE(i));
      }
      let reply: Reply;
      let give: number | undefined;
      try {
        if ((got.msgFlags & (C.MSG_TRUNC | C.MSG_CTRUNC)) !== 0 || received.length > 1) throw badRequest('request too large');
        const req = JSON.parse(got.data.toString('utf8')) as Request;
        const out = await this.#handle(identity, req, received[0]);
        give = out.fd;
        reply = { ok: true, ...(out.token ? { token: out.token } : {}) };
      } catch (err) {
        reply = errorReply(err);
      }
      const body = Buffer.from(JSON.stringify(reply));
      const control = give === undefined ? Buffer.alloc(0) : encodeCmsgs([{ level: C.SOL_SOCKET, type: SCM_RIGHTS, data: int32(give) }]);
      try {
        await drive(this.ops.broker.reactor, driven(fd), 'write', IO_TIMEOUT_S, this.#stop.signal, 'sendmsg', () =>
          sendmsg(fd, [body], control, C.MSG_NOSIGNAL, null));
      } finally {
        // Sent or not, the daemon keeps no copy of a handed-off socket.
        if (give !== undefined) libc.close(give);
      }
    } catch (err) {
      this.dropped++;
      countHandoff('dropped');
      this.ops.broker.log.warn({ event: 'handoff.dropped', ...(identity ? describe(identity) : {}), err: String((err as Error).message ?? err), dropped: this.dropped });
    } finally {
      for (const r of received) libc.close(r);
      this.ops.broker.reactor.forget(fd);
      libc.close(fd);
      if (counted && identity) {
        this.#conns--;
        const n = (this.#connsByIdentity.get(identity.key) ?? 1) - 1;
        if (n > 0) this.#connsByIdentity.set(identity.key, n);
        else this.#connsByIdentity.delete(identity.key);
      }
    }
  }

  /** Runs one request; returns the fd to send for a claim, the token of a share. */
  async #handle(identity: Identity, req: Request, fd: number | undefined): Promise<{ fd?: number; token?: string }> {
    if (typeof req.session !== 'string' || !/^[0-9a-f]{32}$/.test(req.session)) throw badRequest('session must be 32 hex digits');
    const session = this.ops.broker.sessions.get(req.session, identity);
    const ctx: CallContext = { session, signal: this.#stop.signal };
    if (req.op === 'claim') {
      if (typeof req.ticket !== 'string' || !/^[0-9a-f]{32}$/.test(req.ticket)) throw badRequest('ticket must be 32 hex digits');
      const t = this.#tickets.get(req.ticket);
      if (!t || t.session !== session) throw osErrorNamed('ENOENT', 'handoff', 'No such ticket (unknown, expired or already redeemed)');
      this.#take(req.ticket);
      countHandoff('handed_off');
      this.ops.audit(ctx, 'handoff', { family: t.info.family, type: t.info.type, protocol: t.info.protocol, cookie: t.cookie, outcome: 'handed off' });
      return { fd: t.fd };
    }
    if (fd === undefined) throw badRequest(`${String(req.op)} needs the socket's fd`);
    const cookie = cookieOf(fd);
    const info = this.#records.get(session)?.get(cookie);
    if (!info) {
      this.ops.audit(ctx, 'handoff.sendback', { op: String(req.op), cookie, outcome: 'denied', why: 'not a socket this session was handed' });
      throw osErrorNamed('EPERM', String(req.op), 'Operation not permitted (sockbroker: the fd sent back is not a socket the broker handed to this session)');
    }
    if (req.op === 'bind') {
      if (typeof req.sockaddr !== 'string' || !/^([0-9a-f]{2}){2,128}$/.test(req.sockaddr)) throw badRequest('sockaddr must be hex');
      const sa = Buffer.from(req.sockaddr, 'hex');
      const addr = decodeSockaddr(sa);
      if ((addr.family !== 'inet' || info.family !== C.AF_INET) && (addr.family !== 'inet6' || info.family !== C.AF_INET6)) {
        throw osErrorNamed('EAFNOSUPPORT', 'bind', 'Address family not supported by protocol (send-back bind takes the socket\'s own inet family)');
      }
      this.ops.enforce(ctx, { op: 'bind', family: info.family, port: addr.port }, 'bind');
      libc.bind(fd, sa);
    } else if (req.op === 'setsockopt') {
      if (!isInt(req.level) || !isInt(req.name)) throw badRequest('level and name must be integers');
      let value: Buffer;
      let policyValue: number | Buffer;
      if (isInt(req.int)) {
        policyValue = req.int;
        value = int32(req.int);
      } else if (typeof req.bytes === 'string' && /^([0-9a-f]{2}){0,1024}$/.test(req.bytes)) {
        value = policyValue = Buffer.from(req.bytes, 'hex');
      } else {
        throw badRequest('setsockopt takes int or bytes');
      }
      this.ops.enforce(ctx, { op: 'setsockopt', level: req.level, name: req.name, value: policyValue }, 'setsockopt');
      libc.setsockopt(fd, req.level, req.name, value);
    } else if (req.op === 'share' && this.share) {
      if (!isInt(req.pid)) throw badRequest('pid must be an integer');
      // As a broker handle for the moment of the share (which duplicates it), then closed.
      const entry = this.ops.register(ctx, dupCloexec(fd), info);
      try {
        const { token } = await this.share(ctx, { handle: entry.handle, pid: req.pid });
        this.ops.audit(ctx, 'handoff.sendback', { op: req.op, cookie, family: info.family, type: info.type, outcome: 'done' });
        return { token: Buffer.from(token).toString('hex') };
      } finally {
        await this.ops.closeEntry(session.table, entry);
      }
    } else {
      throw badRequest(`unknown op ${JSON.stringify(String(req.op)).slice(0, 40)}`);
    }
    this.ops.audit(ctx, 'handoff.sendback', { op: req.op, cookie, family: info.family, type: info.type, outcome: 'done' });
    return {};
  }
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}

function badRequest(why: string): BrokerError {
  return osErrorNamed('EINVAL', 'handoff', `Invalid argument (sockbroker side channel: ${why})`);
}

function errorReply(err: unknown): Reply {
  if (err instanceof SyntaxError) return { ok: false, kind: 'os', errno: errnoOf('EINVAL'), message: 'Invalid argument (sockbroker side channel: request is not JSON)' };
  const e = toBrokerError(err);
  const errno = e.metadata.errno === undefined ? undefined : Number(e.metadata.errno);
  return { ok: false, kind: e.metadata.kind ?? 'os', ...(errno === undefined ? {} : { errno }), message: e.message };
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
