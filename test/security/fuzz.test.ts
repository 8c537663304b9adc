// Fuzz: more than 10,000 malformed or random requests across every RPC — raw random bytes on
// each method path (the daemon's decoder sees garbage), well-typed messages with random field
// values, random envelopes on the Call stream and the KeepAlive stream, and a part run as
// `nobody` — plus property tests of the address codecs. The daemon must stay up, answer every
// request (a response or a status with a clear ErrorInfo; a client deadline is a failure), never
// answer INTERNAL except for a request the generated codec itself cannot decode, log one audit
// line per denial, and get back to its fd baseline once the clients are gone.
// The seed is logged; SOCKBROKER_FUZZ_SEED=<seed> replays the same request streams.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SessionServiceService } from '../../proto/gen/sockbroker/v1/session.js';
import { SocketServiceService, CallRequest, CallResponse, ControlMessage } from '../../proto/gen/sockbroker/v1/socket.js';
import { NetdbServiceService } from '../../proto/gen/sockbroker/v1/netdb.js';
import { KeepAliveRequest } from '../../proto/gen/sockbroker/v1/session.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { decodeSockaddr, encodeSockaddr, type Sockaddr } from '../../native/sockaddr.js';
import { inetNtop } from '../../native/libc.js';
import { linux as C, os as O } from '../../native/constants.js';
import { decodeCmsgs, encodeCmsgs } from '../../native/msg.js';
import { fromControlMessage, toControlMessages, type AncConstants, type AncItem } from '../../client/ancillary.js';
import { toAddress, fromAddress, type AddressTuple } from '../../client/address.js';
import { OverflowError, ValueError } from '../../client/errors.js';
import { startDaemon, publicTempDir, runAsNobody, type Daemon, until } from '../helpers/daemon.js';
import { Rng, fuzzSeed } from './helpers/rng.js';
import {
  SOCKET_OPS, UNARY_TO_OP, UNSAFE_FAMILIES, mayBlock, socketRequest, netdbRequest, bogusSessionId,
  type FuzzState, type SocketOp,
} from './helpers/fuzz-gen.js';

const SEED = fuzzSeed();
/** Requests per part; together well above the 10,000 the issue asks for. */
/** SOCKBROKER_FUZZ_SCALE (default 1) scales them, e.g. 0.1 while debugging. */
const SCALE = Number(process.env.SOCKBROKER_FUZZ_SCALE ?? 1);
const N_RAW_UNARY = Math.round(3600 * SCALE);
const N_TYPED_UNARY = Math.round(3000 * SCALE);
const N_ENVELOPES = Math.round(3200 * SCALE);
const N_RAW_STREAMS = Math.round(160 * SCALE);
const N_KEEPALIVE_STREAMS = Math.round(30 * SCALE);
const N_NOBODY = Math.round(400 * SCALE);
/** Requests in flight at once. */
const CONCURRENCY = 32;
/** A client deadline no answer may miss (every timeout in a request is at most 50 ms). */
const DEADLINE_MS = 15_000;
const SESSION_MD = 'sockbroker-session';
const DESERIALIZE_ERROR = 'Error deserializing request';
const TYPE_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
const identity = (b: Buffer): Buffer => b;

interface Method {
  service: string;
  name: string;
  path: string;
  requestSerialize: (v: any) => Buffer;
  requestDeserialize: (b: Buffer) => any;
  responseDeserialize: (b: Buffer) => any;
}

function unaryMethods(): Method[] {
  const services = { SessionService: SessionServiceService, SocketService: SocketServiceService, NetdbService: NetdbServiceService };
  return Object.entries(services).flatMap(([service, def]) =>
    Object.entries(def as Record<string, any>)
      .filter(([, m]) => !m.requestStream && !m.responseStream)
      .map(([name, m]) => ({ service, name, path: m.path, requestSerialize: m.requestSerialize, requestDeserialize: m.requestDeserialize, responseDeserialize: m.responseDeserialize })),
  );
}

/** The SocketService op a unary method runs (closeSocket is `close`), or undefined. */
function socketOp(m: Method): SocketOp | undefined {
  return m.service === 'SocketService' ? UNARY_TO_OP[m.name] : undefined;
}

/** Answers and failures of one run: every request is counted once. */
class Tally {
  sent = 0;
  /** Replies (or statuses) actually seen. */
  answered = 0;
  /** Requests that by design get no reply of their own: a cancel; a message on a stream whose
   * end status (a refused session, a malformed message) is the answer. Never counted as answered. */
  silent = 0;
  ok = 0;
  /** Statuses by gRPC code name. */
  readonly codes = new Map<string, number>();
  readonly failures: string[] = [];
  readonly perMethod = new Map<string, number>();
  /** create/socketpair requests that reached a handler, and how many a non-root caller would need a grant for. */
  socketActions = 0;
  privilegedSocketActions = 0;

  count(method: string): void {
    this.sent++;
    this.perMethod.set(method, (this.perMethod.get(method) ?? 0) + 1);
  }

  answer(code: number, failure: string | null, what: string): void {
    this.answered++;
    if (code === 0) this.ok++;
    const name = grpc.status[code] ?? String(code);
    this.codes.set(name, (this.codes.get(name) ?? 0) + 1);
    if (failure !== null && this.failures.length < 2000) this.failures.push(`${what}: ${failure}`);
  }
}

/**
 * Whether a status is a clear answer: an ErrorInfo with a reason and a message, or INTERNAL
 * "Error deserializing request" for exactly the requests the generated codec cannot decode.
 */
function judgeStatus(code: number, message: string, details: Status | undefined, undecodable: boolean): string | null {
  if (code === grpc.status.INTERNAL) return undecodable && message === DESERIALIZE_ERROR ? null : `INTERNAL: ${message}`;
  if (undecodable) return `an undecodable request was answered ${grpc.status[code]}: ${message}`;
  if (code === grpc.status.OK) return null;
  if (!details) return `${grpc.status[code]} without ErrorInfo (${message})${code === grpc.status.DEADLINE_EXCEEDED ? ': no answer before the deadline' : ''}`;
  const info = details.details.find((d) => d.typeUrl.endsWith('google.rpc.ErrorInfo'));
  if (!info) return `${grpc.status[code]} without ErrorInfo (${message})`;
  const reason = ErrorInfo.decode(info.value).reason;
  if (!reason || !details.message) return `${grpc.status[code]} with an empty reason or message`;
  return null;
}

function judgeServiceError(err: grpc.ServiceError | null, undecodable: boolean): { code: number; failure: string | null } {
  if (!err) return { code: 0, failure: undecodable ? 'an undecodable request was answered OK' : null };
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  let details: Status | undefined;
  if (raw instanceof Buffer) details = Status.decode(raw);
  return { code: err.code, failure: judgeStatus(err.code, err.details, details, undecodable) };
}

