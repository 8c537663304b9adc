// Who is calling, read from the connection by the kernel — SO_PEERCRED, SO_PEERGROUPS, and the
// peer's user and network namespaces, pinned race-free with SO_PEERPIDFD — or, for remote
// callers, from a verified client certificate or a configured bearer token. Never anything the
// client says about itself.
import { readlinkSync } from 'node:fs';
import { peerCred, close } from '../native/libc.js';
import { openReadOnly, peerGroups, peerPidfd, pidfdAlive } from '../native/creds.js';
import { cgroupFacts, readCgroup } from './cgroup.js';

/** A caller's identity, fixed when its connection is accepted (remote: when a call authenticates). */
export interface Identity {
  kind: 'local' | 'remote';
  uid: number;
  gid: number;
  /** Supplementary groups (local callers). */
  groups: number[];
  /** Logged only: sessions bind to uid + namespaces, not to the pid. 0 for remote callers. */
  pid: number;
  /** User and network namespace ids (e.g. 'net:[4026531840]'); '' for remote callers. */
  userNs: string;
  netNs: string;
  /** Root in the daemon's own user and network namespaces: the only "everything" identity. */
  hostRoot: boolean;
  /**
   * Local callers: the cgroup v2 path as the initial cgroup namespace sees it, read only when
   * the peer is pinned by a pidfd (else absent: cgroup rules fail closed), and the systemd unit,
   * Kubernetes pod UID and container ID derived from it (daemon/cgroup.ts).
   */
  cgroup?: string;
  unit?: string;
  pod?: string;
  container?: string;
  /** Verified client certificate subject (remote, mTLS), e.g. 'CN=client1'. */
  subject?: string;
  /** Name of the bearer token the caller presented (remote). */
  token?: string;
  /** What a session is bound to. */
  key: string;
}

/** A local connection's identity and, when the caller lives in another network namespace, an fd of it. */
export interface LocalPeer {
  identity: Identity;
  /** O_RDONLY fd of the caller's network namespace, or -1 when it is the daemon's own. */
  netnsFd: number;
}

function namespaceOf(pid: number | 'self', kind: 'user' | 'net'): string {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return '';
  }
}

/** Whether the daemon runs as root; one run by an ordinary user serves only that user. */
export const DAEMON_IS_ROOT = process.geteuid?.() === 0;

export const ownNamespaces = { user: namespaceOf('self', 'user'), net: namespaceOf('self', 'net') };

/** Uid that remote callers act as on this host (their sockets belong to it). */
export const REMOTE_UID = 65534;

/**
 * The identity of the peer of a connected Unix socket fd. The pid SO_PEERCRED gives could be
 * reused between reading it and reading /proc; the peer's pidfd pins it, so the namespaces are
 * read and then the pidfd is checked to still name a live process. Throws when the peer is gone.
 */
export function identifyLocal(fd: number): LocalPeer {
  const { pid, uid, gid } = peerCred(fd);
  const pidfd = peerPidfd(fd);
  let netnsFd = -1;
  try {
    const userNs = namespaceOf(pid, 'user');
    const netNs = namespaceOf(pid, 'net');
    if (netNs !== '' && netNs !== ownNamespaces.net) netnsFd = openReadOnly(`/proc/${pid}/ns/net`);
    const cgroup = pidfd >= 0 ? readCgroup(pid) : undefined;
    if (pidfd >= 0 && !pidfdAlive(pidfd)) throw new Error(`peer process ${pid} exited before it was identified`);
    if (userNs === '' || netNs === '') throw new Error(`namespaces of peer process ${pid} are unreadable`);
    const groups = peerGroups(fd);
    const hostRoot = uid === 0 && userNs === ownNamespaces.user && netNs === ownNamespaces.net;
    const identity: Identity = {
      kind: 'local', uid, gid, groups, pid, userNs, netNs, hostRoot,
      ...(cgroup !== undefined ? { cgroup, ...cgroupFacts(cgroup) } : {}),
      key: `local/${uid}/${userNs}/${netNs}`,
    };
    return { identity, netnsFd };
  } catch (err) {
    if (netnsFd >= 0) close(netnsFd);
    throw err;
  } finally {
    if (pidfd >= 0) close(pidfd);
  }
}

/** A remote caller authenticated by certificate subject or token name. */
export function remoteIdentity(by: { subject?: string; token?: string }): Identity {
  const who = by.subject !== undefined ? `cert:${by.subject}` : `token:${by.token}`;
  return {
    kind: 'remote',
    uid: REMOTE_UID,
    gid: REMOTE_UID,
    groups: [],
    pid: 0,
    userNs: '',
    netNs: '',
    hostRoot: false,
    ...by,
    key: `remote/${who}`,
  };
}

/** The fields of an identity worth a log line. */
export function describe(id: Identity): Record<string, unknown> {
  return id.kind === 'local'
    ? {
      uid: id.uid, gid: id.gid, pid: id.pid, netns: id.netNs, hostRoot: id.hostRoot,
      ...(id.cgroup !== undefined ? { cgroup: id.cgroup } : {}),
      ...(id.unit !== undefined ? { unit: id.unit } : {}),
      ...(id.pod !== undefined ? { pod: id.pod } : {}),
      ...(id.container !== undefined ? { container: id.container } : {}),
    }
    : { remote: id.subject !== undefined ? `cert:${id.subject}` : `token:${id.token}`, uid: id.uid };
}
