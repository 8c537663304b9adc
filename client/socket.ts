// The socket object: Python's socket.socket over a broker handle. State is private; every
// method starts with one health check (EBADF after close); close is idempotent. I/O methods
// return Promises; the socket's mode (blocking / non-blocking / timeout) travels with each
// blocking call and the broker enforces it.
import type { Transport } from './transport.js';
import { fromAddress, reprAddress, toAddress, type AddressTuple, type Families } from './address.js';
import type { Address } from '../proto/gen/sockbroker/v1/address.js';
import { gaierror, herror, makeOSError, OSError, OverflowError, timeout as TimeoutExc, ValueError } from './errors.js';
import { notBuffer, pyType, toBytes, toCInt, toInt, toTimeout, toWritable } from './pytypes.js';
import { fromControlMessage, toControlMessages, type AncConstants, type AncItem } from './ancillary.js';
import { makefile, type MakefileOptions, type SocketFile } from './makefile.js';
import { BulkChannel } from './bulk.js';
import { SniffReader, ZERO_SNIFF_STATS, type SniffStats } from './sniff.js';

/** What a socket needs from its module. */
export interface ModuleContext {
  transport: Transport;
  families: Families;
  /** Names for repr: AddressFamily / SocketType members by value. */
  familyNames: Map<number, string>;
  typeNames: Map<number, string>;
  maxSendBytes: number;
  maxRecvBytes: number;
  getdefaulttimeout(): number | null;
  /** The broker host's constants (for ancillary data items). */
  constants?: Readonly<Record<string, number>>;
}

const EBADF = 9;
const SOCK_STREAM = 1;
const SHUT_RD = 0;
/** Largest sendall that is pipelined, and most unconfirmed pipelined bytes per socket. */
const PIPELINE_MAX = 64 * 1024;
const PIPELINE_WINDOW = 256 * 1024;
const EWOULDBLOCK = 11; // what connect_ex returns on a timeout, as CPython does
const SOCK_RAW = 3;
/** The recv flags a sniffer socket takes (it reads from the SDK's read-ahead, client/sniff.ts). */
const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EOPNOTSUPP = 95;
const MSG_OOB = 0x1;
const MSG_TRUNC = 0x20;
const MSG_ERRQUEUE = 0x2000;
const SOCK_DGRAM = 2;
/** Datagrams a broker UDP/raw socket's recv asks the broker to read ahead (at most 63; 0 = off). */
const DGRAM_READ_AHEAD = Math.max(0, Math.min(63, Number(globalThis.process?.env?.SOCKBROKER_DGRAM_READ_AHEAD ?? 63) || 0));
/**
 * Options (level:name, Linux) after which a UDP/raw socket still reads datagrams ahead: none of
 * them makes the kernel attach ancillary data to a datagram, which the read-ahead does not carry.
 * Any other setsockopt, or a recvmsg, ends the read-ahead for good.
 */
const READ_AHEAD_OPTIONS = new Set([
  // SOL_SOCKET: SO_REUSEADDR, SO_DONTROUTE, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_PRIORITY, SO_LINGER, SO_REUSEPORT, SO_BINDTODEVICE, SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_MARK
  ...[2, 5, 6, 7, 8, 9, 12, 13, 15, 25, 32, 33, 36].map((n) => `1:${n}`),
  // IPPROTO_IP: IP_TOS, IP_TTL, IP_HDRINCL, IP_MULTICAST_IF/_TTL/_LOOP, IP_ADD/DROP_MEMBERSHIP
  ...[1, 2, 3, 32, 33, 34, 35, 36].map((n) => `0:${n}`),
  // IPPROTO_IPV6: IPV6_UNICAST_HOPS, IPV6_MULTICAST_IF/_HOPS/_LOOP, IPV6_JOIN/LEAVE_GROUP, IPV6_V6ONLY, IPV6_TCLASS
  ...[16, 17, 18, 19, 20, 21, 26, 67].map((n) => `41:${n}`),
]);
/** A recv at least this large counts towards the pattern that starts the read-ahead. */
const BULK_READ_MIN = 64 * 1024;
/** Consecutive large recv calls after which the socket reads ahead on its Data stream. */
const BULK_READ_AFTER = 2;

/** The longest socket timeout (s) whose client deadline (timeout + margin) fits a Node timer;
 * beyond it the client sets no deadline of its own and relies on the broker's. */
const MAX_CLIENT_TIMEOUT_S = 2_000_000;

/** @internal A socket timeout as the transport's deadline argument. */
export function clientTimeout(t: number | null): number | null {
  return t !== null && t > MAX_CLIENT_TIMEOUT_S ? null : t;
}

/** The source address of an IPv4 packet, as Windows' sniffer gives it (one string per source seen last). */
let lastSource = -1;
let lastSourceText = '';
function sourceOf(data: Buffer): string {
  if (data.length < 20) return '0.0.0.0';
  const key = data.readUInt32BE(12);
  if (key !== lastSource) {
    lastSource = key;
    lastSourceText = `${data[12]}.${data[13]}.${data[14]}.${data[15]}`;
  }
  return lastSourceText;
}

function badf(): OSError {
  return makeOSError(EBADF, 'Bad file descriptor', 'EBADF');
}

/** Where a socket's operations run: the broker (its Call stream) or, for a handed-off socket,
 * this process (client/local.ts); both take the same requests and give the same replies. */
export type Backend = Pick<Transport, 'call'>;

