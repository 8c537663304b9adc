// The socket module over a broker: what `import socket` gives a Python program. Constants come
// from the broker host at connect; pure helpers run locally; everything else goes to the broker.
import { Transport, type TransportOptions, type ReconnectingEvent, type ResumedEvent } from './transport.js';
import type { SessionLostError } from './errors.js';

/** What a program sees of its session's connection (SocketModule.session). */
export interface BrokerSession {
  readonly state: 'open' | 'reconnecting' | 'lost' | 'closed';
  readonly sessionId: string;
  on(event: 'reconnecting', listener: (e: ReconnectingEvent) => void): this;
  on(event: 'resumed', listener: (e: ResumedEvent) => void): this;
  on(event: 'lost', listener: (err: SessionLostError) => void): this;
  once(event: 'reconnecting' | 'resumed' | 'lost', listener: (e: any) => void): this;
  off(event: 'reconnecting' | 'resumed' | 'lost', listener: (e: any) => void): this;
}
import { brokerTarget } from './broker-address.js';
import * as errors from './errors.js';
import { fromAddress, toAddress, type AddressTuple, type Families } from './address.js';
import { clientTimeout, Socket, type ModuleContext } from './socket.js';
import { notBuffer, pyType, toCInt, toInt, toTimeout } from './pytypes.js';
import { Netdb, type HostTriple } from './netdb.js';
import { pureFunctions, type PyInt } from './pure.js';
import type { LocalSockets } from './local.js';
import { existsSync } from 'node:fs';
import { openCapture, type Capture, type CaptureOptions } from './capture.js';
import type { SniffReader } from './sniff.js';

type Pure = ReturnType<typeof pureFunctions>;

/** poll(2) event bits, the same on every Linux architecture. */
export const POLL = { POLLIN: 0x1, POLLPRI: 0x2, POLLOUT: 0x4, POLLERR: 0x8, POLLHUP: 0x10, POLLNVAL: 0x20 } as const;

/** Module constants by name: socket.AF_INET and friends, as the broker host defines them. */
export type ModuleConstants = {
  readonly [K in `${'AF' | 'PF' | 'SOCK' | 'SOL' | 'SO' | 'SCM' | 'IPPROTO' | 'IPPORT' | 'MSG' | 'SHUT' | 'INADDR' | 'IP' | 'IPV6' | 'TCP' | 'EAI' | 'AI' | 'NI' | 'CAN' | 'TIPC' | 'RDS' | 'PACKET' | 'NETLINK' | 'ETH' | 'BDADDR' | 'HCI' | 'SIO' | 'RCVALL' | 'ALG' | 'BTPROTO' | 'UDPLITE' | 'VMADDR' | 'IOCTL'}_${string}`]: number;
} & { readonly SOMAXCONN: number };

/** getaddrinfo's 5-tuples: [family, type, proto, canonname, sockaddr]. */
export type AddrInfo = [number, number, number, string, AddressTuple];

/** Argument for create_connection's timeout meaning "use getdefaulttimeout()". */
const DEFAULT = Symbol('GLOBAL_DEFAULT_TIMEOUT');

class SocketModuleImpl {
  readonly #t: Transport;
  readonly #ctx: ModuleContext;
  /** The broker's hand-off side channel, or null when sockets stay on the broker. */
  #sidePath: string | null;
  #local: LocalSockets | undefined;
  #defaultTimeout: number | null = null;
  /** socket.has_ipv6 of the broker host. */
  readonly has_ipv6: boolean;
  /** Limits the broker enforces (max_send_bytes, ...), from GetModuleInfo. */
  readonly limits: Readonly<Record<string, number>>;
  /** ABI sizes of the broker host (sizeof_cmsghdr, ...). */
  readonly abi: Readonly<Record<string, number>>;
  readonly POLLIN = POLL.POLLIN;
  readonly POLLPRI = POLL.POLLPRI;
  readonly POLLOUT = POLL.POLLOUT;
  readonly POLLERR = POLL.POLLERR;
  readonly POLLHUP = POLL.POLLHUP;
  readonly POLLNVAL = POLL.POLLNVAL;
  readonly _GLOBAL_DEFAULT_TIMEOUT = DEFAULT;
  readonly #netdb: Netdb;
  // Pure functions, run locally with the broker host's constants and ABI (client/pure.ts).
  declare readonly ntohs: Pure['ntohs'];
  declare readonly htons: Pure['htons'];
  declare readonly ntohl: Pure['ntohl'];
  declare readonly htonl: Pure['htonl'];
  declare readonly inetAton: Pure['inetAton'];
  declare readonly inetNtoa: Pure['inetNtoa'];
  declare readonly inetPton: Pure['inetPton'];
  declare readonly inetNtop: Pure['inetNtop'];
  declare readonly CMSG_LEN: Pure['CMSG_LEN'];
  declare readonly CMSG_SPACE: Pure['CMSG_SPACE'];

