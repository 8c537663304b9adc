// Handle operations: dup, detach, fromfd, the inheritable flag, and share/fromshare (the
// broker's analog of the seed's Windows WSADuplicateSocket). All of them stay within what the
// caller already holds: a handle of its own session, or a token made for its own process.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import * as libc from '../native/libc.js';
import { dupCloexec } from '../native/fd.js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';
import { argumentError, osErrorNamed } from './errors.js';
import type { SocketEntry, SocketInfo } from './handles.js';
import { matches } from './policy.js';
import type { Session } from './sessions.js';
import type { CallContext, SocketOps } from './socket-ops.js';
import { validateInt } from './op-args.js';
import { countDenial } from './metrics.js';

/** How long a share token can be redeemed, ms (SOCKBROKER_SHARE_TTL_MS shortens it for tests). */
export const SHARE_TTL_MS = Math.max(1, Number(process.env.SOCKBROKER_SHARE_TTL_MS) || 60_000);
/** Most unredeemed share tokens one session may hold (each holds a daemon fd). */
export const MAX_SHARES_PER_SESSION = 64;
const TOKEN_BYTES = 32;

interface Shared {
  /** A dup of the shared socket, owned by the token until redeemed or expired. */
  fd: number;
  info: SocketInfo;
  /** The shared entry, whose link-level confinement the new handle keeps. */
  from: SocketEntry;
  pid: number;
  /** The identity key of the target process when the token was made (uid + namespaces). */
  key: string;
  source: Session;
  timer: NodeJS.Timeout;
  drop: () => void;
}

/** The uid and namespaces of process `pid`, as a session of it would be keyed; null if it is gone. */
function identityKeyOf(pid: number): { uid: number; key: string } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = /^Uid:\s+\d+\s+(\d+)/m.exec(status);
    if (!m) return null;
    const uid = Number(m[1]);
    const userNs = readlinkSync(`/proc/${pid}/ns/user`);
    const netNs = readlinkSync(`/proc/${pid}/ns/net`);
    return { uid, key: `local/${uid}/${userNs}/${netNs}` };
  } catch {
    return null;
  }
}

export class HandleOps {
  /** Per-handle inheritable flags (Python's default is False); daemon fds stay close-on-exec. */
  readonly #inheritable = new WeakMap<SocketEntry, boolean>();
  /** Handles detached by the client: reserved until fromfd takes them or the session ends. */
  readonly #detached = new WeakSet<SocketEntry>();
  /** Unredeemed share tokens by sha256 of the token (the token itself is kept nowhere). */
  readonly #shares = new Map<string, Shared>();

  constructor(readonly ops: SocketOps) {}

