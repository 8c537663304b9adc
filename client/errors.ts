// Python's socket exceptions for TypeScript: OSError with errno/strerror and the PEP 3151
// subclasses, socket.herror, socket.gaierror, socket.timeout, ValueError and OverflowError
// (bad arguments raise JS's own TypeError, as Python raises its TypeError). Each OS error also
// carries Node's `code` (the errno name) so TS code can branch on it. fromStatus() rebuilds
// the exact exception from a broker status (gRPC code + google.rpc.ErrorInfo).
import { Status } from '../proto/gen/google/rpc/status.js';
import { ErrorInfo } from '../proto/gen/google/rpc/error_details.js';

/** Python's OSError (socket.error): `[Errno N] strerror`, or a plain message without errno. */
export class OSError extends Error {
  errno: number | null;
  strerror: string | null;
  /** The errno name ('ECONNREFUSED'), as Node errors carry it; undefined without errno. */
  code: string | undefined;
  filename: string | null = null;

  constructor(errnoOrMessage?: number | string, strerror?: string, code?: string) {
    const hasErrno = typeof errnoOrMessage === 'number' && strerror !== undefined;
    super(hasErrno ? `[Errno ${errnoOrMessage}] ${strerror}` : String(errnoOrMessage ?? ''));
    this.errno = hasErrno ? (errnoOrMessage as number) : null;
    this.strerror = hasErrno ? strerror! : null;
    this.code = hasErrno ? code : undefined;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export class BlockingIOError extends OSError {}
export class ChildProcessError extends OSError {}
export class ConnectionError extends OSError {}
export class BrokenPipeError extends ConnectionError {}
export class ConnectionAbortedError extends ConnectionError {}
export class ConnectionRefusedError extends ConnectionError {}
export class ConnectionResetError extends ConnectionError {}
export class FileExistsError extends OSError {}
export class FileNotFoundError extends OSError {}
export class InterruptedError extends OSError {}
export class IsADirectoryError extends OSError {}
export class NotADirectoryError extends OSError {}
export class PermissionError extends OSError {}
export class ProcessLookupError extends OSError {}
export class TimeoutError extends OSError {}

/** socket.herror: errors of gethostbyname_ex/gethostbyaddr (h_errno). */
export class herror extends OSError {}
/** socket.gaierror: errors of getaddrinfo/getnameinfo (EAI_* codes, negative on Linux). */
export class gaierror extends OSError {}
/** socket.timeout: a socket in timeout mode ran out of time; message 'timed out', errno null.
 * A subclass of OSError but not of TimeoutError, as in 3.4 (it became TimeoutError in 3.10). */
export class timeout extends OSError {}

/** Python's ValueError. */
export class ValueError extends Error {
  override get name(): string {
    return 'ValueError';
  }
}
/** Python's UnicodeError (a ValueError): e.g. the IDNA codec refusing a host name. */
export class UnicodeError extends ValueError {
  override get name(): string {
    return 'UnicodeError';
  }
}
/** Python's UnicodeEncodeError: a str that UTF-8 cannot encode (lone surrogates). */
export class UnicodeEncodeError extends UnicodeError {
  override get name(): string {
    return 'UnicodeEncodeError';
  }
}
/** Python's OverflowError. */
export class OverflowError extends Error {
  override get name(): string {
    return 'OverflowError';
  }
}

/** The PEP 3151 table: errno name → the OSError subclass Python raises for it. */
const SUBCLASS_BY_ERRNO: Record<string, typeof OSError> = {
  EAGAIN: BlockingIOError,
  EWOULDBLOCK: BlockingIOError,
  EALREADY: BlockingIOError,
  EINPROGRESS: BlockingIOError,
  ECHILD: ChildProcessError,
  EPIPE: BrokenPipeError,
  ESHUTDOWN: BrokenPipeError,
  ECONNABORTED: ConnectionAbortedError,
  ECONNREFUSED: ConnectionRefusedError,
  ECONNRESET: ConnectionResetError,
  EEXIST: FileExistsError,
  ENOENT: FileNotFoundError,
  EINTR: InterruptedError,
  EISDIR: IsADirectoryError,
  ENOTDIR: NotADirectoryError,
  EACCES: PermissionError,
  EPERM: PermissionError,
  ESRCH: ProcessLookupError,
  ETIMEDOUT: TimeoutError,
};

/** OSError(errno, strerror) as Python builds it: the subclass is picked by the errno name. */
export function makeOSError(errno: number, strerror: string, code: string): OSError {
  const Cls = SUBCLASS_BY_ERRNO[code] ?? OSError;
  return new Cls(errno, strerror, code);
}

/**
 * Why a session is gone: its grace period passed without a connection (expired), the broker
 * restarted or shut down, the caller's identity changed, the broker's replay record overflowed
 * while the connection was down, or it was closed or ended.
 */
export type LostReason = 'expired' | 'restarted' | 'shutdown' | 'identity' | 'overflow' | 'closed' | 'ended';

/** Raised when the broker no longer has the session; `reason` says why (undefined: not known). */
export class SessionLostError extends ConnectionError {
  reason: LostReason | undefined;
}

export function sessionLost(reason: LostReason | undefined, message: string): SessionLostError {
  const e = new SessionLostError(message);
  e.reason = reason;
  return e;
}

const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

/** The exception for a broker error status (from a Call envelope or a unary call's trailer). */
export function fromStatus(status: Status): Error {
  const anyInfo = status.details.find((d) => d.typeUrl === ERROR_INFO_TYPE);
  const info = anyInfo ? ErrorInfo.decode(anyInfo.value) : undefined;
  const md = info?.metadata ?? {};
  const errno = md.errno === undefined ? undefined : Number(md.errno);
  switch (md.kind) {
    case 'os':
      return errno === undefined ? new OSError(status.message) : makeOSError(errno, md.strerror ?? status.message, info!.reason);
    case 'timeout':
      return new timeout('timed out');
    case 'gai':
      return new gaierror(errno ?? 0, md.strerror ?? status.message);
    case 'herror':
      return new herror(errno ?? 0, md.strerror ?? status.message);
    case 'value':
      return new ValueError(status.message);
    case 'type':
      return new TypeError(status.message);
    case 'overflow':
      return new OverflowError(status.message);
    case 'session':
      return sessionLost(md.lost as LostReason | undefined, `sockbroker: ${status.message}`);
    default:
      return new OSError(`sockbroker: ${status.message || 'call failed'} (gRPC code ${status.code})`);
  }
}

/**
 * The error ending a stream that does not resume (a Data or capture stream): a dropped
 * connection is a ConnectionResetError (the session itself resumes), anything else as the
 * broker said it.
 */
export function streamError(err: { code?: number; details?: string; metadata?: { get(key: string): unknown[] } }): Error {
  const dropped = (err.code === 14 /* UNAVAILABLE */ || err.code === 1) /* CANCELLED */ && !(err.metadata?.get('grpc-status-details-bin')?.length);
  return dropped ? new ConnectionResetError('sockbroker: the connection to the broker dropped (this stream does not resume)') : fromServiceError(err);
}

/** Rebuilds from a grpc-js ServiceError (unary calls), using its grpc-status-details-bin. */
export function fromServiceError(err: { code?: number; details?: string; metadata?: { get(key: string): unknown[] } }): Error {
  const raw = err.metadata?.get('grpc-status-details-bin')?.[0];
  if (raw instanceof Buffer) return fromStatus(Status.decode(raw));
  if (err.code === 14 /* UNAVAILABLE */) return new SessionLostError(`sockbroker: broker unavailable: ${err.details ?? ''}`);
  return new OSError(`sockbroker: ${err.details ?? 'call failed'} (gRPC code ${err.code})`);
}
