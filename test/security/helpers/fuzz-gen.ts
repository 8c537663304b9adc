// Random, well-typed request messages for every RPC of SocketService, NetdbService and
// SessionService: each field gets a value anywhere in its wire type's range (extremes, negative,
// huge sizes, NUL bytes, long hosts, random unix paths, random handles). Two limits keep the
// fuzz bounded and harmless to the machine it runs on (the daemon is root):
//  - a call that may block (accept, connect, send, sendall, recv, poll) always carries a timeout
//    that is either refused or at most 50 ms, so no call legitimately outlives its deadline;
//  - no AF_NETLINK or PF_KEY sockets (random bytes sent on them as root could change the host's
//    routes or SAs), inet traffic only to loopback, unix paths only under the fuzz's temp dir.
import { linux as C } from '../../../native/constants.js';
import type { Address } from '../../../proto/gen/sockbroker/v1/address.js';
import type { CallRequest } from '../../../proto/gen/sockbroker/v1/socket.js';
import type { Rng } from './rng.js';

import { SocketServiceService } from '../../../proto/gen/sockbroker/v1/socket.js';

export type SocketOp = Exclude<keyof CallRequest, 'callId' | 'cancel'>;
/** SocketService's unary methods by generated name → the Call op running the same handler. */
export const UNARY_TO_OP: Record<string, SocketOp> = Object.fromEntries(
  Object.entries(SocketServiceService).filter(([, m]) => !m.requestStream).map(([k]) => [k, (k === 'closeSocket' ? 'close' : k) as SocketOp]),
);
/** Every op of the contract (from the generated code, so a new RPC is fuzzed as soon as it exists). */
export const SOCKET_OPS: readonly SocketOp[] = Object.values(UNARY_TO_OP);
/** Ops whose request has a timeout and may wait for readiness. */
export const BLOCKING_OPS: ReadonlySet<string> = new Set(['accept', 'connect', 'send', 'sendAll', 'recv', 'poll', 'sendMsg', 'recvMsg']);

const SOL_PACKET = 263;
const INT_MIN = -0x80000000;
const INT_MAX = 0x7fffffff;
/** Families a root fuzz must not create: sending garbage on them reconfigures the host. */
export const UNSAFE_FAMILIES: ReadonlySet<number> = new Set([C.AF_NETLINK, C.AF_KEY]);
/** Largest data of one send (the broker's limit): a bit above it is refused as a quota breach. */
export const MAX_SEND = 4 << 20;

/** What the generators draw handles, ports and paths from. */
export interface FuzzState {
  /** Handles the daemon returned (some may be closed since). */
  handles: number[];
  /** Ports with a listener of ours on 127.0.0.1 (so some connects succeed). */
  ports: number[];
  /** A temp dir for unix paths. */
  dir: string;
  /** How many sends above the limit were generated (they are 4 MiB each: a few suffice). */
  bigSends: number;
}

export function int32(r: Rng): number {
  switch (r.int(7)) {
    case 0: return r.pick([0, 1, -1, INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1]);
    case 1: return r.i32();
    case 2: return -r.range(1, 1000);
    case 3: return r.range(1 << 16, INT_MAX);
    default: return r.range(0, 64);
  }
}

export function uint32(r: Rng): number {
  switch (r.int(5)) {
    case 0: return r.pick([0, 1, 0xffffffff, 0x80000000, 0xfffffffe]);
    case 1: return r.u32();
    default: return r.range(0, 70_000);
  }
}

/** An int64 field within the JS safe range (the generated codec refuses anything wider). */
export function int53(r: Rng): number {
  switch (r.int(4)) {
    case 0: return r.pick([0, 1, -1, INT_MAX + 1, INT_MIN - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 32]);
    case 1: return r.i32() * 0x200000 + r.int(0x200000);
    default: return int32(r);
  }
}

/** A timeout that never lets a call wait long: refused (negative, NaN, infinite) or <= 50 ms. */
export function shortTimeout(r: Rng): number {
  switch (r.int(8)) {
    case 0: return r.pick([-1, -0.001, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1e300]);
    case 1: return r.pick([0, -0, 1e-300, Number.MIN_VALUE]);
    case 2: return 0;
    default: return r.float() * 0.05;
  }
}

/** Any timeout: also unset (blocking) and huge; only for ops that never wait. */
export function anyTimeout(r: Rng): number | undefined {
  return r.bool(0.3) ? undefined : r.bool(0.2) ? r.pick([1e300, 3600, 2 ** 31]) : shortTimeout(r);
}

