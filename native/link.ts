// Link-layer pieces: interface names <-> indexes (synchronous, so the daemon can look them up
// with its thread inside a caller's network namespace), and the codecs of struct sockaddr_ll
// (AF_PACKET), struct sockaddr_can (AF_CAN) and struct packet_mreq. Also sethostname(2).
import { DataType, load, open } from 'ffi-rs';
import { abi, linux, os } from './constants.js';
import { errnoException } from './errno.js';

open({ library: 'libc', path: '' });

interface Result {
  value: number;
  errnoCode: number;
}

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): Result {
  return load({ library: 'libc', funcName, retType, paramsType, paramsValue, errno: true }) as unknown as Result;
}

const IFNAMSIZ = os.IFNAMSIZ;

/** if_nametoindex(name) in this thread's network namespace: 0 when there is no such interface. */
export function ifNameToIndex(name: string): number {
  const b = Buffer.from(name, 'utf8');
  if (b.length === 0 || b.length >= IFNAMSIZ || b.includes(0)) return 0;
  return call('if_nametoindex', DataType.U32, [DataType.U8Array], [Buffer.concat([b, Buffer.alloc(1)])]).value >>> 0;
}

/** if_indextoname(index) in this thread's network namespace; ENXIO for an unknown index. */
export function ifIndexToName(index: number): string {
  const buf = Buffer.alloc(IFNAMSIZ);
  const r = call('if_indextoname', DataType.I64, [DataType.U32, DataType.U8Array], [index >>> 0, buf]);
  if (!Number(r.value)) throw errnoException(r.errnoCode, 'if_indextoname');
  const end = buf.indexOf(0);
  return buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
}

/** struct sockaddr_ll, with the protocol in host order (the codec swaps it). */
export interface SockaddrLl {
  protocol: number;
  ifindex: number;
  hatype: number;
  pkttype: number;
  addr: Buffer;
}

/** Encodes struct sockaddr_ll (20 bytes; sll_addr holds up to 8 bytes). */
export function encodeSockaddrLl(sa: SockaddrLl): Buffer {
  if (sa.addr.length > 8) throw new RangeError('AF_PACKET hardware address is at most 8 bytes');
  const b = Buffer.alloc(abi.sizeof_sockaddr_ll);
  b.writeUInt16LE(linux.AF_PACKET, 0);
  b.writeUInt16BE(sa.protocol & 0xffff, 2);
  b.writeInt32LE(sa.ifindex, 4);
  b.writeUInt16LE(sa.hatype & 0xffff, 8);
  b.writeUInt8(sa.pkttype & 0xff, 10);
  b.writeUInt8(sa.addr.length, 11);
  sa.addr.copy(b, 12);
  return b;
}

export function decodeSockaddrLl(b: Buffer): SockaddrLl {
  if (b.length < 12 || b.readUInt16LE(0) !== linux.AF_PACKET) throw new RangeError('not a sockaddr_ll');
  const halen = Math.min(b.readUInt8(11), 8, Math.max(0, b.length - 12));
  return {
    protocol: b.readUInt16BE(2),
    ifindex: b.readInt32LE(4),
    hatype: b.readUInt16LE(8),
    pkttype: b.readUInt8(10),
    addr: Buffer.from(b.subarray(12, 12 + halen)),
  };
}

/** Encodes struct sockaddr_can for an interface index (the tuple (ifname,) of CAN_RAW/CAN_BCM). */
export function encodeSockaddrCan(ifindex: number): Buffer {
  const b = Buffer.alloc(abi.sizeof_sockaddr_can);
  b.writeUInt16LE(linux.AF_CAN, 0);
  b.writeInt32LE(ifindex, 4);
  return b;
}

export function decodeSockaddrCan(b: Buffer): { ifindex: number } {
  if (b.length < 8 || b.readUInt16LE(0) !== linux.AF_CAN) throw new RangeError('not a sockaddr_can');
  return { ifindex: b.readInt32LE(4) };
}

