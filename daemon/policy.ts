// What a caller may do. Root in the daemon's own namespaces may do everything. Every other
// identity gets the safe default — ordinary TCP/UDP over IPv4/IPv6 in its own network namespace,
// ports >= 1024, an allowlist of unprivileged socket options, AF_UNIX through socketpair only —
// plus whatever the policy file's rules matching it grant. A refusal carries the errno the
// kernel gives an unprivileged caller for the same thing and names the missing grant.
import { linux as C, os as O } from '../native/constants.js';
import type { Identity } from './identity.js';

/** A request the policy rules on, checked before its syscall. */
export type Action =
  | { op: 'socket'; family: number; type: number; protocol: number; pair: boolean }
  | { op: 'bind'; family: number; port: number }
  | { op: 'setsockopt'; level: number; name: number; value: number | Buffer }
  | { op: 'unix'; path: Buffer; syscall: 'bind' | 'connect' | 'sendto' }
  | { op: 'host-network' }
  /** Using an interface with a socket of `family` (AF_PACKET bind, SO_BINDTODEVICE, CAN bind, RCVALL). */
  | { op: 'interface'; family: number; ifname: string }
  /** Promiscuous mode on an interface (PACKET_MR_PROMISC, SIO_RCVALL). */
  | { op: 'promiscuous'; ifname: string }
  | { op: 'sethostname' }
  /** Transmitting a CAN frame with this id (flags stripped). */
  | { op: 'can-send'; canId: number };

/** Allowed (naming what allowed it, for the audit log), or refused with the kernel's errno. */
export type Decision =
  | { allowed: true; by: string; privileged: boolean }
  | { allowed: false; errno: 'EPERM' | 'EACCES'; what: string; grant: string };

/** A socket a grant allows: '*' matches any value. */
export interface SocketGrant {
  family: number | '*';
  type: number | '*';
  protocol: number | '*';
}

/** What a rule grants beyond the default. */
export interface Grant {
  sockets: SocketGrant[];
  /** Inclusive port ranges below 1024 that may be bound. */
  ports: Array<[number, number]>;
  /** Privileged socket options, as 'level:name'. */
  options: Set<string>;
  interfaces: string[];
  promiscuous: boolean;
  sethostname: boolean;
  /** Glob patterns of AF_UNIX paths (checked again by the kernel with the caller's ids). */
  unixPaths: string[];
  /** Glob patterns of abstract AF_UNIX names (without the leading NUL). */
  unixAbstract: string[];
  netlink: number[];
  hostNetwork: boolean;
  share: boolean;
  canIds: Array<[number, number]>;
  /** Families whose sockets may be handed off even when the broker would keep confining them ("unconfined"). */
  handoff: number[];
  /** CaptureService: which interfaces, a guard filter ANDed with every capture's, promiscuity. */
  capture: CaptureGrant | null;
}

/** The `capture` grant. */
export interface CaptureGrant {
  /** Interface name globs; "any" (the all-interfaces socket) must match a pattern itself. */
  interfaces: string[];
  /** pcap-filter guard: a capture sees only packets this accepts too ('' = no guard). */
  filter: string;
  promiscuous: boolean;
}

export interface Quotas {
  socketsPerSession: number;
  sessionsPerIdentity: number;
  bytesPerCall: number;
  bufferedBytes: number;
  /** Captures one identity may run at once. */
  capturesPerIdentity: number;
  /** Kernel ring bytes one capture may use, summed over its interfaces (the broker's memory). */
  captureRingBytes: number;
  /** Packets per second one capture may deliver (0 = unbounded); the excess is dropped and counted. */
  capturePacketsPerSecond: number;
  /** Packet bytes per second one capture may deliver (0 = unbounded). */
  captureBytesPerSecond: number;
}

/** Which identities a rule applies to; every key given must match. */
export interface Match {
  uids?: number[];
  gids?: number[];
  netns?: string[];
  local?: boolean;
  subjects?: string[];
  tokens?: string[];
  /** Globs over the caller's cgroup v2 path (initial cgroup namespace); `*` crosses '/'. */
  cgroups?: string[];
  /** Globs over the systemd unit derived from the cgroup (`/system.slice/NAME.service`). */
  units?: string[];
  /** Kubernetes pod UIDs and container IDs derived from the cgroup (exact). */
  pods?: string[];
  containers?: string[];
}

export interface Rule {
  name: string;
  match: Match;
  grant: Grant;
  quotas: Partial<Quotas>;
  /** Every socket of a matching identity stays on the broker (each operation audited). */
  noHandoff?: boolean;
}

export interface Policy {
  rules: Rule[];
  /** Quotas for identities no rule raises. */
  quotas: Quotas;
}