/** Runs `job(i)` for i in [0, n) with at most `limit` in flight. */
async function pool(n: number, limit: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

function unaryRaw(client: grpc.Client, path: string, body: Buffer, md: grpc.Metadata): Promise<{ err: grpc.ServiceError | null; res?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, body, md, { deadline: Date.now() + DEADLINE_MS }, (err, res) => resolve({ err, res }));
  });
}

function sessionMd(id: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(SESSION_MD, id);
  return md;
}

/**
 * The sockets an ordinary caller gets without a grant (the README's default policy), written out
 * here rather than asked of the daemon's own decide(): AF_INET/AF_INET6 TCP and UDP, and any
 * AF_UNIX socketpair. Linux numbers: AF_UNIX 1, AF_INET 2, AF_INET6 10; SOCK_STREAM 1,
 * SOCK_DGRAM 2; IPPROTO_TCP 6, IPPROTO_UDP 17. Anything else root creates is privileged, and
 * root's audit log has one policy.allow line for it.
 */
function needsGrant(family: number, type: number, protocol: number, pair: boolean): boolean {
  if (family === 1) return !pair;
  if (family !== 2 && family !== 10) return true;
  if (type === 1) return protocol !== 0 && protocol !== 6;
  if (type === 2) return protocol !== 0 && protocol !== 17;
  return true;
}

function noteSocketAction(tally: Tally, op: string, req: { family: number; type: number; protocol: number }): void {
  if (op !== 'create' && op !== 'socketpair') return;
  tally.socketActions++;
  if (needsGrant(req.family, req.type & ~TYPE_FLAGS, req.protocol, op === 'socketpair')) tally.privilegedSocketActions++;
}

/** Handles in a successful response of `op`, for the generators to reuse. */
function noteHandles(state: FuzzState, op: string | undefined, res: any): void {
  if (!res) return;
  if (op === 'create' || op === 'accept') state.handles.push(res.handle);
  if (op === 'socketpair') state.handles.push(res.handleA, res.handleB);
}

// ---- property tests of the codecs (no daemon) ----

test('sockaddr codecs round-trip random valid addresses and throw cleanly on random bytes', (t) => {
  const r = new Rng(SEED);
  t.log(`seed ${SEED} (replay with SOCKBROKER_FUZZ_SEED=${SEED})`);
  let roundTrips = 0;
  for (let i = 0; i < 5000; i++) {
    let sa: Sockaddr;
    switch (r.int(6)) {
      case 5:
        sa = { family: 'netlink', pid: r.u32(), groups: r.u32() };
        break;
      case 0:
        sa = { family: 'inet', host: [...r.bytes(4)].join('.'), port: r.range(0, 0xffff) };
        break;
      case 1:
        sa = { family: 'inet6', host: inetNtop(C.AF_INET6, r.bytes(16)), port: r.range(0, 0xffff), flowinfo: r.range(0, 0xfffff), scopeId: r.u32() };
        break;
      case 2: {
        // A filesystem path: no NUL, at most 107 bytes.
        const p = Buffer.from(Array.from({ length: r.range(1, 107) }, () => r.range(1, 255)));
        sa = { family: 'unix', path: p };
        break;
      }
      case 3:
        sa = { family: 'unix', path: r.bool(0.1) ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0]), r.bytes(r.range(0, 107))]) };
        break;
      default:
        // A family number no Linux family has (AF_MAX is below 50): no codec of its own claims it.
        sa = { family: 'other', familyNumber: r.range(64, 0xffff), data: r.bytes(r.range(0, 126)) };
    }
    const bytes = encodeSockaddr(sa);
    const back = decodeSockaddr(bytes);
    if (!back || JSON.stringify(back) !== JSON.stringify(sa)) {
      t.fail(`round trip of ${JSON.stringify(sa)} gave ${JSON.stringify(back)}`);
      return;
    }
    if (!encodeSockaddr(back).equals(bytes)) {
      t.fail(`re-encoding ${JSON.stringify(back)} changed the bytes`);
      return;
    }
    roundTrips++;
  }
  // Random bytes (with a known family half the time): a value or a TypeError/RangeError, nothing else.
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    const buf = r.bytes(r.pick([0, 1, 2, 3, 15, 16, 27, 28, 110, 111, r.range(0, 300)]));
    if (buf.length >= 2 && r.bool()) buf.writeUInt16LE(r.pick([C.AF_INET, C.AF_INET6, C.AF_UNIX, C.AF_NETLINK, C.AF_PACKET, C.AF_CAN, C.AF_TIPC]), 0);
    let sa: Sockaddr;
    try {
      sa = decodeSockaddr(buf);
      decoded++;
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof TypeError)) t.fail(`decodeSockaddr(${buf.toString('hex')}) threw ${String(err)}`);
      refused++;
      continue;
    }
    try {
      encodeSockaddr(sa);
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof TypeError)) t.fail(`encodeSockaddr(${JSON.stringify(sa)}) threw ${String(err)}`);
    }
  }
  // Random objects to the encoder: a TypeError/RangeError, never anything else.
  const junk = [undefined, null, -1, 1.5, 2 ** 53, '1', {}, [], Buffer.alloc(3), 'x'.repeat(300), Number.NaN];
  for (let i = 0; i < 5000; i++) {
    const sa = { family: r.pick(['inet', 'inet6', 'unix', 'netlink', 'other', 'bogus', 7]), pid: r.pick([...junk, 0, 2 ** 32]), groups: r.pick([...junk, 1]), host: r.pick([...junk, '1.2.3.4', '::1', '1.2.3.256']), port: r.pick([...junk, 80, 65536]), flowinfo: r.pick([...junk, 0]), scopeId: r.pick([...junk, 0, 2 ** 32]), path: r.pick([...junk, Buffer.alloc(200), Buffer.from('/x')]), familyNumber: r.pick([...junk, 5, 0x10000]), data: r.pick([...junk, Buffer.alloc(2)]) };
    try {
      encodeSockaddr(sa as unknown as Sockaddr);
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof TypeError)) t.fail(`encodeSockaddr(${JSON.stringify(sa)}) threw ${String(err)}`);
    }
  }
  t.log(`${roundTrips} round trips; random bytes: ${decoded} decoded, ${refused} refused`);
  t.is(roundTrips, 5000);
  t.true(decoded > 0 && refused > 0);
});

