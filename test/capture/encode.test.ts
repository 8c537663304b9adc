// The capture stream's hand-written encoder writes what the generated decoder reads back.
import test from 'ava';
import { BATCH_HEAD_ROOM, BATCH_TAIL_ROOM, batchResponseAround, decodeCaptureResponse, encodeBatchResponse, writePacket, PACKET_OVERHEAD } from '../../proto/codec/capture.js';
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

test('a batch finished in place is the same bytes; a packet copied from a view of the same memory too', (t) => {
  // The daemon's layout: entries at the front of one buffer, the ring block behind them.
  const work = Buffer.alloc(4096);
  const block = work.subarray(2048);
  block.write('a captured packet, somewhere in its block', 100);
  let pos = writePacket(work, 0, 1796307469, 5, 300, 1, 7, 1, null, block, 100, 141);
  pos = writePacket(work, pos, 2 ** 32 - 1, 999999999, 2 ** 32 - 1, 0, 1, 2, Buffer.from([1, 2, 3]), block, 100, 102);
  const decoded = decodeCaptureResponse(encodeBatchResponse(work.subarray(0, pos), { received: 3, captured: 2, droppedByKernel: 1, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 44 }, 1, 2));
  t.is(decoded.batch!.packets[0]!.data.toString(), 'a captured packet, somewhere in its block');
  t.deepEqual([...decoded.batch!.packets[1]!.data], [1, 2, 3, 0x61, 0x20]);
  for (const stats of [
    { received: 2 ** 53 - 1, captured: 2 ** 53 - 1, droppedByKernel: 2 ** 53 - 1, droppedByBroker: 2 ** 53 - 1, pending: 2 ** 53 - 1, freezeCount: 2 ** 53 - 1, capturedBytes: 2 ** 53 - 1 },
    { received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0 },
  ]) {
    for (const [entries, wm] of [[work.subarray(0, pos), [4294967295, 999999999]], [Buffer.alloc(0), [0, 0]]] as const) {
      const b = Buffer.alloc(BATCH_HEAD_ROOM + entries.length + BATCH_TAIL_ROOM, 0xee);
      entries.copy(b, BATCH_HEAD_ROOM);
      const inPlace = batchResponseAround(b, BATCH_HEAD_ROOM, BATCH_HEAD_ROOM + entries.length, stats, wm[0], wm[1]);
      t.deepEqual(inPlace, encodeBatchResponse(entries, stats, wm[0], wm[1]));
    }
  }
});
