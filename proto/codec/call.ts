// Hand-written codec for the Call stream's hottest messages: a small sendall (CallRequest.send_all,
// pipelined) and a recv (CallRequest.recv), which an echo round trip sends one of each, and the
// recv's result (CallResponse.recv, or one carrying only the acknowledgement), alone or in a
// batch (CallRequest.batch, CallResponse.batch), both ways. The generated codec
// forks a writer per nested message and copies bytes twice (~1-3 µs a message on a busy 2-vCPU
// VM); these size the message and write it once, and decode without a reader (~0.3 µs). They write
// exactly the generated encoder's bytes (the same fields in the same order, defaults omitted) and
// decode to what the generated decoder returns (its `data` a view, not a copy), only for messages
// whose every field they know; anything else goes through the generated codec. A test checks them
// against ts-proto's, and that they know every field of the messages they write.
import { CallRequest, CallResponse, type QueuedDatagram, type RecvRequest, type RecvResponse, type SendAllRequest, type SendRequest, type SendResponse } from '../gen/sockbroker/v1/socket.js';
import type { Address } from '../gen/sockbroker/v1/address.js';
import { varintField, varintSize, writeVarint } from './varint.js';

/** A CallBatch's bounds (CallRequest.batch): calls, and bytes of the encoded CallRequest. */
export const MAX_BATCH_CALLS = 64;
export const MAX_BATCH_BYTES = 256 << 10;
/** The fields of CallBatch (a test compares them with the generated type's). */
export const BATCH_FIELDS = ['calls'] as const;

/** The fields written here, per message (a test compares them with the generated types'). */
export const CALL_FIELDS = ['callId', 'ackOnly', 'ackedSeq', 'sendAll', 'recv'] as const;
export const SEND_ALL_FIELDS = ['handle', 'data', 'flags', 'timeout'] as const;
export const RECV_FIELDS = ['handle', 'bufsize', 'flags', 'wantAddress', 'timeout', 'batch'] as const;
export const RESPONSE_FIELDS = ['callId', 'acked', 'seq', 'recv', 'send'] as const;
/** The fields of CallResponseBatch (a test compares them with the generated type's). */
export const RESPONSE_BATCH_FIELDS = ['responses'] as const;
export const RECV_RESPONSE_FIELDS = ['data', 'address', 'queued'] as const;
export const QUEUED_FIELDS = ['data', 'address'] as const;
export const SEND_FIELDS = ['handle', 'data', 'flags', 'address', 'timeout'] as const;
export const SEND_RESPONSE_FIELDS = ['sent'] as const;
export const INET_FIELDS = ['host', 'port'] as const;
export const INET6_FIELDS = ['host', 'port', 'flowinfo', 'scopeId'] as const;
const QUEUED = new Set<string>(QUEUED_FIELDS);
const SEND_RESPONSE = new Set<string>(SEND_RESPONSE_FIELDS);
const INET = new Set<string>(INET_FIELDS);
const INET6 = new Set<string>(INET6_FIELDS);
/** The Address kinds written here (datagram senders and destinations); others are generated. */
const ADDRESS_KINDS = new Set<string>(['inet', 'inet6']);
const CALL = new Set<string>(CALL_FIELDS);
const RESPONSE = new Set<string>(RESPONSE_FIELDS);
const RECV_RESPONSE = new Set<string>(RECV_RESPONSE_FIELDS);
const SEND_ALL = new Set<string>(SEND_ALL_FIELDS);
const RECV = new Set<string>(RECV_FIELDS);
const BATCH = new Set<string>(BATCH_FIELDS);
const BATCH_ENVELOPE = new Set<string>(['callId', 'ackOnly', 'ackedSeq', 'batch']);
const RESPONSE_BATCH_ENVELOPE = new Set<string>(['callId', 'acked', 'seq', 'batch']);

const MAX_UINT32 = 0xffffffff;

/** Whether every field set on `m` is one of `known`. */
function onlyKnown(m: object, known: Set<string>): boolean {
  for (const k in m) if ((m as Record<string, unknown>)[k] !== undefined && !known.has(k)) return false;
  return true;
}

/** A non-negative integer a varint here can carry exactly (int32 < 0 takes the generated path). */
function plain(n: unknown, max = Number.MAX_SAFE_INTEGER): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
}


