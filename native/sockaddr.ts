// struct sockaddr codecs, one per family, mirroring CPython's getsockaddrarg
// (encode) and makesockaddr (decode). Ports and flowinfo are big-endian, as
// the kernel wants; sa_family and sin6_scope_id are in host order.

import { endianness } from 'node:os';
import { abi, linux } from './constants.js';
import { inetNtop, inetPton } from './libc.js';

if (endianness() !== 'LE') throw new Error('native/sockaddr: little-endian hosts only');

export type Sockaddr =
  /** AF_INET; host is a dotted quad. */
  | { family: 'inet'; host: string; port: number }
  /** AF_INET6; host is glibc's inet_ntop text, without a %scope suffix. */
  | { family: 'inet6'; host: string; port: number; flowinfo: number; scopeId: number }
  /** AF_UNIX; path[0] === 0 means abstract; an empty path is unnamed. */
  | { family: 'unix'; path: Buffer }
  /** AF_NETLINK: port id and multicast groups mask. */
  | { family: 'netlink'; pid: number; groups: number }
  /** Any other family: the raw bytes after sa_family. */
  | { family: 'other'; familyNumber: number; data: Buffer };

const AF_INET = linux.AF_INET;
const AF_INET6 = linux.AF_INET6;
const AF_UNIX = linux.AF_UNIX;
const AF_NETLINK = linux.AF_NETLINK;
const NL_LEN = abi.sizeof_sockaddr_nl;
const SUN_PATH_AT = abi.offsetof_sun_path;
const SUN_PATH_LEN = abi.sizeof_sun_path;
const IN_LEN = abi.sizeof_sockaddr_in;
const IN6_LEN = abi.sizeof_sockaddr_in6;

function view(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function validateUint(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  }
  if (value < 0 || value > max) throw new RangeError(`${name} must be 0-${max}, got ${value}`);
  return value;
}

function validateBytes(value: unknown, name: string): Buffer {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Buffer`);
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

// IPv4 text in pure JS (the hot path of every UDP sendto/recvfrom), with
// exactly glibc inet_pton's grammar: four decimal parts 0-255, no leading
// zeros. IPv6 text goes through libc for glibc's exact formatting.
const IPV4_PART = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${IPV4_PART}\\.${IPV4_PART}\\.${IPV4_PART}\\.${IPV4_PART}$`);

/** Whether `text` is an IPv4 address exactly as glibc's inet_pton(AF_INET) reads one. */
export function isIPv4Text(text: string): boolean {
  return IPV4.test(text);
}

function hostBytes(family: 'inet' | 'inet6', host: unknown): Buffer {
  if (typeof host !== 'string') throw new TypeError(`${family} host must be a string, got ${typeof host}`);
  const v6 = family === 'inet6';
  const bytes = v6 ? inetPton(AF_INET6, host) : IPV4.test(host) ? Buffer.from(host.split('.').map(Number)) : null;
  if (bytes === null) {
    throw new TypeError(`${family} host is not a valid ${v6 ? 'IPv6' : 'IPv4'} address: ${JSON.stringify(host)}`);
  }
  return bytes;
}

/**
 * The bytes of a struct sockaddr, exactly addrlen long: 16 for inet, 28 for
 * inet6; for unix 2 + path length, plus a trailing NUL for a filesystem path
 * (so at most 107 path bytes, 108 for an abstract name), and just the family
 * (2 bytes: autobind) for an empty path. Throws TypeError for a bad host or
 * a wrong type, RangeError for a port, flowinfo, scope id or path out of range.
 */