test('SDK address tuples round-trip through the contract Address, bad ones raise Python errors', (t) => {
  const r = new Rng(SEED ^ 0x5a5a5a5a);
  const fam = { AF_INET: C.AF_INET, AF_INET6: C.AF_INET6, AF_UNIX: C.AF_UNIX };
  const text = (): string => String.fromCodePoint(...Array.from({ length: r.range(0, 30) }, () => r.pick([r.range(0x20, 0x7e), r.range(0xa0, 0xd7ff), r.range(0xe000, 0xfffd), r.range(0x10000, 0x10ffff)])));
  for (let i = 0; i < 5000; i++) {
    let tuple: AddressTuple;
    let family: number;
    switch (r.int(5)) {
      case 0:
        family = C.AF_INET;
        tuple = [r.bool() ? text() : [...r.bytes(4)].join('.'), r.range(0, 0xffff)];
        break;
      case 1:
        family = C.AF_INET6;
        tuple = [r.bool() ? text() : inetNtop(C.AF_INET6, r.bytes(16)), r.range(0, 0xffff), r.range(0, 0xfffff), r.u32()];
        break;
      case 2:
        family = C.AF_UNIX;
        tuple = `/${text()}`;
        break;
      case 3:
        family = C.AF_UNIX;
        tuple = Buffer.concat([Buffer.from([0]), r.bytes(r.range(0, 107))]);
        break;
      default: {
        family = r.pick([C.AF_PACKET, C.AF_NETLINK, 29, r.range(40, 0xffff)]);
        tuple = [r.i32(), r.bytes(r.range(0, 40))];
      }
    }
    const back = fromAddress(toAddress(tuple, family, fam, 'connect'));
    if (JSON.stringify(back) !== JSON.stringify(tuple)) {
      t.fail(`${JSON.stringify(tuple)} came back as ${JSON.stringify(back)}`);
      return;
    }
  }
  // Bad tuples: TypeError, OverflowError or ValueError, as Python raises them.
  const junk: unknown[] = [undefined, null, 1, 1.5, -1, 65536, 2 ** 40, 'x', {}, [], Buffer.from('ab'), true, Number.NaN];
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const family = r.pick([C.AF_INET, C.AF_INET6, C.AF_UNIX, C.AF_PACKET]);
    const addr = r.bool(0.3) ? r.pick(junk) : Array.from({ length: r.range(0, 5) }, () => r.pick(junk));
    try {
      fromAddress(toAddress(addr, family, fam, 'bind'));
    } catch (err) {
      if (!(err instanceof TypeError || err instanceof OverflowError || err instanceof ValueError)) t.fail(`toAddress(${JSON.stringify(addr)}) threw ${String(err)}`);
      refused++;
    }
  }
  t.true(refused > 1000, `${refused} bad tuples refused`);
});

test('ancillary-data codecs round-trip random items and end cleanly on random bytes', (t) => {
  const r = new Rng(SEED ^ 0x3c3c3c3c);
  // The kernel's layout (native/msg.ts): encode then decode gives the items back.
  for (let i = 0; i < 3000; i++) {
    const items = Array.from({ length: r.range(0, 4) }, () => ({ level: r.i32(), type: r.i32(), data: r.bytes(r.pick([0, 1, 4, 12, 16, 20, r.range(0, 100)])) }));
    const back = decodeCmsgs(encodeCmsgs(items));
    const same = back.length === items.length && back.every((c, k) => !c.truncated && c.level === items[k]!.level && c.type === items[k]!.type && c.data.equals(items[k]!.data));
    if (!same) {
      t.fail(`cmsg round trip of ${JSON.stringify(items)} gave ${JSON.stringify(back)}`);
      return;
    }
  }
  // Random control buffers, with cmsg_len values around the edges (short, exact, past the end,
  // 2^31 and more): the walk ends, each item's data lies within the buffer.
  const lens = [0n, 15n, 16n, 17n, 24n, 1000n, 2n ** 31n, 2n ** 32n, 2n ** 32n + 16n, 2n ** 32n - 8n, 2n ** 63n, 2n ** 64n - 1n];
  for (let i = 0; i < 20_000; i++) {
    const ctl = r.bytes(r.pick([0, 8, 15, 16, 17, 32, r.range(0, 200)]));
    for (let off = 0; off + 8 <= ctl.length; off += 8 * r.range(1, 4)) if (r.bool(0.7)) ctl.writeBigUInt64LE(r.pick(lens), off);
    let items: ReturnType<typeof decodeCmsgs>;
    try {
      items = decodeCmsgs(ctl);
    } catch (err) {
      t.fail(`decodeCmsgs(${ctl.toString('hex')}) threw ${String(err)}`);
      return;
    }
    if (items.length > ctl.length / 16 + 1 || items.some((c) => c.data.length > ctl.length)) {
      t.fail(`decodeCmsgs(${ctl.toString('hex')}) gave ${items.length} items beyond the buffer`);
      return;
    }
  }
  // The SDK's typed items (client/ancillary.ts), through the wire message and back.
  const k: AncConstants = {
    SOL_SOCKET: C.SOL_SOCKET, SCM_RIGHTS: C.SCM_RIGHTS, SCM_CREDENTIALS: C.SCM_CREDENTIALS, IPPROTO_IP: C.IPPROTO_IP,
    IPPROTO_IPV6: C.IPPROTO_IPV6, IP_PKTINFO: C.IP_PKTINFO, IP_TTL: C.IP_TTL, IP_TOS: C.IP_TOS, IPV6_PKTINFO: C.IPV6_PKTINFO,
    IPV6_HOPLIMIT: C.IPV6_HOPLIMIT, IPV6_TCLASS: C.IPV6_TCLASS, SO_TIMESTAMP: O.SO_TIMESTAMP,
  };
  const int = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b;
  };
  for (let i = 0; i < 5000; i++) {
    let item: AncItem;
    switch (r.int(9)) {
      case 0: item = [k.SOL_SOCKET, k.SCM_RIGHTS, Buffer.concat(Array.from({ length: r.range(0, 8) }, () => int(r.i32())))]; break;
      case 1: item = [k.SOL_SOCKET, k.SCM_CREDENTIALS, r.bytes(12)]; break;
      case 2: item = [k.IPPROTO_IP, k.IP_PKTINFO, r.bytes(12)]; break;
      case 3: item = [k.IPPROTO_IPV6, k.IPV6_PKTINFO, r.bytes(20)]; break;
      case 4: item = [r.pick([k.IPPROTO_IP, k.IPPROTO_IPV6]), r.pick([k.IP_TTL, k.IP_TOS, k.IPV6_HOPLIMIT, k.IPV6_TCLASS]), int(r.i32())]; break;
      case 5: item = [k.IPPROTO_IP, k.IP_TOS, r.bytes(1)]; break;
      case 6: {
        const tv = Buffer.alloc(16);
        tv.writeBigInt64LE(BigInt(r.i32()) * 4096n + BigInt(r.int(4096)), 0);
        tv.writeBigInt64LE(BigInt(r.range(-1, 999_999)), 8);
        item = [k.SOL_SOCKET, k.SO_TIMESTAMP, tv];
        break;
      }
      default: item = [r.i32(), r.i32(), r.bytes(r.range(0, 64))];
    }
    const [msg] = toControlMessages([item], k);
    const wire = ControlMessage.decode(ControlMessage.encode(msg!).finish());
    const back = fromControlMessage(wire);
    if (back[0] !== item[0] || back[1] !== item[1] || !back[2].equals(item[2])) {
      t.fail(`ancillary item ${JSON.stringify(item)} came back as ${JSON.stringify(back)} (via ${JSON.stringify(msg)})`);
      return;
    }
  }
  // Bad ancdata: Python's TypeError or OverflowError, nothing else.
  const junk: unknown[] = [undefined, null, 1, 'x', {}, [], [1, 2], [1, 2, 3], [1, 2, 'x'], [2 ** 40, 1, Buffer.alloc(1)], [1.5, 1, Buffer.alloc(1)], [1, 1, Buffer.alloc(3)], new Map()];
  let refused = 0;
  for (let i = 0; i < 2000; i++) {
    const anc = r.bool(0.3) ? r.pick(junk) : Array.from({ length: r.range(0, 3) }, () => r.pick(junk));
    try {
      toControlMessages(anc, k);
    } catch (err) {
      if (!(err instanceof TypeError || err instanceof OverflowError || err instanceof ValueError)) t.fail(`toControlMessages(${String(anc)}) threw ${String(err)}`);
      refused++;
    }
  }
  t.true(refused > 500, `${refused} bad ancdata refused`);
});