/** Size of the fields of SendAllRequest, or -1 when the generated encoder must serve. */
function sendAllSize(m: SendAllRequest): number {
  if (!onlyKnown(m, SEND_ALL) || !plain(m.handle, 0x7fffffff) || !plain(m.flags, 0x7fffffff) || !(m.data instanceof Uint8Array)) return -1;
  if (m.timeout !== undefined && typeof m.timeout !== 'number') return -1;
  const n = m.data.length;
  return (m.handle ? 1 + varintSize(m.handle) : 0) + (n ? 1 + varintSize(n) + n : 0) + (m.flags ? 1 + varintSize(m.flags) : 0) + (m.timeout !== undefined ? 9 : 0);
}

function writeSendAll(buf: Buffer, at: number, m: SendAllRequest): number {
  if (m.handle) at = varintField(buf, at, 0x08, m.handle);
  if (m.data.length) {
    at = varintField(buf, at, 0x12, m.data.length);
    buf.set(m.data, at);
    at += m.data.length;
  }
  if (m.flags) at = varintField(buf, at, 0x18, m.flags);
  if (m.timeout !== undefined) {
    buf[at++] = 0x21;
    at = buf.writeDoubleLE(m.timeout, at);
  }
  return at;
}

function recvSize(m: RecvRequest): number {
  if (!onlyKnown(m, RECV) || !plain(m.handle, 0x7fffffff) || !plain(m.bufsize, MAX_UINT32) || !plain(m.flags, 0x7fffffff)) return -1;
  if (typeof m.wantAddress !== 'boolean' || (m.timeout !== undefined && typeof m.timeout !== 'number') || (m.batch !== undefined && !plain(m.batch, MAX_UINT32))) return -1;
  return (
    (m.handle ? 1 + varintSize(m.handle) : 0) +
    (m.bufsize ? 1 + varintSize(m.bufsize) : 0) +
    (m.flags ? 1 + varintSize(m.flags) : 0) +
    (m.wantAddress ? 2 : 0) +
    (m.timeout !== undefined ? 9 : 0) +
    (m.batch !== undefined ? 1 + varintSize(m.batch) : 0)
  );
}

function writeRecv(buf: Buffer, at: number, m: RecvRequest): number {
  if (m.handle) at = varintField(buf, at, 0x08, m.handle);
  if (m.bufsize) at = varintField(buf, at, 0x10, m.bufsize);
  if (m.flags) at = varintField(buf, at, 0x18, m.flags);
  if (m.wantAddress) {
    buf[at++] = 0x20;
    buf[at++] = 1;
  }
  if (m.timeout !== undefined) {
    buf[at++] = 0x29;
    at = buf.writeDoubleLE(m.timeout, at);
  }
  if (m.batch !== undefined) at = varintField(buf, at, 0x38, m.batch);
  return at;
}

/**
 * A CallRequest carrying only a batch of the already encoded `calls` (field 96, a two-byte key;
 * CallBatch.calls is field 1): the generated encoder's bytes for it. A CallResponse batch
 * (CallResponse.batch, CallResponseBatch.responses) has the same numbers: the same bytes.
 */
export function encodeBatch(calls: Buffer[]): Buffer {
  let body = 0;
  for (const c of calls) body += entrySize(c.length);
  const buf = batchBuffer(body);
  let at = buf.length - body;
  for (const c of calls) {
    at = varintField(buf, at, 0x0a, c.length); // the entry's key and length
    buf.set(c, at);
    at += c.length;
  }
  return buf;
}

/** A batch entry's bytes for an encoded call of `n` bytes (CallBatch.calls, field 1). */
function entrySize(n: number): number {
  return 1 + varintSize(n) + n;
}

/** A batch's buffer for entries of `body` bytes, its envelope (field 96, length) written: they go in its last `body` bytes. */
function batchBuffer(body: number): Buffer {
  const buf = Buffer.allocUnsafe(2 + varintSize(body) + body);
  buf[0] = 0x82;
  buf[1] = 0x06;
  writeVarint(buf, 2, body);
  return buf;
}

