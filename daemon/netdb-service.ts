// NetdbService: host-dependent module functions answered from the broker host's view, each
// following CPython's Modules/socketmodule.c (and Lib/socket.py for getfqdn) step by step, so
// the same inputs give the same results and the same exceptions. Every field is checked here
// again (the wire is not trusted): bounded lengths, no NULs, integer ranges.
import { hostname as osHostname } from 'node:os';
import { domainToASCII } from 'node:url';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { status as Code } from '@grpc/grpc-js';
import { linux as C } from '../native/constants.js';
import { inetNtop, inetPton } from '../native/libc.js';
import {
  getaddrinfo, getnameinfo, gethostbyaddr, gethostbyname, getservbyname, getservbyport, getprotobyname,
  ifNameindex, ifNametoindex, ifIndextoname, GaiError, HostError, IfError, type HostEnt,
} from '../native/netdb.js';
import type {
  NetdbServiceServer, GetAddrInfoRequest, GetAddrInfoResponse, GetNameInfoRequest, GetNameInfoResponse,
  GetHostByNameExResponse, GetHostByAddrResponse, GetServByNameRequest, GetServByPortRequest,
} from '../proto/gen/sockbroker/v1/netdb.js';
import { argumentError, BrokerError, gaiError, osError, osErrorNamed, toBrokerError, toServiceError } from './errors.js';
import type { Logger } from 'pino';
import { sethostname, ifNameIndex as linkNameIndex, ifNameToIndex as linkNameToIndex, ifIndexToName as linkIndexToName } from '../native/link.js';
import type { NetnsRegistry } from './netns.js';
import type { Peers } from './rpc.js';
import { decide, type Policy } from './policy.js';
import { describe } from './identity.js';
import type { SetHostNameRequest, SetHostNameResponse } from '../proto/gen/sockbroker/v1/netdb.js';
import { fromSockaddr } from './addresses.js';
import { identityOf } from './rpc.js';
import { countDenial } from './metrics.js';

const MAX_NAME = 1024;

/** A string field: at most MAX_NAME characters, no NUL (C would cut the string there). */
function validateName(value: string, field: string): string {
  if (value.length > MAX_NAME) throw argumentError('value', `${field} too long (at most ${MAX_NAME} characters)`, field);
  if (value.includes('\0')) throw argumentError('value', 'embedded null character', field);
  return value;
}

function validateOptionalName(value: string | undefined, field: string): string | null {
  return value === undefined ? null : validateName(value, field);
}

const int32 = (v: number): boolean => Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;

function validateInt32(value: number, field: string): number {
  if (!int32(value)) throw argumentError('overflow', `${field} out of range`, field);
  return value;
}

/** OSError with a message and no errno, as CPython's PyErr_SetString(PyExc_OSError, ...). */
function plainOsError(message: string): BrokerError {
  return new BrokerError(Code.FAILED_PRECONDITION, 'OS_ERROR', message, { kind: 'os' });
}

/** socket.herror(h_errno, hstrerror(h_errno)), as CPython's set_herror. */
function herror(code: number, message: string): BrokerError {
  return new BrokerError(Code.NOT_FOUND, 'HERROR', message, { kind: 'herror', errno: String(code), strerror: message });
}

/** CPython's set_gaierror: EAI_SYSTEM is an OSError from errno, anything else a gaierror. */
function fromNative(err: unknown, syscall: string): unknown {
  if (err instanceof GaiError) return err.errno ? osError(err.errno, syscall) : gaiError(err.code, err.message);
  if (err instanceof HostError) return herror(err.code, err.message);
  if (err instanceof IfError) return osError(err.errno, err.syscall);
  return err;
}

async function gai(host: string | null, port: string | null, hints: { family: number; type: number; protocol: number; flags: number }) {
  try {
    return await getaddrinfo(host, port, hints);
  } catch (err) {
    throw fromNative(err, 'getaddrinfo');
  }
}

/** An IPv4 or IPv6 address: the family and the 4 or 16 address bytes. */
interface IpAddr {
  family: number;
  bytes: Buffer;
}

function ipOfSockaddr(sa: Buffer): IpAddr | null {
  const family = sa.readUInt16LE(0);
  if (family === C.AF_INET) return { family, bytes: sa.subarray(4, 8) };
  if (family === C.AF_INET6) return { family, bytes: sa.subarray(8, 24) };
  return null;
}

