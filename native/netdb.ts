// getaddrinfo(3) through ffi-rs. The resolver may block on the network, so it runs on the
// libuv threadpool; the result list is read back with memcpy on the returned pointers.
import { load, open, DataType } from 'ffi-rs';

open({ library: 'libc', path: '' });

/** One getaddrinfo result; `addr` is the raw sockaddr. */
export interface AddrInfoResult {
  family: number;
  type: number;
  protocol: number;
  canonname: string;
  addr: Buffer;
}

/** A getaddrinfo failure: `code` is the EAI_* value (negative on glibc), as Python's gaierror.errno. */
export class GaiError extends Error {
  constructor(readonly code: number, readonly errno: number) {
    super(gaiStrerror(code));
    this.name = 'GaiError';
  }
}

const ADDRINFO_SIZE = 48; // struct addrinfo on LP64 glibc
const EAI_SYSTEM = -11;

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): any {
  return load({ library: 'libc', funcName, retType, paramsType, paramsValue });
}

/** Copies `n` bytes from a C pointer into a new Buffer. */
function readMemory(ptr: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  if (n > 0) call('memcpy', DataType.I64, [DataType.U8Array, DataType.I64, DataType.I64], [out, ptr, n]);
  return out;
}

function readCString(ptr: number): string {
  if (!ptr) return '';
  const len = Number(call('strlen', DataType.I64, [DataType.I64], [ptr]));
  return readMemory(ptr, len).toString('utf8');
}

/** gai_strerror(code): glibc's text for an EAI_* code. */
export function gaiStrerror(code: number): string {
  return readCString(Number(call('gai_strerror', DataType.I64, [DataType.I32], [code])));
}

/**
 * getaddrinfo(host, service, hints) as glibc answers it; null host/service = NULL.
 * Rejects with GaiError (EAI_SYSTEM carries the errno).
 */
export async function getaddrinfo(
  host: string | null,
  service: string | null,
  hints: { family: number; type: number; protocol: number; flags: number },
): Promise<AddrInfoResult[]> {
  const h = Buffer.alloc(ADDRINFO_SIZE);
  h.writeInt32LE(hints.flags, 0);
  h.writeInt32LE(hints.family, 4);
  h.writeInt32LE(hints.type, 8);
  h.writeInt32LE(hints.protocol, 12);
  const res = Buffer.alloc(8);
  // A null char* is passed as a 0 pointer, so both string arguments go as I64 or String.
  const types: DataType[] = [];
  const values: unknown[] = [];
  for (const s of [host, service]) {
    if (s === null) {
      types.push(DataType.I64);
      values.push(0);
    } else {
      types.push(DataType.String);
      values.push(s);
    }
  }
  const r = (await load({
    library: 'libc',
    funcName: 'getaddrinfo',
    retType: DataType.I32,
    paramsType: [...types, DataType.U8Array, DataType.U8Array],
    paramsValue: [...values, h, res],
    errno: true,
    runInNewThread: true,
  })) as unknown as { value: number; errnoCode: number };
  if (r.value !== 0) throw new GaiError(r.value, r.value === EAI_SYSTEM ? r.errnoCode : 0);
  const first = Number(res.readBigUInt64LE(0));
  const out: AddrInfoResult[] = [];
  try {
    for (let p = first; p; ) {
      const ai = readMemory(p, ADDRINFO_SIZE);
      out.push({
        family: ai.readInt32LE(4),
        type: ai.readInt32LE(8),
        protocol: ai.readInt32LE(12),
        addr: readMemory(Number(ai.readBigUInt64LE(24)), ai.readUInt32LE(16)),
        canonname: readCString(Number(ai.readBigUInt64LE(32))),
      });
      p = Number(ai.readBigUInt64LE(40));
    }
  } finally {
    call('freeaddrinfo', DataType.Void, [DataType.I64], [first]);
  }
  return out;
}

// ---- The rest of netdb: host, service and protocol databases and interface names. The
// reentrant (_r) functions write their results into a caller's buffer and return pointers into
// it, so every struct and buffer they see is malloc'd here (a JS Buffer may be copied by ffi-rs
// for the call) and read back with memcpy. All of them run on a new thread: they may read files,
// ask NSS modules or the network.

/** A h_errno failure of gethostbyname_r/gethostbyaddr_r: `code` is h_errno, message hstrerror's. */
export class HostError extends Error {
  constructor(readonly code: number) {
    super(hstrerror(code));
    this.name = 'HostError';
  }
}

/** hstrerror(code): glibc's text for an h_errno value. */
export function hstrerror(code: number): string {
  return readCString(Number(call('hstrerror', DataType.I64, [DataType.I32], [code])));
}