/** Encodes a CallRequest (grpc-js's serializer for the Call stream). */
export function encodeCallRequest(msg: CallRequest): Buffer {
  if (msg.batch !== undefined && msg.callId === 0 && msg.ackOnly === undefined && msg.ackedSeq === undefined && onlyKnown(msg, BATCH_ENVELOPE) && onlyKnown(msg.batch, BATCH)) {
    return encodeBatch(msg.batch.calls.map(encodeCallRequest));
  }
  const size = fastSize(msg);
  if (size < 0) return slow(msg);
  const buf = Buffer.allocUnsafe(size);
  fastWrite(buf, 0, msg, bodySize, size);
  return buf;
}

/** The body size fastSize found (its operation's message), for the fastWrite after it. */
let bodySize = 0;

/** The bytes of `msg` by the fast encoder (its body's in bodySize), or -1 when the generated one must serve. */
function fastSize(msg: CallRequest): number {
  const op = msg.sendAll ?? msg.recv;
  if (op === undefined || (msg.sendAll !== undefined && msg.recv !== undefined) || !onlyKnown(msg, CALL)) return -1;
  if (!plain(msg.callId) || (msg.ackedSeq !== undefined && !plain(msg.ackedSeq)) || (msg.ackOnly !== undefined && typeof msg.ackOnly !== 'boolean')) return -1;
  const body = msg.sendAll !== undefined ? sendAllSize(msg.sendAll) : recvSize(msg.recv!);
  if (body < 0) return -1;
  bodySize = body;
  return (
    (msg.callId ? 1 + varintSize(msg.callId) : 0) +
    (msg.ackOnly !== undefined ? 2 : 0) +
    (msg.ackedSeq !== undefined ? 1 + varintSize(msg.ackedSeq) : 0) +
    2 + varintSize(body) + body
  );
}

/** Writes `msg` (fastSize's `size` bytes, its body `body`) at `at`; returns the end. */
function fastWrite(buf: Buffer, at: number, msg: CallRequest, body: number, size: number): number {
  const from = at;
  const sendAll = msg.sendAll !== undefined;
  if (msg.callId) at = varintField(buf, at, 0x08, msg.callId);
  if (msg.ackOnly !== undefined) {
    buf[at++] = 0x10;
    buf[at++] = msg.ackOnly ? 1 : 0;
  }
  if (msg.ackedSeq !== undefined) at = varintField(buf, at, 0x18, msg.ackedSeq);
  // Field 17 (send_all) or 18 (recv), length-delimited: a two-byte key.
  buf[at++] = sendAll ? 0x8a : 0x92;
  buf[at++] = 0x01;
  at = writeVarint(buf, at, body);
  at = sendAll ? writeSendAll(buf, at, msg.sendAll!) : writeRecv(buf, at, msg.recv!);
  if (at - from !== size) throw new Error(`encodeCallRequest: wrote ${at - from} of ${size} bytes`);
  return at;
}

/**
 * The calls a transport writes together (each a request, or one already encoded), as few
 * messages as the batch bounds allow: each one a batch (encodeBatch's bytes) written in one
 * buffer, a call alone as itself. Encoded CallResponses batch the same way (CallResponse.batch
 * has CallRequest.batch's field numbers: the same bytes).
 */
export function encodeCalls(calls: Array<CallRequest | Buffer>): Buffer[] {
  if (calls.length === 1) {
    const c = calls[0]!;
    return [Buffer.isBuffer(c) ? c : encodeCallRequest(c)];
  }
  // Each call's bytes and body size (-1: already encoded, or by the generated encoder, in `slowBufs`).
  const sizes = batchSizes;
  const bodies = batchBodies;
  const slowBufs = batchBufs;
  sizes.length = bodies.length = slowBufs.length = 0;
  for (const c of calls) {
    const size = Buffer.isBuffer(c) || c.batch !== undefined ? -1 : fastSize(c);
    const b = Buffer.isBuffer(c) ? c : size < 0 ? encodeCallRequest(c) : undefined;
    sizes.push(size < 0 ? b!.length : size);
    bodies.push(size < 0 ? -1 : bodySize);
    slowBufs.push(b);
  }
  const out: Buffer[] = [];
  for (let from = 0; from < calls.length; ) {
    // The envelope and each call's key and length take a few bytes beside the calls' own.
    let n = 0;
    let bytes = 8;
    while (from + n < calls.length && n < MAX_BATCH_CALLS && bytes + sizes[from + n]! + 8 <= MAX_BATCH_BYTES) bytes += sizes[from + n++]! + 8;
    n = Math.max(n, 1);
    if (n === 1) out.push(slowBufs[from] ?? encodeCallRequest(calls[from] as CallRequest));
    else {
      let body = 0;
      for (let i = from; i < from + n; i++) body += entrySize(sizes[i]!);
      const buf = batchBuffer(body);
      let at = buf.length - body;
      for (let i = from; i < from + n; i++) {
        at = varintField(buf, at, 0x0a, sizes[i]!);
        const b = slowBufs[i];
        if (b) {
          buf.set(b, at);
          at += b.length;
        } else at = fastWrite(buf, at, calls[i] as CallRequest, bodies[i]!, sizes[i]!);
      }
      if (at !== buf.length) throw new Error(`encodeCalls: wrote ${at} of ${buf.length} bytes`);
      out.push(buf);
    }
    from += n;
  }
  // The buffers are the caller's now: the scratch arrays keep none alive.
  slowBufs.length = 0;
  return out;
}