/** True when a decoded request could legitimately wait longer than `maxS` seconds. */
export function mayBlock(op: string, req: { timeout?: number | undefined }, maxS = 0.1): boolean {
  if (!BLOCKING_OPS.has(op)) return false;
  const t = req.timeout;
  if (t === undefined) return true;
  return Number.isFinite(t) && t > maxS;
}

export function handle(r: Rng, s: FuzzState): number {
  if (s.handles.length > 0 && r.bool(0.65)) return r.pick(s.handles.length > 64 ? s.handles.slice(-64) : s.handles);
  return r.pick([0, 1, 2, -1, 3, 4, 5, 100, 4096, INT_MAX, INT_MIN, r.i32(), r.range(3, 200)]);
}

const VALID_SOCKETS: ReadonlyArray<readonly [number, number, number]> = [
  [C.AF_INET, C.SOCK_STREAM, 0], [C.AF_INET, C.SOCK_DGRAM, 0], [C.AF_INET6, C.SOCK_STREAM, 0], [C.AF_INET6, C.SOCK_DGRAM, 0],
  [C.AF_UNIX, C.SOCK_STREAM, 0], [C.AF_UNIX, C.SOCK_DGRAM, 0], [C.AF_UNIX, C.SOCK_SEQPACKET, 0],
  [C.AF_INET, C.SOCK_RAW, C.IPPROTO_ICMP], [C.AF_INET, C.SOCK_DGRAM, C.IPPROTO_ICMP], [C.AF_PACKET, C.SOCK_DGRAM, 0],
];

export function family(r: Rng): number {
  const f = r.pick([C.AF_INET, C.AF_INET, C.AF_INET6, C.AF_UNIX, C.AF_UNIX, C.AF_PACKET, 0, -1, r.i32(), r.range(0, 45), r.range(46, 70000)]);
  return UNSAFE_FAMILIES.has(f) ? C.AF_INET : f;
}

export function sockType(r: Rng): number {
  const t = r.pick([C.SOCK_STREAM, C.SOCK_DGRAM, C.SOCK_RAW, C.SOCK_SEQPACKET, C.SOCK_RDM, 0, 11, -1, r.i32()]);
  return r.bool(0.2) ? t | r.pick([C.SOCK_NONBLOCK, C.SOCK_CLOEXEC, C.SOCK_NONBLOCK | C.SOCK_CLOEXEC]) : t;
}

export function protocol(r: Rng): number {
  return r.pick([0, 0, 0, C.IPPROTO_TCP, C.IPPROTO_UDP, C.IPPROTO_ICMP, C.IPPROTO_RAW, C.IPPROTO_ICMPV6, 132, r.range(0, 300), r.i32()]);
}

const SAFE_PATH_CHARS = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789_-+=~ \t\x01\x7f\xc3\xa9\xff');

/** A unix path under the fuzz dir (random bytes, NULs, no '/' or '.'), abstract, empty, or too long. */
export function unixPath(r: Rng, s: FuzzState): Buffer {
  switch (r.int(7)) {
    case 0: return Buffer.alloc(0);
    case 1: return Buffer.concat([Buffer.from([0]), r.bytes(r.range(0, 120))]);
    case 2: return Buffer.from(`${s.dir}/${'x'.repeat(r.range(90, 300))}`);
    case 3: return Buffer.from(`${s.dir}/missing-dir/sock`);
    default: {
      const n = r.range(1, 40);
      const name = Buffer.alloc(n);
      for (let i = 0; i < n; i++) name[i] = r.bool(0.03) ? 0 : r.pick([...SAFE_PATH_CHARS]);
      return Buffer.concat([Buffer.from(`${s.dir}/`), name]);
    }
  }
}

/** A host argument: numeric loopback, wildcard, names (fixture hosts file), long, NUL, garbage. */
export function host(r: Rng, v6 = false): string {
  switch (r.int(12)) {
    case 0: return '';
    case 1: return v6 ? '::1' : '127.0.0.1';
    case 2: return `127.${r.int(256)}.${r.int(256)}.${r.int(256)}`;
    case 3: return r.pick(['0.0.0.0', '::', '::ffff:127.0.0.1', '::1', '<broadcast>', '255.255.255.255', '127.1', '0x7f.1', '1.2.3.4.5', '::::', '[::1]']);
    case 4: return r.pick(['localhost', `fuzz-${r.int(4)}.test`, 'fuzz-v6.test']);
    case 5: return 'a'.repeat(r.pick([63, 64, 255, 256, 1024, 1025, r.range(1, 5000)]));
    case 6: return `127.0.0.1\0${'x'.repeat(r.int(5))}`;
    case 7: return `${'a'.repeat(r.range(1, 70))}.${'b'.repeat(r.range(1, 70))}.invalid`;
    case 8: return String.fromCodePoint(...Array.from({ length: r.range(1, 20) }, () => r.pick([0x41, 0xe9, 0x3b1, 0x4e2d, 0x1f600, 0xfffd, 0x2e, 0x25, r.range(1, 0xd7ff)])));
    case 9: return `fe80::1%${r.pick(['lo', 'eth0', 'nope', '1', '999999', ''])}`;
    default: return v6 ? '::1' : r.pick(['127.0.0.1', '127.0.0.2', 'localhost']);
  }
}