  // Exceptions, under Python's names.
  readonly error = errors.OSError;
  readonly OSError = errors.OSError;
  readonly herror = errors.herror;
  readonly gaierror = errors.gaierror;
  readonly timeout = errors.timeout;
  readonly ValueError = errors.ValueError;
  readonly OverflowError = errors.OverflowError;
  readonly BlockingIOError = errors.BlockingIOError;
  readonly ConnectionError = errors.ConnectionError;
  readonly ConnectionRefusedError = errors.ConnectionRefusedError;
  readonly ConnectionResetError = errors.ConnectionResetError;
  readonly ConnectionAbortedError = errors.ConnectionAbortedError;
  readonly BrokenPipeError = errors.BrokenPipeError;
  readonly PermissionError = errors.PermissionError;
  readonly TimeoutError = errors.TimeoutError;
  readonly SessionLostError = errors.SessionLostError;
  /** The socket class, for instanceof checks (create sockets with socket()). */
  readonly SocketType = Socket;

  /**
   * The session's connection: an EventEmitter of 'reconnecting' ({ reason }), 'resumed'
   * ({ attempts, downMs }) and 'lost' (the SessionLostError), and its `state`.
   */
  get session(): BrokerSession {
    return this.#t;
  }

  constructor(t: Transport, info: Awaited<ReturnType<Transport['moduleInfo']>>, sidePath: string | null) {
    this.#t = t;
    this.#sidePath = sidePath;
    this.#netdb = new Netdb(t);
    const num = (r: Record<string, number>, k: string, d: number) => (typeof r[k] === 'number' ? r[k]! : d);
    Object.assign(this, pureFunctions({
      AF_INET: num(info.constants, 'AF_INET', 2),
      AF_INET6: num(info.constants, 'AF_INET6', 10),
      sizeof_cmsghdr: num(info.abi, 'sizeof_cmsghdr', 16),
      cmsg_align: num(info.abi, 'cmsg_align', 8),
      sizeof_long: num(info.abi, 'sizeof_long', 8),
    }));
    const c = info.constants;
    Object.assign(this, c);
    this.has_ipv6 = info.hasIpv6;
    this.limits = info.limits;
    this.abi = info.abi;
    const names = (prefix: string, exclude: RegExp) =>
      new Map(
        Object.entries(c)
          .filter(([k]) => k.startsWith(prefix) && !exclude.test(k))
          .map(([k, v]) => [v, k] as [number, string]),
      );
    const families: Families = { AF_INET: c.AF_INET!, AF_INET6: c.AF_INET6!, AF_UNIX: c.AF_UNIX!, AF_PACKET: c.AF_PACKET, AF_CAN: c.AF_CAN, AF_TIPC: c.AF_TIPC, AF_RDS: c.AF_RDS, AF_NETLINK: c.AF_NETLINK };
    this.#ctx = {
      transport: t,
      families,
      familyNames: names('AF_', /^AF_(LOCAL|FILE|ROUTE)$/),
      typeNames: names('SOCK_', /^SOCK_(NONBLOCK|CLOEXEC)$/),
      maxSendBytes: info.limits.maxSendBytes ?? 4 << 20,
      maxRecvBytes: info.limits.maxRecvBytes ?? 4 << 20,
      getdefaulttimeout: () => this.#defaultTimeout,
      constants: c,
    };
  }

  #const(name: string): number {
    return (this as unknown as Record<string, number>)[name]!;
  }

  /** socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=null). */
  async socket(family?: number, type?: number, proto = 0, fileno: number | null = null): Promise<Socket> {
    const fam = family === undefined ? this.#const('AF_INET') : toCInt(family);
    const typ = type === undefined ? this.#const('SOCK_STREAM') : toCInt(type);
    const pro = toCInt(proto);
    const flags = this.#const('SOCK_NONBLOCK') | this.#const('SOCK_CLOEXEC');
    // SOCK_NONBLOCK in type makes the socket non-blocking, as in CPython.
    const timeout = typ & this.#const('SOCK_NONBLOCK') ? 0 : this.#defaultTimeout;
    if (fileno !== null) {
      // Python 3.4: wrap an existing descriptor (a handed-off fd of this process, else a handle
      // of this session) as given; INVALID_SOCKET (-1) is refused (later versions refuse every
      // negative number).
      const n = toInt(fileno);
      if (n === -1) throw new errors.ValueError("can't use invalid socket value");
      return new Socket(this.#ctx, n, fam, typ & ~flags, pro, timeout, this.#local?.has(n) ? this.#local : undefined);
    }
    const res = await this.#t.call('create', { family: fam, type: typ, protocol: pro, ...(this.#sidePath ? { handoff: true } : {}) });
    const i = res.info!;
    if (res.handoffTicket?.length) {
      const local = await this.#localSockets();
      let fd: number;
      try {
        fd = await local.claim(res.handoffTicket, i);
      } catch (err) {
        // The side channel is out of reach (say a container was given the gRPC socket alone):
        // from now on every socket stays on the broker.
        const code = (err as { code?: string }).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED' && code !== 'EACCES') throw err;
        this.#sidePath = null;
        return this.socket(family, type, proto);
      }
      return new Socket(this.#ctx, fd, i.family, i.type, i.protocol, timeout, local);
    }
    return new Socket(this.#ctx, res.handle, i.family, i.type, i.protocol, timeout);
  }

  /** The in-process backend, loaded on the first hand-off (it brings in native/ and ffi-rs). */
  async #localSockets(): Promise<LocalSockets> {
    if (!this.#local) {
      const { LocalSockets } = await import('./local.js');
      this.#local ??= new LocalSockets(this.#t, this.#sidePath ?? '');
      this.#local.ioctlCodes = { SIO_KEEPALIVE_VALS: this.#const('SIO_KEEPALIVE_VALS'), SIO_LOOPBACK_FAST_PATH: this.#const('SIO_LOOPBACK_FAST_PATH') };
    }
    return this.#local;
  }

  /**
   * fromfd(fd, family, type, proto=0): a new socket on a duplicate of handle `fd` of this session
   * (a detached handle is taken over). family/type/proto are the object's attributes, as given.
   */
  async fromfd(fd: number, family: number, type: number, proto = 0): Promise<Socket> {
    const h = toInt(fd);
    const [fam, typ, pro] = [toInt(family), toInt(type), toInt(proto)];
    const io = this.#local?.has(h) ? this.#local : undefined;
    const res = await (io ?? this.#t).call('fromFd', { handle: h });
    const flags = this.#const('SOCK_NONBLOCK') | this.#const('SOCK_CLOEXEC');
    return new Socket(this.#ctx, res.handle, fam, typ & ~flags, pro, this.#defaultTimeout, io);
  }

  /** fromshare(data): the socket another session shared with this process by socket.share(pid). */
  async fromshare(data: Uint8Array): Promise<Socket> {
    if (!(data instanceof Uint8Array)) throw notBuffer(data);
    const res = await this.#t.call('fromShare', { token: Buffer.from(data) });
    const i = res.info!;
    return new Socket(this.#ctx, res.handle, i.family, i.type, i.protocol, this.#defaultTimeout);
  }

  /** socketpair(family=AF_UNIX, type=SOCK_STREAM, proto=0). */
  async socketpair(family?: number, type?: number, proto = 0): Promise<[Socket, Socket]> {
    const fam = family === undefined ? this.#const('AF_UNIX') : toInt(family);
    const typ = type === undefined ? this.#const('SOCK_STREAM') : toInt(type);
    const timeout = typ & this.#const('SOCK_NONBLOCK') ? 0 : this.#defaultTimeout;
    if (this.#sidePath && fam === this.#const('AF_UNIX')) {
      // With hand-off the pair is made here: each end's SO_PEERCRED names this process.
      const local = await this.#localSockets();
      const [a, b] = local.socketpair(fam, typ, toInt(proto));
      const flags = this.#const('SOCK_NONBLOCK') | this.#const('SOCK_CLOEXEC');
      return [
        new Socket(this.#ctx, a, fam, typ & ~flags, toInt(proto), timeout, local).markConnected(),
        new Socket(this.#ctx, b, fam, typ & ~flags, toInt(proto), timeout, local).markConnected(),
      ];
    }
    const res = await this.#t.call('socketpair', { family: fam, type: typ, protocol: toInt(proto) });
    const i = res.info!;
    return [
      new Socket(this.#ctx, res.handleA, i.family, i.type, i.protocol, timeout).markConnected(),
      new Socket(this.#ctx, res.handleB, i.family, i.type, i.protocol, timeout).markConnected(),
    ];
  }

  /**
   * create_connection(address, timeout?, source_address?): tries each getaddrinfo result in
   * turn and returns the first socket that connects; raises the last error otherwise.
   * `timeout` undefined = getdefaulttimeout(), null = blocking.
   */
  async createConnection(address: [string, number | string], timeout?: number | null | typeof DEFAULT, sourceAddress?: AddressTuple | null): Promise<Socket> {
    // `host, port = address`, with 3.4's unpacking errors.
    const items: unknown = address;
    if (!Array.isArray(items)) throw new TypeError(`'${pyType(items)}' object is not iterable`);
    if (items.length < 2) throw new errors.ValueError(`need more than ${items.length} value${items.length === 1 ? '' : 's'} to unpack`);
    if (items.length > 2) throw new errors.ValueError('too many values to unpack (expected 2)');
    const [host, port] = address;
    let err: Error | undefined;
    for (const [af, socktype, proto, , sa] of await this.getaddrinfo(host, port, 0, this.#const('SOCK_STREAM'))) {
      let sock: Socket | undefined;
      try {
        sock = await this.socket(af, socktype, proto);
        if (timeout !== undefined && timeout !== DEFAULT) sock.settimeout(timeout);
        if (sourceAddress) await sock.bind(sourceAddress);
        await sock.connect(sa);
        return sock;
      } catch (e) {
        if (!(e instanceof errors.OSError)) throw e;
        err = e;
        await sock?.close();
      }
    }
    throw err ?? new errors.OSError('getaddrinfo returns an empty list');
  }

  /** getaddrinfo(host, port, family=0, type=0, proto=0, flags=0), resolved on the broker host. */
  getaddrinfo(host: string | Buffer | null, port: string | number | Buffer | null, family: PyInt = 0, type: PyInt = 0, proto: PyInt = 0, flags: PyInt = 0): Promise<AddrInfo[]> {
    return this.#netdb.getaddrinfo(host, port, family, type, proto, flags);
  }

  /** getnameinfo(sockaddr, flags): [host, port] (NI_* flags), from the broker host's view. */
  getnameinfo(sockaddr: [string, number] | [string, number, number] | [string, number, number, number], flags: PyInt): Promise<[string, string]> {
    return this.#netdb.getnameinfo(sockaddr, flags);
  }

  /** sethostname(name): sets the broker host's name (needs the sethostname grant). */
  sethostname(name: string | Buffer): Promise<void> {
    return this.#netdb.sethostname(name);
  }

  /** gethostbyname(hostname): IPv4 address text. */
  gethostbyname(hostname: string | Buffer): Promise<string> {
    return this.#netdb.gethostbyname(hostname);
  }

  /** gethostbyname_ex(hostname): [hostname, aliaslist, ipaddrlist]. */
  gethostbynameEx(hostname: string | Buffer): Promise<HostTriple> {
    return this.#netdb.gethostbynameEx(hostname);
  }

  /** gethostbyaddr(ip_address): [hostname, aliaslist, ipaddrlist]; socket.herror if unknown. */
  gethostbyaddr(ipAddress: string | Buffer): Promise<HostTriple> {
    return this.#netdb.gethostbyaddr(ipAddress);
  }

  /** gethostname(): the broker host's name. */
  gethostname(): Promise<string> {
    return this.#netdb.gethostname();
  }

  /** getfqdn(name = ''): a fully qualified name, found as Lib/socket.py does on the broker host. */
  getfqdn(name = ''): Promise<string> {
    return this.#netdb.getfqdn(name);
  }

  /** getservbyname(servicename, protocolname?): the port. */
  getservbyname(servicename: string, protocolname?: string): Promise<number> {
    return this.#netdb.getservbyname(servicename, protocolname);
  }

  /** getservbyport(port, protocolname?): the service name. */
  getservbyport(port: PyInt, protocolname?: string): Promise<string> {
    return this.#netdb.getservbyport(port, protocolname);
  }

  /** getprotobyname(protocolname): the protocol number. */
  getprotobyname(protocolname: string): Promise<number> {
    return this.#netdb.getprotobyname(protocolname);
  }

  /** if_nameindex(): [index, name] pairs of the broker host's interfaces. */
  ifNameindex(): Promise<Array<[number, string]>> {
    return this.#netdb.ifNameindex();
  }

  /** if_nametoindex(if_name): the interface index. */
  ifNametoindex(ifName: string | Buffer): Promise<number> {
    return this.#netdb.ifNametoindex(ifName);
  }

  /** if_indextoname(if_index): the interface name. */
  ifIndextoname(ifIndex: PyInt): Promise<string> {
    return this.#netdb.ifIndextoname(ifIndex);
  }

  getdefaulttimeout(): number | null {
    return this.#defaultTimeout;
  }

  /** Sets the timeout new sockets start with: null = blocking. */
  setdefaulttimeout(timeout: number | null): void {
    this.#defaultTimeout = toTimeout(timeout);
  }

  /**
   * The broker's select: waits until one of `sockets` is ready for `events` (POLLIN by default;
   * one value for all or one per socket), or `timeout` seconds pass (null = forever, 0 = check).
   * Resolves to [socket, revents] pairs of the ready ones (empty on timeout).
   */
  async poll(sockets: Array<Socket | number>, events: number | number[] = POLL.POLLIN, timeout: number | null = null): Promise<Array<[Socket | number, number]>> {
    const given = toTimeout(timeout);
    // A socket with datagrams read ahead (client/socket.ts) is readable now: nothing waits.
    const queued = sockets.flatMap((s, i) =>
      typeof s !== 'number' && s._queuedDatagrams > 0 && toInt(Array.isArray(events) ? events[i] : events) & POLL.POLLIN ? [s] : [],
    );
    const asked = queued.length > 0 ? 0 : given;
    // A socket reading ahead holds bytes the broker's poll must see: they go back first.
    await Promise.all(sockets.map((s) => (typeof s === 'number' ? undefined : s._quiesce())));
    const entries = sockets.map((s, i) => ({
      handle: typeof s === 'number' ? toInt(s) : s.fileno(),
      events: toInt(Array.isArray(events) ? events[i] : events),
    }));
    // A sniffer socket whose Sniff stream is open is polled here: its packets are on their way to
    // this process or already read ahead (client/sniff.ts), no longer in the broker's socket.
    const sniffers = new Map<number, SniffReader>();
    sockets.forEach((s, i) => {
      const r = typeof s === 'number' ? undefined : s._sniffReader;
      if (r) sniffers.set(i, r);
    });
    const sniffed = (): Array<[Socket | number, number]> => [...sniffers].flatMap(([i, r]): Array<[Socket | number, number]> => {
      const want = entries[i]!.events;
      const ev = ((r.size > 0 || r.ended) && want & POLL.POLLIN ? POLL.POLLIN : 0) | (want & POLL.POLLOUT);
      return ev ? [[sockets[i]!, ev]] : [];
    });
    const rest = entries.filter((_, i) => !sniffers.has(i));
    let now = sniffed();
    let ready: Array<{ handle: number; events: number }> = [];
    if (sniffers.size === 0 || now.length > 0) {
      if (rest.length > 0 || sniffers.size === 0) ready = await this.#pollBroker(rest, now.length ? 0 : asked);
    } else {
      // Sniffers and other sockets together: both wait at once; the first ready ends the other.
      const ac = new AbortController();
      const deadline = asked === null ? null : performance.now() + asked * 1000;
      const waits = [...sniffers.values()].map((r) => r.wait(deadline, ac.signal));
      [ready] = await Promise.all([
        rest.length ? this.#pollBroker(rest, asked, ac.signal).then((r) => (r.length > 0 && ac.abort(), r), (err) => {
          ac.abort();
          throw err;
        }) : Promise.resolve([]),
        Promise.race(waits).then(() => ac.abort()),
      ]);
      now = sniffed();
    }
    const out: Array<[Socket | number, number]> = ready.map((r) => [sockets[entries.findIndex((e) => e.handle === r.handle)]!, r.events]);
    out.push(...now);
    for (const s of queued) {
      const hit = out.find(([o]) => o === s);
      if (hit) hit[1] |= POLL.POLLIN;
      else out.push([s, POLL.POLLIN]);
    }
    const order = new Map(sockets.map((s, i) => [s, i]));
    out.sort((x, y) => order.get(x[0])! - order.get(y[0])!);
    return out;
  }

  /** poll over broker and handed-off sockets (an abort ends the wait with nothing ready). */
  async #pollBroker(entries: Array<{ handle: number; events: number }>, t: number | null, signal?: AbortSignal): Promise<Array<{ handle: number; events: number }>> {
    const broker = (es: typeof entries, s?: AbortSignal) =>
      this.#t.call('poll', { entries: es, timeout: t ?? undefined }, clientTimeout(t), s).then((r) => r.ready, (err) => {
        if (s?.aborted) return [];
        throw err;
      });
    const local = this.#local;
    const here = local ? entries.filter((e) => local.has(e.handle)) : [];
    const there = local ? entries.filter((e) => !local.has(e.handle)) : entries;
    if (here.length === 0) return broker(entries, signal);
    if (there.length === 0) return local!.poll(entries, t, signal);
    // Handed-off and broker sockets together: both wait at once; the first with something
    // ready ends the other (a broker poll that completed anyway still reports).
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = <T extends unknown[]>(r: T): T => (r.length > 0 && ac.abort(), r);
    try {
      const [a, b] = await Promise.all([
        local!.poll(here, t, ac.signal).then(done, (err) => {
          ac.abort();
          throw err;
        }),
        broker(there, ac.signal).then(done),
      ]);
      const order = new Map(entries.map((e, i) => [e.handle, i]));
      return [...a, ...b].sort((x, y) => order.get(x.handle)! - order.get(y.handle)!);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * A packet capture on the broker host (needs the `capture` grant): resolves once armed to an
   * async iterable of packets (or `batches()`) with live `stats`; breaking out of the loop or
   * close() stops it. Throws PermissionError naming the grant when the policy refuses.
   */
  capture(options: CaptureOptions = {}): Promise<Capture> {
    return openCapture(this.#t, options);
  }

  /** Ends the session: every socket of it closes, then the connection to the broker. */
  async disconnect(): Promise<void> {
    await this.#t.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  /** @internal For tests: the session id. */
  get sessionId(): string {
    return this.#t.sessionId;
  }

  /** @internal toAddress with this module's families (used by helpers). */
  toAddress(addr: unknown, family: number, fn: string) {
    return toAddress(addr, family, this.#ctx.families, fn);
  }
}

export type SocketModule = SocketModuleImpl & ModuleConstants;
export { Socket };

/**
 * The analog of `import socket`: connects to a broker (unix:/PATH or tcp:HOST:PORT; see README
 * for defaults) and opens a session.
 */
export async function connect(address?: string, options: TransportOptions = {}): Promise<SocketModule> {
  const target = brokerTarget(address);
  const t = await Transport.open(target, options);
  // Hand-off needs a local broker and its side channel beside the gRPC socket; the option, else
  // $SOCKBROKER_HANDOFF=0, turns it off.
  const side = target.startsWith('unix:') ? `${target.slice('unix:'.length)}.handoff` : null;
  const want = options.handoff ?? process.env.SOCKBROKER_HANDOFF !== '0';
  const sidePath = want && side !== null && existsSync(side) ? side : null;
  try {
    const info = await t.moduleInfo();
    // One round trip on the Call stream: once connect() resolves the session is attached, so its
    // grace timer cannot end it while the caller's event loop is busy before the first call.
    await t.call('poll', { entries: [], timeout: 0 }, 0);
    return new SocketModuleImpl(t, info, sidePath) as SocketModule;
  } catch (err) {
    await t.close();
    throw err;
  }
}