/** encodeCalls' scratch arrays (reused by every call: it does not reenter). */
const batchSizes: number[] = [];
const batchBodies: number[] = [];
const batchBufs: Array<Buffer | undefined> = [];

function slow(msg: CallRequest): Buffer {
  return Buffer.from(CallRequest.encode(msg).finish());
}

/**
 * Lengths of the nested messages of a response, in the order the writer needs them (filled by the
 * sizing pass, read by the writing pass of the same call: each is computed once).
 */
const nested: number[] = [];
let nestedAt = 0;

function ascii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Size of an Address (inet or inet6, an ASCII host) with its key and length; -1 when generated. */
function addressSize(a: Address): number {
  if (!onlyKnown(a, ADDRESS_KINDS)) return -1;
  const v4 = a.inet;
  const v6 = a.inet6;
  if ((v4 === undefined) === (v6 === undefined)) return -1;
  const m = (v4 ?? v6)!;
  if (!onlyKnown(m, v4 ? INET : INET6) || typeof m.host !== 'string' || !ascii(m.host) || !plain(m.port, MAX_UINT32)) return -1;
  let inner = (m.host.length ? 1 + varintSize(m.host.length) + m.host.length : 0) + (m.port ? 1 + varintSize(m.port) : 0);
  if (v6) {
    if (!plain(v6.flowinfo, MAX_UINT32) || !plain(v6.scopeId, MAX_UINT32)) return -1;
    inner += (v6.flowinfo ? 1 + varintSize(v6.flowinfo) : 0) + (v6.scopeId ? 1 + varintSize(v6.scopeId) : 0);
  }
  nested.push(inner);
  return 1 + varintSize(inner) + inner;
}

function writeAddress(buf: Buffer, at: number, a: Address): number {
  const inner = nested[nestedAt++]!;
  const m = (a.inet ?? a.inet6)!;
  at = varintField(buf, at, a.inet ? 0x0a : 0x12, inner);
  if (m.host.length) {
    at = varintField(buf, at, 0x0a, m.host.length);
    at += buf.write(m.host, at, 'latin1');
  }
  if (m.port) at = varintField(buf, at, 0x10, m.port);
  const v6 = a.inet6;
  if (v6) {
    if (v6.flowinfo) at = varintField(buf, at, 0x18, v6.flowinfo);
    if (v6.scopeId) at = varintField(buf, at, 0x20, v6.scopeId);
  }
  return at;
}

/** Size of `data` (field 1) and `address` (field 2): a RecvResponse's first fields, all of a QueuedDatagram. */
function datagramSize(data: unknown, address: Address | undefined): number {
  if (!(data instanceof Uint8Array)) return -1;
  let n = data.length ? 1 + varintSize(data.length) + data.length : 0;
  if (address !== undefined) {
    const a = addressSize(address);
    if (a < 0) return -1;
    n += 1 + varintSize(a) + a;
  }
  return n;
}

