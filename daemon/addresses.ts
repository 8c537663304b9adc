// Proto addresses <-> kernel sockaddrs. Host names in address arguments are resolved the way
// CPython's setipaddr does: '' is the wildcard, '<broadcast>' is INADDR_BROADCAST (AF_INET
// only), numeric text is taken as is, anything else goes through getaddrinfo for the socket's
// family (errors are socket.gaierror).
import { linux as C } from '../native/constants.js';
import { decodeSockaddr, encodeSockaddr, isIPv4Text } from '../native/sockaddr.js';
import { inetPton } from '../native/libc.js';
import { andThen } from '../native/io-driver.js';
import { getaddrinfo, GaiError } from '../native/netdb.js';
import type { Address } from '../proto/gen/sockbroker/v1/address.js';
import { addressOf } from '../proto/codec/address.js';
import { argumentError, BrokerError, gaiError, osError, osErrorNamed } from './errors.js';
import { status as Code } from '@grpc/grpc-js';
import { linkAddress, linkSockaddr, type Interfaces } from './link-addresses.js';

const MAX_HOST = 1024;
const MAX_UNIX_PATH = 108;


function checkPort(port: number, syscall: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw argumentError('overflow', `${syscall}(): port must be 0-65535.`, 'port');
  }
}

type Resolved = { host: string; scopeId?: number };

/** Resolves a host argument to numeric text for `family` (AF_INET or AF_INET6): at once unless getaddrinfo must answer. */
export function resolveHost(host: string, family: number): Resolved | Promise<Resolved> {
  if (host.length > MAX_HOST) throw argumentError('value', 'host name too long', 'host');
  if (host.includes('\0')) throw argumentError('type', 'host name must not contain null character', 'host');
  if (host === '') return { host: family === C.AF_INET ? '0.0.0.0' : '::' };
  if (host === '<broadcast>') {
    if (family !== C.AF_INET) {
      throw new BrokerError(Code.INVALID_ARGUMENT, 'OS_ERROR', 'address family mismatched', { kind: 'os' });
    }
    return { host: '255.255.255.255' };
  }
  // A dotted quad is checked in JS (every UDP sendto names one): no inet_pton call.
  if ((family === C.AF_INET && isIPv4Text(host)) || inetPton(family, host)) return { host };
  return lookUp(host, family);
}

async function lookUp(host: string, family: number): Promise<Resolved> {
  let results;
  try {
    results = await getaddrinfo(host, null, { family, type: C.SOCK_DGRAM, protocol: 0, flags: 0 });
  } catch (err) {
    if (err instanceof GaiError) {
      if (err.errno) throw osError(err.errno, 'getaddrinfo');
      throw gaiError(err.code, err.message);
    }
    throw err;
  }
  const first = results[0];
  if (!first) throw gaiError(C.EAI_NONAME ?? -2, 'Name or service not known');
  const sa = decodeSockaddr(first.addr);
  if (sa.family === 'inet') return { host: sa.host };
  if (sa.family === 'inet6') return { host: sa.host, scopeId: sa.scopeId };
  throw gaiError(C.EAI_FAMILY ?? -6, 'ai_family not supported');
}

/** The kernel sockaddr for a proto address given to a socket of `family`: at once unless a host name must be looked up. */
export function toSockaddr(address: Address | undefined, family: number, syscall: string, ifs?: Interfaces): Buffer | Promise<Buffer> {
  const a = address ?? {};
  if (ifs) {
    const link = linkSockaddr(a, family, syscall, ifs);
    if (link) return link;
  }
  // RDS sockets take AF_INET addresses (as CPython: "RDS sockets use sockaddr_in").
  if (family === C.AF_INET || family === C.AF_RDS) {
    if (!a.inet) throw argumentError('type', `${syscall}(): AF_INET address must be tuple, not ${kindOf(a)}`, 'address');
    checkPort(a.inet.port, syscall);
    const port = a.inet.port;
    return andThen(resolveHost(a.inet.host, C.AF_INET), ({ host }) => encodeSockaddr({ family: 'inet', host, port }));
  }
  if (family === C.AF_INET6) {
    if (!a.inet6) throw argumentError('type', `${syscall}(): AF_INET6 address must be tuple, not ${kindOf(a)}`, 'address');
    const v = a.inet6;
    checkPort(v.port, syscall);
    if (v.flowinfo > 0xfffff) throw argumentError('overflow', `${syscall}(): flowinfo must be 0-1048575.`, 'flowinfo');
    return andThen(resolveHost(v.host, family), ({ host, scopeId }) => encodeSockaddr({ family: 'inet6', host, port: v.port, flowinfo: v.flowinfo, scopeId: v.scopeId || scopeId || 0 }));
  }
  if (family === C.AF_UNIX) {
    if (!a.unix) throw argumentError('type', `${syscall}(): AF_UNIX address must be str or bytes, not ${kindOf(a)}`, 'address');
    if (a.unix.path.length >= MAX_UNIX_PATH + (a.unix.path[0] === 0 ? 1 : 0)) {
      throw new BrokerError(Code.INVALID_ARGUMENT, 'OS_ERROR', 'AF_UNIX path too long', { kind: 'os' });
    }
    return encodeSockaddr({ family: 'unix', path: Buffer.from(a.unix.path) });
  }
  if (family === C.AF_NETLINK) {
    if (!a.netlink) throw argumentError('type', `${syscall}(): AF_NETLINK address must be tuple, not ${kindOf(a)}`, 'address');
    return encodeSockaddr({ family: 'netlink', pid: a.netlink.pid, groups: a.netlink.groups });
  }
  throw osErrorNamed('EAFNOSUPPORT', syscall);
}

function kindOf(a: Address): string {
  if (a.inet || a.inet6) return 'tuple';
  if (a.unix) return 'str';
  return 'NoneType';
}

/** The proto address for a kernel sockaddr (an empty buffer gives an unnamed AF_UNIX address). */
export function fromSockaddr(buf: Buffer, family: number, ifs?: Interfaces): Address {
  if (buf.length === 0 && family === C.AF_UNIX) return { unix: { path: Buffer.alloc(0) } };
  const link = linkAddress(buf, ifs);
  if (link) return link;
  return addressOf(decodeSockaddr(buf));
}

/** The port of a proto address, for the policy (0 when it has none). */
export function portOf(address: Address | undefined): number {
  return address?.inet?.port ?? address?.inet6?.port ?? 0;
}

