// The capture stream's hand-written encoder writes what the generated decoder reads back.
import test from 'ava';
import { encodeBatchResponse, writePacket, PACKET_OVERHEAD } from '../../proto/codec/capture.js';
import { CaptureResponse } from '../../proto/gen/sockbroker/v1/capture.js';

test('packets, counters and watermark decode as written', (t) => {
  const data = Buffer.from('0123456789abcdef'.repeat(20));
  const header = Buffer.from([9, 8, 7]);
  const b = Buffer.alloc(2 * (PACKET_OVERHEAD + data.length + 3));
  let pos = writePacket(b, 0, 4294967295, 999999999, 2 ** 32 - 1, 15, 2 ** 31 - 1, 2, header, data, 5, 300);
  pos = writePacket(b, pos, 0, 0, 0, 0, 0, 0, null, data, 0, 0);
  const stats = { received: 2 ** 53 - 1, captured: 2, droppedByKernel: 3, droppedByBroker: 4, pending: 0, freezeCount: 6, capturedBytes: 7 };
  const m = CaptureResponse.decode(encodeBatchResponse(b.subarray(0, pos), stats, 1796307469, 123000));
  t.is(m.armed, undefined);
  t.deepEqual(m.batch!.stats, stats);
  t.is(m.batch!.watermarkSeconds, 1796307469);
  t.is(m.batch!.watermarkNanos, 123000);
  const [p, q] = m.batch!.packets;
  t.like(p, { timestampSeconds: 4294967295, timestampNanos: 999999999, originalLength: 2 ** 32 - 1, interface: 15, ifindex: 2 ** 31 - 1, direction: 2 });
  t.deepEqual(Buffer.from(p!.data), Buffer.concat([header, data.subarray(5, 300)]));
  t.like(q, { timestampSeconds: 0, timestampNanos: 0, originalLength: 0, interface: 0, direction: 0 });
  t.is(q!.data.length, 0);
});

test('an empty batch carries the counters alone', (t) => {
  const m = CaptureResponse.decode(encodeBatchResponse(Buffer.alloc(0), { received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0 }, 0, 0));
  t.deepEqual(m.batch!.packets, []);
  t.is(m.batch!.stats!.received, 0);
});
