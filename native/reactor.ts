// Readiness reactor: one epoll set, waited on by a single persistent epoll_wait on the libuv
// threadpool so the event loop never blocks. Interest is registered one-shot and level-
// triggered only while someone waits, so an idle or busy-but-unwaited fd costs no wake-ups and
// readiness that arrived before the wait was armed is still reported (no lost edges).
import { epollCreate, epollCtl, epollWait, eventfd, eventfdWrite, eventfdRead, close } from './libc.js';
import { os } from './constants.js';

const IN = os.EPOLLIN | os.EPOLLPRI | os.EPOLLRDHUP;
const OUT = os.EPOLLOUT;
const ALWAYS = os.EPOLLERR | os.EPOLLHUP;
const WAIT_SLICE_MS = 1000;

/** Which readiness a waiter needs. */
export type Direction = 'read' | 'write';

interface Waiter {
  dir: Direction;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Watch {
  waiters: Set<Waiter>;
}

/** Thrown to waiters of an fd that was forgotten (closed) while they waited. */
export class FdClosedError extends Error {
  constructor() {
    super('fd closed while waiting');
  }
}

export class Reactor {
  readonly #epfd: number;
  readonly #wakeFd: number;
  readonly #watches = new Map<number, Watch>();
  /** Fds in the epoll set (one-shot registrations stay after firing, disarmed). */
  readonly #registered = new Set<number>();
  #running = true;
  #loop: Promise<void> | undefined;
  readonly #persistent: boolean;

  /**
   * `idle: 'stop'` (the SDK's in-process sockets): the waiting thread runs only while someone
   * waits, so an idle reactor keeps no threadpool work pending and never holds the process
   * alive (Node's unref). The daemon's reactor waits all the time.
   */
  constructor(opts: { idle?: 'wait' | 'stop' } = {}) {
    this.#epfd = epollCreate();
    this.#wakeFd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC);
    epollCtl(this.#epfd, os.EPOLL_CTL_ADD, this.#wakeFd, os.EPOLLIN);
    this.#persistent = opts.idle !== 'stop';
    if (this.#persistent) this.#loop = this.#run();
  }

  /** Number of fds with waiters (for tests and metrics). */
  get watching(): number {
    return this.#watches.size;
  }

  /**
   * Resolves once `fd` is ready in `dir` (or has an error/hangup, which the retried syscall
   * then reports). Rejects with FdClosedError if the fd is forgotten, or with the signal's
   * reason if aborted. Readiness may be spurious: callers retry the syscall and wait again.
   */
  wait(fd: number, dir: Direction, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      let watch = this.#watches.get(fd);
      if (!watch) {
        watch = { waiters: new Set() };
        this.#watches.set(fd, watch);
      }
      const onAbort = (): void => {
        this.#drop(fd, waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        dir,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      watch.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#arm(fd, watch);
      if (!this.#loop && this.#running) this.#loop = this.#run();
    });
  }

  /** Removes `fd` from the epoll set and fails its waiters; call before closing the fd. */
  forget(fd: number): void {
    const watch = this.#watches.get(fd);
    if (!watch) return;
    if (this.#registered.delete(fd)) this.#ctl(os.EPOLL_CTL_DEL, fd, 0);
    if (!watch) return;
    this.#watches.delete(fd);
    for (const w of watch.waiters) w.reject(new FdClosedError());
    this.#idleCheck();
  }

  /** An idle-stopping reactor whose last waiter left ends its wait now (not at the next event). */
  #idleCheck(): void {
    if (!this.#persistent && this.#loop && this.#watches.size === 0) eventfdWrite(this.#wakeFd, 1);
  }

  /** Stops the waiting thread; pending waiters are failed. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    for (const fd of [...this.#watches.keys()]) this.forget(fd);
    eventfdWrite(this.#wakeFd, 1);
    await this.#loop;
    close(this.#wakeFd);
    close(this.#epfd);
  }

  #drop(fd: number, waiter: Waiter): void {
    const watch = this.#watches.get(fd);
    if (!watch) return;
    watch.waiters.delete(waiter);
    // With no waiter left, the armed one-shot registration may still fire once: harmless.
    if (watch.waiters.size === 0) {
      this.#watches.delete(fd);
      this.#idleCheck();
    } else this.#arm(fd, watch);
  }

  #arm(fd: number, watch: Watch): void {
    let events = os.EPOLLONESHOT | ALWAYS;
    for (const w of watch.waiters) events |= w.dir === 'read' ? IN : OUT;
    // MOD re-arms a known registration; a number reused by a new fd is not in the set (ENOENT)
    // and a forgotten-but-open one still is (EEXIST): fall back to the other operation.
    const [first, second] = this.#registered.has(fd)
      ? [os.EPOLL_CTL_MOD, os.EPOLL_CTL_ADD]
      : [os.EPOLL_CTL_ADD, os.EPOLL_CTL_MOD];
    try {
      try {
        epollCtl(this.#epfd, first, fd, events);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ENOENT' && code !== 'EEXIST') throw err;
        epollCtl(this.#epfd, second, fd, events);
      }
      this.#registered.add(fd);
    } catch (err) {
      this.#fail(fd, watch, err);
    }
  }

  #fail(fd: number, watch: Watch, err: unknown): void {
    this.#watches.delete(fd);
    for (const w of watch.waiters) w.reject(err);
    this.#idleCheck();
  }

  #ctl(op: number, fd: number, events: number): void {
    try {
      epollCtl(this.#epfd, op, fd, events);
    } catch {
      // The fd may already be gone from the set (ENOENT); nothing to undo.
    }
  }

  async #run(): Promise<void> {
    while (this.#running && (this.#persistent || this.#watches.size > 0)) {
      // A bounded wait: process exit joins the threadpool, so a wait that never returned would
      // hold the exit of a daemon that dies without stop().
      let events;
      try {
        events = await epollWait(this.#epfd, 256, WAIT_SLICE_MS);
      } catch (err) {
        // A signal (or a tracer attaching) interrupts the wait: wait again.
        if ((err as { code?: string }).code === 'EINTR') continue;
        throw err;
      }
      for (const { fd, events: ev } of events) {
        if (fd === this.#wakeFd) {
          eventfdRead(this.#wakeFd);
          continue;
        }
        const watch = this.#watches.get(fd);
        if (!watch) continue; // stale: forgotten after the kernel reported it
        const readable = (ev & (IN | ALWAYS)) !== 0;
        const writable = (ev & (OUT | ALWAYS)) !== 0;
        for (const w of [...watch.waiters]) {
          if ((w.dir === 'read' && readable) || (w.dir === 'write' && writable)) {
            watch.waiters.delete(w);
            w.resolve();
          }
        }
        if (watch.waiters.size > 0) this.#arm(fd, watch);
        else this.#watches.delete(fd); // one-shot: now disarmed, registration stays for reuse
      }
    }
    // Cleared before the waiters woken above run (they may wait again and must start a new loop).
    if (!this.#persistent) this.#loop = undefined;
  }
}