function port(r: Rng, s: FuzzState): number {
  if (s.ports.length > 0 && r.bool(0.2)) return r.pick(s.ports);
  return r.pick([0, 0, 1, 80, 1023, 1024, 65535, 65536, 70000, 0xffffffff, r.range(1024, 65535), uint32(r)]);
}

export function address(r: Rng, s: FuzzState): Address | undefined {
  switch (r.int(9)) {
    case 0: return undefined;
    case 1: return {};
    case 2:
    case 3: return { unix: { path: unixPath(r, s) } };
    case 4:
      switch (r.int(5)) {
        case 0: return { packet: { ifname: r.pick(['lo', 'eth0', 'nope', '', 'x'.repeat(r.range(1, 300))]), proto: uint32(r), pkttype: uint32(r), hatype: uint32(r), addr: r.bytes(r.range(0, 12)) } };
        case 1: return { can: { ifname: r.pick(['vcan0', 'lo', '', 'x'.repeat(r.range(1, 40))]) } };
        case 2: return { tipc: { addrType: uint32(r), v1: uint32(r), v2: uint32(r), v3: uint32(r), scope: uint32(r) } };
        case 3: return { netlink: { pid: uint32(r), groups: uint32(r) } };
        default: return { raw: { family: int32(r), data: r.bytes(r.range(0, 40)) } };
      }
    case 5: return { inet6: { host: host(r, true), port: port(r, s), flowinfo: r.bool(0.7) ? 0 : uint32(r), scopeId: r.bool(0.7) ? 0 : uint32(r) } };
    default: return { inet: { host: host(r), port: port(r, s) } };
  }
}

function data(r: Rng, s: FuzzState): Buffer {
  if (r.bool(0.002) && s.bigSends < 3) {
    s.bigSends++;
    return Buffer.alloc(MAX_SEND + 1);
  }
  return r.bytes(r.pick([0, 1, 2, 16, r.range(0, 200), r.range(0, 2000), 65536]));
}

function flags(r: Rng): number {
  return r.pick([0, 0, 0, C.MSG_PEEK, C.MSG_DONTWAIT, C.MSG_OOB, C.MSG_WAITALL, C.MSG_TRUNC, C.MSG_PEEK | C.MSG_DONTWAIT, int32(r)]);
}

function bufsize(r: Rng): number {
  return r.pick([0, 1, 16, 4096, 65536, MAX_SEND, MAX_SEND + 1, 0xffffffff, r.range(0, 100_000), uint32(r)]);
}

function optLevel(r: Rng): number {
  // SOL_PACKET is left out: a random PACKET_RX_RING could ask the kernel for a huge ring.
  const l = r.pick([C.SOL_SOCKET, C.SOL_SOCKET, C.IPPROTO_IP, C.IPPROTO_TCP, C.IPPROTO_UDP, C.IPPROTO_IPV6, int32(r)]);
  return l === SOL_PACKET ? C.SOL_SOCKET : l;
}

function optName(r: Rng): number {
  return r.pick([r.range(0, 70), r.range(0, 70), C.SO_REUSEADDR, C.SO_LINGER, C.SO_RCVBUF, C.SO_MARK, C.SO_BINDTODEVICE, C.SO_PRIORITY, int32(r)]);
}

