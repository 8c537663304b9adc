// The one I/O driver for readiness + deadline, as CPython's sock_call_ex:
//   try the syscall; EINTR → retry; EAGAIN → non-blocking mode (timeout 0) raises it at once,
//   otherwise wait for readiness on the reactor until the deadline and retry. EAGAIN after
//   readiness is a false alarm: wait again with the time left, recomputed from a monotonic
//   deadline. The deadline passing raises TimeoutError (socket.timeout); a closed fd EBADF.
// Shared by the daemon and the SDK's in-process sockets: fds and errnos only.
import { FdClosedError, type Direction, type Reactor } from './reactor.js';
import { Cancellation, type Cancel } from './cancel.js';
import { errnoException, timeoutException } from './errno.js';
import { linux } from './constants.js';
import { AGAIN } from './libc.js';

/** What the driver needs of a socket: its fd, and whether its owner closed it. */
export interface DrivenFd {
  readonly fd: number;
  readonly closed: boolean;
}

const badFd = (syscall: string): Error => errnoException(linux.EBADF!, syscall);

/** Timeout in seconds: undefined = blocking, 0 = non-blocking, > 0 = timeout mode. */
export type Timeout = number | undefined;

const TIMED_OUT = Symbol('timed out');
const MAX_TIMER_MS = 0x7fffffff;

export function isAgain(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

function isIntr(err: unknown): boolean {
  return (err as { code?: string }).code === 'EINTR';
}

/**
 * Waits until `entry` is ready in `dir` or the deadline (ms, performance.now() clock) passes.
 * Throws socket.timeout, EBADF if the handle closes meanwhile, or the signal's reason.
 */
export async function waitReady(
  reactor: Reactor,
  entry: DrivenFd,
  dir: Direction,
  deadline: number,
  signal: Cancel,
  syscall: string,
): Promise<void> {
  if (signal.aborted) throw signal.reason;
  const remaining = deadline - performance.now();
  if (remaining <= 0) throw timeoutException(syscall);
  let timer: NodeJS.Timeout | undefined;
  let waitSignal: Cancel = signal;
  if (deadline !== Infinity) {
    const ctl = new Cancellation();
    const onAbort = (): void => ctl.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    // Node's timers hold at most 2^31-1 ms (a longer delay fires after 1 ms): re-arm until due.
    const arm = (): void => {
      const left = deadline - performance.now();
      timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(() => ctl.abort(TIMED_OUT), Math.max(0, Math.ceil(left)));
    };
    arm();
    waitSignal = ctl;
    try {
      await reactor.wait(entry.fd, dir, waitSignal);
    } catch (err) {
      throw translate(err, syscall);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    return;
  }
  try {
    await reactor.wait(entry.fd, dir, waitSignal);
  } catch (err) {
    throw translate(err, syscall);
  }
}

function translate(err: unknown, syscall: string): unknown {
  if (err === TIMED_OUT) return timeoutException(syscall);
  if (err instanceof FdClosedError) return badFd(syscall);
  return err;
}

/** Monotonic deadline in ms for a timeout in seconds (Infinity when blocking). */
export function deadlineFor(timeout: Timeout): number {
  return timeout === undefined ? Infinity : performance.now() + timeout * 1000;
}

/** `f` of a value now, or once a promise of it resolves (errors thrown by `f` throw or reject alike):
 * for calls whose result is usually ready at once (attemptNow's callers, numeric addresses). */
export function andThen<T, U>(v: T | Promise<T>, f: (v: T) => U): U | Promise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/**
 * The syscall made now, as drive's first attempt: its result, or AGAIN when the caller must wait
 * (then drive() it, which tries again first). Lets a caller whose socket is ready return without
 * a promise of its own; errors are drive's (EINTR is retried, EAGAIN raised in non-blocking mode).
 */
export function attemptNow<T>(entry: DrivenFd, timeout: Timeout, signal: Cancel, syscall: string, attempt: () => T | typeof AGAIN): T | typeof AGAIN {
  for (;;) {
    if (entry.closed) throw badFd(syscall);
    if (signal.aborted) throw signal.reason;
    let r: T | typeof AGAIN;
    try {
      r = attempt();
    } catch (err) {
      if (isIntr(err)) continue;
      if (!isAgain(err) || timeout === 0) throw err;
      return AGAIN;
    }
    // An attempt may return AGAIN (libc's recv*Bytes) rather than throw EAGAIN: the same.
    if (r === AGAIN && timeout === 0) throw errnoException(linux.EAGAIN!, syscall);
    return r;
  }
}

/** Runs `attempt` under the socket's mode (see the contract at the top of this file); a call
 * made of several syscalls (sendall) passes one deadline for all of them. */
export async function drive<T>(
  reactor: Reactor,
  entry: DrivenFd,
  dir: Direction,
  timeout: Timeout,
  signal: Cancel,
  syscall: string,
  attempt: () => T | typeof AGAIN,
  deadline = deadlineFor(timeout),
): Promise<T> {
  for (;;) {
    const r = attemptNow(entry, timeout, signal, syscall, attempt);
    if (r !== AGAIN) return r;
    // No retry loop before waiting: readiness comes from the event loop itself (reactor.ts),
    // and each retry would cost an ffi call (~3-4 µs with EAGAIN) to save none.
    if (deadline !== Infinity) await waitReady(reactor, entry, dir, deadline, signal, syscall);
    else {
      // Blocking: the reactor's wait itself, without waitReady's promise around it.
      try {
        await reactor.wait(entry.fd, dir, signal);
      } catch (err) {
        throw translate(err, syscall);
      }
    }
  }
}
