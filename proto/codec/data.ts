// Hand-written codecs for the hot messages of SocketService.Data: a sendall chunk
// (DataRequest.write) and a read-ahead chunk (DataResponse.chunk). The generated codec copies
// every `bytes` field two or three times (nested writer forks, then Buffer.from); these copy the
// data at most once on encode and never on decode (the decoded bytes are views of the message
// grpc-js just allocated). Every other message goes through the generated codec. The wire bytes
// are ordinary protobuf, so any client can speak the same contract with its own library.
import { DataRequest, DataResponse, DataWrite } from '../gen/sockbroker/v1/socket.js';
import { varintField, varintSize, writeVarint } from './varint.js';

/** Wire tags: field 2, length-delimited (DataRequest.write, DataResponse.chunk, DataWrite.data). */
const TAG_2_LEN = 0x12;
const EMPTY = Buffer.alloc(0);

/** Room a read-ahead chunk needs before its bytes for the tag and the length (a 5-byte varint). */
export const CHUNK_HEADROOM = 6;

/** Reads a varint at `at`: [value, next offset]; values above 2^53 lose precision (not used here). */
function readVarint(buf: Uint8Array, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at >= buf.length) throw new RangeError('truncated varint');
    const b = buf[at++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, at];
    scale *= 128;
  }
  throw new RangeError('varint too long');
}

/** Bytes an encoded DataRequest.write needs beyond its data, at most. */
export const WRITE_OVERHEAD = 64;

/**
 * Encodes a DataRequest; a `write` copies its data once, into the one buffer returned: a view of
 * `into` when it is large enough (WRITE_OVERHEAD + the data), else a new one. A Buffer passes
 * through as already encoded.
 */
export function encodeDataRequest(req: DataRequest | Buffer, into?: Buffer): Buffer {
  if (Buffer.isBuffer(req)) return req;
  const w = req.write;
  if (!w) return Buffer.from(DataRequest.encode(req).finish());
  const head = DataWrite.encode({ ...w, data: EMPTY }).finish();
  const n = w.data.length;
  const sub = head.length + (n > 0 ? 1 + varintSize(n) + n : 0);
  const size = 1 + varintSize(sub) + sub;
  const out = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  let at = 0;
  at = varintField(out, at, TAG_2_LEN, sub);
  out.set(head, at);
  at += head.length;
  if (n > 0) {
    at = varintField(out, at, TAG_2_LEN, n);
    out.set(w.data, at);
  }
  return out;
}

/** Decodes a DataRequest; a `write`'s data is a view of `buf`. */
export function decodeDataRequest(buf: Buffer): DataRequest {
  if (buf.length < 2 || buf[0] !== TAG_2_LEN) return DataRequest.decode(buf);
  const [sub, start] = readVarint(buf, 1);
  if (start + sub !== buf.length) return DataRequest.decode(buf);
  // The data field's bytes are cut out; the rest (a few bytes) is decoded by the generated codec.
  let data: Buffer = EMPTY;
  const rest: Buffer[] = [];
  let at = start;
  while (at < buf.length) {
    const fieldStart = at;
    const [key, afterKey] = readVarint(buf, at);
    const wire = key & 7;
    at = afterKey;
    if (wire === 0) at = readVarint(buf, at)[1];
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const [len, body] = readVarint(buf, at);
      at = body + len;
      if (key === TAG_2_LEN) {
        if (at > buf.length) throw new RangeError('truncated data');
        data = buf.subarray(body, at);
        continue;
      }
    } else return DataRequest.decode(buf);
    if (at > buf.length) throw new RangeError('truncated field');
    rest.push(buf.subarray(fieldStart, at));
  }
  const write = DataWrite.decode(rest.length === 1 ? rest[0]! : Buffer.concat(rest));
  write.data = data;
  return { write };
}

/**
 * Frames `n` read-ahead bytes that sit in `buf` at CHUNK_HEADROOM as an encoded
 * DataResponse.chunk, in place: the result is a view of `buf` (no copy).
 */
export function frameChunk(buf: Buffer, n: number): Buffer {
  const start = CHUNK_HEADROOM - 1 - varintSize(n);
  buf[start] = TAG_2_LEN;
  writeVarint(buf, start + 1, n);
  return buf.subarray(start, CHUNK_HEADROOM + n);
}

/** Encodes a DataResponse; a Buffer (from frameChunk) passes through as already encoded. */
export function encodeDataResponse(res: DataResponse | Buffer): Buffer {
  if (Buffer.isBuffer(res)) return res;
  return Buffer.from(DataResponse.encode(res).finish());
}

/** Decodes a DataResponse; a `chunk` is a view of `buf`. */
export function decodeDataResponse(buf: Buffer): DataResponse {
  if (buf.length >= 1 && buf[0] === TAG_2_LEN) {
    const [len, start] = readVarint(buf, 1);
    if (start + len === buf.length) return { chunk: buf.subarray(start) };
  }
  return DataResponse.decode(buf);
}