/** A random request for `op`, with timeouts that keep it from blocking. */
export function socketRequest(r: Rng, op: SocketOp, s: FuzzState): any {
  switch (op) {
    case 'create':
    case 'socketpair': {
      // Half the time a combination that exists (so the data path meets real sockets).
      if (r.bool()) {
        const [family, type, protocol] = r.pick(VALID_SOCKETS);
        return { family, type, protocol };
      }
      return { family: family(r), type: sockType(r), protocol: protocol(r) };
    }
    case 'bind':
      return { handle: handle(r, s), address: address(r, s) };
    case 'listen':
      return r.bool(0.3) ? { handle: handle(r, s) } : { handle: handle(r, s), backlog: int32(r) };
    case 'accept':
      return { handle: handle(r, s), timeout: shortTimeout(r) };
    case 'connect':
      return { handle: handle(r, s), address: address(r, s), timeout: shortTimeout(r) };
    case 'send': {
      const a = r.bool(0.5) ? address(r, s) : undefined;
      return { handle: handle(r, s), data: data(r, s), flags: flags(r), ...(a ? { address: a } : {}), timeout: shortTimeout(r) };
    }
    case 'sendAll':
      return { handle: handle(r, s), data: data(r, s), flags: flags(r), timeout: shortTimeout(r) };
    case 'recv':
      return { handle: handle(r, s), bufsize: bufsize(r), flags: flags(r), wantAddress: r.bool(), timeout: shortTimeout(r) };
    case 'shutdown':
      return { handle: handle(r, s), how: r.pick([0, 1, 2, 3, -1, int32(r)]) };
    case 'close':
    case 'getSockName':
    case 'getPeerName':
      return { handle: handle(r, s) };
    case 'getSockOpt': {
      const req = { handle: handle(r, s), level: optLevel(r), name: optName(r) };
      return r.bool(0.4) ? req : { ...req, buflen: r.pick([0, 1, 4, 16, 1024, 1025, 0xffffffff, uint32(r)]) };
    }
    case 'setSockOpt': {
      const req = { handle: handle(r, s), level: optLevel(r), name: optName(r) };
      switch (r.int(4)) {
        case 0: return req;
        case 1: return { ...req, bytesValue: r.bytes(r.pick([0, 1, 4, 8, 16, 1024, 1025, 5000, r.range(0, 64)])) };
        default: return { ...req, intValue: int53(r) };
      }
    }
    case 'sendMsg': {
      const a = r.bool(0.4) ? address(r, s) : undefined;
      const buffers = Array.from({ length: r.pick([0, 1, 2, 5, 1025]) }, () => r.bytes(r.range(0, 64)));
      return { handle: handle(r, s), buffers, ancdata: Array.from({ length: r.range(0, 3) }, () => controlMessage(r, s)), flags: flags(r), ...(a ? { address: a } : {}), timeout: shortTimeout(r) };
    }
    case 'recvMsg':
      return { handle: handle(r, s), bufsize: bufsize(r), ancbufsize: r.pick([0, 16, 64, 1024, 0xffffffff, uint32(r)]), flags: flags(r), timeout: shortTimeout(r) };
    case 'dup':
    case 'detach':
    case 'fromFd':
    case 'getInheritable':
      return { handle: handle(r, s) };
    case 'setInheritable':
      return { handle: handle(r, s), inheritable: r.bool() };
    case 'share':
      return { handle: handle(r, s), pid: r.pick([0, -1, 1, process.pid, 2 ** 22, int32(r)]) };
    case 'fromShare':
      return { token: r.bytes(r.pick([0, 16, 32, 33, r.range(0, 100)])) };
    case 'ioctl': {
      const req = { handle: handle(r, s), control: r.pick([0x98000004, 0x98000010, 0x98000001, 0x98000012, 0, 0x8912, uint32(r)]) };
      switch (r.int(3)) {
        case 0: return req;
        case 1: return { ...req, value: uint32(r) };
        default: return { ...req, keepalive: { onoff: uint32(r), keepalivetime: uint32(r), keepaliveinterval: uint32(r) } };
      }
    }
    case 'poll': {
      const n = r.bool(0.01) ? 4097 : r.range(0, 6);
      const entries = Array.from({ length: n }, () => ({ handle: handle(r, s), events: r.pick([1, 4, 5, 0, 0x20, int32(r)]) }));
      return { entries, timeout: shortTimeout(r) };
    }
    default:
      // An op newer than this generator: its handle, if it takes one, and nothing else.
      return { handle: handle(r, s) };
  }
}