// ---- the daemon under fuzz ----

const HOSTS = ['127.0.0.1 localhost', '::1 localhost fuzz-v6.test', '127.0.0.2 fuzz-0.test', '127.0.0.3 fuzz-1.test', '127.0.0.4 fuzz-2.test fuzz-3.test', ''].join('\n');

interface Fuzz {
  d: Daemon;
  tally: Tally;
  state: FuzzState;
  sessionId: string;
  clients: grpc.Client[];
  methods: Method[];
  /** Sessions the raw OpenSession calls may still open (each lives until its grace period ends). */
  opensLeft: number;
}

async function openSession(client: grpc.Client): Promise<string> {
  const m = unaryMethods().find((x) => x.name === 'openSession')!;
  const { err, res } = await unaryRaw(client, m.path, m.requestSerialize({ resumeSessionId: '', hostNetwork: false }), new grpc.Metadata());
  if (err) throw err;
  return m.responseDeserialize(res!).sessionId;
}

/** A typed unary call on the fuzz session (setup only): its response, or a thrown status. */
async function setupCall(f: Fuzz, op: SocketOp, req: object): Promise<any> {
  const m = f.methods.find((x) => socketOp(x) === op)!;
  const { err, res } = await unaryRaw(f.clients[0]!, m.path, m.requestSerialize(req), sessionMd(f.sessionId));
  if (err) throw new Error(`${op}: ${err.message}`);
  return m.responseDeserialize(res!);
}

/** Metadata for a call: the live fuzz session most of the time, else none or a bogus one. */
function pickMetadata(r: Rng, f: Fuzz, validP: number): { md: grpc.Metadata; valid: boolean } {
  if (r.bool(validP)) return { md: sessionMd(f.sessionId), valid: true };
  const md = new grpc.Metadata();
  if (r.bool(0.8)) md.set(SESSION_MD, bogusSessionId(r));
  return { md, valid: false };
}

/** A well-typed random request for any unary method. */
function typedRequest(r: Rng, m: Method, s: FuzzState): any {
  const op = socketOp(m);
  if (op) return socketRequest(r, op, s);
  if (m.service === 'NetdbService') return netdbRequest(r, m.name);
  if (m.name === 'openSession') return { resumeSessionId: bogusSessionId(r), hostNetwork: r.bool() };
  return {};
}

/** Garbage derived from a valid encoding: flipped, cut, inserted, appended fields, or pure noise. */
function mangle(r: Rng, valid: Buffer): Buffer {
  switch (r.int(8)) {
    case 0:
      return r.bytes(r.pick([0, 1, 2, 3, r.range(0, 64), r.range(0, 2000)]));
    case 1: {
      const b = Buffer.from(valid);
      for (let k = r.range(1, 4); k > 0 && b.length > 0; k--) b[r.int(b.length)] = r.int(256);
      return b;
    }
    case 2:
      return valid.subarray(0, r.int(valid.length + 1));
    case 3: {
      const at = r.int(valid.length + 1);
      return Buffer.concat([valid.subarray(0, at), r.bytes(r.range(1, 8)), valid.subarray(at)]);
    }
    case 4: {
      // An extra field: random number and wire type; varints up to 10 bytes (beyond 64 bits).
      const field = r.pick([r.range(1, 30), r.range(1, 0x1fffffff)]);
      const wire = r.int(8);
      const tag = varint(field * 8 + wire);
      let payload: Buffer;
      if (wire === 0) payload = Buffer.concat([Buffer.alloc(r.range(0, 9), 0xff), Buffer.from([r.int(128)])]);
      else if (wire === 1) payload = r.bytes(8);
      else if (wire === 5) payload = r.bytes(4);
      else if (wire === 2) payload = Buffer.concat([varint(r.pick([0, 1, 5, 1000, 0x7fffffff])), r.bytes(r.range(0, 6))]);
      else payload = r.bytes(r.range(0, 4));
      return Buffer.concat([valid, tag, payload]);
    }
    case 5:
      return Buffer.concat([valid, valid]);
    default: {
      const b = Buffer.from(valid);
      if (b.length > 0) b[r.int(b.length)] ^= 1 << r.int(8);
      return b;
    }
  }
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

/** Whether a decoded request is one this fuzz must not send (may block; unsafe family; a real session open). */
function refusedByFuzz(f: Fuzz, m: Method, decoded: any): boolean {
  const op = socketOp(m);
  if (op && mayBlock(op, decoded)) return true;
  if ((op === 'create' || op === 'socketpair') && UNSAFE_FAMILIES.has(decoded.family)) return true;
  if (m.name === 'openSession' && decoded.resumeSessionId === '') {
    if (f.opensLeft <= 0) return true;
    f.opensLeft--;
  }
  return false;
}

async function rawUnaryPart(f: Fuzz, r: Rng, n: number): Promise<void> {
  const rngs = Array.from({ length: n }, () => r.fork());
  await pool(n, CONCURRENCY, async (i) => {
    const rr = rngs[i]!;
    const m = f.methods[i % f.methods.length]!;
    let body: Buffer = Buffer.from([0x07]); // field 0, wire type 7: undecodable
    let decoded: any;
    for (let tries = 0; tries < 40; tries++) {
      const candidate = mangle(rr, m.requestSerialize(typedRequest(rr, m, f.state)));
      let dec: any;
      try {
        dec = m.requestDeserialize(candidate);
      } catch {
        body = candidate;
        decoded = undefined;
        break;
      }
      if (refusedByFuzz(f, m, dec)) continue;
      body = candidate;
      decoded = dec;
      break;
    }
    // CloseSession never names the live fuzz session (it would end the run's session).
    const { md, valid } = m.name === 'closeSession' ? pickMetadata(rr, f, 0) : pickMetadata(rr, f, 0.85);
    const op = socketOp(m);
    if (decoded && valid && op) noteSocketAction(f.tally, op, decoded);
    f.tally.count(m.path);
    const { err, res } = await unaryRaw(f.clients[i % f.clients.length]!, m.path, body, md);
    const { code, failure } = judgeServiceError(err, decoded === undefined);
    f.tally.answer(code, failure, `raw ${m.path} ${body.toString('hex').slice(0, 80)}`);
    if (!err && op) noteHandles(f.state, op, m.responseDeserialize(res!));
  });
}

async function typedUnaryPart(f: Fuzz, r: Rng, n: number): Promise<void> {
  const rngs = Array.from({ length: n }, () => r.fork());
  await pool(n, CONCURRENCY, async (i) => {
    const rr = rngs[i]!;
    const m = f.methods[i % f.methods.length]!;
    const req = typedRequest(rr, m, f.state);
    const body = m.requestSerialize(req);
    const { md, valid } = m.name === 'closeSession' ? pickMetadata(rr, f, 0) : pickMetadata(rr, f, 0.9);
    const op = socketOp(m);
    if (valid && op) noteSocketAction(f.tally, op, req);
    f.tally.count(m.path);
    const { err, res } = await unaryRaw(f.clients[i % f.clients.length]!, m.path, body, md);
    const { code, failure } = judgeServiceError(err, false);
    f.tally.answer(code, failure, `typed ${m.path} ${JSON.stringify(req, (_k, v) => (typeof v === 'string' && v.length > 60 ? `${v.slice(0, 60)}…` : v?.type === 'Buffer' ? `<${v.data.length} bytes>` : v)).slice(0, 300)}`);
    if (!err && op) noteHandles(f.state, op, m.responseDeserialize(res!));
  });
}

function encodeEnvelope(env: CallRequest): Buffer {
  return Buffer.from(CallRequest.encode(env).finish());
}

/** A Call stream with identity serializers: envelopes in, raw replies out. */
function rawCallStream(client: grpc.Client, md: grpc.Metadata, deadlineMs: number): grpc.ClientDuplexStream<Buffer, Buffer> {
  return client.makeBidiStreamRequest('/sockbroker.v1.SocketService/Call', identity, identity, md, { deadline: Date.now() + deadlineMs });
}

/** How a stream ended: its status (or the error), once. */
function streamEnd(stream: grpc.ClientDuplexStream<Buffer, Buffer>): Promise<{ code: number; details: string; metadata?: grpc.Metadata }> {
  return new Promise((resolve) => {
    stream.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details, metadata: err.metadata }));
    stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details, metadata: s.metadata }));
  });
}