const HOST_BUFFER = 16384; // CPython's gethostbyname_r buffer
const DB_BUFFER = 16384;
const HOSTENT_SIZE = 32; // char *h_name; char **h_aliases; int h_addrtype, h_length; char **h_addr_list
const SERVENT_SIZE = 32; // char *s_name; char **s_aliases; int s_port; char *s_proto
const PROTOENT_SIZE = 24; // char *p_name; char **p_aliases; int p_proto
const IF_NAMESIZE = 16;

/** malloc'd zeroed blocks, freed together. */
class Arena {
  readonly #ptrs: number[] = [];
  alloc(n: number): number {
    const p = Number(call('calloc', DataType.I64, [DataType.I64, DataType.I64], [1, n]));
    if (!p) throw new Error('native/netdb: out of memory');
    this.#ptrs.push(p);
    return p;
  }
  free(): void {
    for (const p of this.#ptrs) call('free', DataType.Void, [DataType.I64], [p]);
    this.#ptrs.length = 0;
  }
}

function readPtr(ptr: number): number {
  return Number(readMemory(ptr, 8).readBigUInt64LE(0));
}

/** A NULL-terminated char** as strings. */
function readStringList(ptr: number): string[] {
  const out: string[] = [];
  if (!ptr) return out;
  for (let p = ptr; ; p += 8) {
    const s = readPtr(p);
    if (!s) return out;
    out.push(readCString(s));
  }
}

/** A NULL-terminated list of `len`-byte addresses. */
function readAddrList(ptr: number, len: number): Buffer[] {
  const out: Buffer[] = [];
  for (let p = ptr; p; p += 8) {
    const a = readPtr(p);
    if (!a) break;
    out.push(readMemory(a, len));
  }
  return out;
}

/** A struct hostent, decoded. */
export interface HostEnt {
  name: string;
  aliases: string[];
  addrtype: number;
  /** Raw addresses (4 or 16 bytes each). */
  addresses: Buffer[];
}

/** A C string argument: a String, or a 0 pointer for null. */
function cstr(s: string | null): [DataType, unknown] {
  return s === null ? [DataType.I64, 0] : [DataType.String, s];
}

async function offThread(funcName: string, retType: DataType, types: DataType[], values: unknown[]): Promise<{ value: number; errnoCode: number }> {
  return (await load({ library: 'libc', funcName, retType, paramsType: types, paramsValue: values, errno: true, runInNewThread: true })) as unknown as {
    value: number;
    errnoCode: number;
  };
}

function readHostEnt(p: number): HostEnt {
  const h = readMemory(p, HOSTENT_SIZE);
  const length = h.readInt32LE(20);
  return {
    name: readCString(Number(h.readBigUInt64LE(0))),
    aliases: readStringList(Number(h.readBigUInt64LE(8))),
    addrtype: h.readInt32LE(16),
    addresses: readAddrList(Number(h.readBigUInt64LE(24)), length),
  };
}

/** gethostbyname_r(name): the hostent, or HostError with h_errno. */
export async function gethostbyname(name: string): Promise<HostEnt> {
  const a = new Arena();
  try {
    const ret = a.alloc(HOSTENT_SIZE);
    const buf = a.alloc(HOST_BUFFER);
    const result = a.alloc(8);
    const herr = a.alloc(4);
    const I = DataType.I64;
    await offThread('gethostbyname_r', DataType.I32, [DataType.String, I, I, I, I, I], [name, ret, buf, HOST_BUFFER - 1, result, herr]);
    const h = readPtr(result);
    if (!h) throw new HostError(readMemory(herr, 4).readInt32LE(0));
    return readHostEnt(h);
  } finally {
    a.free();
  }
}

/** gethostbyaddr_r(addr, family): the hostent, or HostError with h_errno. */
export async function gethostbyaddr(addr: Buffer, family: number): Promise<HostEnt> {
  const a = new Arena();
  try {
    const ret = a.alloc(HOSTENT_SIZE);
    const buf = a.alloc(HOST_BUFFER);
    const result = a.alloc(8);
    const herr = a.alloc(4);
    const I = DataType.I64;
    await offThread(
      'gethostbyaddr_r',
      DataType.I32,
      [DataType.U8Array, DataType.U32, DataType.I32, I, I, I, I, I],
      [addr, addr.length, family, ret, buf, HOST_BUFFER - 1, result, herr],
    );
    const h = readPtr(result);
    if (!h) throw new HostError(readMemory(herr, 4).readInt32LE(0));
    return readHostEnt(h);
  } finally {
    a.free();
  }
}

/** A struct servent, decoded; port in host byte order. */
export interface ServEnt {
  name: string;
  aliases: string[];
  port: number;
  proto: string;
}

function readServEnt(p: number): ServEnt {
  const s = readMemory(p, SERVENT_SIZE);
  return {
    name: readCString(Number(s.readBigUInt64LE(0))),
    aliases: readStringList(Number(s.readBigUInt64LE(8))),
    port: readMemory(p + 16, 2).readUInt16BE(0),
    proto: readCString(Number(s.readBigUInt64LE(24))),
  };
}

/** getservbyname_r(name, proto): the servent, or null if none (proto null = any). */
export async function getservbyname(name: string, proto: string | null): Promise<ServEnt | null> {
  const a = new Arena();
  try {
    const ret = a.alloc(SERVENT_SIZE);
    const buf = a.alloc(DB_BUFFER);
    const result = a.alloc(8);
    const I = DataType.I64;
    const [pt, pv] = cstr(proto);
    await offThread('getservbyname_r', DataType.I32, [DataType.String, pt, I, I, I, I], [name, pv, ret, buf, DB_BUFFER, result]);
    const s = readPtr(result);
    return s ? readServEnt(s) : null;
  } finally {
    a.free();
  }
}

/** getservbyport_r(port in host order, proto): the servent, or null if none. */
export async function getservbyport(port: number, proto: string | null): Promise<ServEnt | null> {
  const a = new Arena();
  try {
    const ret = a.alloc(SERVENT_SIZE);
    const buf = a.alloc(DB_BUFFER);
    const result = a.alloc(8);
    const I = DataType.I64;
    const [pt, pv] = cstr(proto);
    const netPort = ((port & 0xff) << 8) | ((port >> 8) & 0xff); // htons
    await offThread('getservbyport_r', DataType.I32, [DataType.I32, pt, I, I, I, I], [netPort, pv, ret, buf, DB_BUFFER, result]);
    const s = readPtr(result);
    return s ? readServEnt(s) : null;
  } finally {
    a.free();
  }
}

/** getprotobyname_r(name): the protocol number, or null if none. */
export async function getprotobyname(name: string): Promise<number | null> {
  const a = new Arena();
  try {
    const ret = a.alloc(PROTOENT_SIZE);
    const buf = a.alloc(DB_BUFFER);
    const result = a.alloc(8);
    const I = DataType.I64;
    await offThread('getprotobyname_r', DataType.I32, [DataType.String, I, I, I, I], [name, ret, buf, DB_BUFFER, result]);
    const p = readPtr(result);
    return p ? readMemory(p + 16, 4).readInt32LE(0) : null;
  } finally {
    a.free();
  }
}

/** getnameinfo(sockaddr, flags): [host, service]; rejects with GaiError. */
export async function getnameinfo(sa: Buffer, flags: number): Promise<[string, string]> {
  const host = Buffer.alloc(1025); // NI_MAXHOST
  const serv = Buffer.alloc(32); // NI_MAXSERV
  const r = await offThread(
    'getnameinfo',
    DataType.I32,
    [DataType.U8Array, DataType.U32, DataType.U8Array, DataType.U32, DataType.U8Array, DataType.U32, DataType.I32],
    [sa, sa.length, host, host.length, serv, serv.length, flags],
  );
  if (r.value !== 0) throw new GaiError(r.value, r.value === EAI_SYSTEM ? r.errnoCode : 0);
  const str = (b: Buffer) => b.toString('utf8', 0, Math.max(0, b.indexOf(0)));
  return [str(host), str(serv)];
}

/** An errno failure of the if_* functions. */
export class IfError extends Error {
  constructor(readonly errno: number, readonly syscall: string) {
    super(`${syscall} failed with errno ${errno}`);
    this.name = 'IfError';
  }
}

/** if_nameindex(): [index, name] pairs in the kernel's order; IfError on failure. */
export async function ifNameindex(): Promise<Array<[number, string]>> {
  const r = await offThread('if_nameindex', DataType.I64, [], []);
  const first = Number(r.value);
  if (!first) throw new IfError(r.errnoCode, 'if_nameindex');
  const out: Array<[number, string]> = [];
  try {
    for (let p = first; ; p += 16) {
      const e = readMemory(p, 16);
      const index = e.readUInt32LE(0);
      if (index === 0) break;
      out.push([index, readCString(Number(e.readBigUInt64LE(8)))]);
    }
  } finally {
    call('if_freenameindex', DataType.Void, [DataType.I64], [first]);
  }
  return out;
}

/** if_nametoindex(name): the index, 0 if there is no such interface. `name` has no NUL. */
export async function ifNametoindex(name: Buffer): Promise<number> {
  const r = await offThread('if_nametoindex', DataType.U32, [DataType.U8Array], [Buffer.concat([name, Buffer.alloc(1)])]);
  return r.value >>> 0;
}

/** if_indextoname(index): the name; IfError (ENXIO for an unknown index). */
export async function ifIndextoname(index: number): Promise<string> {
  const buf = Buffer.alloc(IF_NAMESIZE + 1);
  const r = await offThread('if_indextoname', DataType.I64, [DataType.U32, DataType.U8Array], [index >>> 0, buf]);
  if (!Number(r.value)) throw new IfError(r.errnoCode, 'if_indextoname');
  return buf.toString('utf8', 0, Math.max(0, buf.indexOf(0)));
}
