// The hand-written Call stream codec (proto/codec/call.ts) writes the generated encoder's bytes and
// decodes to what the generated decoder returns for the hot messages, and leaves everything else
// to the generated codec (another operation, a field it does not know, a negative int32, malformed
// input).
import test from 'ava';
import { CallBatch, CallRequest, CallResponse, CallResponseBatch, QueuedDatagram, RecvRequest, RecvResponse, SendAllRequest, SendRequest, SendResponse } from '../../proto/gen/sockbroker/v1/socket.js';
import { InetAddress, Inet6Address } from '../../proto/gen/sockbroker/v1/address.js';
import { BATCH_FIELDS, CALL_FIELDS, INET6_FIELDS, INET_FIELDS, MAX_BATCH_BYTES, MAX_BATCH_CALLS, QUEUED_FIELDS, RECV_FIELDS, RECV_RESPONSE_FIELDS, RESPONSE_BATCH_FIELDS, RESPONSE_FIELDS, SEND_ALL_FIELDS, SEND_FIELDS, SEND_RESPONSE_FIELDS, decodeCallRequest, decodeCallResponse, encodeBatch, encodeCallRequest, encodeCallResponse, encodeCalls } from '../../proto/codec/call.js';

const generated = (m: CallRequest): Buffer => Buffer.from(CallRequest.encode(m).finish());
const data = Buffer.from('x'.repeat(64));
const big = 2 ** 53 - 1;

const samples: Array<[string, CallRequest]> = [
  ['pipelined sendall', { callId: 7, ackOnly: true, ackedSeq: 3, sendAll: { handle: 1, data, flags: 0 } } as CallRequest],
  ['sendall, every field', { callId: big, ackOnly: false, ackedSeq: 0, sendAll: { handle: 2 ** 31 - 1, data: Buffer.alloc(300, 1), flags: 0x4000, timeout: 2.5 } } as CallRequest],
  ['sendall, defaults', { callId: 0, sendAll: { handle: 0, data: Buffer.alloc(0), flags: 0 } } as CallRequest],
  ['recv', { callId: 8, ackedSeq: 200, recv: { handle: 1, bufsize: 64, flags: 0, wantAddress: false, timeout: undefined } } as CallRequest],
  ['recvfrom, every field', { callId: 1 << 30, recv: { handle: 5, bufsize: 0xffffffff, flags: 2, wantAddress: true, timeout: 0, batch: 63 } } as CallRequest],
  ['sendto', { callId: 12, send: { handle: 3, data, flags: 0, address: { inet: { host: '127.0.0.1', port: 9 } }, timeout: undefined } } as CallRequest],
  ['sendto, every field, inet6', { callId: 13, ackOnly: false, ackedSeq: 2, send: { handle: 2 ** 31 - 1, data: Buffer.alloc(300, 1), flags: 0x40, address: { inet6: { host: 'fe80::1', port: 65535, flowinfo: 0xfffff, scopeId: 3 } }, timeout: 1.5 } } as CallRequest],
  ['send, defaults', { callId: 0, send: { handle: 0, data: Buffer.alloc(0), flags: 0 } } as CallRequest],
  ['sendto, an empty address', { callId: 14, send: { handle: 1, data, flags: 0, address: { inet: { host: '', port: 0 } } } } as CallRequest],
  // The generated decoder's: a unix path, a host that is not ASCII.
  ['sendto a unix path', { callId: 15, send: { handle: 1, data, flags: 0, address: { unix: { path: Buffer.from('/tmp/x') } } } } as CallRequest],
  ['sendto a host that is not ASCII', { callId: 16, send: { handle: 1, data, flags: 0, address: { inet: { host: 'h\u00f4te', port: 1 } } } } as CallRequest],
  // The generated encoder's cases: other operations, negative ints, fields it does not know.
  ['another operation', { callId: 9, getSockName: { handle: 1 } } as CallRequest],
  ['negative flags', { callId: 10, recv: { handle: 1, bufsize: 1, flags: -1, wantAddress: false } } as CallRequest],
  // A batch of what a transport writes in one turn: a pipelined sendall, its recv, an acknowledgement, another operation.
  ['a batch', { callId: 0, batch: { calls: [
    { callId: 7, ackOnly: true, ackedSeq: 3, sendAll: { handle: 1, data, flags: 0 } },
    { callId: 8, ackedSeq: 3, recv: { handle: 1, bufsize: 64, flags: 0, wantAddress: false, timeout: undefined } },
    { callId: 0, ackedSeq: 4 },
    { callId: 9, ackedSeq: 4, getSockName: { handle: 1 } },
  ] } } as CallRequest],
  ['a property the type does not have', { callId: 11, recv: { handle: 1, bufsize: 1, flags: 0, wantAddress: false, readAhead: 3 } } as unknown as CallRequest],
];