function writeDatagram(buf: Buffer, at: number, data: Uint8Array, address: Address | undefined): number {
  if (data.length) {
    at = varintField(buf, at, 0x0a, data.length);
    buf.set(data, at);
    at += data.length;
  }
  if (address !== undefined) {
    buf[at++] = 0x12;
    const inner = nested[nestedAt]!;
    at = writeVarint(buf, at, 1 + varintSize(inner) + inner);
    at = writeAddress(buf, at, address);
  }
  return at;
}

/** Size of a RecvResponse's fields; -1 when generated. Queued datagrams push their sizes too. */
function recvResponseSize(r: RecvResponse): number {
  if (!onlyKnown(r, RECV_RESPONSE)) return -1;
  let n = datagramSize(r.data, r.address);
  if (n < 0) return -1;
  for (const q of r.queued ?? []) {
    if (q === null || typeof q !== 'object' || !onlyKnown(q, QUEUED)) return -1;
    const at = nested.length;
    nested.push(0);
    const s = datagramSize(q.data, q.address);
    if (s < 0) return -1;
    nested[at] = s;
    n += 1 + varintSize(s) + s;
  }
  return n;
}

function writeRecvResponse(buf: Buffer, at: number, r: RecvResponse): number {
  at = writeDatagram(buf, at, r.data, r.address);
  for (const q of (r.queued ?? []) as QueuedDatagram[]) {
    at = varintField(buf, at, 0x22, nested[nestedAt++]!);
    at = writeDatagram(buf, at, q.data, q.address);
  }
  return at;
}

function sendResponseSize(r: SendResponse): number {
  if (!onlyKnown(r, SEND_RESPONSE) || !plain(r.sent)) return -1;
  return r.sent ? 1 + varintSize(r.sent) : 0;
}

/** Encodes a CallResponse (the daemon's serializer for the Call stream); one already encoded is written as it is. */
export function encodeCallResponse(msg: CallResponse | Buffer): Buffer {
  if (Buffer.isBuffer(msg)) return msg;
  if (msg.batch !== undefined && msg.callId === 0 && msg.acked === undefined && msg.seq === undefined && onlyKnown(msg, RESPONSE_BATCH_ENVELOPE)) {
    return encodeBatch(msg.batch.responses.map(encodeCallResponse));
  }
  if (!onlyKnown(msg, RESPONSE) || !plain(msg.callId) || (msg.acked !== undefined && !plain(msg.acked)) || (msg.seq !== undefined && !plain(msg.seq))) return slowResponse(msg);
  const r = msg.recv;
  const sr = msg.send;
  if (r !== undefined && sr !== undefined) return slowResponse(msg);
  nested.length = 0;
  nestedAt = 0;
  const body = r !== undefined ? recvResponseSize(r) : sr !== undefined ? sendResponseSize(sr) : 0;
  if (body < 0) return slowResponse(msg);
  const size =
    (msg.callId ? 1 + varintSize(msg.callId) : 0) +
    (msg.acked !== undefined ? 1 + varintSize(msg.acked) : 0) +
    (msg.seq !== undefined ? 1 + varintSize(msg.seq) : 0) +
    (r !== undefined || sr !== undefined ? 2 + varintSize(body) + body : 0);
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  if (msg.callId) at = varintField(buf, at, 0x08, msg.callId);
  if (msg.acked !== undefined) at = varintField(buf, at, 0x10, msg.acked);
  if (msg.seq !== undefined) at = varintField(buf, at, 0x18, msg.seq);
  if (r !== undefined || sr !== undefined) {
    // Field 18 (recv) or 16 (send), length-delimited: a two-byte key.
    buf[at++] = r !== undefined ? 0x92 : 0x82;
    buf[at++] = 0x01;
    at = writeVarint(buf, at, body);
    if (r !== undefined) at = writeRecvResponse(buf, at, r);
    else if (sr!.sent) at = varintField(buf, at, 0x08, sr!.sent);
  }
  if (at !== size) throw new Error(`encodeCallResponse: wrote ${at} of ${size} bytes`);
  return buf;
}

function slowResponse(msg: CallResponse): Buffer {
  return Buffer.from(CallResponse.encode(msg).finish());
}

/** Thrown inside the fast decoder for anything it leaves to the generated one. */
const GENERATED = Symbol('generated decoder');

/** A varint at `at` below 2^53 (else the generated decoder serves): [value, next offset]. */
function varint(buf: Uint8Array, at: number, end: number): [number, number] {
  const value = varintAt(buf, at, end);
  return [value, next];
}

