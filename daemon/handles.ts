// A session's handle table. Handle numbers are what fileno() returns; they are never reused
// within a session, so a stale number can never reach a socket opened later. Each entry owns
// one daemon fd (always O_NONBLOCK | O_CLOEXEC) and the small buffer of data that was read for
// a call whose reply could not be delivered.
import { osErrorNamed } from './errors.js';
import { FifoLock } from './fifo-lock.js';
import { countQuota } from './metrics.js';
import type { LinkState } from './link-ops.js';
import type { Interfaces } from './link-addresses.js';
import type { SendTurn } from './socket-ops.js';

/** A socket's family, type (without NONBLOCK/CLOEXEC) and protocol. */
export interface SocketInfo {
  family: number;
  type: number;
  protocol: number;
}

export class SocketEntry {
  /** Set once close starts: no syscall may touch `fd` after this. */
  closed = false;
  /** Data read but not delivered (cancelled call, broken stream); drained by the next read. */
  readonly unread: Buffer[] = [];
  unreadBytes = 0;
  /** An error a read-ahead met and its client did not deliver: the next read raises it once `unread` is drained. */
  pendingError?: unknown;
  /** Set in a turn whose first datagram was sent at once (socket-ops send). */
  sendTurn?: SendTurn;
  /** Keeps send/sendto/sendall on this socket in arrival order. */
  readonly writes = new FifoLock();
  /** Set for sockets with link-level confinement or emulation (see link-ops.ts). */
  link?: LinkState;
  /** Interface lookups in the socket's network namespace (for link-level addresses). */
  ifs?: Interfaces;
  /** Runs once when close starts, before the fd is closed (link-ops.ts: a sniffer's ring). */
  onClose?: () => void;

  constructor(
    readonly handle: number,
    readonly fd: number,
    readonly info: SocketInfo,
  ) {}

  /** Pushes undelivered bytes back to the front, to be returned by the next read first. */
  unshift(data: Buffer): void {
    if (data.length === 0) return;
    this.unread.unshift(data);
    this.unreadBytes += data.length;
  }

  /** Takes up to `n` buffered bytes (without removing them when `peek`); with none, raises a pending error. */
  take(n: number, peek: boolean): Buffer | null {
    if (this.unreadBytes === 0) {
      const err = this.pendingError;
      if (err === undefined) return null;
      if (!peek) this.pendingError = undefined;
      throw err;
    }
    const all = this.unread.length === 1 ? this.unread[0]! : Buffer.concat(this.unread);
    const out = Buffer.from(all.subarray(0, n));
    if (!peek) {
      const rest = all.subarray(n);
      this.unread.length = 0;
      this.unreadBytes = rest.length;
      if (rest.length) this.unread.push(rest);
    }
    return out;
  }
}

export class HandleTable {
  #next = 3;
  readonly #entries = new Map<number, SocketEntry>();

  constructor(readonly maxSockets: number) {}

  get size(): number {
    return this.#entries.size;
  }

  /** Throws EMFILE-style OSError when the session is at its socket quota. */
  reserve(count: number): void {
    if (this.#entries.size + count > this.maxSockets) {
      countQuota('sockets_per_session');
      throw osErrorNamed('EMFILE', 'socket', `Too many open files (session limit ${this.maxSockets} sockets)`);
    }
  }

  add(fd: number, info: SocketInfo): SocketEntry {
    const entry = new SocketEntry(this.#next++, fd, info);
    this.#entries.set(entry.handle, entry);
    return entry;
  }

  /** The live entry for `handle`, or OSError EBADF. */
  get(handle: number, syscall: string): SocketEntry {
    const entry = this.#entries.get(handle);
    if (!entry || entry.closed) throw osErrorNamed('EBADF', syscall);
    return entry;
  }

  /** Looks up without throwing (for poll, which reports POLLNVAL). */
  find(handle: number): SocketEntry | undefined {
    return this.#entries.get(handle);
  }

  remove(entry: SocketEntry): void {
    this.#entries.delete(entry.handle);
  }

  entries(): SocketEntry[] {
    return [...this.#entries.values()];
  }
}