export class Socket {
  readonly #m: ModuleContext;
  readonly #io: Backend;
  #handle: number;
  #timeout: number | null;
  #closed = false;
  /** close() was called (the handle closes once no makefile() file object is open). */
  #userClosed = false;
  /** Open file objects from makefile() (Python's _io_refs). */
  #ioRefs = 0;
  /** True once connected (connect, accept, socketpair): only then is sendall pipelined. */
  #connected = false;
  /**
   * Pipelined sendall calls not yet confirmed (both streams), the Call stream's bytes of them,
   * the waiters woken when one settles, and the error of one that failed (raised by the next call).
   */
  #inflight = 0;
  #inflightBytes = 0;
  #onSettle: Array<() => void> = [];
  #deferred: Error | null = null;
  /** Pipelined sendall calls on the Data stream: later sends on the Call stream wait for them. */
  #bulkSending = 0;
  /** Cancels the reads in flight when a pipelined sendall fails. */
  #reads = new AbortController();
  #laddr: AddressTuple | null = null;
  #raddr: AddressTuple | null = null;
  /** A sniffer socket's read-ahead: its Sniff stream, opened by the first recv (client/sniff.ts). */
  #sniff: SniffReader | undefined;
  /** Was connected once (reads after shutdown(SHUT_WR) may still go through the Data stream). */
  #everConnected = false;
  /** The socket's Data stream (client/bulk.ts): undefined until first needed, null if refused. */
  #bulk: BulkChannel | null | undefined;
  #bulkOpening: Promise<BulkChannel | null> | undefined;
  /**
   * A broker UDP/raw socket's datagrams read ahead (at most DGRAM_READ_AHEAD, each whole with its
   * address), returned in order by the next reads; close discards them, as the kernel discards a
   * closed socket's queue. `#dgramAhead` ends for good with a setsockopt that may add ancillary
   * data, or a recvmsg; `#dgramFetch` is the recv bringing more (later reads wait for it: order).
   */
  readonly #dgrams: Array<{ data: Buffer; address?: Address }> = [];
  #dgramAhead = true;
  #dgramFetch: Promise<unknown> | undefined;
  /** Consecutive large recv calls; makefile() reads ahead at once. */
  #largeReads = 0;
  #preferBulk = false;
  readonly family: number;
  readonly type: number;
  readonly proto: number;

  /** @internal Built by the module's socket()/socketpair()/accept(). */
  constructor(m: ModuleContext, handle: number, family: number, type: number, proto: number, timeout: number | null, io: Backend = m.transport) {
    this.#m = m;
    this.#io = io;
    this.#handle = handle;
    this.family = family;
    this.type = type;
    this.proto = proto;
    this.#timeout = timeout;
    // What getsockname() gives before bind/connect, so repr shows laddr as Python's does.
    if (family === m.families.AF_INET) this.#laddr = ['0.0.0.0', 0];
    else if (family === m.families.AF_INET6) this.#laddr = ['::', 0, 0, 0];
  }

  #check(): number {
    if (this.#closed) throw badf();
    if (this.#deferred) {
      const err = this.#deferred;
      this.#deferred = null;
      throw err;
    }
    return this.#handle;
  }

  /** @internal Marks a socket born connected (accept, socketpair). */
  markConnected(): this {
    this.#connected = true;
    this.#everConnected = true;
    return this;
  }