for (const [name, m] of samples) {
  test(`encodeCallRequest: ${name} — the generated encoder's bytes, decoded alike`, (t) => {
    const fast = encodeCallRequest(m);
    t.deepEqual(fast, generated(m));
    t.deepEqual(CallRequest.decode(fast), CallRequest.decode(generated(m)));
    // The fast decoder leaves out the operations that are not set (undefined in the generated one's).
    t.deepEqual(defined(decodeCallRequest(fast)), defined(CallRequest.decode(fast)));
  });
}

/** `m` without its undefined properties (the fast decoder lists only the operation it found). */
function defined(m: object): object {
  const clean = (v: unknown): unknown => (Array.isArray(v) ? v.map(clean) : v && typeof v === 'object' && !(v instanceof Uint8Array) ? defined(v) : v);
  return Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined).map(([k, v]) => [k, clean(v)]));
}

test('encodeBatch: the generated encoding of a batch of the encoded calls; the decoder refuses one too large or nested', (t) => {
  const calls = [samples[0]![1], samples[3]![1]];
  const fast = encodeBatch(calls.map(encodeCallRequest));
  t.deepEqual(fast, generated({ callId: 0, batch: { calls } } as CallRequest));
  // Each call decodes as it would alone (a sendall's data still a view of the message).
  const got = decodeCallRequest(fast);
  t.deepEqual(got.batch!.calls.map(defined), calls.map((c) => defined(CallRequest.decode(encodeCallRequest(c)))));
  t.is(got.batch!.calls[0]!.sendAll!.data.buffer, fast.buffer);
  const recv = encodeCallRequest(samples[3]![1]);
  t.notThrows(() => decodeCallRequest(encodeBatch(new Array(MAX_BATCH_CALLS).fill(recv))));
  t.throws(() => decodeCallRequest(encodeBatch(new Array(MAX_BATCH_CALLS + 1).fill(recv))), { message: /batch of 65 calls/ });
  const large = encodeCallRequest({ callId: 1, sendAll: { handle: 1, data: Buffer.alloc(MAX_BATCH_BYTES), flags: 0 } } as CallRequest);
  t.throws(() => decodeCallRequest(encodeBatch([recv, large])), { message: /at most/ });
  // A batch inside a batch, whichever decoder reads it.
  const nested = encodeBatch([recv, encodeBatch([recv])]);
  t.throws(() => decodeCallRequest(nested), { message: /batch inside a batch/ });
  t.throws(() => decodeCallRequest(Buffer.concat([Buffer.from([0x18, 0x01]), nested])), { message: /batch inside a batch/ });
});

test('encodeCalls: a batch of the calls written in one buffer is encodeBatch of their encodings; one call alone is itself; the bounds split it', (t) => {
  // Fast ones, generated ones, one already encoded.
  const calls: Array<CallRequest | Buffer> = [samples[0]![1], samples[3]![1], samples[5]![1], encodeCallRequest(samples[4]![1]), samples[6]![1], samples[1]![1]];
  const encoded = calls.map((c) => (Buffer.isBuffer(c) ? c : encodeCallRequest(c)));
  t.deepEqual(encodeCalls(calls), [encodeBatch(encoded)]);
  t.deepEqual(encodeCalls([samples[3]![1]]), [encodeCallRequest(samples[3]![1])]);
  t.deepEqual(encodeCalls([encoded[2]!]), [encoded[2]]);
  const many = new Array<CallRequest>(MAX_BATCH_CALLS + 2).fill(samples[3]![1]);
  const one = encodeCallRequest(samples[3]![1]);
  t.deepEqual(encodeCalls(many), [encodeBatch(new Array(MAX_BATCH_CALLS).fill(one)), encodeBatch([one, one])]);
  const large = { callId: 1, sendAll: { handle: 1, data: Buffer.alloc(MAX_BATCH_BYTES - 10), flags: 0 } } as CallRequest;
  t.deepEqual(encodeCalls([samples[3]![1], large, samples[3]![1]]), [one, encodeCallRequest(large), one]);
  for (const m of encodeCalls(many)) t.notThrows(() => decodeCallRequest(m));
});