export function emptyGrant(): Grant {
  return {
    sockets: [], ports: [], options: new Set(), interfaces: [], promiscuous: false, sethostname: false,
    unixPaths: [], unixAbstract: [], netlink: [], hostNetwork: false, share: false, canIds: [], handoff: [], capture: null,
  };
}

const opt = (level: number | undefined, ...names: Array<number | undefined>): string[] =>
  level === undefined ? [] : names.filter((n): n is number => n !== undefined).map((n) => `${level}:${n}`);

// Options an unprivileged process may set on its own sockets, with no effect beyond them.
const UNPRIVILEGED_OPTIONS = new Set([
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
]);

const ORDINARY_PROTOCOLS: Record<number, number[]> = {
  [C.SOCK_STREAM]: [0, C.IPPROTO_TCP],
  [C.SOCK_DGRAM]: [0, C.IPPROTO_UDP],
};

// SO_PRIORITY above 6 needs CAP_NET_ADMIN in the kernel.
const MAX_UNPRIVILEGED_PRIORITY = 6;

/**
 * The sysctls of the caller's network namespace that widen what an unprivileged process may do
 * there; the default follows them for local callers, so the broker never refuses what the caller
 * could do itself. Absent: the kernel's defaults (1024, nobody may open ICMP datagram sockets).
 */
export interface NetSysctls {
  /** net.ipv4.ip_unprivileged_port_start */
  unprivilegedPortStart: number;
  /** net.ipv4.ping_group_range, inclusive (lo > hi: no group) */
  pingGroupRange: [number, number];
}

const KERNEL_DEFAULTS: NetSysctls = { unprivilegedPortStart: 1024, pingGroupRange: [1, 0] };

/** An ICMP datagram ("ping") socket, which ping_group_range opens to unprivileged groups. */
export function isPingSocket(a: { family: number; type: number; protocol: number }): boolean {
  return a.type === C.SOCK_DGRAM && ((a.family === C.AF_INET && a.protocol === C.IPPROTO_ICMP) || (a.family === C.AF_INET6 && a.protocol === C.IPPROTO_ICMPV6));
}

function inPingGroups(id: Identity, [lo, hi]: [number, number]): boolean {
  return id.kind === 'local' && [id.gid, ...id.groups].some((g) => g >= lo && g <= hi);
}

/** The default's verdict: null when allowed, else what is missing. */
function defaultRefusal(a: Action, id: Identity, net: NetSysctls): { errno: 'EPERM' | 'EACCES'; what: string; grant: string } | null {
  switch (a.op) {
    case 'socket': {
      if (isPingSocket(a) && inPingGroups(id, net.pingGroupRange)) return null;
      if (a.family === C.AF_UNIX) {
        return a.pair ? null : { errno: 'EPERM', what: 'AF_UNIX sockets are available through socketpair() only', grant: 'unix_paths' };
      }
      if (a.family !== C.AF_INET && a.family !== C.AF_INET6) {
        return { errno: 'EPERM', what: `address family ${a.family} needs a grant`, grant: 'sockets' };
      }
      if (a.type === C.SOCK_RAW) return { errno: 'EPERM', what: 'raw sockets (SOCK_RAW) need a grant', grant: 'sockets' };
      const protocols = ORDINARY_PROTOCOLS[a.type];
      if (!protocols) return { errno: 'EPERM', what: `socket type ${a.type} needs a grant`, grant: 'sockets' };
      if (!protocols.includes(a.protocol)) return { errno: 'EPERM', what: `protocol ${a.protocol} needs a grant`, grant: 'sockets' };
      return null;
    }
    case 'bind': {
      const start = id.kind === 'local' ? Math.min(net.unprivilegedPortStart, 1024) : 1024;
      return a.port !== 0 && a.port < start
        ? { errno: 'EACCES', what: `binding port ${a.port} (below ${start}) needs a grant`, grant: 'ports' }
        : null;
    }
    case 'setsockopt': {
      if (!UNPRIVILEGED_OPTIONS.has(`${a.level}:${a.name}`)) {
        return { errno: 'EPERM', what: `setsockopt(level ${a.level}, option ${a.name}) is not in the unprivileged allowlist`, grant: 'options' };
      }
      if (a.level === C.SOL_SOCKET && a.name === C.SO_PRIORITY) {
        const v = typeof a.value === 'number' ? a.value : a.value.length >= 4 ? a.value.readInt32LE(0) : 0;
        if (v < 0 || v > MAX_UNPRIVILEGED_PRIORITY) return { errno: 'EPERM', what: `SO_PRIORITY ${v} needs a grant`, grant: 'options' };
      }
      return null;
    }
    case 'unix': {
      const abstract = a.path.length > 0 && a.path[0] === 0;
      return {
        errno: 'EPERM',
        what: `${a.syscall} on the AF_UNIX ${abstract ? 'abstract name' : 'path'} ${JSON.stringify(printable(a.path))} needs a grant`,
        grant: abstract ? 'unix_abstract' : 'unix_paths',
      };
    }
    case 'host-network':
      return { errno: 'EPERM', what: "the host's network namespace needs a grant", grant: 'host_network' };
    case 'interface':
      return { errno: 'EPERM', what: `interface ${JSON.stringify(a.ifname)} needs a grant for this socket`, grant: 'interfaces' };
    case 'promiscuous':
      return { errno: 'EPERM', what: `promiscuous mode on ${JSON.stringify(a.ifname)} needs a grant`, grant: 'promiscuous' };
    case 'sethostname':
      return { errno: 'EPERM', what: 'sethostname needs a grant', grant: 'sethostname' };
    case 'can-send':
      return { errno: 'EPERM', what: `sending CAN id 0x${a.canId.toString(16)} needs a grant`, grant: 'can_ids' };
  }
}

