// Sessions: a random 128-bit id bound to the caller's identity, a handle table, the network
// namespace its sockets are created in, its quotas, and a grace timer that runs while no stream
// is attached (a client that exited, was killed or lost its network can resume within it;
// after it the session's sockets are closed).
import { randomBytes } from 'node:crypto';
import { status as Code } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { HandleTable, type SocketEntry } from './handles.js';
import { sessionError } from './errors.js';
import { describe, type Identity } from './identity.js';
import type { Quotas } from './policy.js';
import { countQuota, countSessionOpened } from './metrics.js';
import type { CallState } from './call-state.js';

export class Session {
  readonly table: HandleTable;
  attached = 0;
  ended = false;
  graceTimer: NodeJS.Timeout | undefined;
  /** Run once when the session ends (e.g. its share tokens die with it). */
  readonly onEnd = new Set<() => void>();
  /** When it was opened (Date.now() ms), for `status`. */
  readonly openedAt = Date.now();
  /** Bytes its sockets received from and sent to the network (see metrics.ts). */
  bytesIn = 0;
  bytesOut = 0;
  /** A resumable session's Call stream state (running calls, replay record); null = per stream. */
  calls: CallState | null = null;
  /** Its client reads batched responses (OpenSessionRequest.batch_responses). */
  batchResponses = false;

  constructor(
    readonly id: string,
    readonly identity: Identity,
    readonly quotas: Quotas,
    /** Network namespace (NetnsRegistry id) sockets are created in; null = the daemon's own. */
    readonly netns: string | null,
    /** The policy rule that first matched its identity when it opened (a metrics label). */
    readonly rule = 'default',
  ) {
    this.table = new HandleTable(quotas.socketsPerSession);
  }
}

export interface SessionOptions {
  graceMs: number;
  log: Logger;
  /** Closes one socket of an ending session (never throws). */
  closeEntry: (table: HandleTable, entry: SocketEntry) => Promise<void>;
  /** Drops the session's reference to its network namespace. */
  releaseNetns: (id: string) => void;
}

export class Sessions {
  readonly #byId = new Map<string, Session>();
  /** This daemon process: drawn at start, so a client tells a restarted broker from an expired session. */
  readonly instance = randomBytes(16).toString('hex');

  constructor(readonly opts: SessionOptions) {}

  get size(): number {
    return this.#byId.size;
  }

  /** Every open session (for metrics and `status`). */
  all(): IterableIterator<Session> {
    return this.#byId.values();
  }

  /** Sessions of one identity (for the per-identity quota). */
  countFor(identity: Identity): number {
    let n = 0;
    for (const s of this.#byId.values()) if (s.identity.key === identity.key) n++;
    return n;
  }

  /**
   * A new session for `identity`, unattached (its grace timer runs until a stream attaches).
   * `netns` is a namespace reference the session takes over (released when it ends).
   */
  open(identity: Identity, quotas: Quotas, netns: string | null, rule?: string): Session {
    if (this.countFor(identity) >= quotas.sessionsPerIdentity) {
      if (netns !== null) this.opts.releaseNetns(netns);
      countQuota('sessions_per_identity');
      this.opts.log.warn({ event: 'quota.sessions', ...describe(identity), limit: quotas.sessionsPerIdentity });
      throw sessionError(`too many sessions for this identity (limit ${quotas.sessionsPerIdentity})`, Code.RESOURCE_EXHAUSTED);
    }
    const session = new Session(randomBytes(16).toString('hex'), identity, quotas, netns, rule);
    this.#byId.set(session.id, session);
    countSessionOpened();
    this.#startGrace(session);
    this.opts.log.info({ event: 'session.open', session: session.id.slice(0, 8), ...describe(identity), hostNetwork: netns === null });
    return session;
  }

  /** The session `id` if it exists and belongs to `identity`; else a clear error. */
  get(id: string, identity: Identity): Session {
    const session = this.#byId.get(id);
    if (!session || session.ended) throw sessionError('session lost: unknown or expired session id', Code.NOT_FOUND, 'expired');
    if (session.identity.key !== identity.key) {
      this.opts.log.warn({ event: 'session.refused', session: id.slice(0, 8), ...describe(identity) });
      throw sessionError('session belongs to another identity', Code.PERMISSION_DENIED, 'identity');
    }
    return session;
  }

  attach(session: Session): void {
    session.attached++;
    clearTimeout(session.graceTimer);
    session.graceTimer = undefined;
  }

  detach(session: Session): void {
    session.attached = Math.max(0, session.attached - 1);
    if (session.attached === 0 && !session.ended) this.#startGrace(session);
  }

  /** Ends a session now and closes its sockets; returns how many were closed. */
  async end(session: Session, why: string): Promise<number> {
    if (session.ended) return 0;
    session.ended = true;
    clearTimeout(session.graceTimer);
    this.#byId.delete(session.id);
    for (const f of session.onEnd) f();
    session.onEnd.clear();
    session.calls?.abortAll(sessionError(`session ended: ${why}`));
    session.calls?.endStream?.(`session ended: ${why}`, 'ended');
    const entries = session.table.entries();
    await Promise.all(entries.map((e) => this.opts.closeEntry(session.table, e)));
    if (session.netns !== null) this.opts.releaseNetns(session.netns);
    this.opts.log.info({ event: 'session.end', session: session.id.slice(0, 8), why, closed: entries.length });
    return entries.length;
  }

  async endAll(why: string): Promise<void> {
    await Promise.all([...this.#byId.values()].map((s) => this.end(s, why)));
  }

  #startGrace(session: Session): void {
    clearTimeout(session.graceTimer);
    session.graceTimer = setTimeout(() => void this.end(session, 'grace period over'), this.opts.graceMs);
    session.graceTimer.unref();
  }
}
