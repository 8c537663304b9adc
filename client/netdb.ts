// The socket module's host-dependent functions (NetdbService): arguments checked as CPython's
// PyArg_Parse formats check them (same exception classes and messages), then answered by the
// broker from its host's view.
import { domainToASCII } from 'node:url';
import type { Transport } from './transport.js';
import type {
  GetAddrInfoResponse, GetNameInfoResponse, GetHostByNameResponse, GetHostByNameExResponse, GetHostByAddrResponse,
  GetHostNameResponse, GetFqdnResponse, GetServByNameResponse, GetServByPortResponse, GetProtoByNameResponse,
  IfNameIndexResponse, IfNameToIndexResponse, IfIndexToNameResponse,
} from '../proto/gen/sockbroker/v1/netdb.js';
import { fromAddress, type AddressTuple } from './address.js';
import { OSError, OverflowError, UnicodeError, ValueError } from './errors.js';
import { pyCInt, pyIndex, pyUnsignedLong, utf8 } from './pure.js';
import { pyType } from './pytypes.js';

/** getaddrinfo's 5-tuples: [family, type, proto, canonname, sockaddr]. */
export type AddrInfo = [number, number, number, string, AddressTuple];

/** gethostbyname_ex / gethostbyaddr's triple: [hostname, aliaslist, ipaddrlist]. */
export type HostTriple = [string, string[], string[]];

/** Python's "idna" codec for an ASCII str (label checks), or UTS #46 ToASCII for other text. */
function idna(host: string): string {
  if (host === '') return '';
  if (/^[\x00-\x7f]*$/.test(host)) {
    const labels = host.split('.');
    for (const l of labels.slice(0, -1)) {
      if (l.length === 0 || l.length >= 64) throw new UnicodeError("encoding with 'idna' codec failed (UnicodeError: label empty or too long)");
    }
    if (labels[labels.length - 1]!.length >= 64) throw new UnicodeError("encoding with 'idna' codec failed (UnicodeError: label too long)");
    return host;
  }
  return domainToASCII(host) || host;
}

/** A type name as PyArg_Parse's "must be X, not T" messages spell it (None, not NoneType). */
function argType(v: unknown): string {
  return v === null || v === undefined ? 'None' : pyType(v);
}

/** The "et" format with the idna encoding: str (encoded), bytes or bytearray; no NUL. */
function hostArg(v: unknown, fn: string): string {
  let s: string;
  let type: string;
  if (typeof v === 'string') {
    s = idna(v);
    type = 'str';
  } else if (v instanceof Uint8Array) {
    s = Buffer.from(v).toString('latin1');
    type = 'bytes';
  } else throw new TypeError(`${fn}() argument 1 must be str, bytes or bytearray, not ${argType(v)}`);
  if (s.includes('\0')) throw new TypeError(`${fn}() argument 1 must be encoded string without null bytes, not ${type}`);
  return s;
}

/** The "s" format: a str without NUL, UTF-8 encodable. */
function strArg(v: unknown, fn: string, n: number): string {
  if (typeof v !== 'string') throw new TypeError(`${fn}() argument ${n} must be str, not ${argType(v)}`);
  if (v.includes('\0')) throw new ValueError('embedded null character');
  utf8(v);
  return v;
}

/** The functions, on one broker's transport. */
export class Netdb {
  constructor(readonly t: Transport) {}