/** The fields of a SendAllRequest or RecvRequest in buf[at, end), as the generated decoder makes them. */
function decodeOp(buf: Buffer, at: number, end: number, sendAll: boolean): SendAllRequest | RecvRequest {
  const m: Record<string, unknown> = sendAll
    ? { handle: 0, data: Buffer.alloc(0), flags: 0, timeout: undefined }
    : { handle: 0, bufsize: 0, flags: 0, wantAddress: false, timeout: undefined, batch: undefined };
  let seen = 0;
  while (at < end) {
    const key = buf[at++]!;
    if (key >= 0x80 || seen & (1 << (key >> 3))) throw GENERATED; // a field seen twice: the generated decoder's rules
    seen |= 1 << (key >> 3);
    if ((key & 7) === 1) {
      // A double: timeout (field 4 of SendAllRequest, 5 of RecvRequest).
      if (key !== (sendAll ? 0x21 : 0x29) || at + 8 > end) throw GENERATED;
      m.timeout = buf.readDoubleLE(at);
      at += 8;
      continue;
    }
    if (sendAll && key === 0x12) {
      const [n, start] = varint(buf, at, end);
      if (start + n > end) throw GENERATED;
      m.data = buf.subarray(start, start + n);
      at = start + n;
      continue;
    }
    if ((key & 7) !== 0) throw GENERATED;
    const [v, next] = varint(buf, at, end);
    at = next;
    const field = key >> 3;
    // int32 fields wider than 31 bits (negative values) and uint32 beyond 32 bits: generated.
    if (field === 1 || field === 3) {
      if (v > 0x7fffffff) throw GENERATED;
      m[field === 1 ? 'handle' : 'flags'] = v;
    } else if (!sendAll && field === 2 && v <= 0xffffffff) m.bufsize = v;
    else if (!sendAll && field === 4 && v <= 1) m.wantAddress = v === 1;
    else if (!sendAll && field === 7 && v <= 0xffffffff) m.batch = v;
    else throw GENERATED;
  }
  if (at !== end) throw GENERATED;
  return m as unknown as SendAllRequest | RecvRequest;
}

/** An ASCII string field's text (anything else: the generated decoder, for its UTF-8 rules). */
function asciiText(buf: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) if (buf[i]! > 0x7f) throw GENERATED;
  return buf.toString('latin1', start, end);
}

/** An Address in buf[at, end) naming an inet or inet6 sender or destination, as the generated decoder reads it. */
function decodeAddress(buf: Buffer, at: number, end: number): Address {
  const kind = buf[at];
  if (kind !== 0x0a && kind !== 0x12) throw GENERATED;
  const [n, start] = varint(buf, at + 1, end);
  if (start + n !== end) throw GENERATED;
  const v6 = kind === 0x12;
  const m: Record<string, unknown> = v6 ? { host: '', port: 0, flowinfo: 0, scopeId: 0 } : { host: '', port: 0 };
  let seen = 0;
  at = start;
  while (at < end) {
    const key = buf[at++]!;
    if (key >= 0x80 || seen & (1 << (key >> 3))) throw GENERATED;
    seen |= 1 << (key >> 3);
    if (key === 0x0a) {
      const [len, from] = varint(buf, at, end);
      if (from + len > end) throw GENERATED;
      m.host = asciiText(buf, from, from + len);
      at = from + len;
      continue;
    }
    if ((key & 7) !== 0) throw GENERATED;
    const field = key >> 3;
    const [v, next] = varint(buf, at, end);
    at = next;
    if (v > MAX_UINT32) throw GENERATED;
    if (field === 2) m.port = v;
    else if (v6 && field === 3) m.flowinfo = v;
    else if (v6 && field === 4) m.scopeId = v;
    else throw GENERATED;
  }
  return (v6 ? { inet6: m } : { inet: m }) as unknown as Address;
}

