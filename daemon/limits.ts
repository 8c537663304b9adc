// Every size a client controls is bounded here; the values are documented in README.md and
// given to clients by GetModuleInfo.
import { CAPTURE_QUOTA_DEFAULTS, type Quotas } from './policy.js';

export interface Limits {
  /** Largest data of one send/sendto/sendall call, bytes. */
  maxSendBytes: number;
  /** Largest bufsize of one recv/recvfrom call, bytes. */
  maxRecvBytes: number;
  /** Largest getsockopt buflen / setsockopt bytes value. */
  maxOptBytes: number;
  /** Most handles in one poll call. */
  maxPollHandles: number;
  /** Sockets per session. */
  maxSockets: number;
  /** Sessions per identity. */
  maxSessionsPerIdentity: number;
  /** Calls pending at once on one Call stream. */
  maxPendingCalls: number;
  /** Largest gRPC message, bytes (a send of maxSendBytes fits with room for the envelope). */
  maxMessageBytes: number;
  /** Most data buffers in one sendmsg (the kernel's UIO_MAXIOV). */
  maxIov: number;
  /** Most ancillary data items in one sendmsg. */
  maxAncdata: number;
  /** Most handles in one sendmsg's SCM_RIGHTS items together (the kernel's SCM_MAX_FD). */
  maxCmsgFds: number;
  /** Largest recvmsg ancbufsize, and largest raw ancillary item, bytes. */
  maxAncBufSize: number;
  /** Window per direction of one Data (bulk) stream, bytes: the most it buffers each way. */
  dataWindowBytes: number;
  /** Default buffered_bytes quota: the most one session's Data streams buffer together (each reserves two windows). */
  maxBufferedBytes: number;
  /** A resumable session's replay record: most results kept unacknowledged, and their bytes. */
  maxReplayEntries: number;
  maxReplayBytes: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxSendBytes: 4 << 20,
  maxRecvBytes: 4 << 20,
  maxOptBytes: 1024,
  maxPollHandles: 4096,
  maxSockets: 4096,
  maxSessionsPerIdentity: 64,
  maxPendingCalls: 8192,
  maxMessageBytes: (4 << 20) + 64 * 1024,
  maxIov: 1024,
  maxAncdata: 64,
  maxCmsgFds: 253,
  maxAncBufSize: 64 * 1024,
  dataWindowBytes: 4 << 20,
  maxBufferedBytes: 64 << 20,
  maxReplayEntries: 4096,
  maxReplayBytes: 16 << 20,
};

/** The quotas of an identity no rule raises, from the broker-wide limits. */
export function defaultQuotas(limits: Limits): Quotas {
  return {
    socketsPerSession: limits.maxSockets,
    sessionsPerIdentity: limits.maxSessionsPerIdentity,
    bytesPerCall: limits.maxSendBytes,
    bufferedBytes: limits.maxBufferedBytes,
    ...CAPTURE_QUOTA_DEFAULTS,
  };
}
