import { errnos } from './constants.js';

// First entry per number wins: the generated table lists the canonical name
// first (EAGAIN before EWOULDBLOCK).
const names = new Map<number, string>();
const texts = new Map<number, string>();
for (const [n, name, text] of errnos) {
  if (!names.has(n)) {
    names.set(n, name);
    texts.set(n, text);
  }
}

/** Errno name for a number ('ECONNREFUSED'); 'UNKNOWN' if glibc defines none, like libuv. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? 'UNKNOWN';
}

/** The C strerror() text ('Connection refused'); glibc's 'Unknown error N' for unknown numbers. */
export function strerror(errno: number): string {
  return texts.get(errno) ?? `Unknown error ${errno}`;
}

/** A failed system call: errno (positive), its name, the syscall, and strerror text. */
export class ErrnoError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
  readonly strerror: string;

  constructor(errno: number, syscall: string) {
    const code = errnoName(errno);
    const text = strerror(errno);
    super(`${syscall} ${code}: ${text}`);
    this.name = 'ErrnoError';
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
    this.strerror = text;
  }
}

/** The one place system errors are built; pass errno as read from the same FFI call. */
export function errnoException(errno: number, syscall: string): ErrnoError {
  // No JS stack: these become statuses for clients, and capturing one costs ~3.5 µs on the
  // EAGAIN path that every non-blocking read or write takes.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new ErrnoError(errno, syscall);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** A deadline passed (the daemon's error layer makes it socket.timeout('timed out')). */
export class TimeoutError extends Error {
  readonly syscall: string;

  constructor(syscall: string) {
    super(`${syscall}: timed out`);
    this.name = 'TimeoutError';
    this.syscall = syscall;
  }
}

/** A TimeoutError, without a JS stack (the EAGAIN-path reasoning of errnoException). */
export function timeoutException(syscall: string): TimeoutError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new TimeoutError(syscall);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export function isTimeout(err: unknown): err is TimeoutError {
  return err instanceof TimeoutError;
}
