// The multi-source merge on synthetic streams: timestamp order across sources, watermarks from
// batches and heartbeats, an idle source that does not stall the output, ended sources, and the
// buffer bound (counted when it releases early).
import test from 'ava';
import { CaptureMerge } from '../../client/capture-merge.js';

interface P { timestampNs: bigint; src: number }
const p = (src: number, ts: number): P => ({ timestampNs: BigInt(ts), src });
const ts = (ps: P[]) => ps.map((x) => Number(x.timestampNs));

test('packets come out in timestamp order once every source has passed them', (t) => {
  const m = new CaptureMerge<P>(2);
  t.deepEqual(m.push(0, [p(0, 10), p(0, 30)]), []); // source 1 has said nothing yet
  t.deepEqual(ts(m.push(1, [p(1, 20)])), [10, 20]);
  t.deepEqual(ts(m.push(1, [p(1, 40)])), [30]);
  t.deepEqual(ts(m.push(0, [p(0, 50)])), [40]);
  t.is(m.buffered, 1);
  t.deepEqual(ts(m.flush()), [50]);
  t.is(m.forced, 0);
  t.is(m.late, 0);
});

test('a heartbeat watermark releases packets without data from that source', (t) => {
  const m = new CaptureMerge<P>(2);
  m.push(1, [], 5n);
  t.deepEqual(ts(m.push(0, [p(0, 10), p(0, 20)])), []);
  t.deepEqual(ts(m.advance(1, 15n)), [10]);
  t.deepEqual(ts(m.advance(1, 100n)), [20]);
});

test('an idle source\'s heartbeats advance its watermark, so it never stalls the output; an older one does not set it back', (t) => {
  const m = new CaptureMerge<P>(2);
  // Source 1 delivers once, then goes quiet: only its heartbeats (empty batches) come.
  t.deepEqual(m.push(1, [p(1, 6_000_000_000)]), []);
  t.deepEqual(ts(m.push(0, [p(0, 6_000_000_100), p(0, 6_050_000_000)])), [6_000_000_000]);
  t.deepEqual(ts(m.push(1, [], 6_020_000_000n)), [6_000_000_100]);
  // A heartbeat repeating an old watermark does not set it back.
  t.deepEqual(m.advance(1, 6_000_000_000n), []);
  t.deepEqual(ts(m.push(0, [p(0, 6_060_000_000)])), []);
  t.deepEqual(ts(m.advance(1, 6_100_000_000n)), [6_050_000_000, 6_060_000_000]);
  t.is(m.buffered, 0);
});

test('an ended source holds nothing back; three sources interleave exactly', (t) => {
  const m = new CaptureMerge<P>(3);
  const out: P[] = [];
  out.push(...m.push(0, [p(0, 1), p(0, 4), p(0, 7)]));
  out.push(...m.push(1, [p(1, 2), p(1, 5), p(1, 8)]));
  out.push(...m.push(2, [p(2, 3), p(2, 6)]));
  out.push(...m.end(2));
  out.push(...m.end(1));
  out.push(...m.flush());
  t.deepEqual(ts(out), [1, 2, 3, 4, 5, 6, 7, 8]);
  t.deepEqual(out.map((x) => x.src), [0, 1, 2, 0, 1, 2, 0, 1]);
});

test('random interleavings of ordered streams merge into one ordered stream with nothing lost', (t) => {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const m = new CaptureMerge<P>(4);
  const last = [0, 0, 0, 0];
  const out: P[] = [];
  let sent = 0;
  for (let round = 0; round < 2000; round++) {
    const s = Math.floor(rand() * 4);
    const batch: P[] = [];
    for (let i = Math.floor(rand() * 5); i > 0; i--) batch.push(p(s, (last[s]! += 1 + Math.floor(rand() * 50))));
    if (rand() < 0.2) {
      out.push(...m.advance(s, BigInt(last[s]!)));
    } else {
      sent += batch.length;
      out.push(...m.push(s, batch));
    }
  }
  out.push(...m.flush());
  t.is(out.length, sent);
  for (let i = 1; i < out.length; i++) t.true(out[i]!.timestampNs >= out[i - 1]!.timestampNs);
  t.is(m.late, 0);
  t.is(m.forced, 0);
});

test('the buffer bound releases the oldest early and counts it; a packet older than the output is counted late', (t) => {
  const m = new CaptureMerge<P>(2, { maxBuffered: 3 });
  t.deepEqual(m.push(0, [p(0, 10), p(0, 20), p(0, 30)]), []);
  t.deepEqual(ts(m.push(0, [p(0, 40)])), [10]); // 4 held > 3: the oldest goes
  t.is(m.forced, 1);
  t.is(m.buffered, 3);
  t.deepEqual(ts(m.push(1, [p(1, 5)])), [5]); // over the bound again: out at once, older than 10
  t.is(m.late, 1);
  t.deepEqual(ts(m.flush()), [20, 30, 40]);
});