/**
 * Well-typed random envelopes on `streams` Call streams of the fuzz session, plus the odd ones:
 * empty envelopes, cancels of unknown ids, duplicate ids, cancels of pending calls. Every
 * envelope but a cancel gets exactly one reply; the stream then ends OK.
 */
async function envelopePart(f: Fuzz, r: Rng, n: number, streams: number): Promise<{ duplicatesRefused: number; emptyRefused: number }> {
  let duplicatesRefused = 0;
  let emptyRefused = 0;
  const per = Math.ceil(n / streams);
  await Promise.all(Array.from({ length: streams }, async (_, si) => {
    const sr = r.fork();
    const stream = rawCallStream(f.clients[si % f.clients.length]!, sessionMd(f.sessionId), 300_000);
    const ended = streamEnd(stream);
    const waiting = new Map<number, { left: number; what: string; op: string; resolve: () => void }>();
    stream.on('data', (raw: Buffer) => {
      const res = CallResponse.decode(raw);
      const w = waiting.get(res.callId);
      if (!w) {
        f.tally.failures.push(`stream ${si}: a reply for call ${res.callId} that expects none`);
        return;
      }
      f.tally.answered++;
      if (res.error) {
        const failure = judgeStatus(res.error.code, res.error.message, res.error, false);
        const name = grpc.status[res.error.code] ?? String(res.error.code);
        f.tally.codes.set(name, (f.tally.codes.get(name) ?? 0) + 1);
        if (failure) f.tally.failures.push(`envelope ${w.what}: ${failure}`);
        const reason = ErrorInfo.decode(res.error.details[0]?.value ?? new Uint8Array()).reason;
        if (reason === 'DUPLICATE_CALL_ID') duplicatesRefused++;
        if (reason === 'EMPTY_CALL') emptyRefused++;
      } else {
        f.tally.ok++;
        f.tally.codes.set('OK', (f.tally.codes.get('OK') ?? 0) + 1);
        noteHandles(f.state, w.op, (res as any)[w.op]);
      }
      if (--w.left === 0) {
        waiting.delete(res.callId);
        w.resolve();
      }
    });
    let nextId = sr.pick([1, 1000, 2 ** 32 - 5, 2 ** 50]);
    // At most `limit` calls of this stream in flight.
    const limit = Math.max(1, Math.floor(CONCURRENCY / streams));
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const all: Promise<void>[] = [];
    const send = (env: CallRequest, replies: number, what: string, op: string): void => {
      f.tally.count(`/sockbroker.v1.SocketService/Call#${op}`);
      if (replies === 0) {
        f.tally.silent++; // a cancel is answered by nothing, by design
      } else {
        inFlight++;
        all.push(new Promise<void>((resolve) => waiting.set(env.callId, { left: replies, what, op, resolve })).then(() => {
          inFlight--;
          wake?.();
        }));
      }
      stream.write(encodeEnvelope(env));
    };
    for (let i = 0; i < per; i++) {
      let stuck = false;
      while (inFlight >= limit && !stuck) {
        stuck = await Promise.race([new Promise<boolean>((resolve) => (wake = () => resolve(false))), sleep(DEADLINE_MS).then(() => true)]);
      }
      if (stuck) break; // reported below with the calls still waiting
      const kind = sr.int(100);
      const id = nextId++;
      if (kind < 3) {
        send({ callId: id } as CallRequest, 1, `empty #${id}`, 'empty');
      } else if (kind < 6) {
        send({ callId: sr.pick([id + 1_000_000, 0, 7]), cancel: {} } as CallRequest, 0, 'cancel unknown', 'cancel');
      } else if (kind < 9) {
        // The same id twice while the first (a poll waiting 80 ms) is pending: two replies, one a refusal.
        send({ callId: id, poll: { entries: [], timeout: 0.08 } } as CallRequest, 2, `duplicate #${id}`, 'poll');
        f.tally.count('/sockbroker.v1.SocketService/Call#duplicate');
        stream.write(encodeEnvelope({ callId: id, poll: { entries: [], timeout: 0 } } as CallRequest));
      } else if (kind < 12 && f.state.handles.length > 0) {
        // A pending recv and its cancel: one reply (CANCELLED, or the result if it came first).
        send({ callId: id, recv: { handle: sr.pick(f.state.handles), bufsize: 16, flags: 0, wantAddress: false, timeout: 0.05 } } as CallRequest, 1, `cancelled recv #${id}`, 'recv');
        f.tally.count('/sockbroker.v1.SocketService/Call#cancel');
        f.tally.silent++;
        stream.write(encodeEnvelope({ callId: id, cancel: {} } as CallRequest));
      } else {
        const op = sr.pick(SOCKET_OPS);
        const req = socketRequest(sr, op, f.state);
        noteSocketAction(f.tally, op, req);
        send({ callId: id, [op]: req } as CallRequest, 1, `${op} #${id}`, op);
      }
    }
    const timedOut = await Promise.race([Promise.all(all).then(() => false), sleep(DEADLINE_MS).then(() => true)]);
    if (timedOut) f.tally.failures.push(`stream ${si}: ${waiting.size} calls unanswered after ${DEADLINE_MS} ms: ${[...waiting.values()].slice(0, 5).map((w) => w.what).join(', ')}`);
    stream.end();
    const end = await Promise.race([ended, sleep(DEADLINE_MS).then(() => ({ code: -1, details: 'the stream did not end' }))]);
    if (end.code !== grpc.status.OK) f.tally.failures.push(`stream ${si} ended ${end.code} ${end.details}`);
  }));
  return { duplicatesRefused, emptyRefused };
}