  /** getaddrinfo(host, port, family=0, type=0, proto=0, flags=0), resolved on the broker host. */
  async getaddrinfo(host: unknown, port: unknown, family: unknown = 0, type: unknown = 0, proto: unknown = 0, flags: unknown = 0): Promise<AddrInfo[]> {
    let h: string | undefined;
    if (host === null || host === undefined) h = undefined;
    else if (typeof host === 'string') h = idna(host);
    else if (host instanceof Uint8Array) h = Buffer.from(host).toString('latin1');
    else throw new TypeError('getaddrinfo() argument 1 must be string or None');
    let p: string | undefined;
    // An int port is formatted with %ld; a bool or float is neither int nor str for CPython.
    if (port === null || port === undefined) p = undefined;
    else if ((typeof port === 'number' && Number.isInteger(port)) || typeof port === 'bigint') {
      const n = pyIndex(port);
      if (n < -(2n ** 63n) || n > 2n ** 63n - 1n) throw new OverflowError('Python int too large to convert to C long');
      p = String(n);
    } else if (typeof port === 'string') p = (utf8(port), port);
    else if (port instanceof Uint8Array) p = Buffer.from(port).toString('latin1');
    else throw new OSError('Int or String expected');
    const ints = [family, type, proto, flags].map(pyCInt) as [number, number, number, number];
    // C sees the strings up to their first NUL.
    const cut = (s: string | undefined) => (s === undefined ? s : s.split('\0')[0]);
    const res: GetAddrInfoResponse = await this.t.getAddrInfo({ host: cut(h), port: cut(p), family: ints[0], type: ints[1], protocol: ints[2], flags: ints[3] });
    return res.results.map((r) => [r.family, r.type, r.protocol, r.canonname, fromAddress(r.address)!]);
  }

  /** getnameinfo(sockaddr, flags): [host, port] as the broker host names them. */
  async getnameinfo(sockaddr: unknown, flags: unknown): Promise<[string, string]> {
    const f = pyCInt(flags);
    if (!Array.isArray(sockaddr)) throw new TypeError('getnameinfo() argument 1 must be a tuple');
    const illegal = () => new TypeError('getnameinfo(): illegal sockaddr argument');
    if (sockaddr.length < 2 || sockaddr.length > 4) throw illegal();
    const [host, port, flowinfo, scopeId] = sockaddr as unknown[];
    if (typeof host !== 'string') throw illegal();
    if (host.includes('\0')) throw new ValueError('embedded null character');
    utf8(host);
    const p = pyCInt(port);
    // "I": an unsigned int taken modulo 2**32, never an error.
    const u32 = (v: unknown) => Number(((pyIndex(v) % 2n ** 32n) + 2n ** 32n) % 2n ** 32n);
    const fi = sockaddr.length > 2 ? u32(flowinfo) : undefined;
    const sc = sockaddr.length > 3 ? u32(scopeId) : undefined;
    if (fi !== undefined && fi > 0xfffff) throw new OverflowError('getnameinfo(): flowinfo must be 0-1048575.');
    const r = await this.t.netdb<GetNameInfoResponse>('getNameInfo', { host, port: p, flowinfo: fi, scopeId: sc, flags: f });
    return [r.host, r.port];
  }

  /** gethostbyname(hostname): the IPv4 address as text. */
  async gethostbyname(hostname: unknown): Promise<string> {
    const r = await this.t.netdb<GetHostByNameResponse>('getHostByName', { hostname: hostArg(hostname, 'gethostbyname') });
    return r.address;
  }

  /** gethostbyname_ex(hostname): [hostname, aliaslist, ipaddrlist]. */
  async gethostbynameEx(hostname: unknown): Promise<HostTriple> {
    const r = await this.t.netdb<GetHostByNameExResponse>('getHostByNameEx', { hostname: hostArg(hostname, 'gethostbyname_ex') });
    return [r.hostname, r.aliases, r.addresses];
  }

  /** gethostbyaddr(ip_address): [hostname, aliaslist, ipaddrlist]; socket.herror if unknown. */
  async gethostbyaddr(ipAddress: unknown): Promise<HostTriple> {
    const r = await this.t.netdb<GetHostByAddrResponse>('getHostByAddr', { ipAddress: hostArg(ipAddress, 'gethostbyaddr') });
    return [r.hostname, r.aliases, r.addresses];
  }

  /** gethostname(): the broker host's name. */
  async gethostname(): Promise<string> {
    return (await this.t.netdb<GetHostNameResponse>('getHostName', {})).hostname;
  }

