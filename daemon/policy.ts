// What a caller may do. Root in the daemon's own namespaces may do everything; every other
// identity gets the safe default: ordinary TCP/UDP over IPv4/IPv6, ports >= 1024, an allowlist
// of unprivileged socket options, AF_UNIX through socketpair only. A refusal carries the errno
// the kernel gives an unprivileged caller for the same thing. The policy file (a later issue)
// adds grants as more rules here; the call sites stay as they are.
import { linux as C, os as O } from '../native/constants.js';
import type { Identity } from './identity.js';

/** A request the policy rules on, checked before its syscall. */
export type Action =
  | { op: 'socket'; family: number; type: number; protocol: number; pair: boolean }
  | { op: 'bind'; family: number; port: number }
  | { op: 'setsockopt'; level: number; name: number; value: number | Buffer };

export type Decision = { allowed: true } | { allowed: false; errno: 'EPERM' | 'EACCES'; what: string };

const ALLOW: Decision = { allowed: true };

const deny = (errno: 'EPERM' | 'EACCES', what: string): Decision => ({ allowed: false, errno, what });

const opt = (level: number | undefined, ...names: Array<number | undefined>): Array<[number, number]> =>
  level === undefined ? [] : names.filter((n): n is number => n !== undefined).map((n) => [level, n]);

// Options an unprivileged process may set on its own sockets, with no effect beyond them.
const UNPRIVILEGED_OPTIONS = new Set(
  [
    ...opt(C.SOL_SOCKET, C.SO_REUSEADDR, C.SO_REUSEPORT, C.SO_KEEPALIVE, C.SO_LINGER, C.SO_RCVBUF,
      C.SO_SNDBUF, C.SO_BROADCAST, C.SO_OOBINLINE, C.SO_RCVLOWAT, C.SO_SNDLOWAT, C.SO_RCVTIMEO,
      C.SO_SNDTIMEO, C.SO_PRIORITY, C.SO_PASSCRED, O.SO_TIMESTAMP, O.SO_TIMESTAMPNS, C.SO_DONTROUTE),
    ...opt(C.IPPROTO_TCP, C.TCP_NODELAY, C.TCP_MAXSEG, C.TCP_CORK, C.TCP_KEEPIDLE, C.TCP_KEEPINTVL,
      C.TCP_KEEPCNT, C.TCP_SYNCNT, C.TCP_LINGER2, C.TCP_DEFER_ACCEPT, C.TCP_WINDOW_CLAMP,
      C.TCP_QUICKACK, C.TCP_USER_TIMEOUT, C.TCP_FASTOPEN, C.TCP_NOTSENT_LOWAT),
    ...opt(C.IPPROTO_IP, C.IP_TOS, C.IP_TTL, C.IP_MULTICAST_TTL, C.IP_MULTICAST_LOOP, C.IP_MULTICAST_IF,
      C.IP_ADD_MEMBERSHIP, C.IP_DROP_MEMBERSHIP, C.IP_RECVTOS, C.IP_RECVTTL, C.IP_PKTINFO,
      C.IP_RECVERR, O.IP_MTU_DISCOVER, C.IP_RECVOPTS, C.IP_RETOPTS),
    ...opt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, C.IPV6_UNICAST_HOPS, C.IPV6_MULTICAST_HOPS,
      C.IPV6_MULTICAST_LOOP, C.IPV6_MULTICAST_IF, C.IPV6_JOIN_GROUP, C.IPV6_LEAVE_GROUP,
      C.IPV6_RECVPKTINFO, C.IPV6_TCLASS, C.IPV6_RECVTCLASS, C.IPV6_RECVHOPLIMIT, C.IPV6_RECVERR),
  ].map(([l, n]) => `${l}:${n}`),
);

const ORDINARY_PROTOCOLS: Record<number, number[]> = {
  [C.SOCK_STREAM!]: [0, C.IPPROTO_TCP!],
  [C.SOCK_DGRAM!]: [0, C.IPPROTO_UDP!],
};

// SO_PRIORITY above 6 needs CAP_NET_ADMIN in the kernel.
const MAX_UNPRIVILEGED_PRIORITY = 6;

function checkSocket(a: Extract<Action, { op: 'socket' }>): Decision {
  if (a.family === C.AF_UNIX) {
    return a.pair ? ALLOW : deny('EPERM', 'AF_UNIX sockets are available through socketpair() only');
  }
  if (a.family !== C.AF_INET && a.family !== C.AF_INET6) {
    return deny('EPERM', `address family ${a.family} needs a grant`);
  }
  if (a.type === C.SOCK_RAW) return deny('EPERM', 'raw sockets (SOCK_RAW) need a grant');
  const protocols = ORDINARY_PROTOCOLS[a.type];
  if (!protocols) return deny('EPERM', `socket type ${a.type} needs a grant`);
  if (!protocols.includes(a.protocol)) return deny('EPERM', `protocol ${a.protocol} needs a grant`);
  return ALLOW;
}

function checkSetsockopt(a: Extract<Action, { op: 'setsockopt' }>): Decision {
  if (!UNPRIVILEGED_OPTIONS.has(`${a.level}:${a.name}`)) {
    return deny('EPERM', `setsockopt(level ${a.level}, option ${a.name}) is not in the unprivileged allowlist`);
  }
  if (a.level === C.SOL_SOCKET && a.name === C.SO_PRIORITY) {
    const v = typeof a.value === 'number' ? a.value : a.value.length >= 4 ? a.value.readInt32LE(0) : 0;
    if (v < 0 || v > MAX_UNPRIVILEGED_PRIORITY) return deny('EPERM', `SO_PRIORITY ${v} needs a grant`);
  }
  return ALLOW;
}

/** Rules on `action` for `identity`. */
export function decide(identity: Identity, action: Action): Decision {
  if (identity.hostRoot) return ALLOW;
  switch (action.op) {
    case 'socket':
      return checkSocket(action);
    case 'bind':
      return action.port !== 0 && action.port < 1024
        ? deny('EACCES', `binding port ${action.port} (below 1024) needs a grant`)
        : ALLOW;
    case 'setsockopt':
      return checkSetsockopt(action);
  }
}