  /** The timeout sent with blocking calls: undefined = blocking, 0 = non-blocking. */
  get #mode(): number | undefined {
    return this.#timeout ?? undefined;
  }

  /** The timeout for the client-side deadline: none when beyond what a Node timer holds. */
  get #deadline(): number | null {
    return clientTimeout(this.#timeout);
  }

  #addr(address: unknown, fn: string) {
    return toAddress(address, this.family, this.#m.families, fn);
  }

  /** @internal Whether this socket was handed off (runs in this process on its real fd). */
  get _handedOff(): boolean {
    return this.#io !== this.#m.transport;
  }

  /** The handle number (Python's fileno()), or the real fd of a handed-off socket; -1 once closed. */
  fileno(): number {
    return this.#closed ? -1 : this.#handle;
  }

  gettimeout(): number | null {
    return this.#timeout;
  }

  /** null = blocking, 0 = non-blocking, > 0 = timeout in seconds. */
  settimeout(value: number | null): void {
    // eslint-disable-next-line prefer-rest-params
    if (arguments.length !== 1) throw new TypeError(`settimeout() takes exactly one argument (${arguments.length} given)`);
    this.#timeout = toTimeout(value);
  }

  /** setblocking(flag): an int or bool, as 3.4's PyLong_AsLong takes it (a float truncates). */
  setblocking(flag: boolean): void {
    // eslint-disable-next-line prefer-rest-params
    if (arguments.length !== 1) throw new TypeError(`setblocking() takes exactly one argument (${arguments.length} given)`);
    if (typeof flag !== 'boolean' && typeof flag !== 'number') throw new TypeError(`an integer is required (got type ${pyType(flag)})`);
    this.#timeout = Math.trunc(Number(flag)) ? null : 0;
  }

  async bind(address: AddressTuple): Promise<void> {
    const handle = this.#check();
    const res = await this.#io.call('bind', { handle, address: this.#addr(address, 'bind') });
    this.#laddr = fromAddress(res.local);
  }

  async listen(backlog?: number): Promise<void> {
    const handle = this.#check();
    await this.#io.call('listen', { handle, backlog: backlog === undefined ? undefined : toCInt(backlog) });
    await this.#autobound();
  }

  /** After a call that may bind an unbound inet socket to a port (listen, sendto), learn the
   * address, so repr shows it as Python's (which asks getsockname) does. */
  #autobound(): Promise<unknown> | undefined {
    // Not async: a sendto loop's later calls have nothing to wait for (no promise each).
    if (Array.isArray(this.#laddr) && this.#laddr[1] === 0) return this.getsockname().catch(() => undefined);
    return undefined;
  }

  /** Resolves to [connection, address]; the new socket's mode follows the seed's accept rules. */
  async accept(): Promise<[Socket, AddressTuple | null]> {
    const handle = this.#check();
    const res = await this.#io.call('accept', { handle, timeout: this.#mode }, this.#deadline);
    const def = this.#m.getdefaulttimeout();
    // Python: the new socket gets the default timeout; if there is none and the listening socket
    // has a timeout, it is blocking.
    const mode = def === null && this.#timeout ? null : def;
    const info = res.info!;
    const sock = new Socket(this.#m, res.handle, info.family, info.type, info.protocol, mode, this.#io);
    sock.#laddr = fromAddress(res.local);
    sock.#raddr = fromAddress(res.address);
    sock.#connected = true;
    sock.#everConnected = true;
    return [sock, fromAddress(res.address)];
  }

  async connect(address: AddressTuple): Promise<void> {
    await this.#connect(address, 'connect');
  }

  async #connect(address: AddressTuple, fn: string): Promise<void> {
    const handle = this.#check();
    const res = await this.#io.call('connect', { handle, address: this.#addr(address, fn), timeout: this.#mode }, this.#deadline);
    this.#laddr = fromAddress(res.local);
    this.#raddr = fromAddress(res.peer);
    this.#connected = true;
    this.#everConnected = true;
  }

  /** connect() that returns the errno (0 on success) instead of raising it. */
  async connectEx(address: AddressTuple): Promise<number> {
    try {
      await this.#connect(address, 'connect_ex');
      return 0;
    } catch (err) {
      if (err instanceof TimeoutExc) return EWOULDBLOCK;
      // Errors of the connect itself come back as errno; name resolution and bad arguments raise.
      if (err instanceof OSError && err.errno !== null && !(err instanceof gaierror) && !(err instanceof herror)) return err.errno;
      throw err;
    }
  }

  async send(data: Uint8Array, flags = 0): Promise<number> {
    const handle = this.#check();
    await this.#afterBulkSends();
    const buf = toBytes(data);
    const res = await this.#io.call('send', { handle, data: buf, flags: toCInt(flags), timeout: this.#mode }, this.#deadline);
    return res.sent;
  }

  /** sendto(data, address) or sendto(data, flags, address). */
  async sendto(data: Uint8Array, flagsOrAddress: number | AddressTuple, address?: AddressTuple): Promise<number> {
    // eslint-disable-next-line prefer-rest-params
    const given = arguments.length;
    if (given < 2 || given > 3) throw new TypeError(`sendto() takes 2 or 3 arguments (${given} given)`);
    const handle = this.#check();
    await this.#afterBulkSends();
    const buf = toBytes(data);
    const [flags, addr] = address === undefined ? [0, flagsOrAddress] : [toCInt(flagsOrAddress), address];
    const res = await this.#io.call(
      'send',
      { handle, data: buf, flags, address: this.#addr(addr, 'sendto'), timeout: this.#mode },
      this.#deadline,
    );
    await this.#autobound();
    return res.sent;
  }

  /**
   * Sends all of data (in calls of at most the broker's max_send_bytes). On a connected,
   * blocking stream socket a small sendall is pipelined: it resolves once its bytes are on the
   * way to the broker, which sends them in order before anything later on this socket runs; if
   * the broker then reports an error (the peer reset the connection, say), the next call on this
   * socket raises it — the way a kernel reports a write's late failure. At most
   * PIPELINE_WINDOW bytes are unconfirmed at once.
   */
  async sendall(data: Uint8Array, flags = 0): Promise<void> {
    const handle = this.#check();
    const buf = toBytes(data);
    const f = toCInt(flags);
    if (buf.length > PIPELINE_MAX && this.#connected && this.#timeout !== 0 && this.#tcp() && (await this.#bulkSendall(buf, f))) return;
    const bulkSends = this.#afterBulkSends();
    if (bulkSends) await bulkSends;
    if (this.#pipelinable(buf.length)) {
      while (this.#inflightBytes + buf.length > PIPELINE_WINDOW) await this.#acked();
      this.#inflight++;
      this.#inflightBytes += buf.length;
      // A copy: the caller may reuse its buffer as soon as sendall resolves. Its success comes
      // with the broker's next response (the cumulative acknowledgement), not one of its own.
      this.#m.transport.callAckOnly('sendAll', { handle, data: Buffer.from(buf), flags: f }, this.#ackOnlyDone, buf.length);
      return;
    }
    if (this.#inflight > 0) await this.#settled();
    else this.#check();
    const step = this.#m.maxSendBytes;
    let offset = 0;
    do {
      const chunk = buf.subarray(offset, offset + step);
      await this.#io.call('sendAll', { handle, data: chunk, flags: f, timeout: this.#mode }, this.#deadline);
      offset += chunk.length;
    } while (offset < buf.length);
  }

  /**
   * A large sendall through the Data stream; false when the socket has none (the caller then
   * uses the Call stream). It waits for the Call stream's pipelined sends (another stream, so
   * they must reach the broker first) but not for earlier large ones: the Data stream keeps
   * those in order, so consecutive sendall calls stream back to back within its window.
   */
  async #bulkSendall(buf: Buffer, f: number): Promise<boolean> {
    while (this.#inflightBytes > 0) await this.#acked();
    this.#check();
    const ch = await this.#channel();
    if (!ch || ch.broken) return false;
    const { queued, done } = ch.sendall(buf, f, this.#timeout);
    // A timeout must be raised by this call itself: wait for the broker.
    if (this.#timeout !== null) {
      await done;
      return true;
    }
    // Blocking mode pipelines as the small sendall does (see above), within the stream's window.
    await queued;
    this.#bulkSending++;
    this.#inflight++;
    void done.then(
      () => undefined,
      (err: Error) => this.#failLate(err),
    ).finally(() => {
      this.#inflight--;
      this.#bulkSending--;
      this.#wake();
    });
    return true;
  }

  /** A pipelined sendall on the Call stream settled (one callback for every call: no closures). */
  readonly #ackOnlyDone = (err: Error | null, size: number): void => {
    this.#inflight--;
    this.#inflightBytes -= size;
    // As a promise's rejection would: after the response being handled (and its batch).
    if (err) queueMicrotask(() => this.#failLate(err));
    this.#wake();
  };

  /** Asks the broker for its acknowledgement; resolves when the next pipelined sendall settles. */
  #acked(): Promise<void> {
    this.#m.transport.requestAck();
    return this.#oneSettles();
  }

  /** Resolves when the next pipelined sendall settles. */
  #oneSettles(): Promise<void> {
    return new Promise<void>((resolve) => this.#onSettle.push(resolve));
  }

  #wake(): void {
    if (this.#onSettle.length === 0) return;
    const waiters = this.#onSettle;
    this.#onSettle = [];
    for (const w of waiters) w();
  }

  /** A pipelined sendall failed: the next call raises its error. */
  #failLate(err: Error): void {
    this.#deferred ??= err;
    // A read already waiting on this socket would otherwise wait for data that was never
    // sent: it fails with the sendall's error too.
    this.#reads.abort(err);
    this.#reads = new AbortController();
  }

  #pipelinable(size: number): boolean {
    // A handed-off socket's send is a syscall here: nothing to pipeline.
    return this.#io === this.#m.transport && this.#connected && this.#timeout === null && size <= Math.min(PIPELINE_MAX, this.#m.maxSendBytes) && (this.type & 0xf) === SOCK_STREAM;
  }

  /** A send on the Call stream could overtake a pipelined sendall on the Data stream: it waits. */
  #afterBulkSends(): Promise<void> | undefined {
    return this.#bulkSending > 0 ? this.#settled() : undefined;
  }

  /** Waits for pipelined sends, then raises the error one of them left, if any. */
  async #settled(): Promise<void> {
    while (this.#inflight > 0) await this.#acked();
    this.#check();
  }

  /** A TCP socket on the broker: one that may have a Data stream. */
  #tcp(): boolean {
    const { AF_INET, AF_INET6 } = this.#m.families;
    // A handed-off socket is already native here: no stream to add.
    return !this._handedOff && (this.family === AF_INET || this.family === AF_INET6) && (this.type & 0xf) === SOCK_STREAM;
  }

  /** The Data stream, opened on first use; null when the broker refuses one. */
  async #channel(): Promise<BulkChannel | null> {
    if (this.#bulk !== undefined) return this.#bulk;
    this.#bulkOpening ??= BulkChannel.open(this.#m.transport, this.#handle, this.#m.maxSendBytes).then((ch) => {
      if (this.#closed) ch?.close(badf());
      return (this.#bulk = this.#closed ? null : ch);
    });
    return this.#bulkOpening;
  }

  /** Before any read that is not the read-ahead's: it stops, and gives back what it holds. */
  #quiesce(): Promise<void> | undefined {
    return this.#bulk?.active ? this.#bulk.quiesce() : undefined;
  }

  /**
   * recv(n) through the read-ahead, once the socket shows a pattern of large reads (or makefile
   * reads it); null (or a promise of it) = use the Call stream. Flags, non-blocking mode or
   * recv(0) never read ahead. A plain null when nothing needs waiting for: a small read then
   * goes on without an await.
   */
  #bulkRecv(n: number, flags: number): Promise<Buffer | null> | null {
    if (flags !== 0 || n === 0 || this.#timeout === 0 || !this.#everConnected || !this.#tcp()) {
      const q = this.#quiesce();
      return q ? q.then(() => null) : null;
    }
    if (!this.#bulk?.active && !this.#preferBulk) {
      if (n < BULK_READ_MIN) this.#largeReads = 0;
      else this.#largeReads++;
      if (this.#largeReads < BULK_READ_AFTER || this.#bulk?.finished) return null;
    }
    return this.#bulkRead(n);
  }

  async #bulkRead(n: number): Promise<Buffer | null> {
    const ch = await this.#channel();
    if (!ch) return null;
    return ch.recv(n, this.#timeout, this.#reads.signal);
  }

  /** @internal makefile(): the file's reads go through the read-ahead from the start. */
  _preferBulk(): void {
    this.#preferBulk = true;
  }

  /** @internal Before poll/select looks at this socket: the read-ahead gives back what it holds. */
  async _quiesce(): Promise<void> {
    if (!this.#closed) await this.#quiesce();
  }

  async recv(bufsize: number, flags = 0): Promise<Buffer> {
    const handle = this.#check();
    const n = this.#bufsize(bufsize, 'recv');
    const f = toCInt(flags);
    if (this.#sniffer) return this.#sniffNow(n, f) ?? this.#sniffed(handle, n, f);
    const d = this.#queueing && (await this.#datagram(handle, n, f));
    if (d) return d.data;
    // A handed-off socket is native here: no Data stream to read through.
    const ahead = this._handedOff ? null : this.#bulkRecv(n, f);
    const bulk = ahead && (await ahead);
    if (bulk) return bulk;
    const res = await this.#io.call('recv', { handle, bufsize: n, flags: f, wantAddress: false, timeout: this.#mode }, this.#deadline, this.#reads.signal);
    return res.data;
  }

  async recvfrom(bufsize: number, flags = 0): Promise<[Buffer, AddressTuple | null]> {
    const handle = this.#check();
    const n = this.#bufsize(bufsize, 'recvfrom');
    const f = toCInt(flags);
    if (this.#sniffer) {
      // At full rate most calls find a packet read ahead: no second await for those.
      const data = this.#sniffNow(n, f) ?? await this.#sniffed(handle, n, f);
      return [data, [sourceOf(data), 0]];
    }
    const d = this.#queueing && (await this.#datagram(handle, n, f));
    if (d) return [d.data, fromAddress(d.address)];
    await this.#quiesce();
    const res = await this.#io.call('recv', { handle, bufsize: n, flags: f, wantAddress: true, timeout: this.#mode }, this.#deadline, this.#reads.signal);
    return [res.data, fromAddress(res.address)];
  }

  /** A broker UDP or raw (not sniffer) IPv4/IPv6 socket that still reads datagrams ahead. */
  get #readsDatagramsAhead(): boolean {
    const { AF_INET, AF_INET6 } = this.#m.families;
    const t = this.type & 0xf;
    return DGRAM_READ_AHEAD > 0 && this.#dgramAhead && this.#io === this.#m.transport && (this.family === AF_INET || this.family === AF_INET6) && (t === SOCK_DGRAM || (t === SOCK_RAW && !this.#sniffer));
  }

  /** Whether a read goes through #datagram: datagrams are queued or on their way, or may be (no await on other sockets' reads). */
  get #queueing(): boolean {
    return this.#dgrams.length > 0 || this.#dgramFetch !== undefined || this.#readsDatagramsAhead;
  }

  /** @internal Datagrams read ahead and not yet returned (poll() counts the socket readable). */
  get _queuedDatagrams(): number {
    return this.#closed ? 0 : this.#dgrams.length;
  }

  /**
   * The next datagram through the read-ahead, cut at bufsize as recvfrom cuts one: a queued one
   * (any flags but MSG_OOB / MSG_ERRQUEUE, which are about other queues), else with flags 0 one
   * recv that also brings up to DGRAM_READ_AHEAD datagrams already waiting on the broker. null:
   * make the plain call.
   */
  async #datagram(handle: number, bufsize: number, flags: number): Promise<{ data: Buffer; address?: Address; truncated?: boolean; length?: number } | null> {
    if (flags & (MSG_OOB | MSG_ERRQUEUE)) return null;
    while (this.#dgramFetch) await this.#dgramFetch.catch(() => undefined);
    if (this.#closed) throw badf();
    const head = this.#dgrams[0];
    if (head) {
      if (!(flags & MSG_PEEK)) this.#dgrams.shift();
      const truncated = head.data.length > bufsize;
      return { data: truncated ? head.data.subarray(0, bufsize) : head.data, address: head.address, truncated, length: head.data.length };
    }
    if (flags !== 0 || !this.#readsDatagramsAhead) return null;
    const fetch = this.#io.call('recv', { handle, bufsize, flags: 0, wantAddress: true, timeout: this.#mode, batch: DGRAM_READ_AHEAD }, this.#deadline, this.#reads.signal);
    this.#dgramFetch = fetch;
    try {
      const res = await fetch;
      if (res.queued?.length && !this.#closed) this.#dgrams.push(...res.queued);
      return res;
    } finally {
      this.#dgramFetch = undefined;
    }
  }

  /** The Windows-style sniffer socket (AF_INET, SOCK_RAW, IPPROTO_IP) on the broker. */
  get #sniffer(): boolean {
    return this.family === this.#m.families.AF_INET && (this.type & 0xf) === SOCK_RAW && this.proto === 0 && this.#io === this.#m.transport;
  }

  /** @internal Packets read ahead and not yet returned (poll() counts them as readable). */
  get readAhead(): number {
    return this.#sniff?.size ?? 0;
  }

  /** @internal A sniffer socket's open read-ahead (poll() waits on it here, not on the broker). */
  get _sniffReader(): SniffReader | undefined {
    return this.#closed ? undefined : this.#sniff;
  }

  /**
   * A sniffer socket's counters: packets the kernel filter passed (received) and those delivered
   * to this process (captured), dropped by the kernel (ring full), by the broker and by the SDK's
   * read-ahead bound, and how many are read ahead now. Zero until the first recv.
   */
  get sniffStats(): SniffStats {
    return this.#sniff?.stats ?? { ...ZERO_SNIFF_STATS };
  }

  /** A packet already read ahead, for plain flags; null when the slow path must decide. */
  #sniffNow(bufsize: number, flags: number): Buffer | null {
    if (flags !== 0 || this.#closed) return null;
    const data = this.#sniff?.take(false);
    return data ? (data.length > bufsize ? data.subarray(0, bufsize) : data) : null;
  }

  /**
   * A sniffer socket's next packet, cut at bufsize as recvfrom cuts a datagram: from the
   * read-ahead, waiting for it under the socket's timeout (0 or MSG_DONTWAIT: BlockingIOError at
   * once). One recv opens the socket's Sniff stream; an error that ended it is raised once the
   * packets before it are read, and the next recv opens a new one.
   */
  async #sniffed(handle: number, bufsize: number, flags: number): Promise<Buffer> {
    if (flags & ~(MSG_PEEK | MSG_DONTWAIT)) throw makeOSError(EOPNOTSUPP, 'Operation not supported (a sniffer socket takes MSG_PEEK and MSG_DONTWAIT only)', 'EOPNOTSUPP');
    const deadline = this.#timeout === null ? null : performance.now() + this.#timeout * 1000;
    for (;;) {
      if (this.#closed) throw badf(); // also for a recv that was waiting when close() came
      const q = (this.#sniff ??= new SniffReader(this.#m.transport, handle));
      const data = q.take((flags & MSG_PEEK) !== 0);
      if (data) return data.length > bufsize ? data.subarray(0, bufsize) : data;
      if (q.ended) {
        this.#sniff = undefined;
        throw q.error ?? badf();
      }
      if (this.#timeout === 0 || flags & MSG_DONTWAIT) throw makeOSError(EAGAIN, 'Resource temporarily unavailable', 'EAGAIN');
      if (!(await q.wait(deadline))) throw new TimeoutExc('timed out');
    }
  }

  /** Receives into `buffer` (up to nbytes, 0 = its length); resolves to the count received. */
  async recvInto(buffer: Uint8Array, nbytes = 0, flags = 0): Promise<number> {
    const [n] = await this.#into(buffer, nbytes, flags, 'recv_into', false);
    return n;
  }

  async recvfromInto(buffer: Uint8Array, nbytes = 0, flags = 0): Promise<[number, AddressTuple | null]> {
    return this.#into(buffer, nbytes, flags, 'recvfrom_into', true);
  }

  async #into(buffer: Uint8Array, nbytes: number, flags: number, fn: string, wantAddress: boolean): Promise<[number, AddressTuple | null]> {
    const handle = this.#check();
    const target = toWritable(buffer, fn);
    let n = toInt(nbytes);
    if (n < 0) throw new ValueError(`negative buffersize in ${fn}`);
    if (n === 0) n = target.length;
    else if (n > target.length) {
      throw new ValueError(fn === 'recv_into' ? 'buffer too small for requested bytes' : 'nbytes is greater than the length of the buffer');
    }
    n = Math.min(n, this.#m.maxRecvBytes);
    const f = toCInt(flags);
    if (this.#sniffer) {
      const data = await this.#sniffed(handle, n, f);
      data.copy(target, 0);
      return [data.length, wantAddress ? [sourceOf(data), 0] : null];
    }
    const d = this.#queueing && (await this.#datagram(handle, n, f));
    if (d) {
      d.data.copy(target, 0);
      return [d.data.length, wantAddress ? fromAddress(d.address) : null];
    }
    if (!wantAddress) {
      const ahead = this.#bulkRecv(n, f);
      const bulk = ahead && (await ahead);
      if (bulk) {
        bulk.copy(target, 0);
        return [bulk.length, null];
      }
    } else await this.#quiesce();
    const res = await this.#io.call('recv', { handle, bufsize: n, flags: f, wantAddress, timeout: this.#mode }, this.#deadline, this.#reads.signal);
    res.data.copy(target, 0);
    return [res.data.length, wantAddress ? fromAddress(res.address) : null];
  }

  /** A recv size: at most the broker's per-call limit (a recv may return less than asked anyway). */
  #bufsize(bufsize: number, fn: string): number {
    const n = toInt(bufsize);
    if (n < 0) throw new ValueError(`negative buffersize in ${fn}`);
    return Math.min(n, this.#m.maxRecvBytes);
  }

  async shutdown(how: number): Promise<void> {
    const handle = this.#check();
    await this.#afterBulkSends();
    // CPython reads `how` with _PyLong_AsInt, whose overflow message differs from the "i" format's.
    const h = toInt(how);
    if (h > 0x7fffffff || h < -0x80000000) throw new OverflowError('Python int too large to convert to C int');
    await this.#io.call('shutdown', { handle, how: h });
    // Writing is shut down: a later sendall must raise EPIPE itself, as in Python, not the call after it.
    if (h !== SHUT_RD) this.#connected = false;
  }

  /**
   * Closes the socket; closing twice is a no-op, as in Python. While file objects from
   * makefile() are open the handle stays open (Python's _io_refs): it closes with the last one.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#userClosed = true;
    if (this.#ioRefs > 0) return;
    // Bytes of a pipelined sendall go out before the close (its error, if any, is dropped as a
    // late write error is by close(2)).
    while (this.#bulkSending > 0) await this.#oneSettles();
    if (this.#closed) return;
    this.#closed = true;
    this.#sniff?.close();
    this.#sniff = undefined;
    this.#dgrams.length = 0;
    this.#bulk?.close(badf());
    await this.#io.call('close', { handle: this.#handle });
  }

  async getsockname(): Promise<AddressTuple | null> {
    const handle = this.#check();
    const res = await this.#io.call('getSockName', { handle });
    return (this.#laddr = fromAddress(res.address));
  }

  async getpeername(): Promise<AddressTuple | null> {
    const handle = this.#check();
    const res = await this.#io.call('getPeerName', { handle });
    return (this.#raddr = fromAddress(res.address));
  }

  /** getsockopt(level, optname) → int; getsockopt(level, optname, buflen) → bytes. */
  async getsockopt(level: number, optname: number): Promise<number>;
  async getsockopt(level: number, optname: number, buflen: number): Promise<Buffer>;
  async getsockopt(level: number, optname: number, buflen?: number): Promise<number | Buffer> {
    const handle = this.#check();
    // As in CPython, buflen 0 (the default) asks for the int form.
    const n = buflen === undefined ? 0 : toCInt(buflen);
    const req = { handle, level: toCInt(level), name: toCInt(optname), buflen: n === 0 ? undefined : n };
    if (n < 0 || n > 1024) throw new OSError('getsockopt buflen out of range');
    const res = await this.#io.call('getSockOpt', req);
    return n === 0 ? res.value : res.data;
  }

  /** setsockopt(level, optname, value): value is an int (a C int) or a bytes-like object. */
  async setsockopt(level: number, optname: number, value: number | Uint8Array): Promise<void> {
    const handle = this.#check();
    // CPython tries the value as a C int, then as a bytes-like object: a float or an int out of
    // C int range fails the second parse and is reported as not bytes-like.
    const isInt = (typeof value === 'number' && Number.isInteger(value) && value >= -0x80000000 && value <= 0x7fffffff) || typeof value === 'boolean';
    if (!isInt && !(value instanceof Uint8Array)) throw notBuffer(value);
    await this.#io.call('setSockOpt', {
      handle,
      level: toCInt(level),
      name: toCInt(optname),
      ...(isInt ? { intValue: toCInt(value) } : { bytesValue: toBytes(value) }),
    });
    if (!READ_AHEAD_OPTIONS.has(`${toCInt(level)}:${toCInt(optname)}`)) this.#dgramAhead = false;
  }

  get #anc(): AncConstants {
    // SO_TIMESTAMP is no constant of Python's module (nor the SDK's): its asm-generic value.
    return { SO_TIMESTAMP: 29, ...this.#m.constants } as unknown as AncConstants;
  }

  /**
   * sendmsg(buffers, ancdata=[], flags=0, address=null): ancdata items are [level, type, data];
   * SCM_RIGHTS data is packed handle numbers of this session (array('i', fds) in Python).
   */
  async sendmsg(buffers: Iterable<Uint8Array>, ancdata: Iterable<AncItem> = [], flags = 0, address: AddressTuple | null = null): Promise<number> {
    const handle = this.#check();
    await this.#afterBulkSends();
    if (buffers === null || typeof buffers !== 'object' || !(Symbol.iterator in buffers)) throw new TypeError('sendmsg() argument 1 must be an iterable');
    const bufs = [...buffers].map((b) => toBytes(b));
    const anc = toControlMessages(ancdata, this.#anc);
    const f = toCInt(flags);
    const addr = address === null || address === undefined ? undefined : this.#addr(address, 'sendmsg');
    const res = await this.#io.call('sendMsg', { handle, buffers: bufs, ancdata: anc, flags: f, address: addr, timeout: this.#mode }, this.#deadline);
    return res.sent;
  }

  /** recvmsg(bufsize, ancbufsize=0, flags=0) → [data, ancdata, msg_flags, address]. */
  async recvmsg(bufsize: number, ancbufsize = 0, flags = 0): Promise<[Buffer, AncItem[], number, AddressTuple | null]> {
    const n = toInt(bufsize);
    if (n < 0) throw new ValueError('negative buffer size in recvmsg()');
    const res = await this.#recvmsg(n, ancbufsize, flags);
    return [res.data, res.ancdata.map(fromControlMessage), res.msgFlags, fromAddress(res.address)];
  }

  /** recvmsg_into(buffers, ancbufsize=0, flags=0) → [nbytes, ancdata, msg_flags, address]; data is scattered over buffers. */
  async recvmsgInto(buffers: Iterable<Uint8Array>, ancbufsize = 0, flags = 0): Promise<[number, AncItem[], number, AddressTuple | null]> {
    if (buffers === null || typeof buffers !== 'object' || !(Symbol.iterator in buffers)) throw new TypeError('recvmsg_into() argument 1 must be an iterable');
    const targets = [...buffers].map((b) => {
      if (!(b instanceof Uint8Array)) throw new TypeError('recvmsg_into() argument 1 must be an iterable of single-segment read-write buffers');
      return toWritable(b, 'recvmsg_into');
    });
    const res = await this.#recvmsg(targets.reduce((n, b) => n + b.length, 0), ancbufsize, flags);
    let off = 0;
    for (const t of targets) {
      if (off >= res.data.length) break;
      off += res.data.copy(t, 0, off);
    }
    return [res.nbytes, res.ancdata.map(fromControlMessage), res.msgFlags, fromAddress(res.address)];
  }

  async #recvmsg(bufsize: number, ancbufsize: number, flags: number) {
    const handle = this.#check();
    const anc = toInt(ancbufsize);
    if (anc < 0) throw new ValueError('invalid ancillary data buffer length');
    const req = { handle, bufsize: Math.min(bufsize, this.#m.maxRecvBytes), ancbufsize: anc, flags: toCInt(flags), timeout: this.#mode };
    // Datagrams read ahead come first (with no ancillary data: no option that adds any was set).
    this.#dgramAhead = false;
    const d = this.#queueing && (await this.#datagram(handle, req.bufsize, req.flags));
    // recvmsg(2) returns the whole length with MSG_TRUNC in flags, and says MSG_TRUNC in msg_flags whenever it cut.
    if (d) return { data: d.data, nbytes: req.flags & MSG_TRUNC ? d.length! : d.data.length, ancdata: [], msgFlags: d.truncated ? MSG_TRUNC : 0, address: d.address };
    await this.#quiesce();
    return this.#io.call('recvMsg', req, this.#deadline);
  }

  /** dup(): a new socket object on a new handle for the same socket (non-inheritable). */
  async dup(): Promise<Socket> {
    const handle = this.#check();
    await this.#quiesce();
    const res = await this.#io.call('dup', { handle });
    const s = new Socket(this.#m, res.handle, this.family, this.type, this.proto, this.#timeout, this.#io);
    s.#connected = this.#connected;
    s.#laddr = this.#laddr;
    s.#raddr = this.#raddr;
    return s;
  }

  /**
   * detach(): this object becomes closed without closing the handle, which is returned; it stays
   * open until fromfd() takes it, socket(fileno=) wraps it, or the session ends.
   */
  async detach(): Promise<number> {
    if (this.#closed) return -1;
    const handle = this.#check();
    await this.#quiesce();
    await this.#afterBulkSends();
    await this.#io.call('detach', { handle });
    this.#closed = true;
    this.#bulk?.close(badf());
    this.#userClosed = true;
    return handle;
  }

  /** get_inheritable(): the handle's inheritable flag (False for every new socket, as Python 3.4). */
  async getInheritable(): Promise<boolean> {
    const handle = this.#check();
    return (await this.#io.call('getInheritable', { handle })).inheritable;
  }

  /** set_inheritable(flag). */
  async setInheritable(inheritable: boolean): Promise<void> {
    const handle = this.#check();
    await this.#io.call('setInheritable', { handle, inheritable: Boolean(inheritable) });
  }

  /**
   * share(process_id): a one-time token (bytes) that fromshare() in the process with that pid
   * (as the broker host sees it) turns into a duplicate of this socket; it expires after a minute
   * or when this session ends. Closing this socket afterwards is safe.
   */
  async share(processId: number): Promise<Buffer> {
    const handle = this.#check();
    const pid = toInt(processId);
    if (pid < 0 || pid > 0xffffffff) throw new OverflowError('Python int too large to convert to C unsigned long');
    await this.#quiesce();
    const res = await this.#io.call('share', { handle, pid: pid > 0x7fffffff ? -1 : pid });
    return Buffer.from(res.token);
  }

  /** makefile(mode='r', buffering=null, {encoding, errors, newline}): a Python-like file object. */
  makefile(mode = 'r', buffering: number | null = null, options: MakefileOptions = {}): SocketFile {
    this.#check();
    return makefile(this, mode, buffering, options);
  }

  /** @internal A file object from makefile() was opened. */
  _increfSocketIOs(): void {
    this.#ioRefs++;
  }

  /** @internal A file object from makefile() was closed: the last one closes a closed socket. */
  async _decrefSocketIOs(): Promise<void> {
    if (this.#ioRefs > 0) this.#ioRefs--;
    if (this.#userClosed && this.#ioRefs === 0 && !this.#closed) await this.close();
  }

  /**
   * ioctl(control, option) with Python's Windows control codes (the Winsock values; see README):
   * SIO_RCVALL with RCVALL_* (the sniffer socket), SIO_KEEPALIVE_VALS with
   * [onoff, keepalivetime ms, keepaliveinterval ms], SIO_LOOPBACK_FAST_PATH with a flag.
   */
  async ioctl(control: number, option: number | boolean | [number, number, number]): Promise<void> {
    const handle = this.#check();
    const c = toInt(control);
    if (c < 0 || c > 0xffffffff) throw new OverflowError('Python int too large to convert to C unsigned long');
    if (Array.isArray(option)) {
      if (option.length !== 3) throw new TypeError('ioctl(): SIO_KEEPALIVE_VALS takes a tuple (onoff, keepalivetime, keepaliveinterval)');
      const [onoff, keepalivetime, keepaliveinterval] = option.map((v) => toInt(v));
      await this.#io.call('ioctl', { handle, control: c, keepalive: { onoff: onoff!, keepalivetime: keepalivetime!, keepaliveinterval: keepaliveinterval! } });
      return;
    }
    await this.#io.call('ioctl', { handle, control: c, value: toInt(option) });
  }

  /** Python's repr: <socket.socket fd=3, family=AddressFamily.AF_INET, type=SocketType.SOCK_STREAM, proto=0, laddr=...>. */
  toString(): string {
    const fam = this.#m.familyNames.get(this.family);
    const typ = this.#m.typeNames.get(this.type);
    let s = `<socket.socket${this.#closed || this.#userClosed ? ' [closed]' : ''} fd=${this.fileno()}, family=${fam ? `AddressFamily.${fam}` : this.family}, type=${typ ? `SocketType.${typ}` : this.type}, proto=${this.proto}`;
    if (!this.#closed) {
      if (this.#laddr !== null && this.#laddr !== '') s += `, laddr=${reprAddress(this.#laddr)}`;
      if (this.#raddr !== null && this.#raddr !== '') s += `, raddr=${reprAddress(this.#raddr)}`;
    }
    return `${s}>`;
  }

  /** `await using s = socket.socket()` closes it, like Python's `with`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
