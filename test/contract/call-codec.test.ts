// The hand-written Call stream encoder (proto/codec/call.ts) writes the generated encoder's bytes
// for the hot requests and falls back to it for everything else (another operation, a field it does
// not know, a negative int32).
import test from 'ava';
import { CallRequest, RecvRequest, SendAllRequest } from '../../proto/gen/sockbroker/v1/socket.js';
import { CALL_FIELDS, RECV_FIELDS, SEND_ALL_FIELDS, encodeCallRequest } from '../../proto/codec/call.js';

const generated = (m: CallRequest): Buffer => Buffer.from(CallRequest.encode(m).finish());
const data = Buffer.from('x'.repeat(64));
const big = 2 ** 53 - 1;

const samples: Array<[string, CallRequest]> = [
  ['pipelined sendall', { callId: 7, ackOnly: true, ackedSeq: 3, sendAll: { handle: 1, data, flags: 0 } } as CallRequest],
  ['sendall, every field', { callId: big, ackOnly: false, ackedSeq: 0, sendAll: { handle: 2 ** 31 - 1, data: Buffer.alloc(300, 1), flags: 0x4000, timeout: 2.5 } } as CallRequest],
  ['sendall, defaults', { callId: 0, sendAll: { handle: 0, data: Buffer.alloc(0), flags: 0 } } as CallRequest],
  ['recv', { callId: 8, ackedSeq: 200, recv: { handle: 1, bufsize: 64, flags: 0, wantAddress: false, timeout: undefined } } as CallRequest],
  ['recvfrom, every field', { callId: 1 << 30, recv: { handle: 5, bufsize: 0xffffffff, flags: 2, wantAddress: true, timeout: 0, batch: 63 } } as CallRequest],
  // The generated encoder's cases: other operations, negative ints, fields it does not know.
  ['another operation', { callId: 9, getSockName: { handle: 1 } } as CallRequest],
  ['negative flags', { callId: 10, recv: { handle: 1, bufsize: 1, flags: -1, wantAddress: false } } as CallRequest],
  ['a property the type does not have', { callId: 11, recv: { handle: 1, bufsize: 1, flags: 0, wantAddress: false, readAhead: 3 } } as unknown as CallRequest],
];

for (const [name, m] of samples) {
  test(`encodeCallRequest: ${name} — the generated encoder's bytes, decoded alike`, (t) => {
    const fast = encodeCallRequest(m);
    t.deepEqual(fast, generated(m));
    t.deepEqual(CallRequest.decode(fast), CallRequest.decode(generated(m)));
  });
}

test('encodeCallRequest knows every field of SendAllRequest and RecvRequest, and the envelope fields it writes exist', (t) => {
  // A message with a field the encoder does not know takes the generated path (correct, but slow):
  // a field added to these messages shows here, to be added to the encoder.
  t.deepEqual(Object.keys(SendAllRequest.fromPartial({})).sort(), [...SEND_ALL_FIELDS].sort());
  t.deepEqual(Object.keys(RecvRequest.fromPartial({})).sort(), [...RECV_FIELDS].sort());
  const envelope = Object.keys(CallRequest.fromPartial({}));
  for (const k of CALL_FIELDS) t.true(envelope.includes(k), k);
});
