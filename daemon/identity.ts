// Who is calling: read from the connection by the kernel (SO_PEERCRED) and /proc, never from
// anything the client says.
import { readlinkSync } from 'node:fs';
import { peerCred } from '../native/libc.js';

/** A caller's identity, fixed when its connection is accepted. */
export interface Identity {
  uid: number;
  gid: number;
  /** Logged only: sessions bind to uid + namespaces, not to the pid. */
  pid: number;
  /** User and network namespace ids (e.g. 'user:[4026531837]'); '' when unreadable. */
  userNs: string;
  netNs: string;
  /** Root in the daemon's own user and network namespaces: the only "everything" identity. */
  hostRoot: boolean;
  /** What a session is bound to. */
  key: string;
}

function namespaceOf(pid: number | 'self', kind: 'user' | 'net'): string {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return '';
  }
}

const own = { user: namespaceOf('self', 'user'), net: namespaceOf('self', 'net') };

/** The identity of the peer of a connected Unix socket fd. */
export function identify(fd: number): Identity {
  const { pid, uid, gid } = peerCred(fd);
  const userNs = namespaceOf(pid, 'user');
  const netNs = namespaceOf(pid, 'net');
  // An unreadable namespace (the peer already exited) is never treated as ours.
  const hostRoot = uid === 0 && userNs !== '' && userNs === own.user && netNs === own.net;
  return { uid, gid, pid, userNs, netNs, hostRoot, key: `${uid}/${userNs}/${netNs}` };
}

/** The fields of an identity worth a log line. */
export function describe(id: Identity): { uid: number; gid: number; pid: number; hostRoot: boolean } {
  return { uid: id.uid, gid: id.gid, pid: id.pid, hostRoot: id.hostRoot };
}