/**
 * CPython's setipaddr(name, af): '' is the wildcard (getaddrinfo(NULL, "0", AI_PASSIVE)),
 * '255.255.255.255' and '<broadcast>' are INADDR_BROADCAST, numeric text is taken as is (IPv6
 * only without a %scope), anything else is the first getaddrinfo result.
 */
async function setipaddr(name: string, af: number): Promise<IpAddr> {
  if (name === '') {
    const res = await gai(null, '0', { family: af, type: C.SOCK_DGRAM, protocol: 0, flags: C.AI_PASSIVE! });
    const first = ipOfSockaddr(res[0]!.addr);
    if (!first) throw plainOsError('unsupported address family');
    if (res.length > 1) throw plainOsError('wildcard resolved to multiple address');
    return first;
  }
  if (name === '255.255.255.255' || name === '<broadcast>') {
    if (af !== C.AF_INET && af !== C.AF_UNSPEC) throw plainOsError('address family mismatched');
    return { family: C.AF_INET!, bytes: Buffer.from([255, 255, 255, 255]) };
  }
  if (af === C.AF_UNSPEC || af === C.AF_INET) {
    const b = inetPton(C.AF_INET!, name);
    if (b) return { family: C.AF_INET!, bytes: b };
  }
  if ((af === C.AF_UNSPEC || af === C.AF_INET6) && !name.includes('%')) {
    const b = inetPton(C.AF_INET6!, name);
    if (b) return { family: C.AF_INET6!, bytes: b };
  }
  const res = await gai(name, null, { family: af, type: 0, protocol: 0, flags: 0 });
  const first = ipOfSockaddr(res[0]!.addr);
  if (!first) throw plainOsError('unknown address family');
  return first;
}

/** CPython's gethost_common: the (hostname, aliases, addresses) triple of a hostent. */
function gethostCommon(h: HostEnt, af: number): GetHostByAddrResponse {
  if (h.addrtype !== af) throw osError(C.EAFNOSUPPORT ?? 97, 'gethostbyname');
  return { hostname: h.name, aliases: h.aliases, addresses: h.addresses.map((a) => inetNtop(af, a)) };
}

export async function getAddrInfo(req: GetAddrInfoRequest): Promise<GetAddrInfoResponse> {
  const host = validateOptionalName(req.host, 'host');
  const port = validateOptionalName(req.port, 'port');
  for (const f of ['family', 'type', 'protocol', 'flags'] as const) validateInt32(req[f], f);
  const results = await gai(host, port, req);
  return {
    results: results.map((r) => ({
      family: r.family,
      type: r.type,
      protocol: r.protocol,
      canonname: r.canonname,
      address: fromSockaddr(r.addr, r.family),
    })),
  };
}

export async function getNameInfo(req: GetNameInfoRequest): Promise<GetNameInfoResponse> {
  const host = validateName(req.host, 'host');
  validateInt32(req.port, 'port');
  validateInt32(req.flags, 'flags');
  if (req.flowinfo !== undefined && req.flowinfo > 0xfffff) {
    throw argumentError('overflow', 'getnameinfo(): flowinfo must be 0-1048575.', 'flowinfo');
  }
  // Numeric only (AI_NUMERICHOST), SOCK_DGRAM "to make numeric port happy", as CPython.
  const res = await gai(host, String(req.port), { family: C.AF_UNSPEC!, type: C.SOCK_DGRAM!, protocol: 0, flags: C.AI_NUMERICHOST! });
  if (res.length > 1) throw plainOsError('sockaddr resolved to multiple addresses');
  const { family, addr } = res[0]!;
  if (family === C.AF_INET && req.flowinfo !== undefined) throw plainOsError('IPv4 sockaddr must be 2 tuple');
  if (family === C.AF_INET6) {
    // CPython always sets both (0 when not given), replacing a scope parsed from '%name'.
    addr.writeUInt32BE(req.flowinfo ?? 0, 4);
    addr.writeUInt32LE(req.scopeId ?? 0, 24);
  }
  try {
    const [h, p] = await getnameinfo(addr, req.flags);
    return { host: h, port: p };
  } catch (err) {
    throw fromNative(err, 'getnameinfo');
  }
}