/** The fields of a SendRequest in buf[at, end), as the generated decoder makes them. */
function decodeSend(buf: Buffer, at: number, end: number): SendRequest {
  const m: Record<string, unknown> = { handle: 0, data: Buffer.alloc(0), flags: 0, address: undefined, timeout: undefined };
  let seen = 0;
  while (at < end) {
    const key = buf[at++]!;
    if (key >= 0x80 || seen & (1 << (key >> 3))) throw GENERATED;
    seen |= 1 << (key >> 3);
    if (key === 0x29) {
      if (at + 8 > end) throw GENERATED;
      m.timeout = buf.readDoubleLE(at);
      at += 8;
      continue;
    }
    if (key === 0x12 || key === 0x22) {
      const [n, start] = varint(buf, at, end);
      if (start + n > end) throw GENERATED;
      if (key === 0x12) m.data = buf.subarray(start, start + n);
      else m.address = decodeAddress(buf, start, start + n);
      at = start + n;
      continue;
    }
    if (key !== 0x08 && key !== 0x18) throw GENERATED;
    const [v, next] = varint(buf, at, end);
    if (v > 0x7fffffff) throw GENERATED;
    at = next;
    m[key === 0x08 ? 'handle' : 'flags'] = v;
  }
  if (at !== end) throw GENERATED;
  return m as unknown as SendRequest;
}

/**
 * Decodes a CallRequest (the daemon's deserializer for the Call stream): a sendall or a recv here,
 * with only the fields that are set or have a default (the generated decoder also lists every
 * other operation as undefined); anything else by the generated decoder, which also throws on
 * malformed input.
 */
export function decodeCallRequest(buf: Buffer): CallRequest {
  const msg = decodeOne(buf, true);
  const batch = msg.batch;
  if (batch !== undefined) {
    if (batch.calls.length > MAX_BATCH_CALLS || buf.length > MAX_BATCH_BYTES) throw new Error(`a batch of ${batch.calls.length} calls in ${buf.length} bytes (at most ${MAX_BATCH_CALLS} and ${MAX_BATCH_BYTES})`);
    if (batch.calls.some((c) => c.batch !== undefined)) throw new Error('a batch inside a batch');
  }
  return msg;
}

/** A batch's calls, each decoded like a message of its own; undefined when not exactly a batch. */
function decodeBatch(buf: Buffer): CallRequest | undefined {
  const [n, start] = varint(buf, 2, buf.length);
  if (start + n !== buf.length) return undefined;
  const calls: CallRequest[] = [];
  let at = start;
  while (at < buf.length) {
    if (buf[at] !== 0x0a) return undefined;
    const [len, from] = varint(buf, at + 1, buf.length);
    if (from + len > buf.length) return undefined;
    calls.push(decodeOne(buf.subarray(from, from + len), false));
    at = from + len;
  }
  return { callId: 0, batch: { calls } } as unknown as CallRequest;
}

function decodeOne(buf: Buffer, outer: boolean): CallRequest {
  try {
    if (outer && buf[0] === 0x82 && buf[1] === 0x06) {
      const msg = decodeBatch(buf);
      if (msg) return msg;
      throw GENERATED;
    }
    const msg: Record<string, unknown> = { callId: 0, ackOnly: undefined, ackedSeq: undefined };
    let seen = 0;
    let at = 0;
    let op = false;
    while (at < buf.length) {
      const key = buf[at]!;
      if (key === 0x82 || key === 0x8a || key === 0x92) {
        // Field 16 (send), 17 (send_all) or 18 (recv): the last field the generated encoder writes here.
        if (op || buf[at + 1] !== 0x01) throw GENERATED;
        op = true;
        const [n, start] = varint(buf, at + 2, buf.length);
        if (start + n !== buf.length) throw GENERATED;
        if (key === 0x82) msg.send = decodeSend(buf, start, start + n);
        else msg[key === 0x8a ? 'sendAll' : 'recv'] = decodeOp(buf, start, start + n, key === 0x8a);
        at = start + n;
        continue;
      }
      if (op || (key !== 0x08 && key !== 0x10 && key !== 0x18) || seen & (1 << (key >> 3))) throw GENERATED;
      seen |= 1 << (key >> 3);
      const [v, next] = varint(buf, at + 1, buf.length);
      at = next;
      if (key === 0x08) msg.callId = v;
      else if (key === 0x10) msg.ackOnly = v !== 0;
      else msg.ackedSeq = v;
    }
    if (!op) throw GENERATED;
    return msg as unknown as CallRequest;
  } catch (err) {
    if (err !== GENERATED) throw err;
    return CallRequest.decode(buf);
  }
}

