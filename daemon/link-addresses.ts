// Addresses of the link-level and other Linux families, as CPython spells them: AF_PACKET
// (ifname, proto, pkttype, hatype, addr), AF_CAN (ifname,), AF_TIPC (addr_type, v1, v2, v3,
// scope). Interface names are looked up in the socket's network namespace by `ifs`.
import { linux as C } from '../native/constants.js';
import { decodeSockaddrCan, decodeSockaddrLl, encodeSockaddrCan, encodeSockaddrLl } from '../native/link.js';
import type { Address } from '../proto/gen/sockbroker/v1/address.js';
import { argumentError, osErrorNamed } from './errors.js';

/** Interface name <-> index in one network namespace. */
export interface Interfaces {
  /** The index, or 0 when there is no such interface. */
  index(name: string): number;
  /** The name; throws for an unknown index. */
  name(index: number): string;
}

const SOCKADDR_TIPC = 16;

function ifindexOf(ifs: Interfaces, name: string, syscall: string): number {
  if (name.length === 0) return 0;
  if (Buffer.byteLength(name) >= 16 || name.includes('\0')) throw osErrorNamed('ENODEV', syscall);
  const index = ifs.index(name);
  if (index === 0) throw osErrorNamed('ENODEV', syscall);
  return index;
}

const u32 = (v: number, what: string): number => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw argumentError('overflow', `${what} out of range`, what);
  return v;
};

/** The sockaddr for an address of a link family, or null when `family` is not one of them. */
export function linkSockaddr(a: Address, family: number, syscall: string, ifs: Interfaces): Buffer | null {
  if (family === C.AF_PACKET) {
    const p = a.packet;
    if (!p) throw argumentError('type', `${syscall}(): AF_PACKET address must be a tuple (ifname, proto[, pkttype[, hatype[, addr]]])`, 'address');
    if (p.proto > 0xffff || p.pkttype > 0xff || p.hatype > 0xffff) throw argumentError('overflow', `${syscall}(): AF_PACKET field out of range`, 'address');
    if (p.addr.length > 8) throw argumentError('value', 'Hardware address must be 8 bytes or less', 'address');
    return encodeSockaddrLl({ protocol: p.proto, ifindex: ifindexOf(ifs, p.ifname, syscall), hatype: p.hatype, pkttype: p.pkttype, addr: Buffer.from(p.addr) });
  }
  if (family === C.AF_CAN) {
    if (!a.can) throw argumentError('type', `${syscall}(): AF_CAN address must be a tuple (interface, )`, 'address');
    return encodeSockaddrCan(ifindexOf(ifs, a.can.ifname, syscall));
  }
  if (family === C.AF_TIPC) {
    const t = a.tipc;
    if (!t) throw argumentError('type', `${syscall}(): AF_TIPC address must be a tuple (addr_type, v1, v2, v3[, scope])`, 'address');
    if (t.addrType > 0xff || t.scope > 0x7f) throw argumentError('overflow', `${syscall}(): AF_TIPC field out of range`, 'address');
    const b = Buffer.alloc(SOCKADDR_TIPC);
    b.writeUInt16LE(C.AF_TIPC, 0);
    b.writeUInt8(t.addrType, 2);
    b.writeInt8(t.scope, 3);
    if (t.addrType === C.TIPC_ADDR_ID) {
      // struct tipc_portid { __u32 ref; __u32 node; }: v1 is the node, v2 the ref.
      b.writeUInt32LE(u32(t.v2, 'ref'), 4);
      b.writeUInt32LE(u32(t.v1, 'node'), 8);
    } else {
      b.writeUInt32LE(u32(t.v1, 'v1'), 4);
      b.writeUInt32LE(u32(t.v2, 'v2'), 8);
      b.writeUInt32LE(u32(t.v3, 'v3'), 12);
    }
    return b;
  }
  return null;
}

/** The address of a link-family sockaddr, or null when it is not one of them. */
export function linkAddress(buf: Buffer, ifs: Interfaces | undefined): Address | null {
  if (buf.length < 2) return null;
  const family = buf.readUInt16LE(0);
  const name = (index: number): string => {
    if (index === 0 || !ifs) return '';
    try {
      return ifs.name(index);
    } catch {
      return '';
    }
  };
  if (family === C.AF_PACKET && buf.length >= 12) {
    const ll = decodeSockaddrLl(buf);
    return { packet: { ifname: name(ll.ifindex), proto: ll.protocol, pkttype: ll.pkttype, hatype: ll.hatype, addr: ll.addr } };
  }
  if (family === C.AF_CAN && buf.length >= 8) return { can: { ifname: name(decodeSockaddrCan(buf).ifindex) } };
  if (family === C.AF_TIPC && buf.length >= SOCKADDR_TIPC) {
    const addrType = buf.readUInt8(2);
    const scope = buf.readInt8(3) & 0x7f;
    if (addrType === C.TIPC_ADDR_ID) return { tipc: { addrType, v1: buf.readUInt32LE(8), v2: buf.readUInt32LE(4), v3: 0, scope } };
    return { tipc: { addrType, v1: buf.readUInt32LE(4), v2: buf.readUInt32LE(8), v3: buf.readUInt32LE(12), scope } };
  }
  return null;
}

