// The daemon's error model: every failure becomes a gRPC status with a google.rpc.ErrorInfo
// whose reason is the errno name (or a Python exception kind) and whose metadata lets a client
// in any language rebuild the exact Python exception.
import { Metadata, status as Code, type ServiceError } from '@grpc/grpc-js';
import { ErrnoError, errnoName, isTimeout, strerror } from '../native/errno.js';
import { errnos } from '../native/constants.js';
import { Status } from '../proto/gen/google/rpc/status.js';
import { ErrorInfo } from '../proto/gen/google/rpc/error_details.js';

export const ERROR_DOMAIN = 'sockbroker';
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

/** What a client rebuilds: os = OSError(errno), gai = gaierror, herror, timeout = socket.timeout,
 * value/type/overflow = ValueError/TypeError/OverflowError, session = the session is gone. */
export type ErrorKind = 'os' | 'gai' | 'herror' | 'timeout' | 'value' | 'type' | 'overflow' | 'session';

/** A failure with its gRPC code, ErrorInfo reason and metadata. */
export class BrokerError extends Error {
  constructor(
    readonly code: Code,
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string>,
  ) {
    super(message);
    this.name = 'BrokerError';
  }
}

const errnoByName = new Map(errnos.map(([n, name]) => [name, n]));

/** The errno number for a name ('EAGAIN' → 11) on this host. */
export function errnoOf(name: string): number {
  const n = errnoByName.get(name);
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

// One table: errno name → gRPC code. Anything not listed is FAILED_PRECONDITION (an OS error
// about the socket's state), except the argument faults the kernel reports.
const CODE_BY_ERRNO: Record<string, Code> = {
  EPERM: Code.PERMISSION_DENIED,
  EACCES: Code.PERMISSION_DENIED,
  EBADF: Code.NOT_FOUND,
  ENOENT: Code.NOT_FOUND,
  EINVAL: Code.INVALID_ARGUMENT,
  EFAULT: Code.INVALID_ARGUMENT,
  EAFNOSUPPORT: Code.INVALID_ARGUMENT,
  EPROTONOSUPPORT: Code.INVALID_ARGUMENT,
  EPROTOTYPE: Code.INVALID_ARGUMENT,
  ESOCKTNOSUPPORT: Code.INVALID_ARGUMENT,
  ENOPROTOOPT: Code.INVALID_ARGUMENT,
  EOPNOTSUPP: Code.UNIMPLEMENTED,
  EAGAIN: Code.UNAVAILABLE,
  EINPROGRESS: Code.UNAVAILABLE,
  EALREADY: Code.UNAVAILABLE,
  ECONNREFUSED: Code.UNAVAILABLE,
  ECONNRESET: Code.UNAVAILABLE,
  ECONNABORTED: Code.ABORTED,
  EPIPE: Code.FAILED_PRECONDITION,
  ETIMEDOUT: Code.DEADLINE_EXCEEDED,
  EADDRINUSE: Code.ALREADY_EXISTS,
  EEXIST: Code.ALREADY_EXISTS,
  EISCONN: Code.ALREADY_EXISTS,
  EMFILE: Code.RESOURCE_EXHAUSTED,
  ENFILE: Code.RESOURCE_EXHAUSTED,
  ENOBUFS: Code.RESOURCE_EXHAUSTED,
  ENOMEM: Code.RESOURCE_EXHAUSTED,
  EMSGSIZE: Code.INVALID_ARGUMENT,
};

/** The gRPC code used for an errno name. */
export function codeForErrno(name: string): Code {
  return CODE_BY_ERRNO[name] ?? Code.FAILED_PRECONDITION;
}

/** OSError(errno, strerror) from syscall; `text` replaces strerror (e.g. a policy refusal). */
export function osError(errno: number, syscall: string, text?: string): BrokerError {
  const name = errnoName(errno);
  const message = text ?? strerror(errno);
  return new BrokerError(codeForErrno(name), name, message, {
    kind: 'os',
    errno: String(errno),
    strerror: message,
    syscall,
  });
}

/** OSError by errno name: osErrorNamed('EBADF', 'recv'). */
export function osErrorNamed(name: string, syscall: string, text?: string): BrokerError {
  return osError(errnoOf(name), syscall, text);
}

/** socket.timeout('timed out'). */
export function timeoutError(syscall: string): BrokerError {
  return new BrokerError(Code.DEADLINE_EXCEEDED, 'TIMEOUT', 'timed out', { kind: 'timeout', syscall });
}

/** ValueError / TypeError / OverflowError for a bad argument (INVALID_ARGUMENT). */
export function argumentError(kind: 'value' | 'type' | 'overflow', message: string, field = ''): BrokerError {
  const reason = { value: 'VALUE_ERROR', type: 'TYPE_ERROR', overflow: 'OVERFLOW_ERROR' }[kind];
  return new BrokerError(Code.INVALID_ARGUMENT, reason, message, { kind, field });
}

/** socket.gaierror(code, message). */
export function gaiError(code: number, message: string): BrokerError {
  return new BrokerError(Code.NOT_FOUND, 'EAI', message, { kind: 'gai', errno: String(code), strerror: message });
}

/** The session named by the call is unknown, expired or not the caller's. */
export function sessionError(message: string, code: Code = Code.NOT_FOUND, lost?: 'expired' | 'restarted' | 'shutdown' | 'identity' | 'overflow' | 'ended'): BrokerError {
  // `lost` tells a resuming client why the session is gone (SessionLostError.reason).
  return new BrokerError(code, 'SESSION', message, lost ? { kind: 'session', lost } : { kind: 'session' });
}

/** Any thrown value as a BrokerError; unexpected ones become INTERNAL (the caller logs them). */
export function toBrokerError(err: unknown): BrokerError {
  if (err instanceof BrokerError) return err;
  if (err instanceof ErrnoError) return osError(err.errno, err.syscall);
  if (isTimeout(err)) return timeoutError(err.syscall);
  return new BrokerError(Code.INTERNAL, 'INTERNAL', 'internal error', { kind: 'internal' });
}

/** The google.rpc.Status for an error, with its ErrorInfo detail. */
export function toStatus(err: BrokerError): Status {
  const info = ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }).finish();
  return { code: err.code, message: err.message, details: [{ typeUrl: ERROR_INFO_TYPE, value: Buffer.from(info) }] };
}

/** A grpc-js ServiceError carrying the rich status in `grpc-status-details-bin`. */
export function toServiceError(err: BrokerError): Partial<ServiceError> {
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode(toStatus(err)).finish()));
  return { code: err.code, details: err.message, metadata };
}
