// The SDK's own CaptureResponse decoder agrees with the generated code, joins seconds + nanos
// into exact ns, and views packet bytes without copying.
import test from 'ava';
import { CaptureResponse, CaptureDirection } from '../../proto/gen/sockbroker/v1/capture.js';
import { decodeCaptureResponse } from '../../proto/codec/capture.js';
import { captureRequest } from '../../client/capture.js';

function batchBytes(sec: number, nanos: number): Buffer {
  return Buffer.from(CaptureResponse.encode({
    batch: {
      packets: ['abc', 'defgh'].map((text, i) => ({
        timestampSeconds: sec, timestampNanos: nanos + i, originalLength: 1500, interface: i, ifindex: 7,
        direction: i === 0 ? CaptureDirection.CAPTURE_DIRECTION_IN : CaptureDirection.CAPTURE_DIRECTION_OUT, data: Buffer.from(text),
      })),
      stats: { received: 10, captured: 2, droppedByKernel: 3, droppedByBroker: 4, pending: 1, freezeCount: 0, capturedBytes: 8 },
      watermarkSeconds: sec, watermarkNanos: nanos + 5,
    },
  }).finish());
}

test('a batch decodes like the generated decoder, with exact bigint ns timestamps and data views', (t) => {
  const bytes = batchBytes(1_764_770_400, 123_456_789);
  const gen = CaptureResponse.decode(bytes).batch!;
  const b = decodeCaptureResponse(bytes).batch!;
  t.deepEqual(b.packets.map((p) => [p.originalLength, p.interface, p.ifindex, p.direction, p.data.toString()]),
    gen.packets.map((p) => [p.originalLength, p.interface, p.ifindex, p.direction, p.data.toString()]));
  t.deepEqual(b.stats, { ...gen.stats! });
  const ts = 1_764_770_400_123_456_789n; // > 2^53: one double could not hold it
  t.deepEqual(b.packets.map((p) => p.timestampNs), [ts, ts + 1n]);
  t.is(b.watermarkNs, ts + 5n);
  t.is(b.packets[0]!.data.buffer, bytes.buffer); // a view, not a copy
  t.is(decodeCaptureResponse(Buffer.from(CaptureResponse.encode({ batch: { packets: [], watermarkSeconds: 0, watermarkNanos: 0 } }).finish())).batch!.watermarkNs, 0n);
});

test('armed messages go through the generated decoder; unknown fields are skipped', (t) => {
  const bytes = Buffer.from(CaptureResponse.encode({ armed: { interfaces: [{ index: 1, name: 'lo', linkType: 1 }], snaplen: 96, filter: 'udp', guard: '', ownConnectionExcluded: false, bufferBytes: 1 << 21, batchMaxBytes: 1 << 18, batchMaxLatencyMs: 100, queueBytes: 4 << 20, backpressure: 1, promiscuous: false, direction: 0 } }).finish());
  const withUnknown = Buffer.concat([Buffer.from([0xf8, 0x01, 0x05]), bytes]); // field 31 varint 5
  const m = decodeCaptureResponse(withUnknown);
  t.is(m.armed!.snaplen, 96);
  t.is(m.armed!.interfaces[0]!.name, 'lo');
  t.throws(() => decodeCaptureResponse(Buffer.from([0x12, 0x05, 0x0a])), { instanceOf: RangeError });
});

test('capture options are validated and mapped to the request', (t) => {
  const r = captureRequest({ interfaces: ['lo'], filter: 'udp', snaplen: 96, promiscuous: false, direction: 'in', backpressure: 'drop-oldest' });
  t.deepEqual([r.interfaces, r.filter, r.snaplen, r.promiscuous, r.direction, r.backpressure], [['lo'], 'udp', 96, false, 1, 2]);
  t.true(captureRequest({}).promiscuous);
  t.throws(() => captureRequest({ direction: 'sideways' as 'in' }), { instanceOf: TypeError });
  t.throws(() => captureRequest({ snaplen: -1 }), { instanceOf: RangeError });
  t.throws(() => captureRequest({ interfaces: [''] }), { instanceOf: TypeError });
});