/**
 * Decodes a CallResponse (the SDK's deserializer for the Call stream): a recv's result carrying
 * only its data, one carrying only the acknowledgement, or a batch of responses (each decoded as
 * if alone) here, with only the fields that are set or have a default; anything else by the
 * generated decoder, which also throws on malformed input. A batch inside a batch, or one beyond
 * the bounds, throws.
 */
export function decodeCallResponse(buf: Buffer): CallResponse {
  if (buf[0] === 0x82 && buf[1] === 0x06) {
    const msg = decodeResponseBatch(buf) ?? CallResponse.decode(buf);
    const batch = msg.batch;
    if (batch !== undefined) {
      if (batch.responses.length > MAX_BATCH_CALLS || buf.length > MAX_BATCH_BYTES) throw new Error(`a batch of ${batch.responses.length} responses in ${buf.length} bytes (at most ${MAX_BATCH_CALLS} and ${MAX_BATCH_BYTES})`);
      if (batch.responses.some((r) => r.batch !== undefined)) throw new Error('a batch inside a batch');
    }
    return msg;
  }
  return decodeResponse(buf);
}

/** A batch's responses, each decoded like a message of its own; undefined when not exactly a batch. */
function decodeResponseBatch(buf: Buffer): CallResponse | undefined {
  try {
    const n = varintAt(buf, 2, buf.length);
    if (next + n !== buf.length) return undefined;
    const responses: CallResponse[] = [];
    let at = next;
    while (at < buf.length) {
      if (buf[at] !== 0x0a) return undefined;
      const len = varintAt(buf, at + 1, buf.length);
      const from = next;
      if (from + len > buf.length) return undefined;
      responses.push(decodeResponse(buf, from, from + len));
      at = from + len;
    }
    return { callId: 0, batch: { responses } } as unknown as CallResponse;
  } catch (err) {
    if (err !== GENERATED) throw err;
    return undefined;
  }
}

/** Where varintAt stopped (no tuple per varint on the SDK's hot path). */
let next = 0;

/** A varint at `at` below 2^53 (else the generated decoder serves); its end is in `next`. */
function varintAt(buf: Uint8Array, at: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (at >= end) throw GENERATED;
    const b = buf[at++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      if (value > Number.MAX_SAFE_INTEGER) throw GENERATED;
      next = at;
      return value;
    }
    scale *= 128;
  }
  throw GENERATED;
}

/** What a recv result's `queued` is when the response has none: one shared, frozen array. */
const NONE_QUEUED: never[] = Object.freeze([]) as never[];

/** The response in buf[from, end) (a batch's element is decoded in place: no view of its own). */
function decodeResponse(buf: Buffer, from = 0, end = buf.length): CallResponse {
  try {
    const msg: Record<string, unknown> = { callId: 0, acked: undefined, seq: undefined };
    let seen = 0;
    let at = from;
    while (at < end) {
      const key = buf[at]!;
      if (key === 0x92) {
        // Field 18 (recv), the last field the generated encoder writes here: only its data (field 1).
        if (buf[at + 1] !== 0x01) throw GENERATED;
        const n = varintAt(buf, at + 2, end);
        const start = next;
        if (start + n !== end) throw GENERATED;
        let data: Buffer;
        if (n > 0) {
          if (buf[start] !== 0x0a) throw GENERATED;
          const len = varintAt(buf, start + 1, end);
          if (next + len !== end) throw GENERATED;
          data = buf.subarray(next, next + len);
        } else data = buf.subarray(start, start);
        msg.recv = { data, address: undefined, queued: NONE_QUEUED };
        return msg as unknown as CallResponse;
      }
      if ((key !== 0x08 && key !== 0x10 && key !== 0x18) || seen & (1 << (key >> 3))) throw GENERATED;
      seen |= 1 << (key >> 3);
      const v = varintAt(buf, at + 1, end);
      at = next;
      if (key === 0x08) msg.callId = v;
      else if (key === 0x10) msg.acked = v;
      else msg.seq = v;
    }
    return msg as unknown as CallResponse;
  } catch (err) {
    if (err !== GENERATED) throw err;
    return CallResponse.decode(from === 0 && end === buf.length ? buf : buf.subarray(from, end));
  }
}