  /** sethostname(name): the broker host's name (its UTS namespace); needs the sethostname grant. */
  async sethostname(name: unknown): Promise<void> {
    let bytes: Buffer;
    if (typeof name === 'string') bytes = Buffer.from(name, 'utf8');
    else if (name instanceof Uint8Array) bytes = Buffer.from(name);
    else throw new TypeError(`sethostname(): argument 1 must be str or bytes-like object, not ${pyType(name)}`);
    await this.t.netdb('setHostName', { name: bytes });
  }

  /** getfqdn(name=''): Lib/socket.py's logic, run on the broker host. */
  async getfqdn(name: unknown = ''): Promise<string> {
    if (typeof name !== 'string') throw new TypeError(`'${pyType(name)}' object has no attribute 'strip'`);
    return (await this.t.netdb<GetFqdnResponse>('getFqdn', { name })).name;
  }

  /** getservbyname(servicename, protocolname?): the port. */
  async getservbyname(servicename: unknown, protocolname?: unknown): Promise<number> {
    const serviceName = strArg(servicename, 'getservbyname', 1);
    const protocolName = protocolname === undefined ? undefined : strArg(protocolname, 'getservbyname', 2);
    return (await this.t.netdb<GetServByNameResponse>('getServByName', { serviceName, protocolName })).port;
  }

  /** getservbyport(port, protocolname?): the service name. */
  async getservbyport(port: unknown, protocolname?: unknown): Promise<string> {
    const p = pyCInt(port);
    const protocolName = protocolname === undefined ? undefined : strArg(protocolname, 'getservbyport', 2);
    if (p < 0 || p > 0xffff) throw new OverflowError('getservbyport: port must be 0-65535.');
    return (await this.t.netdb<GetServByPortResponse>('getServByPort', { port: p, protocolName })).serviceName;
  }

  /** getprotobyname(protocolname): the protocol number. */
  async getprotobyname(protocolname: unknown): Promise<number> {
    const protocolName = strArg(protocolname, 'getprotobyname', 1);
    return (await this.t.netdb<GetProtoByNameResponse>('getProtoByName', { protocolName })).protocol;
  }

  /** if_nameindex(): [index, name] pairs of the broker host's interfaces. */
  async ifNameindex(): Promise<Array<[number, string]>> {
    return (await this.t.netdb<IfNameIndexResponse>('ifNameIndex', {})).interfaces.map((i) => [i.index, i.name]);
  }

  /** if_nametoindex(if_name): the index; OSError 'no interface with this name'. */
  async ifNametoindex(ifName: unknown): Promise<number> {
    let b: Buffer;
    if (typeof ifName === 'string') b = utf8(ifName);
    else if (ifName instanceof Uint8Array) b = Buffer.from(ifName);
    else throw new TypeError(`expected str, bytes or os.PathLike object, not ${pyType(ifName)}`);
    if (b.includes(0)) throw new ValueError('embedded null byte');
    // glibc answers a name of IFNAMSIZ (16) bytes or more with ENODEV without asking the kernel.
    if (b.length >= 16) throw new OSError('no interface with this name');
    return (await this.t.netdb<IfNameToIndexResponse>('ifNameToIndex', { name: b })).index;
  }

  /** if_indextoname(if_index): the name; OSError ENXIO if there is none. */
  async ifIndextoname(ifIndex: unknown): Promise<string> {
    if (!((typeof ifIndex === 'number' && Number.isInteger(ifIndex)) || typeof ifIndex === 'bigint' || typeof ifIndex === 'boolean')) {
      throw new TypeError('an integer is required');
    }
    // An unsigned long, then truncated to the C unsigned int if_indextoname() takes.
    const index = Number(pyUnsignedLong(pyIndex(ifIndex)) % 2n ** 32n);
    return (await this.t.netdb<IfIndexToNameResponse>('ifIndexToName', { index })).name;
  }
}
