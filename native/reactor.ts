// Readiness reactor: one epoll set whose readiness reaches the event loop. Preferred: libuv's own
// loop polls the set (an epoll fd is pollable) through a pipe handle of Node's pipe_wrap binding
// opened on a dup of it. The handle reads into a zero-length buffer, so libuv never calls read(2)
// on it: it reports UV_ENOBUFS and keeps polling (a read that failed would stop the handle and
// cost a re-open, ~6 syscalls, per wake-up). That is a callback on the main loop with no thread
// hop, and the set is then read with a non-blocking epoll_wait, which leaves the set unreadable
// again (every registration is edge-triggered). Fallback (no pipe_wrap binding, or SOCKBROKER_REACTOR=threadpool): a
// persistent epoll_wait on the libuv threadpool (~45 µs and ~70 µs of CPU more per echo round
// trip through the daemon: a second thread wake-up and an off-thread ffi call).
//
// Interest is edge-triggered and stays armed between waits, so the wait after a read that
// emptied the socket (an echo's next round trip) costs no epoll_ctl. That is sound because every
// wait follows a syscall that found the fd not ready (EAGAIN, or poll/the ring showing nothing):
// any readiness after it is a new edge, and ADD/MOD report readiness already there. A stale edge
// (readiness that came before the failing syscall) only wakes a waiter spuriously; it retries.
// Disarmed when it costs wake-ups: write interest once no writer waits (a socket is almost
// always writable, and a UDP socket signals each freed send buffer), read interest after
// UNWANTED edges in a row found no reader (a busy fd read without waiting); removed from the set
// when nothing is armed, and before any libc close of the fd (a registration of an fd whose file
// lives on elsewhere, e.g. handed off, could not be removed once its number is gone).
import { close, epollCreate, onClose, epollCtl, epollWait, epollWaitNow, eventfd, eventfdRead, eventfdWrite, EPOLL_NOW_MAX } from './libc.js';
import { dupCloexec } from './fd.js';
import { os } from './constants.js';
import type { Cancel } from './cancel.js';

const IN = os.EPOLLIN | os.EPOLLPRI | os.EPOLLRDHUP;
const OUT = os.EPOLLOUT;
const ALWAYS = os.EPOLLERR | os.EPOLLHUP;
const ET = os.EPOLLET;
/** Read edges in a row with no reader waiting before read interest is dropped. */
const UNWANTED = 2;
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

/** An fd in the epoll set: the directions armed (IN/OUT bits) and read edges nobody wanted. */
interface Armed {
  events: number;
  unwanted: number;
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
  /** Fds in the epoll set, with what is armed. */
  readonly #armed = new Map<number, Armed>();
  readonly #unhook: () => void;
  #running = true;
  readonly #poller: Poller;

  /**
   * `idle: 'stop'` (the SDK's in-process sockets): with no waiter the reactor holds neither the
   * process alive nor (threadpool fallback) a thread. The daemon's reactor waits all the time.
   */
  constructor(opts: { idle?: 'wait' | 'stop' } = {}) {
    this.#epfd = epollCreate();
    this.#unhook = onClose((fd) => this.#remove(fd));
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

  /** Number of fds in the epoll set (for tests). */
  get registered(): number {
    return this.#armed.size;
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
    this.#remove(fd);
    const watch = this.#watches.get(fd);
    if (!watch) return;
    this.#watches.delete(fd);
    this.#poller.hold(this.#watches.size > 0);
    for (const w of watch.waiters) w.reject(new FdClosedError());
  }

  /** Stops polling; pending waiters are failed. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#unhook();
    for (const fd of [...this.#watches.keys()]) this.forget(fd);
    await this.#poller.stop();
    close(this.#epfd);
  }

  #remove(fd: number): void {
    if (this.#armed.delete(fd)) this.#ctl(os.EPOLL_CTL_DEL, fd, 0);
  }

  #drop(fd: number, waiter: Waiter): void {
    const watch = this.#watches.get(fd);
    if (!watch) return;
    watch.waiters.delete(waiter);
    // What stays armed for it is dropped by the edges that find no waiter (see the top).
    if (watch.waiters.size === 0) {
      this.#watches.delete(fd);
      this.#poller.hold(this.#watches.size > 0);
    }
  }

  /** Arms what the waiters need, unless it already is. */
  #arm(fd: number, watch: Watch): void {
    let want = 0;
    for (const w of watch.waiters) want |= w.dir === 'read' ? IN : OUT;
    const armed = this.#armed.get(fd);
    if (armed && (armed.events & want) === want) return;
    this.#set(fd, watch, (armed?.events ?? 0) | want);
  }

  /** Registers `fd` with `events` (0: out of the set); failing, its waiters get the error. */
  #set(fd: number, watch: Watch | undefined, events: number): void {
    const armed = this.#armed.get(fd);
    if (events === 0) {
      this.#remove(fd);
      return;
    }
    // MOD changes a known registration; a number reused by a new fd is not in the set (ENOENT)
    // and one closed other than through libc may still be (EEXIST): fall back to the other.
    const [first, second] = armed ? [os.EPOLL_CTL_MOD, os.EPOLL_CTL_ADD] : [os.EPOLL_CTL_ADD, os.EPOLL_CTL_MOD];
    const mask = events | ALWAYS | ET;
    try {
      try {
        epollCtl(this.#epfd, first, fd, mask);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ENOENT' && code !== 'EEXIST') throw err;
        epollCtl(this.#epfd, second, fd, mask);
      }
      if (armed) armed.events = events;
      else this.#armed.set(fd, { events, unwanted: 0 });
    } catch (err) {
      this.#armed.delete(fd);
      if (watch) this.#fail(fd, watch, err);
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
    const armed = this.#armed.get(fd);
    if (!armed) return; // stale: forgotten after the kernel reported it
    const watch = this.#watches.get(fd);
    const readable = (ev & (IN | ALWAYS)) !== 0;
    const writable = (ev & (OUT | ALWAYS)) !== 0;
    let readers = false;
    let writers = false;
    if (watch) {
      for (const w of [...watch.waiters]) {
        if ((w.dir === 'read' && readable) || (w.dir === 'write' && writable)) {
          watch.waiters.delete(w);
          w.resolve();
          if (w.dir === 'read') readers = true;
        } else if (w.dir === 'write') writers = true;
      }
      if (watch.waiters.size === 0) {
        this.#watches.delete(fd);
        this.#poller.hold(this.#watches.size > 0);
      }
    }
    let events = armed.events;
    if (!writers) events &= ~OUT;
    if (readable && (armed.events & IN) !== 0) {
      armed.unwanted = readers ? 0 : armed.unwanted + 1;
      if (armed.unwanted >= UNWANTED) events &= ~IN;
    }
    if (events !== armed.events) this.#set(fd, this.#watches.get(fd), events);
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

  private constructor(readonly handle: PipeHandle) {}

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
    const poller = new LoopPoller(handle);
    // No buffer: libuv reports UV_ENOBUFS without reading and leaves the handle polling (see the top).
    handle.useUserBuffer(Buffer.alloc(0));
    handle.onread = onWake;
    if (handle.open(fd) !== 0 || handle.readStart() !== 0) {
      handle.close();
      return null;
    }
    handle.unref();
    return poller;
  }

  hold(waiting: boolean): void {
    if (waiting === this.#held) return;
    this.#held = waiting;
    if (waiting) this.handle.ref();
    else this.handle.unref();
  }

  stop(): Promise<void> {
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