function printable(path: Buffer): string {
  return (path[0] === 0 ? '@' + path.subarray(1).toString('latin1') : path.toString('utf8')).replace(/[^\x20-\x7e]/g, '?');
}

/** Shell-style glob (`*`, `?`) to a RegExp matching the whole string. */
export function globToRegExp(glob: string): RegExp {
  const src = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${src}$`);
}

const any = (v: number | '*', x: number): boolean => v === '*' || v === x;

function grantAllows(g: Grant, a: Action): boolean {
  switch (a.op) {
    case 'socket':
      if (a.family === C.AF_UNIX) return g.unixPaths.length > 0 || g.unixAbstract.length > 0;
      if (a.family === C.AF_NETLINK && g.netlink.includes(a.protocol)) return true;
      return g.sockets.some((s) => any(s.family, a.family) && any(s.type, a.type) && any(s.protocol, a.protocol));
    case 'bind':
      return g.ports.some(([lo, hi]) => a.port >= lo && a.port <= hi);
    case 'setsockopt':
      return g.options.has(`${a.level}:${a.name}`);
    case 'unix': {
      const abstract = a.path.length > 0 && a.path[0] === 0;
      const name = abstract ? a.path.subarray(1).toString('latin1') : a.path.toString('utf8');
      return (abstract ? g.unixAbstract : g.unixPaths).some((p) => globToRegExp(p).test(name));
    }
    case 'host-network':
      return g.hostNetwork;
    case 'interface':
      return grantsFamily(g, a.family) && interfaceIn(g, a.ifname);
    case 'promiscuous':
      return g.promiscuous && interfaceIn(g, a.ifname);
    case 'sethostname':
      return g.sethostname;
    case 'can-send':
      return grantsFamily(g, C.AF_CAN) && (g.canIds.length === 0 || g.canIds.some(([lo, hi]) => a.canId >= lo && a.canId <= hi));
  }
}

function grantsFamily(g: Grant, family: number): boolean {
  return g.sockets.some((s) => any(s.family, family));
}

/** An empty interface list means any interface. */
function interfaceIn(g: Grant, ifname: string): boolean {
  return g.interfaces.length === 0 || g.interfaces.some((p) => globToRegExp(p).test(ifname));
}

/**
 * The interfaces a socket of `family` may use, as glob patterns; null when unrestricted (host
 * root, or a matching grant for the family that lists no interfaces).
 */
export function interfacesFor(policy: Policy, identity: Identity, family: number): string[] | null {
  if (identity.hostRoot) return null;
  const patterns: string[] = [];
  for (const rule of policy.rules) {
    if (!matches(rule.match, identity) || !grantsFamily(rule.grant, family)) continue;
    if (rule.grant.interfaces.length === 0) return null;
    patterns.push(...rule.grant.interfaces);
  }
  return patterns;
}

export function matches(m: Match, id: Identity): boolean {
  if (m.local !== undefined && m.local !== (id.kind === 'local')) return false;
  if (m.uids && (id.kind !== 'local' || !m.uids.includes(id.uid))) return false;
  if (m.gids && (id.kind !== 'local' || !m.gids.some((g) => g === id.gid || id.groups.includes(g)))) return false;
  if (m.netns && !m.netns.includes(id.netNs)) return false;
  if (m.subjects && (id.subject === undefined || !m.subjects.includes(id.subject))) return false;
  if (m.tokens && (id.token === undefined || !m.tokens.includes(id.token))) return false;
  // Without a cgroup (no SO_PEERPIDFD, a remote caller) every cgroup-derived key fails closed.
  if (m.cgroups && (id.cgroup === undefined || !m.cgroups.some((g) => globToRegExp(g).test(id.cgroup!)))) return false;
  if (m.units && (id.unit === undefined || !m.units.some((g) => globToRegExp(g).test(id.unit!)))) return false;
  if (m.pods && (id.pod === undefined || !m.pods.includes(id.pod))) return false;
  if (m.containers && (id.container === undefined || !m.containers.includes(id.container))) return false;
  return true;
}

/** The default policy: no rules, the default quotas. */
export function defaultPolicy(quotas: Quotas): Policy {
  return { rules: [], quotas };
}

/** Rules on `action` for `identity` under `policy` (`net`: the caller's namespace's sysctls). */
export function decide(policy: Policy, identity: Identity, action: Action, net: NetSysctls = KERNEL_DEFAULTS): Decision {
  const refusal = defaultRefusal(action, identity, net);
  if (identity.hostRoot) return { allowed: true, by: 'host-root', privileged: refusal !== null };
  if (!refusal) return { allowed: true, by: 'default', privileged: false };
  for (const rule of policy.rules) {
    if (matches(rule.match, identity) && grantAllows(rule.grant, action)) return { allowed: true, by: rule.name, privileged: true };
  }
  return { allowed: false, ...refusal };
}

/** Whether a socket is of the kind the kernel keeps checking for an unprivileged holder: TCP/UDP over IPv4/IPv6. */
export function kernelChecked(info: { family: number; type: number; protocol: number }): boolean {
  if (info.family !== C.AF_INET && info.family !== C.AF_INET6) return false;
  return ORDINARY_PROTOCOLS[info.type]?.includes(info.protocol) ?? false;
}

/**
 * Whether a new socket may leave the broker (fd hand-off). By default only the kernel-checked
 * kind in the caller's own network namespace; any other socket only with a `handoff` grant for
 * its family, which makes it unconfined (its holder may pass it on). A rule with `no_handoff`
 * keeps every socket of its identities on the broker. Callers decide about the sniffer socket
 * and remote identities before asking.
 */
export function handoffDecision(
  policy: Policy, identity: Identity, info: { family: number; type: number; protocol: number }, ownNetns: boolean,
): { allowed: true; by: string } | { allowed: false; why: string } {
  const forbidding = policy.rules.find((r) => r.noHandoff && matches(r.match, identity));
  if (forbidding) return { allowed: false, why: `rule ${forbidding.name} keeps sockets on the broker` };
  if (kernelChecked(info) && ownNetns) return { allowed: true, by: 'default' };
  if (identity.hostRoot) return { allowed: true, by: 'host-root' };
  const rule = policy.rules.find((r) => matches(r.match, identity) && r.grant.handoff.includes(info.family));
  if (rule) return { allowed: true, by: rule.name };
  return { allowed: false, why: 'a socket the broker keeps confining needs a handoff grant for its family' };
}

/** The quotas for `identity`: the default, overridden field by field by matching rules in file order. */
export function quotasFor(policy: Policy, identity: Identity): Quotas {
  const q = { ...policy.quotas };
  for (const rule of policy.rules) if (matches(rule.match, identity)) Object.assign(q, rule.quotas);
  return q;
}

/** The rule a session is counted under in metrics: the first rule matching the identity. */
export function ruleOf(policy: Policy, identity: Identity): string {
  if (identity.hostRoot) return 'host-root';
  return policy.rules.find((r) => matches(r.match, identity))?.name ?? 'default';
}

/** Capture quotas when neither the daemon's defaults nor a rule set them. */
export const CAPTURE_QUOTA_DEFAULTS = { capturesPerIdentity: 4, captureRingBytes: 64 << 20, capturePacketsPerSecond: 0, captureBytesPerSecond: 0 };

/** What a capture may do, or why not. */
export type CaptureDecision =
  | { allowed: true; by: string; guard: string }
  | { allowed: false; what: string; grant: 'capture' };

/**
 * Rules on a capture of `ifnames` (with promiscuous mode if `promiscuous`): host root may capture
 * anything unguarded; anyone else needs one rule whose capture grant covers every interface (and
 * promiscuity), and that rule's guard filter applies. Rules are tried in file order.
 */
export function decideCapture(policy: Policy, identity: Identity, ifnames: string[], promiscuous: boolean): CaptureDecision {
  if (identity.hostRoot) return { allowed: true, by: 'host-root', guard: '' };
  let covered = false;
  for (const rule of policy.rules) {
    const g = rule.grant.capture;
    if (!g || !matches(rule.match, identity)) continue;
    if (!ifnames.every((n) => g.interfaces.some((p) => globToRegExp(p).test(n)))) continue;
    covered = true;
    if (promiscuous && !g.promiscuous) continue;
    return { allowed: true, by: rule.name, guard: g.filter };
  }
  const names = ifnames.map((n) => JSON.stringify(n)).join(', ');
  return covered
    ? { allowed: false, what: `promiscuous capture on ${names} needs a grant`, grant: 'capture' }
    : { allowed: false, what: `capturing on ${names} needs a grant`, grant: 'capture' };
}
