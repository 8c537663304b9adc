// Readiness reactor: one epoll set whose readiness reaches the event loop. Preferred: libuv's own
// loop polls the set (an epoll fd is pollable) through a pipe handle of Node's pipe_wrap binding
// opened on a dup of it; the handle's read of it fails (EINVAL) the moment a registered fd is
// ready, a callback on the main loop with no thread hop, and the set is then read with a
// non-blocking epoll_wait. Fallback (no pipe_wrap binding, or SOCKBROKER_REACTOR=threadpool): a
// persistent epoll_wait on the libuv threadpool (~45 µs and ~70 µs of CPU more per echo round
// trip through the daemon: a second thread wake-up and an off-thread ffi call). Interest is registered one-shot and level-triggered only while someone waits, so an
// idle or busy-but-unwaited fd costs no wake-ups and readiness that arrived before the wait was
// armed is still reported (no lost edges).
import { close, epollCreate, epollCtl, epollWait, epollWaitNow, eventfd, eventfdRead, eventfdWrite, EPOLL_NOW_MAX } from './libc.js';
import { dupCloexec } from './fd.js';
import { os } from './constants.js';
import type { Cancel } from './cancel.js';

const IN = os.EPOLLIN | os.EPOLLPRI | os.EPOLLRDHUP;
const OUT = os.EPOLLOUT;
const ALWAYS = os.EPOLLERR | os.EPOLLHUP;
const WAIT_SLICE_MS = 1000;
const MAX_EVENTS = 256;

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
  readonly #watches = new Map<number, Watch>();
  /** Fds in the epoll set (one-shot registrations stay after firing, disarmed). */
  readonly #registered = new Set<number>();
  #running = true;
  readonly #poller: Poller;

  /**
   * `idle: 'stop'` (the SDK's in-process sockets): with no waiter the reactor holds neither the
   * process alive nor (threadpool fallback) a thread. The daemon's reactor waits all the time.
   */
  constructor(opts: { idle?: 'wait' | 'stop' } = {}) {
    this.#epfd = epollCreate();
    const onReady = (fd: number, events: number): void => this.#ready(fd, events);
    this.#poller =
      (process.env.SOCKBROKER_REACTOR !== 'threadpool' && LoopPoller.open(this.#epfd, () => this.#drain(onReady))) ||
      new ThreadPoller(this.#epfd, onReady, opts.idle !== 'stop');
  }

  /** How readiness reaches the event loop: 'loop' (libuv polls the set) or 'threadpool'. */
  get mode(): 'loop' | 'threadpool' {
    return this.#poller.mode;
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
  wait(fd: number, dir: Direction, signal?: Cancel): Promise<void> {
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
      this.#poller.hold(this.#watches.size > 0);
    });
  }

  /** Removes `fd` from the epoll set and fails its waiters; call before closing the fd. */
  forget(fd: number): void {
    const watch = this.#watches.get(fd);
    if (!watch) return;
    if (this.#registered.delete(fd)) this.#ctl(os.EPOLL_CTL_DEL, fd, 0);
    if (!watch) return;
    this.#watches.delete(fd);
    this.#poller.hold(this.#watches.size > 0);
    for (const w of watch.waiters) w.reject(new FdClosedError());
  }

  /** Stops polling; pending waiters are failed. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    for (const fd of [...this.#watches.keys()]) this.forget(fd);
    await this.#poller.stop();
    close(this.#epfd);
  }

  #drop(fd: number, waiter: Waiter): void {
    const watch = this.#watches.get(fd);
    if (!watch) return;
    watch.waiters.delete(waiter);
    // With no waiter left, the armed one-shot registration may still fire once: harmless.
    if (watch.waiters.size === 0) {
      this.#watches.delete(fd);
      this.#poller.hold(this.#watches.size > 0);
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
    this.#poller.hold(this.#watches.size > 0);
    for (const w of watch.waiters) w.reject(err);
  }

  #ctl(op: number, fd: number, events: number): void {
    try {
      epollCtl(this.#epfd, op, fd, events);
    } catch {
      // The fd may already be gone from the set (ENOENT); nothing to undo.
    }
  }

  /** Reads every ready fd off the set without blocking. */
  #drain(onReady: (fd: number, events: number) => void): void {
    if (!this.#running) return;
    try {
      while (epollWaitNow(this.#epfd, onReady) === EPOLL_NOW_MAX);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINTR') throw err;
    }
  }

  #ready(fd: number, ev: number): void {
    const watch = this.#watches.get(fd);
    if (!watch) return; // stale: forgotten after the kernel reported it
    const readable = (ev & (IN | ALWAYS)) !== 0;
    const writable = (ev & (OUT | ALWAYS)) !== 0;
    for (const w of [...watch.waiters]) {
      if ((w.dir === 'read' && readable) || (w.dir === 'write' && writable)) {
        watch.waiters.delete(w);
        w.resolve();
      }
    }
    if (watch.waiters.size > 0) this.#arm(fd, watch);
    else {
      this.#watches.delete(fd); // one-shot: now disarmed, registration stays for reuse
      this.#poller.hold(this.#watches.size > 0);
    }
  }
}

/** Delivers the epoll set's readiness to the event loop. */
interface Poller {
  readonly mode: 'loop' | 'threadpool';
  /** Whether the process must stay alive for waiters (an SDK process with none may exit). */
  hold(waiting: boolean): void;
  stop(): Promise<void>;
}

interface PipeHandle {
  onread: () => void;
  open(fd: number): number;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  ref(): void;
  unref(): void;
  close(cb?: () => void): void;
}

/** libuv polls the epoll fd: see the top of this file. */
class LoopPoller implements Poller {
  readonly mode = 'loop';
  #held = false;
  #stopped = false;

  private constructor(
    readonly handle: PipeHandle,
    readonly fd: number,
  ) {}

  /** The poller, or null where Node offers no pipe_wrap binding (the caller falls back). */
  static open(epfd: number, onWake: () => void): LoopPoller | null {
    let Pipe: (new (type: number) => PipeHandle) | undefined;
    let SOCKET = 0;
    try {
      // process.binding is deprecated (DEP0111, documentation-only in Node 20) but pipe_wrap is
      // on its allowlist; without it the threadpool poller serves.
      const binding = (process as unknown as { binding(name: string): { Pipe: typeof Pipe; constants: { SOCKET: number } } }).binding('pipe_wrap');
      Pipe = binding.Pipe;
      SOCKET = binding.constants.SOCKET;
    } catch {
      return null;
    }
    if (!Pipe) return null;
    // The handle owns (and closes) its own fd: a dup, so the set outlives it.
    const fd = dupCloexec(epfd);
    const handle = new Pipe(SOCKET);
    const poller = new LoopPoller(handle, fd);
    handle.useUserBuffer(Buffer.alloc(16)); // the read only ever fails: no 64 KiB buffer per wake
    handle.onread = () => {
      // The failed read stops the handle once this callback returns; opening the same fd again
      // then makes it readable again (in the check phase right after this poll phase: readiness
      // meanwhile is level-triggered, so nothing is lost).
      setImmediate(poller.#rearm);
      onWake();
    };
    if (!poller.#arm()) {
      handle.close();
      return null;
    }
    handle.unref();
    return poller;
  }

  #arm(): boolean {
    return this.handle.open(this.fd) === 0 && this.handle.readStart() === 0;
  }

  readonly #rearm = (): void => {
    if (!this.#stopped && !this.#arm()) throw new Error('reactor: cannot re-arm the epoll set on the event loop');
  };

  hold(waiting: boolean): void {
    if (waiting === this.#held) return;
    this.#held = waiting;
    if (waiting) this.handle.ref();
    else this.handle.unref();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.handle.readStop();
    return new Promise((resolve) => this.handle.close(resolve));
  }
}

/** An epoll_wait on the libuv threadpool, in bounded slices; persistent, or only while held. */
class ThreadPoller implements Poller {
  readonly mode = 'threadpool';
  readonly #wakeFd: number;
  #running = true;
  #held = false;
  #loop: Promise<void> | undefined;

  constructor(
    readonly epfd: number,
    readonly onReady: (fd: number, events: number) => void,
    readonly persistent: boolean,
  ) {
    this.#wakeFd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC);
    epollCtl(epfd, os.EPOLL_CTL_ADD, this.#wakeFd, os.EPOLLIN);
    if (persistent) this.#loop = this.#run();
  }

  hold(waiting: boolean): void {
    this.#held = waiting;
    if (this.persistent || !this.#running) return;
    if (waiting) this.#loop ??= this.#run();
    else if (this.#loop) eventfdWrite(this.#wakeFd, 1); // end the wait now, not at the next event
  }

  async stop(): Promise<void> {
    this.#running = false;
    eventfdWrite(this.#wakeFd, 1);
    await this.#loop;
    close(this.#wakeFd);
  }

  async #run(): Promise<void> {
    while (this.#running && (this.persistent || this.#held)) {
      // A bounded wait: process exit joins the threadpool, so a wait that never returned would
      // hold the exit of a daemon that dies without stop().
      let events;
      try {
        events = await epollWait(this.epfd, MAX_EVENTS, WAIT_SLICE_MS);
      } catch (err) {
        // A signal (or a tracer attaching) interrupts the wait: wait again.
        if ((err as { code?: string }).code === 'EINTR') continue;
        throw err;
      }
      for (const { fd, events: ev } of events) {
        if (fd === this.#wakeFd) eventfdRead(this.#wakeFd);
        else this.onReady(fd, ev);
      }
    }
    // Cleared before the waiters woken above run (they may wait again and must start a new loop).
    if (!this.persistent) this.#loop = undefined;
  }
}
