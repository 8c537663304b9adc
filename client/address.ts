// Address tuples <-> the contract's Address, checked as CPython's getsockaddrarg checks them.
// AF_INET: [host, port]; AF_INET6: [host, port, flowinfo?, scope_id?]; AF_UNIX: a path string,
// or a Buffer (an abstract name when it starts with NUL).
import type { Address } from '../proto/gen/sockbroker/v1/address.js';
import { OverflowError, ValueError } from './errors.js';
import { pyType, toInt } from './pytypes.js';

/** What the SDK accepts and returns as an address. */
export type AddressTuple =
  | [string, number]
  | [string, number, number, number]
  | string
  | Buffer
  | [number, Buffer]
  | [string, number, number?, number?, Buffer?]
  | [string]
  | [number, number, number, number, number?]
  | [number, number];

export interface Families {
  AF_INET: number;
  AF_INET6: number;
  AF_UNIX: number;
  AF_PACKET?: number;
  AF_CAN?: number;
  AF_TIPC?: number;
  AF_RDS?: number;
  AF_NETLINK?: number;
}

function u32(v: unknown): number {
  const n = toInt(v);
  if (n < 0 || n > 0xffffffff) throw new OverflowError('Python int too large to convert to C unsigned long');
  return n;
}

function host(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('latin1');
  throw new TypeError(`str, bytes or bytearray expected, not ${pyType(v)}`);
}

function port(v: unknown, fn: string): number {
  const p = toInt(v);
  if (p < 0 || p > 0xffff) throw new OverflowError(`${fn}(): port must be 0-65535.`);
  return p;
}

/** The contract Address for a tuple given to `fn` on a socket of `family`. */
export function toAddress(addr: unknown, family: number, fam: Families, fn: string): Address {
  if (family === fam.AF_PACKET) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_PACKET address must be tuple, not ${pyType(addr)}`);
    if (addr.length < 2 || addr.length > 5) throw new TypeError(`${fn}(): AF_PACKET address must be a tuple (ifname, proto[, pkttype[, hatype[, addr]]])`);
    if (typeof addr[0] !== 'string') throw new TypeError(`argument 1 must be str, not ${pyType(addr[0])}`);
    const hw = addr.length > 4 ? addr[4] : Buffer.alloc(0);
    if (!(hw instanceof Uint8Array)) throw new TypeError(`a bytes-like object is required, not '${pyType(hw)}'`);
    if (hw.length > 8) throw new ValueError('Hardware address must be 8 bytes or less');
    const proto = toInt(addr[1]);
    if (proto < 0 || proto > 0xffff) throw new OverflowError(`${fn}(): proto must be 0-65535.`);
    return {
      packet: {
        ifname: addr[0],
        proto,
        pkttype: addr.length > 2 ? u32(addr[2]) : 0,
        hatype: addr.length > 3 ? u32(addr[3]) : 0,
        addr: Buffer.from(hw),
      },
    };
  }
  if (family === fam.AF_CAN) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_CAN address must be tuple, not ${pyType(addr)}`);
    if (addr.length !== 1 || typeof addr[0] !== 'string') throw new TypeError('AF_CAN address must be a tuple (interface, )');
    return { can: { ifname: addr[0] } };
  }
  if (family === fam.AF_TIPC) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_TIPC address must be tuple, not ${pyType(addr)}`);
    if (addr.length < 4 || addr.length > 5) throw new TypeError('AF_TIPC address must be a tuple (addr_type, v1, v2, v3[, scope])');
    return { tipc: { addrType: u32(addr[0]), v1: u32(addr[1]), v2: u32(addr[2]), v3: u32(addr[3]), scope: addr.length > 4 ? u32(addr[4]) : 0 } };
  }
  if (family === fam.AF_NETLINK) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_NETLINK address must be tuple, not ${pyType(addr)}`);
    if (addr.length !== 2) throw new TypeError('AF_NETLINK address must be a pair (pid, groups)');
    // CPython parses (pid, groups) with "II": unsigned ints taken modulo 2**32.
    const uint = (v: unknown): number => ((toInt(v) % 0x100000000) + 0x100000000) % 0x100000000;
    return { netlink: { pid: uint(addr[0]), groups: uint(addr[1]) } };
  }
  // RDS sockets take AF_INET addresses.
  if (family === fam.AF_INET || family === fam.AF_RDS) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_INET address must be tuple, not ${pyType(addr)}`);
    if (addr.length !== 2) throw new TypeError('AF_INET address must be a pair (host, port)');
    return { inet: { host: host(addr[0]), port: port(addr[1], fn) } };
  }
  if (family === fam.AF_INET6) {
    if (!Array.isArray(addr)) throw new TypeError(`${fn}(): AF_INET6 address must be tuple, not ${pyType(addr)}`);
    if (addr.length < 2 || addr.length > 4) {
      throw new TypeError('AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])');
    }
    const flowinfo = addr.length > 2 ? toInt(addr[2]) : 0;
    if (flowinfo < 0 || flowinfo > 0xfffff) throw new OverflowError(`${fn}(): flowinfo must be 0-1048575.`);
    // CPython parses scope_id with "I": an unsigned int taken modulo 2**32, never an error.
    const scopeId = addr.length > 3 ? ((toInt(addr[3]) % 0x100000000) + 0x100000000) % 0x100000000 : 0;
    return { inet6: { host: host(addr[0]), port: port(addr[1], fn), flowinfo, scopeId } };
  }
  if (family === fam.AF_UNIX) {
    if (typeof addr === 'string') return { unix: { path: Buffer.from(addr, 'utf8') } };
    if (addr instanceof Uint8Array) return { unix: { path: Buffer.from(addr) } };
    // CPython encodes a str, then parses the address as "y*".
    throw new TypeError(`a bytes-like object is required, not '${pyType(addr)}'`);
  }
  if (Array.isArray(addr) && addr.length === 2 && addr[1] instanceof Uint8Array) {
    return { raw: { family: toInt(addr[0]), data: Buffer.from(addr[1]) } };
  }
  throw new TypeError(`${fn}(): address of family ${family} is not supported by this SDK yet`);
}

/** The tuple for a contract Address, as CPython's makesockaddr returns it (null for none). */
export function fromAddress(a: Address | undefined): AddressTuple | null {
  if (!a) return null;
  if (a.inet) return [a.inet.host, a.inet.port];
  if (a.inet6) return [a.inet6.host, a.inet6.port, a.inet6.flowinfo, a.inet6.scopeId];
  if (a.unix) {
    const p = Buffer.from(a.unix.path);
    return p.length > 0 && p[0] === 0 ? p : p.toString('utf8');
  }
  if (a.raw) return [a.raw.family, Buffer.from(a.raw.data)];
  if (a.packet) return [a.packet.ifname, a.packet.proto, a.packet.pkttype, a.packet.hatype, Buffer.from(a.packet.addr)];
  if (a.can) return [a.can.ifname];
  if (a.netlink) return [a.netlink.pid, a.netlink.groups];
  if (a.tipc) return [a.tipc.addrType, a.tipc.v1, a.tipc.v2, a.tipc.v3, a.tipc.scope];
  return null;
}

/** str() of an address, as Python 3.4's socket repr embeds it (a path string is bare). */
export function reprAddress(t: AddressTuple): string {
  if (typeof t === 'string') return t;
  if (Buffer.isBuffer(t)) return `b'${[...t].map((c) => (c >= 32 && c < 127 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`)).join('')}'`;
  return `(${t.map((v) => (typeof v === 'string' ? `'${v}'` : Buffer.isBuffer(v) ? reprAddress(v) : String(v))).join(', ')})`;
}
