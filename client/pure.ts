// The socket module's pure functions, run locally in the SDK (they need no host): byte order,
// IPv4/IPv6 text <-> bytes exactly as glibc's inet_aton/inet_pton/inet_ntop do it, and CMSG_LEN /
// CMSG_SPACE for an ABI. Arguments are checked as CPython's PyArg_Parse formats check them, with
// the same exception classes and messages (python3 is the reference). The named exports assume
// Linux values (AF_INET 2, AF_INET6 10) and the x86_64/aarch64 cmsg ABI; the module object from
// connect() carries the same functions bound to the broker host's constants and ABI.
import { endianness } from 'node:os';
import { OSError, OverflowError, UnicodeEncodeError, ValueError, makeOSError } from './errors.js';
import { notBuffer, pyType } from './pytypes.js';

/** What an integer argument may be in JS: a number, a bigint, or a boolean (Python's bool is an int). */
export type PyInt = number | bigint | boolean;

const LONG_MIN = -(2n ** 63n);
const LONG_MAX = 2n ** 63n - 1n;
const ULONG_MAX = 2n ** 64n - 1n;
const INT_MIN = -(2n ** 31n);
const INT_MAX = 2n ** 31n - 1n;

function isInt(v: unknown): v is PyInt {
  return (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint' || typeof v === 'boolean';
}

/** PyNumber_Index: the integer value, or TypeError "'T' object cannot be interpreted as an integer". */
export function pyIndex(v: unknown): bigint {
  if (!isInt(v)) throw new TypeError(`'${pyType(v)}' object cannot be interpreted as an integer`);
  return typeof v === 'boolean' ? (v ? 1n : 0n) : BigInt(v);
}

/** The "i" format: a C int (OverflowError as CPython words it). */
export function pyCInt(v: unknown): number {
  const n = pyIndex(v);
  if (n < LONG_MIN || n > LONG_MAX) throw new OverflowError('Python int too large to convert to C long');
  if (n > INT_MAX) throw new OverflowError('signed integer is greater than maximum');
  if (n < INT_MIN) throw new OverflowError('signed integer is less than minimum');
  return Number(n);
}

/** The "n" format: a C ssize_t of `bits` bits. */
function pySsize(v: unknown, bits: number): bigint {
  const n = pyIndex(v);
  const max = 2n ** BigInt(bits - 1) - 1n;
  if (n > max || n < -max - 1n) throw new OverflowError('Python int too large to convert to C ssize_t');
  return n;
}

/** PyLong_AsUnsignedLong on an int argument (64-bit unsigned long). */
export function pyUnsignedLong(n: bigint): bigint {
  if (n < 0n) throw new OverflowError("can't convert negative value to unsigned int");
  if (n > ULONG_MAX) throw new OverflowError('Python int too large to convert to C unsigned long');
  return n;
}

/** A str argument of `fn` (the "s" format): TypeError for another type, ValueError for a NUL. */
function pyStr(v: unknown, fn: string, arg: string): string {
  if (typeof v !== 'string') throw new TypeError(`${fn}() ${arg} must be str, not ${v === null || v === undefined ? 'None' : pyType(v)}`);
  if (v.includes('\0')) throw valueError('embedded null character');
  return v;
}

/** Python's UTF-8 encoding of a str: lone surrogates are a UnicodeEncodeError, as in CPython. */
export function utf8(s: string): Buffer {
  const m = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.exec(s);
  if (m) {
    const pos = [...s.slice(0, m.index)].length;
    const code = m[0].charCodeAt(0).toString(16);
    throw new UnicodeEncodeError(`'utf-8' codec can't encode character '\\u${code}' in position ${pos}: surrogates not allowed`);
  }
  return Buffer.from(s, 'utf8');
}

/** A bytes-like argument ("y*"): 3.4's TypeError "'T' does not support the buffer interface". */
function pyBytes(v: unknown): Buffer {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  throw notBuffer(v);
}

function valueError(message: string): ValueError {
  return new ValueError(message);
}

const LITTLE = endianness() === 'LE';

function swap16(x: number): number {
  return LITTLE ? ((x & 0xff) << 8) | (x >> 8) : x;
}

function swap32(x: number): number {
  return LITTLE ? (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0 : x;
}

/** ntohs/htons: a C int that must fit 16 bits unsigned. */
function short(fn: string, x: unknown): number {
  const n = pyCInt(x);
  if (n < 0) throw new OverflowError(`${fn}: can't convert negative Python int to C 16-bit unsigned integer`);
  if (n > 0xffff) throw new OverflowError(`${fn}: Python int too large to convert to C 16-bit unsigned integer`);
  return n;
}

/** ntohl/htonl: any int that fits 32 bits unsigned. */
function long(x: unknown): number {
  if (!isInt(x)) throw new TypeError(`expected int, ${pyType(x)} found`);
  const n = pyUnsignedLong(pyIndex(x));
  if (n > 0xffffffffn) throw new OverflowError('int larger than 32 bits');
  return Number(n);
}

/** ntohs(x): 16-bit network to host byte order. */
export function ntohs(x: PyInt): number {
  return swap16(short('ntohs', x));
}

/** htons(x): 16-bit host to network byte order. */
export function htons(x: PyInt): number {
  return swap16(short('htons', x));
}

/** ntohl(x): 32-bit network to host byte order. */
export function ntohl(x: PyInt): number {
  return swap32(long(x));
}

/** htonl(x): 32-bit host to network byte order. */
export function htonl(x: PyInt): number {
  return swap32(long(x));
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const hexValue = (c: number): number =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
/** C isspace() in the C locale. */
const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);

/** glibc's inet_aton on bytes: 1-4 parts, each as C's strtoul(base 0) reads it; null if invalid. */
export function glibcInetAton(s: Buffer): Buffer | null {
  const max = [0xffffffff, 0xffffff, 0xffff, 0xff];
  const parts: number[] = [];
  let i = 0;
  let val = 0;
  for (;;) {
    if (!isDigit(s[i] ?? 0)) return null;
    // strtoul(cp, &end, 0): 0x + hex digit = hex, a leading 0 = octal, else decimal.
    let base = 10;
    if (s[i] === 0x30) {
      if ((s[i + 1] === 0x78 || s[i + 1] === 0x58) && hexValue(s[i + 2] ?? 0) >= 0) {
        base = 16;
        i += 2;
      } else base = 8;
    }
    let v = 0;
    for (;;) {
      const d = hexValue(s[i] ?? 0);
      if (d < 0 || d >= base) break;
      v = Math.min(v * base + d, 2 ** 40); // anything above 0xffffffff fails alike
      i++;
    }
    if (v > 0xffffffff) return null;
    val = v;
    if (s[i] === 0x2e) {
      if (parts.length > 2 || val > 0xff) return null;
      parts.push(val);
      i++;
    } else break;
  }
  const c = s[i] ?? 0;
  if (c !== 0 && !isSpace(c)) return null;
  if (val > max[parts.length]!) return null;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(val >>> 0);
  parts.forEach((p, k) => (out[k] = p));
  return out;
}

/** glibc's inet_pton4 on s[from..to): strict dotted quad, no leading zeros. */
function pton4(s: Buffer, from: number, to: number): Buffer | null {
  const out = Buffer.alloc(4);
  let sawDigit = false;
  let octets = 0;
  let t = 0;
  for (let i = from; i < to; i++) {
    const ch = s[i]!;
    if (isDigit(ch)) {
      const v = out[t]! * 10 + (ch - 0x30);
      if (sawDigit && out[t] === 0) return null;
      if (v > 255) return null;
      out[t] = v;
      if (!sawDigit) {
        if (++octets > 4) return null;
        sawDigit = true;
      }
    } else if (ch === 0x2e && sawDigit) {
      if (octets === 4) return null;
      t++;
      out[t] = 0;
      sawDigit = false;
    } else return null;
  }
  return octets < 4 ? null : out;
}

/** glibc's inet_pton6. */
function pton6(s: Buffer): Buffer | null {
  const tmp = Buffer.alloc(16);
  let tp = 0;
  let colonp = -1;
  let i = 0;
  const end = s.length;
  if (end === 0) return null;
  if (s[0] === 0x3a) {
    i++;
    if (i === end || s[i] !== 0x3a) return null;
  }
  let curtok = i;
  let xdigits = 0;
  let val = 0;
  while (i < end) {
    const ch = s[i++]!;
    const d = hexValue(ch);
    if (d >= 0) {
      if (xdigits === 4) return null;
      val = (val << 4) | d;
      xdigits++;
      continue;
    }
    if (ch === 0x3a) {
      curtok = i;
      if (xdigits === 0) {
        if (colonp >= 0) return null;
        colonp = tp;
        continue;
      } else if (i === end) return null;
      if (tp + 2 > 16) return null;
      tmp[tp++] = (val >> 8) & 0xff;
      tmp[tp++] = val & 0xff;
      xdigits = 0;
      val = 0;
      continue;
    }
    if (ch === 0x2e && tp + 4 <= 16) {
      const v4 = pton4(s, curtok, end);
      if (v4) {
        v4.copy(tmp, tp);
        tp += 4;
        xdigits = 0;
        break;
      }
    }
    return null;
  }
  if (xdigits > 0) {
    if (tp + 2 > 16) return null;
    tmp[tp++] = (val >> 8) & 0xff;
    tmp[tp++] = val & 0xff;
  }
  if (colonp >= 0) {
    if (tp === 16) return null;
    const n = tp - colonp;
    tmp.copy(tmp, 16 - n, colonp, tp);
    tmp.fill(0, colonp, 16 - n);
    tp = 16;
  }
  return tp === 16 ? tmp : null;
}

/** glibc's inet_ntop for 16 bytes: the longest run (>= 2) of zero groups as '::', first on ties. */
function ntop6(b: Buffer): string {
  const words = Array.from({ length: 8 }, (_, k) => b.readUInt16BE(2 * k));
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  for (let k = 0; k < 8; k++) {
    if (words[k] === 0) {
      if (cur.base === -1) cur = { base: k, len: 1 };
      else cur.len++;
    } else if (cur.base !== -1) {
      if (best.base === -1 || cur.len > best.len) best = cur;
      cur = { base: -1, len: 0 };
    }
  }
  if (cur.base !== -1 && (best.base === -1 || cur.len > best.len)) best = cur;
  if (best.base !== -1 && best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let k = 0; k < 8; k++) {
    if (best.base !== -1 && k >= best.base && k < best.base + best.len) {
      if (k === best.base) out += ':';
      continue;
    }
    if (k !== 0) out += ':';
    // An IPv4-compatible (::a.b.c.d) or IPv4-mapped (::ffff:a.b.c.d) address.
    if (k === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff))) {
      out += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      break;
    }
    out += words[k]!.toString(16);
  }
  if (best.base !== -1 && best.base + best.len === 8) out += ':';
  return out;
}