export function encodeSockaddr(sa: Sockaddr): Buffer {
  switch (sa.family) {
    case 'inet': {
      const addr = hostBytes('inet', sa.host);
      const port = validateUint(sa.port, 'port', 0xffff);
      const b = Buffer.alloc(IN_LEN);
      const v = view(b);
      v.setUint16(0, AF_INET, true);
      v.setUint16(2, port);
      b.set(addr, 4);
      return b;
    }
    case 'inet6': {
      const addr = hostBytes('inet6', sa.host);
      const port = validateUint(sa.port, 'port', 0xffff);
      const flowinfo = validateUint(sa.flowinfo, 'flowinfo', 0xfffff);
      const scopeId = validateUint(sa.scopeId, 'scopeId', 0xffffffff);
      const b = Buffer.alloc(IN6_LEN);
      const v = view(b);
      v.setUint16(0, AF_INET6, true);
      v.setUint16(2, port);
      v.setUint32(4, flowinfo);
      b.set(addr, 8);
      v.setUint32(24, scopeId, true);
      return b;
    }
    case 'unix': {
      const path = validateBytes(sa.path, 'unix path');
      const abstract = path.length === 0 || path[0] === 0;
      // A filesystem path needs room for its terminating NUL, as in CPython.
      const max = abstract ? SUN_PATH_LEN : SUN_PATH_LEN - 1;
      if (path.length > max) {
        throw new RangeError(`AF_UNIX path too long: ${path.length} bytes, at most ${max}`);
      }
      const b = Buffer.alloc(SUN_PATH_AT + path.length + (abstract ? 0 : 1));
      view(b).setUint16(0, AF_UNIX, true);
      b.set(path, SUN_PATH_AT);
      return b;
    }
    case 'netlink': {
      // struct sockaddr_nl: family, pad (u16), nl_pid, nl_groups (host order).
      const b = Buffer.alloc(NL_LEN);
      const v = view(b);
      v.setUint16(0, AF_NETLINK, true);
      v.setUint32(4, validateUint(sa.pid, 'pid', 0xffffffff), true);
      v.setUint32(8, validateUint(sa.groups, 'groups', 0xffffffff), true);
      return b;
    }
    case 'other': {
      const familyNumber = validateUint(sa.familyNumber, 'familyNumber', 0xffff);
      const data = validateBytes(sa.data, 'data');
      const b = Buffer.alloc(2 + data.length);
      view(b).setUint16(0, familyNumber, true);
      b.set(data, 2);
      return b;
    }
    default:
      throw new TypeError(`unknown sockaddr family: ${String((sa as { family: unknown }).family)}`);
  }
}

/**
 * The Sockaddr in buf, which is exactly the addrlen the kernel returned.
 * 0 or 2 bytes decode as an unnamed unix address. A filesystem unix path ends
 * at its first NUL; an abstract name keeps every byte. The result never
 * shares memory with buf.
 */
export function decodeSockaddr(buf: Buffer): Sockaddr {
  if (buf.length === 0) return { family: 'unix', path: Buffer.alloc(0) };
  if (buf.length < 2) throw new RangeError(`sockaddr too short: ${buf.length} byte`);
  const v = view(buf);
  const family = v.getUint16(0, true);
  if (family === AF_INET) {
    need(buf, IN_LEN, 'AF_INET');
    return { family: 'inet', host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port: v.getUint16(2) };
  }
  if (family === AF_INET6) {
    need(buf, IN6_LEN, 'AF_INET6');
    return {
      family: 'inet6',
      host: inetNtop(AF_INET6, buf.subarray(8, 24)),
      port: v.getUint16(2),
      flowinfo: v.getUint32(4),
      scopeId: v.getUint32(24, true),
    };
  }
  if (family === AF_UNIX) {
    const path = buf.subarray(SUN_PATH_AT);
    if (path.length > 0 && path[0] !== 0) {
      const nul = path.indexOf(0);
      return { family: 'unix', path: Buffer.from(nul === -1 ? path : path.subarray(0, nul)) };
    }
    return { family: 'unix', path: Buffer.from(path) };
  }
  if (family === AF_NETLINK && buf.length >= NL_LEN) {
    return { family: 'netlink', pid: v.getUint32(4, true), groups: v.getUint32(8, true) };
  }
  return { family: 'other', familyNumber: family, data: Buffer.from(buf.subarray(2)) };
}

function need(buf: Buffer, n: number, what: string): void {
  if (buf.length < n) throw new RangeError(`${what} sockaddr needs ${n} bytes, got ${buf.length}`);
}