test('decodeCallRequest: what it does not know, or malformed input, goes to the generated decoder', (t) => {
  const recv = generated({ callId: 3, recv: { handle: 1, bufsize: 8, flags: 0, wantAddress: false } } as CallRequest);
  // A field repeated (last one wins, by the generated decoder), an unknown field, fields after the operation.
  for (const buf of [Buffer.concat([Buffer.from([0x08, 0x05]), recv]), Buffer.concat([recv, Buffer.from([0x08, 0x09])]), Buffer.concat([Buffer.from([0xa0, 0x06, 0x01]), recv])]) {
    t.deepEqual(defined(decodeCallRequest(buf)), defined(CallRequest.decode(buf)));
  }
  // Truncated: both throw (the stream's tolerant decoder turns it into MALFORMED_MESSAGE).
  t.throws(() => decodeCallRequest(recv.subarray(0, recv.length - 1)));
  t.throws(() => CallRequest.decode(recv.subarray(0, recv.length - 1)));
  // A sendall's data is a view of the message, not a copy.
  const sa = generated({ callId: 4, ackOnly: true, sendAll: { handle: 1, data: Buffer.from('abc'), flags: 0 } } as CallRequest);
  const got = decodeCallRequest(sa);
  t.is(got.sendAll!.data.buffer, sa.buffer);
  t.is(got.sendAll!.data.toString(), 'abc');
});

const responses: Array<[string, CallResponse]> = [
  ['recv result', { callId: 8, acked: 7, seq: 99, recv: { data, address: undefined, queued: [] } } as CallResponse],
  ['end of stream, big ids', { callId: big, acked: big, seq: big, recv: { data: Buffer.alloc(0), queued: [] } } as unknown as CallResponse],
  ['only the acknowledgement', { callId: 0, acked: 12 } as CallResponse],
  ['recvfrom with an address', { callId: 9, recv: { data, address: { inet: { host: '127.0.0.1', port: 80 } }, queued: [] } } as CallResponse],
  ['sendto result', { callId: 12, acked: 3, send: { sent: 64 } } as CallResponse],
  ['a send of nothing', { callId: 14, send: { sent: 0 } } as CallResponse],
  ['recvfrom with datagrams read ahead, inet6 and inet', { callId: 15, seq: 4, recv: { data, address: { inet6: { host: '::1', port: 5, flowinfo: 0, scopeId: 0 } }, queued: [
    { data, address: { inet: { host: '10.0.0.1', port: 53 } } },
    { data: Buffer.alloc(0), address: undefined },
    { data: Buffer.alloc(200, 2), address: { inet6: { host: 'fe80::2', port: 1, flowinfo: 7, scopeId: 2 } } },
  ] } } as CallResponse],
  ['recv with datagrams read ahead, no addresses', { callId: 16, recv: { data, queued: [{ data }, { data: Buffer.alloc(130, 3) }] } } as unknown as CallResponse],
  ['recvfrom a unix path (generated)', { callId: 17, recv: { data, address: { unix: { path: Buffer.from('/tmp/x') } }, queued: [] } } as CallResponse],
  ['a queued datagram from a host that is not ASCII (generated)', { callId: 18, recv: { data, queued: [{ data, address: { inet: { host: 'h\u00f4te', port: 1 } } }] } } as unknown as CallResponse],
  ['another result (generated)', { callId: 10, seq: 3, getSockName: { address: { inet: { host: '::1', port: 1 } } } } as CallResponse],
  ['an error (generated)', { callId: 11, error: { code: 14, message: 'x', details: [] } } as CallResponse],
];

// A batch of what the daemon writes in one turn: results, an acknowledgement, an error, a pong.
responses.push(['a batch', { callId: 0, batch: { responses: [...responses.map(([, r]) => r), { callId: 0, pong: { nonce: 5 } } as CallResponse] } } as CallResponse]);

for (const [name, m] of responses) {
  test(`encodeCallResponse: ${name} — the generated encoder's bytes, decoded alike`, (t) => {
    const fast = encodeCallResponse(m);
    t.deepEqual(fast, Buffer.from(CallResponse.encode(m).finish()));
    t.deepEqual(CallResponse.decode(fast), CallResponse.decode(Buffer.from(CallResponse.encode(m).finish())));
    // The fast decoder leaves out the results that are not set (undefined in the generated one's).
    t.deepEqual(defined(decodeCallResponse(fast)), defined(CallResponse.decode(fast)));
  });
}

test('encodeCallResponse writes an encoded response as it is; decodeCallResponse gives views, refuses a batch too large or nested', (t) => {
  const one = encodeCallResponse(responses[0]![1]);
  t.is(encodeCallResponse(one), one);
  const got = decodeCallResponse(one);
  t.is(got.recv!.data.buffer, one.buffer, 'a recv result is a view of the message, not a copy');
  t.is(got.recv!.data.toString(), data.toString());
  const batch = encodeBatch([one, encodeCallResponse(responses[2]![1])]);
  const parts = decodeCallResponse(batch).batch!.responses;
  t.is(parts.length, 2);
  t.is(parts[0]!.recv!.data.buffer, batch.buffer);
  t.notThrows(() => decodeCallResponse(encodeBatch(new Array(MAX_BATCH_CALLS).fill(one))));
  t.throws(() => decodeCallResponse(encodeBatch(new Array(MAX_BATCH_CALLS + 1).fill(one))), { message: /batch of 65 responses/ });
  const large = encodeCallResponse({ callId: 1, recv: { data: Buffer.alloc(MAX_BATCH_BYTES), queued: [] } } as unknown as CallResponse);
  t.throws(() => decodeCallResponse(encodeBatch([one, large])), { message: /at most/ });
  t.throws(() => decodeCallResponse(encodeBatch([one, encodeBatch([one])])), { message: /batch inside a batch/ });
});