/**
 * Garbage envelopes on short Call streams: each stream carries a few mangled envelopes. Up to
 * the first one the codec cannot decode, each gets a reply (a cancel or an ack none); a stream holding an
 * undecodable one ends INTERNAL "Error deserializing request", else OK after all replies.
 */
async function rawEnvelopePart(f: Fuzz, r: Rng, streams: number): Promise<void> {
  const rngs = Array.from({ length: streams }, () => r.fork());
  await pool(streams, 8, async (si) => {
    const sr = rngs[si]!;
    const msgs: Buffer[] = [];
    let undecodable = false;
    let replies = 0;
    for (let k = sr.range(1, 4); k > 0 && !undecodable; k--) {
      for (let tries = 0; tries < 40; tries++) {
        const op = sr.pick(SOCKET_OPS);
        const env = sr.bool(0.1) ? { callId: sr.u32(), cancel: {} } : { callId: sr.u32(), [op]: socketRequest(sr, op, f.state) };
        const candidate = mangle(sr, Buffer.from(CallRequest.encode(env as CallRequest).finish()));
        let dec: CallRequest;
        try {
          dec = CallRequest.decode(candidate);
        } catch {
          msgs.push(candidate);
          undecodable = true;
          break;
        }
        const decOp = SOCKET_OPS.find((o) => (dec as any)[o] !== undefined);
        if (decOp === 'create' || decOp === 'socketpair') continue; // their audit lines are counted elsewhere
        if (decOp && mayBlock(decOp, (dec as any)[decOp])) continue;
        // How many replies a batch or an ack_only call gets depends on outcomes (an ack_only call
        // is answered only if it fails): test/contract/ack covers them.
        if (dec.batch || dec.ackOnly) continue;
        msgs.push(candidate);
        // The daemon's precedence: a cancel, then an ack (answered only once ack_only calls are
        // done, and this stream has none), get no reply; anything else one (a ping its pong).
        if (!dec.cancel && !dec.ack) replies++;
        break;
      }
    }
    const { md } = pickMetadata(sr, f, 0.9);
    const stream = rawCallStream(f.clients[si % f.clients.length]!, md, DEADLINE_MS);
    const ended = streamEnd(stream);
    let got = 0;
    let allIn: () => void = () => undefined;
    const allReplies = new Promise<void>((resolve) => (allIn = resolve));
    if (replies === 0) allIn();
    stream.on('data', (raw: Buffer) => {
      const res = CallResponse.decode(raw);
      if (res.error) {
        const failure = judgeStatus(res.error.code, res.error.message, res.error, false);
        if (failure) f.tally.failures.push(`raw envelope reply: ${failure}`);
      }
      if (++got === replies) allIn();
    });
    for (const m of msgs) {
      f.tally.count('/sockbroker.v1.SocketService/Call#raw');
      stream.write(m);
    }
    if (!undecodable) await Promise.race([allReplies, ended]);
    stream.end();
    const end = await ended;
    // The replies seen answer their messages; the rest (cancels, or all of them on a stream the
    // broker ended) have the stream's end status as their answer, judged below.
    f.tally.answered += got;
    f.tally.silent += msgs.length - got;
    const refusedSession = end.code === grpc.status.UNAUTHENTICATED || end.code === grpc.status.NOT_FOUND;
    if (undecodable) {
      if (!malformedEnd(end, 'CallRequest')) {
        if (!refusedSession) f.tally.failures.push(`raw envelopes ${msgs.map((m) => m.toString('hex')).join(' ')}: stream ended ${end.code} ${end.details}`);
      }
    } else if (end.code === grpc.status.OK) {
      if (got !== replies) f.tally.failures.push(`raw envelopes ${msgs.map((m) => m.toString('hex')).join(' ')}: ${got} of ${replies} replies`);
    } else if (!refusedSession) {
      f.tally.failures.push(`raw envelopes ${msgs.map((m) => m.toString('hex')).join(' ')}: stream ended ${end.code} ${end.details}`);
    }
  });
}

/** Whether a stream ended as one carrying an undecodable message must: INVALID_ARGUMENT, MALFORMED_MESSAGE. */
function malformedEnd(end: { code: number; details: string; metadata?: grpc.Metadata }, what: string): boolean {
  const raw = end.metadata?.get('grpc-status-details-bin')[0];
  if (end.code !== grpc.status.INVALID_ARGUMENT || !(raw instanceof Buffer) || !end.details.startsWith(`malformed ${what}: `)) return false;
  const info = Status.decode(raw).details[0];
  return info !== undefined && ErrorInfo.decode(info.value).reason === 'MALFORMED_MESSAGE';
}