/** struct packet_mreq { int mr_ifindex; unsigned short mr_type, mr_alen; unsigned char mr_address[8]; } */
export function decodePacketMreq(b: Buffer): { ifindex: number; type: number; alen: number; address: Buffer } {
  if (b.length < abi.sizeof_packet_mreq) throw new RangeError(`packet_mreq is ${abi.sizeof_packet_mreq} bytes`);
  return { ifindex: b.readInt32LE(0), type: b.readUInt16LE(4), alen: b.readUInt16LE(6), address: Buffer.from(b.subarray(8, 16)) };
}

export function encodePacketMreq(ifindex: number, type: number): Buffer {
  const b = Buffer.alloc(abi.sizeof_packet_mreq);
  b.writeInt32LE(ifindex, 0);
  b.writeUInt16LE(type, 4);
  return b;
}

/** sethostname(2) for this process's UTS namespace; `length` may be less than the buffer's (0 = empty). */
export function sethostname(name: Buffer, length = name.length): void {
  const r = call('sethostname', DataType.I32, [DataType.U8Array, DataType.U64], [name, length]);
  if (r.value === -1) throw errnoException(r.errnoCode, 'sethostname');
}

/** Copies `n` bytes from a C pointer (the results of getifaddrs/if_nameindex). */
function readMemory(ptr: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  if (n > 0) load({ library: 'libc', funcName: 'memcpy', retType: DataType.I64, paramsType: [DataType.U8Array, DataType.I64, DataType.I64], paramsValue: [out, ptr, n] });
  return out;
}

function readCString(ptr: number): string {
  if (!ptr) return '';
  const len = Number(load({ library: 'libc', funcName: 'strlen', retType: DataType.I64, paramsType: [DataType.I64], paramsValue: [ptr] }));
  return readMemory(ptr, len).toString('utf8');
}

/** if_nameindex() in this thread's network namespace: [index, name] pairs. */
export function ifNameIndex(): Array<[number, string]> {
  const r = call('if_nameindex', DataType.I64, [], []);
  const first = Number(r.value);
  if (!first) throw errnoException(r.errnoCode, 'if_nameindex');
  const out: Array<[number, string]> = [];
  try {
    for (let p = first; ; p += 16) {
      const e = readMemory(p, 16); // struct if_nameindex { unsigned if_index; char *if_name; } on LP64
      const index = e.readUInt32LE(0);
      if (index === 0) break;
      out.push([index, readCString(Number(e.readBigUInt64LE(8)))]);
    }
  } finally {
    load({ library: 'libc', funcName: 'if_freenameindex', retType: DataType.Void, paramsType: [DataType.I64], paramsValue: [first] });
  }
  return out;
}

/** The IPv4 addresses of this thread's network namespace: [ifname, dotted quad] pairs (getifaddrs). */
export function ipv4Addresses(): Array<[string, string]> {
  const head = Buffer.alloc(8);
  const r = call('getifaddrs', DataType.I32, [DataType.U8Array], [head]);
  if (r.value === -1) throw errnoException(r.errnoCode, 'getifaddrs');
  const first = Number(head.readBigUInt64LE(0));
  const out: Array<[string, string]> = [];
  try {
    for (let p = first; p; ) {
      const ifa = readMemory(p, 56); // struct ifaddrs on LP64: next, name, flags, addr, netmask, ifu, data
      const addr = Number(ifa.readBigUInt64LE(24));
      if (addr) {
        const sa = readMemory(addr, 8);
        if (sa.readUInt16LE(0) === linux.AF_INET) out.push([readCString(Number(ifa.readBigUInt64LE(8))), [...sa.subarray(4, 8)].join('.')]);
      }
      p = Number(ifa.readBigUInt64LE(0));
    }
  } finally {
    if (first) load({ library: 'libc', funcName: 'freeifaddrs', retType: DataType.Void, paramsType: [DataType.I64], paramsValue: [first] });
  }
  return out;
}