test('decodeCallResponse: what it does not know, or malformed input, goes to the generated decoder', (t) => {
  const recv = encodeCallResponse(responses[0]![1]);
  // A field repeated (last one wins), an unknown field, fields after the result, a recv result with an address.
  const odd = [
    Buffer.concat([Buffer.from([0x08, 0x05]), recv]),
    Buffer.concat([recv, Buffer.from([0x08, 0x09])]),
    Buffer.concat([Buffer.from([0xa0, 0x06, 0x01]), recv]),
    Buffer.from(CallResponse.encode(responses[3]![1]).finish()),
  ];
  for (const buf of odd) t.deepEqual(defined(decodeCallResponse(buf)), defined(CallResponse.decode(buf)));
  t.throws(() => decodeCallResponse(recv.subarray(0, recv.length - 1)));
  t.throws(() => CallResponse.decode(recv.subarray(0, recv.length - 1)));
});

test('the codec knows every field of SendAllRequest, RecvRequest, RecvResponse, CallBatch, CallResponseBatch, SendRequest, SendResponse, QueuedDatagram and the inet addresses, and the envelope fields it writes exist', (t) => {
  // A message with a field the encoder does not know takes the generated path (correct, but slow):
  // a field added to these messages shows here, to be added to the encoder.
  t.deepEqual(Object.keys(SendAllRequest.fromPartial({})).sort(), [...SEND_ALL_FIELDS].sort());
  t.deepEqual(Object.keys(RecvRequest.fromPartial({})).sort(), [...RECV_FIELDS].sort());
  t.deepEqual(Object.keys(RecvResponse.fromPartial({})).sort(), [...RECV_RESPONSE_FIELDS].sort());
  t.deepEqual(Object.keys(CallBatch.fromPartial({})).sort(), [...BATCH_FIELDS].sort());
  t.deepEqual(Object.keys(CallResponseBatch.fromPartial({})).sort(), [...RESPONSE_BATCH_FIELDS].sort());
  t.deepEqual(Object.keys(SendRequest.fromPartial({})).sort(), [...SEND_FIELDS].sort());
  t.deepEqual(Object.keys(SendResponse.fromPartial({})).sort(), [...SEND_RESPONSE_FIELDS].sort());
  t.deepEqual(Object.keys(QueuedDatagram.fromPartial({})).sort(), [...QUEUED_FIELDS].sort());
  t.deepEqual(Object.keys(InetAddress.fromPartial({})).sort(), [...INET_FIELDS].sort());
  t.deepEqual(Object.keys(Inet6Address.fromPartial({})).sort(), [...INET6_FIELDS].sort());
  const envelope = Object.keys(CallRequest.fromPartial({}));
  for (const k of CALL_FIELDS) t.true(envelope.includes(k), k);
  const responseEnvelope = Object.keys(CallResponse.fromPartial({}));
  for (const k of RESPONSE_FIELDS) t.true(responseEnvelope.includes(k), k);
});

test.serial('the datagram messages (sendto, its result, recvfrom with senders and read-ahead) take the hand-written path, not the generated one', (t) => {
  const fastRequests = samples.filter(([name]) => /^send(to)?(,|$)/.test(name) && !/unix|ASCII/.test(name)).map(([, m]) => m);
  const fastResponses = responses.filter(([name]) => /^(sendto result|a send of nothing|recvfrom with|recv with)/.test(name)).map(([, m]) => m);
  t.true(fastRequests.length >= 4 && fastResponses.length >= 5);
  const encode = CallResponse.encode;
  const decode = CallRequest.decode;
  const bytes = fastRequests.map(generated);
  CallResponse.encode = () => {
    throw new Error('generated encoder used');
  };
  CallRequest.decode = () => {
    throw new Error('generated decoder used');
  };
  try {
    for (const m of fastResponses) t.notThrows(() => encodeCallResponse(m));
    for (const b of bytes) t.notThrows(() => decodeCallRequest(b));
  } finally {
    CallResponse.encode = encode;
    CallRequest.decode = decode;
  }
});