  /** A new handle for a dup of `entry`'s fd (close-on-exec, non-inheritable), confined as `entry` is. */
  #duplicate(ctx: CallContext, entry: SocketEntry, syscall: string): SocketEntry {
    refuseSniffer(entry, syscall);
    ctx.session.table.reserve(1);
    this.ops.live(entry, syscall);
    return carryLink(entry, this.ops.register(ctx, dupCloexec(entry.fd), entry.info));
  }

  dup = async (ctx: CallContext, req: pb.DupRequest): Promise<pb.DupResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'dup');
    const copy = this.#duplicate(ctx, entry, 'dup');
    return { handle: copy.handle, info: copy.info };
  };

  detach = async (ctx: CallContext, req: pb.DetachRequest): Promise<pb.DetachResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'detach');
    this.#detached.add(entry);
    return {};
  };

  fromFd = async (ctx: CallContext, req: pb.FromFdRequest): Promise<pb.FromFdResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'fromfd');
    const copy = this.#duplicate(ctx, entry, 'fromfd');
    // A detached handle was only waiting for this: the duplicate replaces it.
    if (this.#detached.has(entry)) {
      this.#detached.delete(entry);
      await this.ops.closeEntry(ctx.session.table, entry);
    }
    return { handle: copy.handle, info: copy.info };
  };

  getInheritable = async (ctx: CallContext, req: pb.GetInheritableRequest): Promise<pb.GetInheritableResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'get_inheritable');
    return { inheritable: this.#inheritable.get(entry) ?? false };
  };

  setInheritable = async (ctx: CallContext, req: pb.SetInheritableRequest): Promise<pb.SetInheritableResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'set_inheritable');
    if (typeof req.inheritable !== 'boolean') throw argumentError('type', 'inheritable must be a bool', 'inheritable');
    this.#inheritable.set(entry, req.inheritable);
    return {};
  };

  /**
   * share(pid): dups the socket now (closing the original afterwards is safe, as on Windows) and
   * returns a random token only a session opened by process `pid` can redeem, once, within
   * SHARE_TTL_MS and while this session lives. Sharing to a process of another uid (or from a
   * remote caller) needs the `share` grant.
   */
  share = async (ctx: CallContext, req: pb.ShareRequest): Promise<pb.ShareResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'share');
    const pid = validateInt(req.pid, 'process_id');
    if (pid <= 0) throw osErrorNamed('EINVAL', 'share', 'Invalid argument (process_id must be a positive pid)');
    const target = identityKeyOf(pid);
    if (!target) throw osErrorNamed('ESRCH', 'share');
    const me = ctx.session.identity;
    if (!me.hostRoot && (me.kind !== 'local' || me.uid !== target.uid)) this.#enforceShare(ctx, target.uid);
    const mine = [...this.#shares.values()].filter((s) => s.source === ctx.session).length;
    if (mine >= MAX_SHARES_PER_SESSION) {
      throw osErrorNamed('EMFILE', 'share', `Too many open files (at most ${MAX_SHARES_PER_SESSION} unredeemed share tokens per session)`);
    }
    refuseSniffer(entry, 'share');
    this.ops.live(entry, 'share');
    const fd = dupCloexec(entry.fd);
    const token = randomBytes(TOKEN_BYTES);
    const id = digest(token);
    const drop = (): void => {
      const s = this.#shares.get(id);
      if (!s) return;
      this.#shares.delete(id);
      clearTimeout(s.timer);
      ctx.session.onEnd.delete(drop);
      libc.close(s.fd);
    };
    const timer = setTimeout(drop, SHARE_TTL_MS);
    timer.unref();
    this.#shares.set(id, { fd, info: entry.info, from: entry, pid, key: target.key, source: ctx.session, timer, drop });
    ctx.session.onEnd.add(drop);
    // The token is a credential: audit that a share happened, never the token.
    this.ops.audit(ctx, 'share', { handle: entry.handle, toPid: pid, toUid: target.uid });
    return { token };
  };

  fromShare = async (ctx: CallContext, req: pb.FromShareRequest): Promise<pb.FromShareResponse> => {
    if (!(req.token instanceof Uint8Array) || req.token.length !== TOKEN_BYTES) {
      throw osErrorNamed('EINVAL', 'fromshare', 'Invalid argument (not a share token)');
    }
    const id = digest(Buffer.from(req.token));
    const s = this.#shares.get(id);
    if (!s || s.source.ended) throw osErrorNamed('EINVAL', 'fromshare', 'Invalid argument (unknown, used or expired share token)');
    const me = ctx.session.identity;
    if (me.kind !== 'local' || me.pid !== s.pid || me.key !== s.key) {
      this.ops.audit(ctx, 'fromshare.refused', { toPid: s.pid, outcome: 'denied' });
      throw osErrorNamed('EPERM', 'fromshare', 'Operation not permitted (this share token is for another process)');
    }
    ctx.session.table.reserve(1);
    // The token's fd moves to the new handle.
    this.#shares.delete(id);
    clearTimeout(s.timer);
    s.source.onEnd.delete(s.drop);
    const entry = carryLink(s.from, this.ops.register(ctx, s.fd, s.info));
    return { handle: entry.handle, info: entry.info };
  };

  /** The `share` grant: host root has it; others need a matching rule. */
  #enforceShare(ctx: CallContext, uid: number): void {
    const id = ctx.session.identity;
    const rule = this.ops.broker.policy.rules.find((r) => matches(r.match, id) && r.grant.share);
    if (rule) {
      this.ops.audit(ctx, 'policy.allow', { action: { op: 'share', uid }, by: rule.name, outcome: 'allowed' });
      return;
    }
    countDenial('share');
    this.ops.audit(ctx, 'policy.deny', { action: { op: 'share', uid }, grant: 'share', outcome: 'denied' });
    throw osErrorNamed('EPERM', 'share', `Operation not permitted (sockbroker policy: sharing a socket with a process of uid ${uid} needs a grant; grant: share)`);
  }
}

/**
 * The Windows sniffer socket (link-ops.ts) keeps per-socket capture state that a duplicate could
 * not share: it is not duplicated.
 */
export function refuseSniffer(entry: SocketEntry, syscall: string): void {
  if (entry.link?.rcvall) throw osErrorNamed('EOPNOTSUPP', syscall, 'Operation not supported (the sniffer socket cannot be duplicated)');
}

/** A duplicate keeps the interfaces its original is confined to (link-ops.ts). */
function carryLink(from: SocketEntry, to: SocketEntry): SocketEntry {
  if (from.link) to.link = { interfaces: from.link.interfaces };
  if (from.ifs) to.ifs = from.ifs;
  return to;
}

function digest(token: Buffer): string {
  return createHash('sha256').update(token).digest('hex');
}