/** A random ancillary item: SCM_RIGHTS with random handles, credentials, pktinfo, ints, bytes. */
function controlMessage(r: Rng, s: FuzzState): any {
  const base = { level: r.pick([C.SOL_SOCKET, C.IPPROTO_IP, C.IPPROTO_IPV6, int32(r)]), type: r.pick([1, 2, 8, int32(r)]) };
  switch (r.int(8)) {
    case 0: return { ...base, rights: { handles: Array.from({ length: r.range(0, 4) }, () => handle(r, s)) } };
    case 1: return { ...base, credentials: { pid: int32(r), uid: uint32(r), gid: uint32(r) } };
    case 2: return { ...base, inPktinfo: { ifindex: int32(r), specDst: host(r), addr: host(r) } };
    case 3: return { ...base, in6Pktinfo: { addr: host(r, true), ifindex: uint32(r) } };
    case 4: return { ...base, intValue: int32(r) };
    case 5: return { ...base, byteValue: uint32(r) };
    case 6: return { ...base, timeval: { sec: int53(r), usec: int53(r) } };
    default: return { ...base, other: r.bytes(r.range(0, 64)) };
  }
}

// ---- NetdbService and SessionService ----

function optional<T>(r: Rng, v: () => T): T | undefined {
  return r.bool(0.25) ? undefined : v();
}

function serviceName(r: Rng): string {
  return r.pick(['http', 'ssh', 'domain', '', 'no-such-service', 'x'.repeat(r.range(1, 2000)), 'ht\0tp', String(r.range(0, 70000)), host(r)]);
}

function protoName(r: Rng): string {
  return r.pick(['tcp', 'udp', 'icmp', '', 'nope', 'tc\0p', 'x'.repeat(r.range(1, 1500))]);
}

/** A random request for a NetdbService method (by its generated client name). */
export function netdbRequest(r: Rng, method: string): any {
  switch (method) {
    case 'getAddrInfo':
      return {
        host: optional(r, () => host(r, r.bool())),
        port: optional(r, () => r.pick(['0', '80', 'http', '65536', '-1', 'nope', '8\0', String(int32(r)), 'x'.repeat(r.range(1, 1500))])),
        family: r.pick([0, C.AF_INET, C.AF_INET6, C.AF_UNIX, int32(r)]),
        type: r.pick([0, C.SOCK_STREAM, C.SOCK_DGRAM, C.SOCK_RAW, int32(r)]),
        protocol: r.pick([0, C.IPPROTO_TCP, C.IPPROTO_UDP, int32(r)]),
        flags: r.pick([0, C.AI_PASSIVE, C.AI_CANONNAME, C.AI_NUMERICHOST, C.AI_NUMERICSERV, int32(r)]),
      };
    case 'getNameInfo':
      return {
        host: host(r, r.bool()),
        port: int32(r),
        flowinfo: optional(r, () => uint32(r)),
        scopeId: optional(r, () => uint32(r)),
        flags: r.pick([0, C.NI_NUMERICHOST, C.NI_NAMEREQD, C.NI_NUMERICHOST | C.NI_NUMERICSERV, int32(r)]),
      };
    case 'getHostByName':
    case 'getHostByNameEx':
      return { hostname: host(r) };
    case 'getHostByAddr':
      return { ipAddress: host(r, r.bool()) };
    case 'getFqdn':
      return { name: r.bool(0.2) ? r.pick(['', ' ', '0.0.0.0', '::', ' localhost ']) : host(r) };
    case 'getServByName':
      return { serviceName: serviceName(r), protocolName: optional(r, () => protoName(r)) };
    case 'getServByPort':
      return { port: uint32(r), protocolName: optional(r, () => protoName(r)) };
    case 'getProtoByName':
      return { protocolName: protoName(r) };
    case 'ifNameToIndex':
      return { name: r.pick([Buffer.from('lo'), Buffer.from('eth0'), Buffer.from('nope0'), Buffer.from('l\0o'), Buffer.alloc(0), r.bytes(r.range(0, 20)), Buffer.alloc(r.range(16, 2000), 0x61)]) };
    case 'ifIndexToName':
      return { index: uint32(r) };
    case 'setHostName':
      // Only ever sent to a daemon in its own UTS namespace (the fixture's hostname option).
      return { name: r.pick([Buffer.from('sb-fuzz'), Buffer.alloc(0), Buffer.alloc(64, 0x61), Buffer.alloc(65, 0x61), Buffer.from('a\0b'), r.bytes(r.range(0, 80))]) };
    default:
      // getHostName, ifNameIndex, or a method newer than this generator: an empty request.
      return {};
  }
}

/** A random session id as the wire may carry it (never a live one). */
export function bogusSessionId(r: Rng): string {
  return r.pick([
    '', 'deadbeef', r.bytes(16).toString('hex'), r.bytes(16).toString('hex').toUpperCase(), 'x'.repeat(r.range(1, 3000)),
    `${r.bytes(16).toString('hex')}-`, 'g'.repeat(32), r.bytes(15).toString('hex') + 'zz',
  ]);
}
