// Python's ancillary data tuples (cmsg_level, cmsg_type, cmsg_data bytes) <-> the contract's typed
// ControlMessage. The broker rebuilds the kernel bytes from the typed fields (it never takes raw
// bytes that could name one of its fds), so the SDK parses what a Python program packs (struct
// ucred, in_pktinfo, array('i', fds) of handle numbers, ...) and packs what it receives the same
// way the kernel would have laid it out. Unknown (level, type) pairs travel raw ("other"): the
// broker accepts those from host root only.
import type { ControlMessage } from '../proto/gen/sockbroker/v1/socket.js';
import { inetNtop, inetPton } from './pure.js';
import { pyType, toBytes, toCInt } from './pytypes.js';

/** One ancillary data item as Python has it. */
export type AncItem = [number, number, Buffer];

/** The constants the conversion needs (the broker host's values). */
export interface AncConstants {
  SOL_SOCKET: number;
  SCM_RIGHTS: number;
  SCM_CREDENTIALS: number;
  IPPROTO_IP: number;
  IPPROTO_IPV6: number;
  IP_PKTINFO: number;
  IP_TTL: number;
  IP_TOS: number;
  IPV6_PKTINFO: number;
  IPV6_HOPLIMIT: number;
  IPV6_TCLASS: number;
  SO_TIMESTAMP: number;
}

const INT = 4;
const AF_INET = 2;
const AF_INET6 = 10;

/** sendmsg's ancdata argument: an iterable of (level, type, data) sequences, as CPython checks it. */
export function toControlMessages(ancdata: unknown, k: AncConstants): ControlMessage[] {
  if (ancdata === undefined || ancdata === null) return [];
  if (typeof ancdata !== 'object' || !(Symbol.iterator in (ancdata as object))) {
    throw new TypeError('sendmsg() argument 2 must be an iterable');
  }
  const out: ControlMessage[] = [];
  for (const item of ancdata as Iterable<unknown>) {
    if (!Array.isArray(item)) throw new TypeError(`[sendmsg() ancillary data items]() argument must be 3-item sequence, not ${pyType(item)}`);
    if (item.length !== 3) throw new TypeError(`[sendmsg() ancillary data items]() argument must be sequence of length 3, not ${item.length}`);
    const level = toCInt(item[0]);
    const type = toCInt(item[1]);
    const data = toBytes(item[2]);
    out.push(typed(level, type, data, k));
  }
  return out;
}

const is = (level: number, type: number, l: number, t: number): boolean => level === l && type === t;

function typed(level: number, type: number, data: Buffer, k: AncConstants): ControlMessage {
  const n = data.length;
  if (is(level, type, k.SOL_SOCKET, k.SCM_RIGHTS)) {
    // The kernel takes whole ints only; Python programs pack them with array('i', fds).
    const handles = Array.from({ length: Math.floor(n / INT) }, (_, i) => data.readInt32LE(i * INT));
    return { level, type, rights: { handles } };
  }
  if (is(level, type, k.SOL_SOCKET, k.SCM_CREDENTIALS) && n === 12) {
    return { level, type, credentials: { pid: data.readInt32LE(0), uid: data.readUInt32LE(4), gid: data.readUInt32LE(8) } };
  }
  if (is(level, type, k.IPPROTO_IP, k.IP_PKTINFO) && n === 12) {
    return { level, type, inPktinfo: { ifindex: data.readInt32LE(0), specDst: inetNtop(AF_INET, data.subarray(4, 8)), addr: inetNtop(AF_INET, data.subarray(8, 12)) } };
  }
  if (is(level, type, k.IPPROTO_IPV6, k.IPV6_PKTINFO) && n === 20) {
    return { level, type, in6Pktinfo: { addr: inetNtop(AF_INET6, data.subarray(0, 16)), ifindex: data.readUInt32LE(16) } };
  }
  const intItem = is(level, type, k.IPPROTO_IP, k.IP_TTL) || is(level, type, k.IPPROTO_IP, k.IP_TOS)
    || is(level, type, k.IPPROTO_IPV6, k.IPV6_HOPLIMIT) || is(level, type, k.IPPROTO_IPV6, k.IPV6_TCLASS);
  if (intItem && n === INT) return { level, type, intValue: data.readInt32LE(0) };
  if (is(level, type, k.IPPROTO_IP, k.IP_TOS) && n === 1) return { level, type, byteValue: data[0]! };
  if (is(level, type, k.SOL_SOCKET, k.SO_TIMESTAMP) && n === 16) {
    return { level, type, timeval: { sec: Number(data.readBigInt64LE(0)), usec: Number(data.readBigInt64LE(8)) } };
  }
  return { level, type, other: Buffer.from(data) };
}

/** A received item as Python's (level, type, data): data laid out as the kernel delivers it. */
export function fromControlMessage(c: ControlMessage): AncItem {
  let data: Buffer;
  if (c.rights) {
    data = Buffer.alloc(INT * c.rights.handles.length);
    c.rights.handles.forEach((h, i) => data.writeInt32LE(h, i * INT));
  } else if (c.credentials) {
    data = Buffer.alloc(12);
    data.writeInt32LE(c.credentials.pid, 0);
    data.writeUInt32LE(c.credentials.uid >>> 0, 4);
    data.writeUInt32LE(c.credentials.gid >>> 0, 8);
  } else if (c.inPktinfo) {
    data = Buffer.alloc(12);
    data.writeInt32LE(c.inPktinfo.ifindex, 0);
    inetPton(AF_INET, c.inPktinfo.specDst).copy(data, 4);
    inetPton(AF_INET, c.inPktinfo.addr).copy(data, 8);
  } else if (c.in6Pktinfo) {
    data = Buffer.alloc(20);
    inetPton(AF_INET6, c.in6Pktinfo.addr).copy(data, 0);
    data.writeUInt32LE(c.in6Pktinfo.ifindex >>> 0, 16);
  } else if (c.intValue !== undefined) {
    data = Buffer.alloc(INT);
    data.writeInt32LE(c.intValue);
  } else if (c.byteValue !== undefined) {
    data = Buffer.from([c.byteValue]);
  } else if (c.timeval) {
    data = Buffer.alloc(16);
    data.writeBigInt64LE(BigInt(c.timeval.sec), 0);
    data.writeBigInt64LE(BigInt(c.timeval.usec), 8);
  } else {
    data = Buffer.from(c.other ?? Buffer.alloc(0));
  }
  return [c.level, c.type, data];
}