export async function getHostByName(hostname: string): Promise<string> {
  const ip = await setipaddr(validateName(hostname, 'hostname'), C.AF_INET!);
  return inetNtop(ip.family, ip.bytes);
}

export async function getHostByNameEx(hostname: string): Promise<GetHostByNameExResponse> {
  const name = validateName(hostname, 'hostname');
  const ip = await setipaddr(name, C.AF_INET!);
  let h: HostEnt;
  try {
    h = await gethostbyname(name);
  } catch (err) {
    throw fromNative(err, 'gethostbyname');
  }
  return gethostCommon(h, ip.family);
}

export async function getHostByAddr(ipAddress: string): Promise<GetHostByAddrResponse> {
  const ip = await setipaddr(validateName(ipAddress, 'ip_address'), C.AF_UNSPEC!);
  let h: HostEnt;
  try {
    h = await gethostbyaddr(ip.bytes, ip.family);
  } catch (err) {
    throw fromNative(err, 'gethostbyaddr');
  }
  return gethostCommon(h, ip.family);
}

/** Python's str.strip() with no argument: Unicode whitespace as str.isspace() defines it. */
const PY_SPACE = '[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g');

/** Lib/socket.py getfqdn: the first name with a dot among gethostbyaddr's name and aliases. */
export async function getFqdn(input: string): Promise<string> {
  let name = validateName(input, 'name').replace(PY_STRIP, '');
  if (!name || name === '0.0.0.0' || name === '::') name = osHostname();
  let triple: GetHostByAddrResponse;
  try {
    // gethostbyaddr() takes its argument IDNA-encoded, as the SDK sends every host name.
    triple = await getHostByAddr(/^[\x00-\x7f]*$/.test(name) ? name : domainToASCII(name) || name);
  } catch (err) {
    if (err instanceof BrokerError && ['os', 'herror', 'gai'].includes(err.metadata.kind ?? '')) return name;
    throw err;
  }
  for (const n of [triple.hostname, ...triple.aliases]) if (n.includes('.')) return n;
  return triple.hostname;
}

export async function getServByName(req: GetServByNameRequest): Promise<number> {
  const s = await getservbyname(validateName(req.serviceName, 'service_name'), validateOptionalName(req.protocolName, 'protocol_name'));
  if (!s) throw plainOsError('service/proto not found');
  return s.port;
}

export async function getServByPort(req: GetServByPortRequest): Promise<string> {
  if (!Number.isInteger(req.port) || req.port < 0 || req.port > 0xffff) {
    throw argumentError('overflow', 'getservbyport: port must be 0-65535.', 'port');
  }
  const s = await getservbyport(req.port, validateOptionalName(req.protocolName, 'protocol_name'));
  if (!s) throw plainOsError('port/proto not found');
  return s.name;
}

export async function getProtoByName(name: string): Promise<number> {
  const p = await getprotobyname(validateName(name, 'protocol_name'));
  if (p === null) throw plainOsError('protocol not found');
  return p;
}

export async function ifNameToIndex(name: Uint8Array): Promise<number> {
  const b = Buffer.from(name);
  if (b.length > MAX_NAME) throw argumentError('value', `name too long (at most ${MAX_NAME} bytes)`, 'name');
  if (b.includes(0)) throw argumentError('value', 'embedded null byte', 'name');
  const index = await ifNametoindex(b);
  // if_nametoindex() does not set errno: CPython raises a plain OSError.
  if (index === 0) throw plainOsError('no interface with this name');
  return index;
}

async function native<T>(p: Promise<T>, syscall: string): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw fromNative(err, syscall);
  }
}

type Caller = Parameters<typeof identityOf>[0];

/** The network namespace of a local caller that lives in another one than the daemon; else null. */
function callerNetns(peers: Caller, call: { getPeer(): string }): string | null {
  const peer = (peers as Peers).peerOf(call);
  return peer.kind === 'local' ? peer.netns : null;
}

/** A unary handler: the caller must be known (as every call), then `fn` answers. */
function unary<Req, Res>(peers: Caller, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    try {
      identityOf(peers, call);
    } catch (err) {
      callback(toServiceError(toBrokerError(err)));
      return;
    }
    let p: Promise<Res>;
    try {
      p = fn(call.request, call);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => callback(null, res),
      (err) => callback(toServiceError(toBrokerError(err))),
    );
  };
}