/** KeepAlive streams with random and mangled nonces: each decodable one is echoed. */
async function keepAlivePart(f: Fuzz, r: Rng, streams: number): Promise<void> {
  const path = SessionServiceService.keepAlive.path;
  const rngs = Array.from({ length: streams }, () => r.fork());
  await pool(streams, 8, async (si) => {
    const sr = rngs[si]!;
    const { md, valid } = pickMetadata(sr, f, 0.8);
    const stream = f.clients[si % f.clients.length]!.makeBidiStreamRequest(path, identity, identity, md, { deadline: Date.now() + DEADLINE_MS });
    const ended = streamEnd(stream as grpc.ClientDuplexStream<Buffer, Buffer>);
    const msgs: Buffer[] = [];
    const nonces: number[] = [];
    let undecodable = false;
    for (let k = sr.range(1, 6); k > 0 && !undecodable; k--) {
      const m = sr.bool(0.6)
        ? Buffer.from(KeepAliveRequest.encode({ nonce: sr.pick([0, 1, sr.u32(), Number.MAX_SAFE_INTEGER]) }).finish())
        : mangle(sr, Buffer.from(KeepAliveRequest.encode({ nonce: sr.u32() }).finish()));
      try {
        nonces.push(KeepAliveRequest.decode(m).nonce);
      } catch {
        undecodable = true;
      }
      msgs.push(m);
    }
    const echoed: number[] = [];
    let allIn: () => void = () => undefined;
    const allEchoed = new Promise<void>((resolve) => (allIn = resolve));
    stream.on('data', (raw: Buffer) => {
      echoed.push(KeepAliveRequest.decode(raw).nonce);
      if (echoed.length === nonces.length) allIn();
    });
    for (const m of msgs) {
      f.tally.count(path);
      stream.write(m);
    }
    if (valid && !undecodable) await Promise.race([allEchoed, ended]);
    stream.end();
    const end = await ended;
    // Each echo answers its message; without an echo the stream's end status is the answer, judged below.
    f.tally.answered += echoed.length;
    f.tally.silent += msgs.length - echoed.length;
    if (!valid) {
      if (end.code === grpc.status.OK || end.code === grpc.status.INTERNAL) f.tally.failures.push(`keepalive without a session ended ${end.code} ${end.details}`);
    } else if (undecodable) {
      if (!malformedEnd(end, 'KeepAliveRequest')) f.tally.failures.push(`keepalive ${msgs.map((m) => m.toString('hex')).join(' ')}: ended ${end.code} ${end.details}`);
    } else if (end.code !== grpc.status.OK || JSON.stringify(echoed) !== JSON.stringify(nonces)) {
      f.tally.failures.push(`keepalive nonces ${JSON.stringify(nonces)} echoed ${JSON.stringify(echoed)}, ended ${end.code} ${end.details}`);
    }
  });
}

/** The nobody part: random requests, many of them privileged; each denial must be logged once. */
const NOBODY_SCRIPT = `
import { Transport } from './dist/client/transport.js';
let s = Number(process.env.SEED) >>> 0;
const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const pick = (a) => a[Math.floor(rnd() * a.length)];
const N = Number(process.env.N);
const t = await Transport.open(process.env.ADDR);
const out = { sent: 0, answered: 0, denied: 0, ok: 0, errors: 0, hangs: 0, deniedBy: {}, other: {} };
const inet = [];
const unix = [];
const run = async (op, fn) => {
  out.sent++;
  let timer;
  const hang = new Promise((resolve) => { timer = setTimeout(() => resolve('hang'), 15000); });
  const r = await Promise.race([fn().then((v) => ({ v }), (e) => ({ e })), hang]);
  clearTimeout(timer);
  if (r === 'hang') { out.hangs++; return undefined; }
  out.answered++;
  if (r.e) {
    if (/\\(sockbroker policy: /.test(r.e.message)) { out.denied++; out.deniedBy[op] = (out.deniedBy[op] ?? 0) + 1; }
    else { out.errors++; const k = op + ' ' + r.e.constructor.name + ' ' + (r.e.errno ?? ''); out.other[k] = (out.other[k] ?? 0) + 1; }
    return undefined;
  }
  out.ok++;
  return r.v;
};
const call = (op, req) => run(op, () => t.call(op, req, 0.05));
const SOCKETS = [[2, 3, 1], [2, 3, 255], [10, 3, 58], [17, 3, 0], [17, 2, 0], [16, 3, 0], [16, 2, 0], [1, 1, 0], [1, 2, 0], [2, 5, 0], [2, 1, 132], [2, 2, 6], [2, 1, 0], [2, 2, 0], [10, 1, 0], [10, 2, 17], [2, 1 | 2048, 0], [12345, 1, 0]];
const OPTIONS = [[1, 36, 1], [1, 25, Buffer.from('lo')], [1, 12, 'prio'], [0, 19, 1], [41, 75, 1], [6, 1, 1], [1, 2, 1], [1, 1, 1], [1, 7, 65536], [1, 32, 65536]];
for (let i = 0; i < N; i++) {
  const k = rnd();
  if (k < 0.3 || inet.length === 0) {
    const [family, type, protocol] = pick(SOCKETS);
    const res = await call('create', { family, type, protocol });
    if (res) { if (family === 2) inet.push(res.handle); else await call('close', { handle: res.handle }); }
  } else if (k < 0.4) {
    const [family, type] = pick([[1, 1], [1, 2], [2, 1], [1, 5]]);
    const res = await call('socketpair', { family, type, protocol: 0 });
    if (res) unix.push(res.handleA, res.handleB);
  } else if (k < 0.6) {
    const handle = pick(inet);
    await call('bind', { handle, address: { inet: { host: '127.0.0.1', port: pick([1, 22, 80, 443, 1023, 0, 1024, 5000, Math.floor(rnd() * 2000)]) } } });
    // A socket binds once: replace it so later binds meet a fresh one.
    await call('close', { handle });
    inet.splice(inet.indexOf(handle), 1);
  } else if (k < 0.8) {
    const [level, name, v] = pick(OPTIONS);
    const value = v === 'prio' ? { intValue: Math.floor(rnd() * 11) } : Buffer.isBuffer(v) ? { bytesValue: v } : { intValue: v };
    await call('setSockOpt', { handle: pick(inet), level, name, ...value });
  } else if (k < 0.85) {
    await run('setHostName', () => t.netdb('setHostName', { name: Buffer.from('nobody-was-here') }));
  } else if (k < 0.9) {
    // Sharing with a process of another uid (ROOT_PID: the daemon's) needs a grant.
    await call('share', { handle: pick(inet), pid: pick([Number(process.env.ROOT_PID), process.pid]) });
  } else if (unix.length > 0) {
    const handle = pick(unix);
    const address = { unix: { path: pick([Buffer.from('/run/sb-fuzz-nobody'), Buffer.from('\\0sb-fuzz-abstract'), Buffer.from('/tmp/sb-fuzz-' + i)]) } };
    const op = pick(['bind', 'connect', 'send']);
    await call(op, op === 'send' ? { handle, data: Buffer.from('x'), flags: 0, address, timeout: 0 } : op === 'connect' ? { handle, address, timeout: 0 } : { handle, address });
  }
}
await t.close();
console.log(JSON.stringify(out));
`;