/** Address families the text functions know, and the broker's errno for any other. */
export interface PureContext {
  AF_INET: number;
  AF_INET6: number;
  /** sizeof(struct cmsghdr) and the cmsg alignment of the broker host. */
  sizeof_cmsghdr: number;
  cmsg_align: number;
  /** sizeof(long) = sizeof(ssize_t) of the broker host, in bytes. */
  sizeof_long: number;
}

/** Linux x86_64/aarch64 values: what the named exports use. */
export const LINUX_CONTEXT: PureContext = { AF_INET: 2, AF_INET6: 10, sizeof_cmsghdr: 16, cmsg_align: 8, sizeof_long: 8 };

/** The pure functions bound to a host's constants and ABI (what the module object carries). */
export function pureFunctions(ctx: PureContext) {
  const align = (n: bigint): bigint => {
    const a = BigInt(ctx.cmsg_align);
    return (n + a - 1n) & ~(a - 1n);
  };
  const hdr = (): bigint => align(BigInt(ctx.sizeof_cmsghdr));
  const SOCKLEN_T_LIMIT = INT_MAX; // CPython: socklen_t may be an int

  return {
    ntohs,
    htons,
    ntohl,
    htonl,

    /** inet_aton(ip_string): 4 bytes, accepting every form glibc's inet_aton does. */
    inetAton(ipString: string): Buffer {
      const s = pyStr(ipString, 'inet_aton', 'argument 1');
      const r = glibcInetAton(utf8(s));
      if (!r) throw new OSError('illegal IP address string passed to inet_aton');
      return r;
    },

    /** inet_ntoa(packed_ip): dotted quad of 4 bytes. */
    inetNtoa(packedIp: Uint8Array): string {
      const b = pyBytes(packedIp);
      if (b.length !== 4) throw new OSError('packed IP wrong length for inet_ntoa');
      return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
    },

    /** inet_pton(address_family, ip_string): 4 or 16 bytes, as glibc's inet_pton parses. */
    inetPton(addressFamily: PyInt, ipString: string): Buffer {
      const af = pyCInt(addressFamily);
      const s = pyStr(ipString, 'inet_pton', 'argument 2');
      const b = utf8(s);
      let r: Buffer | null;
      if (af === ctx.AF_INET) r = pton4(b, 0, b.length);
      else if (af === ctx.AF_INET6) r = pton6(b);
      else throw makeOSError(97, 'Address family not supported by protocol', 'EAFNOSUPPORT');
      if (!r) throw new OSError('illegal IP address string passed to inet_pton');
      return r;
    },

    /** inet_ntop(address_family, packed_ip): text as glibc's inet_ntop writes it. */
    inetNtop(addressFamily: PyInt, packedIp: Uint8Array): string {
      const af = pyCInt(addressFamily);
      const b = pyBytes(packedIp);
      if (af === ctx.AF_INET) {
        if (b.length !== 4) throw valueError('invalid length of packed IP address string');
        return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
      }
      if (af === ctx.AF_INET6) {
        if (b.length !== 16) throw valueError('invalid length of packed IP address string');
        return ntop6(b);
      }
      throw valueError(`unknown address family ${af}`);
    },

    /** CMSG_LEN(length): an ancillary item's length without trailing padding. */
    CMSG_LEN(length: PyInt): number {
      const n = pySsize(length, ctx.sizeof_long * 8);
      if (n < 0n || n > SOCKLEN_T_LIMIT - hdr()) throw new OverflowError('CMSG_LEN() argument out of range');
      return Number(hdr() + n);
    },

    /** CMSG_SPACE(length): the buffer size for an ancillary item, with padding. */
    CMSG_SPACE(length: PyInt): number {
      const n = pySsize(length, ctx.sizeof_long * 8);
      if (n < 0n || n > SOCKLEN_T_LIMIT - (align(1n) + hdr())) throw new OverflowError('CMSG_SPACE() argument out of range');
      const r = align(n) + hdr();
      if (r > SOCKLEN_T_LIMIT) throw new OverflowError('CMSG_SPACE() argument out of range');
      return Number(r);
    },
  };
}

const linuxPure = pureFunctions(LINUX_CONTEXT);

/** inet_aton(ip_string). */
export const inetAton = linuxPure.inetAton;
/** inet_ntoa(packed_ip). */
export const inetNtoa = linuxPure.inetNtoa;
/** inet_pton(address_family, ip_string) (AF_INET 2, AF_INET6 10). */
export const inetPton = linuxPure.inetPton;
/** inet_ntop(address_family, packed_ip) (AF_INET 2, AF_INET6 10). */
export const inetNtop = linuxPure.inetNtop;
/** CMSG_LEN(length) for the x86_64/aarch64 ABI (use the module's for the broker host's). */
export const CMSG_LEN = linuxPure.CMSG_LEN;
/** CMSG_SPACE(length) for the x86_64/aarch64 ABI (use the module's for the broker host's). */
export const CMSG_SPACE = linuxPure.CMSG_SPACE;