/** What sethostname needs beyond the caller: the policy in force and the audit log. */
export interface NetdbPrivileged {
  policy: () => Policy;
  log: Logger;
  /** Callers' network namespaces: interface lookups are answered in the caller's. */
  netns?: NetnsRegistry;
}

/** sethostname(name) for the broker's UTS namespace, if the policy grants it to the caller. */
function setHostName(peers: Caller, priv: NetdbPrivileged) {
  return (call: ServerUnaryCall<SetHostNameRequest, SetHostNameResponse>, callback: sendUnaryData<SetHostNameResponse>): void => {
    try {
      const identity = identityOf(peers, call);
      const name = call.request.name;
      if (name.length > 64) throw osErrorNamed('EINVAL', 'sethostname');
      const d = decide(priv.policy(), identity, { op: 'sethostname' });
      const who = describe(identity);
      if (!d.allowed) {
        countDenial(d.grant);
        priv.log.warn({ event: 'policy.deny', ...who, action: { op: 'sethostname', name: name.toString('latin1') }, what: d.what, grant: d.grant, outcome: 'denied' });
        throw osErrorNamed('EPERM', 'sethostname', `Operation not permitted (sockbroker policy: ${d.what}; grant: ${d.grant})`);
      }
      // An empty name is legal for the kernel; ffi-rs needs a non-empty buffer to pass.
      sethostname(name.length ? Buffer.from(name) : Buffer.alloc(1), name.length);
      priv.log.info({ event: 'policy.allow', ...who, action: { op: 'sethostname', name: name.toString('latin1') }, by: d.by, outcome: 'allowed' });
      callback(null, {});
    } catch (err) {
      callback(toServiceError(toBrokerError(err)));
    }
  };
}

export function netdbService(peers: Caller, priv: NetdbPrivileged): NetdbServiceServer {
  return {
    setHostName: setHostName(peers, priv),
    getAddrInfo: unary(peers, getAddrInfo),
    getNameInfo: unary(peers, getNameInfo),
    getHostByName: unary(peers, async (req) => ({ address: await getHostByName(req.hostname) })),
    getHostByNameEx: unary(peers, (req) => getHostByNameEx(req.hostname)),
    getHostByAddr: unary(peers, (req) => getHostByAddr(req.ipAddress)),
    getHostName: unary(peers, async () => ({ hostname: osHostname() })),
    getFqdn: unary(peers, async (req) => ({ name: await getFqdn(req.name) })),
    getServByName: unary(peers, async (req) => ({ port: await getServByName(req) })),
    getServByPort: unary(peers, async (req) => ({ serviceName: await getServByPort(req) })),
    getProtoByName: unary(peers, async (req) => ({ protocol: await getProtoByName(req.protocolName) })),
    // A caller in another network namespace (a container) sees its own interfaces: the lookup
    // runs synchronously with the main thread in that namespace.
    ifNameIndex: unary(peers, async (_req, call) => {
      const ns = callerNetns(peers, call);
      const list = ns !== null && priv.netns ? priv.netns.run(ns, () => linkNameIndex()) : await native(ifNameindex(), 'if_nameindex');
      return { interfaces: list.map(([index, name]) => ({ index, name })) };
    }),
    ifNameToIndex: unary(peers, async (req, call) => {
      const ns = callerNetns(peers, call);
      if (ns === null || !priv.netns) return { index: await ifNameToIndex(req.name) };
      const name = Buffer.from(req.name);
      if (name.length > MAX_NAME) throw argumentError('value', `name too long (at most ${MAX_NAME} bytes)`, 'name');
      if (name.includes(0)) throw argumentError('value', 'embedded null byte', 'name');
      const index = priv.netns.run(ns, () => linkNameToIndex(name.toString('utf8')));
      if (index === 0) throw plainOsError('no interface with this name');
      return { index };
    }),
    ifIndexToName: unary(peers, async (req, call) => {
      const ns = callerNetns(peers, call);
      if (ns === null || !priv.netns) return { name: await native(ifIndextoname(req.index >>> 0), 'if_indextoname') };
      try {
        return { name: priv.netns.run(ns, () => linkIndexToName(req.index >>> 0)) };
      } catch (err) {
        throw fromNative(err, 'if_indextoname');
      }
    }),
  };
}