test('the daemon survives more than 10,000 random and malformed requests across every RPC', async (t) => {
  t.timeout(170_000);
  t.log(`seed ${SEED} (replay with SOCKBROKER_FUZZ_SEED=${SEED})`);
  const r = new Rng(SEED);
  const dir = publicTempDir('sb-fuzz-');
  // Its own UTS namespace: SetHostName is fuzzed too (as root, so it would rename the machine).
  const d = await startDaemon({ hosts: HOSTS, hostname: 'sb-fuzz' });
  const clients = Array.from({ length: 4 }, () => new grpc.Client(d.address, grpc.credentials.createInsecure()));
  try {
    const methods = unaryMethods();
    // Every unary RPC of the contract as generated now (16 at first; new ones join by themselves).
    t.true(methods.filter((m) => m.service === 'SocketService').length >= 16);
    t.is(methods.filter((m) => m.service === 'SocketService').length, SOCKET_OPS.length);
    t.true(methods.filter((m) => m.service === 'NetdbService').length >= 13);
    t.true(methods.filter((m) => m.service === 'SessionService').length >= 3);
    // Warm the daemon's lazily opened fds (threadpool, epoll) before the baseline.
    const warm = await openSession(clients[0]!);
    const f: Fuzz = { d, tally: new Tally(), state: { handles: [], ports: [], dir, bigSends: 0 }, sessionId: warm, clients, methods, opensLeft: 12 };
    const tcp = await setupCall(f, 'create', { family: C.AF_INET, type: C.SOCK_STREAM, protocol: 0 });
    await setupCall(f, 'close', { handle: tcp.handle });
    await unaryRaw(clients[0]!, SessionServiceService.closeSession.path, Buffer.alloc(0), sessionMd(warm));
    await sleep(300);
    const baseline = d.fdCount();
    f.sessionId = await openSession(clients[0]!);
    // A KeepAlive stream holds the fuzz session (a session with no stream ends after its grace period).
    const holder = clients[0]!.makeBidiStreamRequest(SessionServiceService.keepAlive.path, identity, identity, sessionMd(f.sessionId));
    const holderEnded = streamEnd(holder as grpc.ClientDuplexStream<Buffer, Buffer>);
    // Listeners of our own, so some random connects and accepts meet a peer.
    for (const type of [C.SOCK_STREAM, C.SOCK_DGRAM]) {
      const { handle } = await setupCall(f, 'create', { family: C.AF_INET, type, protocol: 0 });
      const bound = await setupCall(f, 'bind', { handle, address: { inet: { host: '127.0.0.1', port: 0 } } });
      if (type === C.SOCK_STREAM) await setupCall(f, 'listen', { handle, backlog: 64 });
      f.state.handles.push(handle);
      f.state.ports.push(bound.local.inet.port);
    }
    const timings: string[] = [];
    const timed = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      const start = performance.now();
      const before = f.tally.sent;
      await fn();
      timings.push(`${name}: ${f.tally.sent - before} requests in ${((performance.now() - start) / 1000).toFixed(1)} s`);
      t.is(d.proc.exitCode, null, `the daemon is still running after ${name}`);
    };

    await timed('raw bytes on every unary method', () => rawUnaryPart(f, r.fork(), N_RAW_UNARY));
    await timed('well-typed random unary requests', () => typedUnaryPart(f, r.fork(), N_TYPED_UNARY));
    let odd = { duplicatesRefused: 0, emptyRefused: 0 };
    await timed('random envelopes on the Call stream', async () => (odd = await envelopePart(f, r.fork(), N_ENVELOPES, 4)));
    await timed('garbage envelopes on short Call streams', () => rawEnvelopePart(f, r.fork(), N_RAW_STREAMS));
    await timed('KeepAlive streams', () => keepAlivePart(f, r.fork(), N_KEEPALIVE_STREAMS));

    // A part as `nobody`: denials must each be logged once, nothing privileged is allowed.
    const denialsBefore = d.logs.filter((l) => l.includes('"event":"policy.deny"')).length;
    let nobody: any = {};
    await timed('as nobody', async () => {
      const run = await runAsNobody(NOBODY_SCRIPT, { ADDR: d.address, SEED: String(SEED), N: String(N_NOBODY), ROOT_PID: String(d.pid) }, 120_000);
      t.is(run.code, 0, run.stderr);
      nobody = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}');
      f.tally.sent += nobody.sent;
      f.tally.answered += nobody.answered;
    });
    t.log(`nobody: ${JSON.stringify(nobody)}`);
    t.is(nobody.hangs, 0, 'every nobody request was answered');
    t.true(nobody.denied > 50 * SCALE, `${nobody.denied} requests were denied`);
    const auditOf = (event: string, pred: (e: any) => boolean): number => d.logs.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l)).filter(pred).length;
    t.true(await until(() => auditOf('policy.deny', (e) => e.uid === 65534) >= nobody.denied, 3000));
    t.is(auditOf('policy.deny', (e) => e.uid === 65534), nobody.denied, 'one audit line per denied request');
    t.is(d.logs.filter((l) => l.includes('"event":"policy.deny"')).length - denialsBefore, nobody.denied, 'no other denials were logged meanwhile');
    t.is(auditOf('policy.allow', (e) => e.uid === 65534), 0, 'nothing privileged was allowed to nobody');
    // Root's privileged socket creations: one policy.allow line each.
    t.is(auditOf('policy.allow', (e) => e.uid === 0 && e.action?.op === 'socket'), f.tally.privilegedSocketActions, `of ${f.tally.socketActions} socket creations that reached a handler`);

    const tally = f.tally;
    t.log(timings.join('\n'));
    t.log(`requests ${tally.sent}, answered ${tally.answered}, silent ${tally.silent}, OK ${tally.ok}; statuses ${JSON.stringify(Object.fromEntries(tally.codes))}`);
    t.log(`handles created by the fuzz: ${new Set(f.state.handles).size}; duplicate ids refused ${odd.duplicatesRefused}, empty envelopes refused ${odd.emptyRefused}`);
    if (tally.failures.length) t.log(`failures (first 20):\n${tally.failures.slice(0, 20).join('\n')}`);
    t.true(tally.sent >= 10_000 * SCALE, `${tally.sent} requests`);
    t.is(tally.answered + tally.silent, tally.sent, 'every request was answered (or, by design, answered by nothing or its stream end)');
    t.true(tally.silent < tally.sent / 4, `${tally.answered} replies seen, ${tally.silent} requests with none of their own`);
    t.deepEqual(tally.failures, [], 'every answer is a clear one');
    t.true(odd.duplicatesRefused > 0 && odd.emptyRefused > 0);
    const covered = new Set([...tally.perMethod.keys()].map((k) => k.split('#')[0]));
    for (const m of methods) t.true(covered.has(m.path), `${m.path} was fuzzed`);
    t.true(covered.has('/sockbroker.v1.SocketService/Call') && covered.has(SessionServiceService.keepAlive.path));
    t.is(d.proc.exitCode, null, 'the daemon is still running');

    // The clients go; sessions the fuzz opened end (by CloseSession or their grace period).
    holder.end();
    t.is((await holderEnded).code, grpc.status.OK, 'the session holder stream lived through the fuzz');
    await unaryRaw(clients[0]!, SessionServiceService.closeSession.path, Buffer.alloc(0), sessionMd(f.sessionId));
    for (const c of clients) c.close();
    const back = await until(() => d.fdCount() <= baseline, 10_000);
    t.true(back, `fd count back to ${baseline}, is ${d.fdCount()}`);
  } finally {
    for (const c of clients) c.close();
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

