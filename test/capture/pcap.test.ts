// The pcap and pcapng writers: byte-exact blocks, and files that tcpdump and tshark read back
// with the same packets, nanosecond timestamps, lengths, interfaces and directions.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINKTYPE, nsHalves, PcapngWriter, PcapWriter, pcapRecordsFromWire, type PacketRecord } from '../../client/pcap.js';
import { decodeCaptureResponse, encodeBatchResponse, PACKET_OVERHEAD, writePacket } from '../../proto/codec/capture.js';
import { udpFrame } from './helpers.js';
import { readPcapngBlocks } from './pcapng-read.js';

const dir = mkdtempSync(join(tmpdir(), 'sb-pcap-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_700_000_000_123_456_789n;
const pkt = (ts: bigint, text: string, direction?: 'in' | 'out'): PacketRecord => {
  const data = udpFrame('192.0.2.1', '192.0.2.2', 1000, 2000, Buffer.from(text));
  return { timestampNs: ts, data, originalLength: data.length, ...(direction ? { direction } : {}) };
};
const PACKETS = [pkt(T0, 'one', 'in'), pkt(T0 + 1_000_000_001n, 'two two', 'out'), pkt(T0 + 2_500_000_000n, 'x'.repeat(300))];

const tcpdump = (file: string, ...args: string[]) =>
  execFileSync('tcpdump', ['-r', file, '-nn', '-tt', '--time-stamp-precision=nano', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
const tshark = (file: string, ...fields: string[]) =>
  execFileSync('tshark', ['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .replace(/\n$/, '').split('\n').map((l) => l.split('\t'));

test('pcap header is byte-exact (ns and µs magic, version 2.4, snaplen, link type)', (t) => {
  t.is(new PcapWriter({ linkType: LINKTYPE.ETHERNET, snaplen: 262144 }).header().toString('hex'), '4d3cb2a1' + '0200' + '0400' + '00000000' + '00000000' + '00000400' + '01000000');
  t.is(new PcapWriter({ linkType: LINKTYPE.LINUX_SLL, snaplen: 96, nanosecond: false }).header().toString('hex'), 'd4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + '60000000' + '71000000');
  const rec = new PcapWriter({ linkType: 1, snaplen: 4 }).packets([{ timestampNs: 5_000_000_007n, data: Buffer.from('abcdef'), originalLength: 6 }]);
  t.is(rec.toString('hex'), '05000000' + '07000000' + '04000000' + '06000000' + '61626364');
});

test('pcap files read back by tcpdump and tshark: packets, ns/µs timestamps, lengths, snap length', (t) => {
  for (const nanosecond of [true, false]) {
    const w = new PcapWriter({ linkType: LINKTYPE.ETHERNET, snaplen: 100, nanosecond });
    const file = join(dir, `t-${nanosecond}.pcap`);
    writeFileSync(file, Buffer.concat([w.header(), w.packets(PACKETS.slice(0, 2)), w.packets(PACKETS.slice(2))]));
    const lines = tcpdump(file).trim().split('\n');
    const ts = (n: bigint) => (nanosecond ? `${n / 1_000_000_000n}.${String(n % 1_000_000_000n).padStart(9, '0')}` : `${n / 1_000_000_000n}.${String((n % 1_000_000_000n) / 1000n).padStart(6, '0')}000`);
    t.deepEqual(lines, [
      `${ts(PACKETS[0]!.timestampNs)} IP 192.0.2.1.1000 > 192.0.2.2.2000: UDP, length 3`,
      `${ts(PACKETS[1]!.timestampNs)} IP 192.0.2.1.1000 > 192.0.2.2.2000: UDP, length 7`,
      `${ts(PACKETS[2]!.timestampNs)} IP 192.0.2.1.1000 > 192.0.2.2.2000: UDP, length 300`,
    ]);
    const fields = tshark(file, 'frame.len', 'frame.cap_len', 'udp.payload');
    t.deepEqual(fields.map((f) => [Number(f[0]), Number(f[1])]), PACKETS.map((p) => [p.originalLength, Math.min(100, p.originalLength)]));
    t.is(Buffer.from(fields[1]![2]!.replace(/:/g, ''), 'hex').toString(), 'two two');
  }
});

test('pcapng blocks are byte-exact: SHB, IDB (if_name, if_description, if_tsresol 9), EPB (flags), ISB', (t) => {
  const w = new PcapngWriter();
  t.is(w.header('ab').toString('hex'),
    '0a0d0d0a' + '28000000' + '4d3c2b1a' + '0100' + '0000' + 'ffffffffffffffff' + '0400' + '0200' + '61620000' + '00000000' + '28000000');
  const idb = w.addInterface({ linkType: 1, snaplen: 0x40000, name: 'lo', description: 'B' });
  t.is(idb.id, 0);
  t.is(idb.block.toString('hex'),
    '01000000' + '30000000' + '0100' + '0000' + '00000400' + '0200' + '0200' + '6c6f0000' + '0300' + '0100' + '42000000' + '0900' + '0100' + '09000000' + '00000000' + '30000000');
  const epb = w.packets(0, [{ timestampNs: 0x1_0000_0002n, data: Buffer.from('abcde'), originalLength: 9, direction: 'out' }]);
  t.is(epb.toString('hex'),
    '06000000' + '34000000' + '00000000' + '01000000' + '02000000' + '05000000' + '09000000' + '6162636465000000' + '0200' + '0400' + '02000000' + '00000000' + '34000000');
  const plain = w.packets(0, [{ timestampNs: 3n, data: Buffer.from('abcd'), originalLength: 4 }]);
  t.is(plain.toString('hex'), '06000000' + '24000000' + '00000000' + '00000000' + '03000000' + '04000000' + '04000000' + '61626364' + '24000000');
  const isb = readPcapngBlocks(w.statistics(0, { timestampNs: 7n, startNs: 1n, received: 10n, captured: 4n, droppedByKernel: 2n, droppedByBroker: 4n }));
  t.is(isb.length, 1);
  t.is(isb[0]!.type, 5);
  t.is(isb[0]!.body.readUInt32LE(0), 0);
  t.is(isb[0]!.body.readUInt32LE(8), 7);
  const u64 = (code: number) => isb[0]!.options.get(code)!.readBigUInt64LE(0);
  t.is(u64(4), 10n); // isb_ifrecv
  t.is(u64(5), 4n); // isb_ifdrop: the broker's drops
  t.is(u64(6), 10n); // isb_filteraccept
  t.is(u64(7), 2n); // isb_osdrop
  t.is(u64(8), 4n); // isb_usrdeliv
  t.is(isb[0]!.options.get(2)!.readUInt32LE(4), 1); // isb_starttime (low half)
  t.is(isb[0]!.options.get(1)!.toString(), '4 packets captured, 10 received by filter, 2 dropped by kernel, 4 dropped by broker');
});

test('pcapng with two interfaces read back by tcpdump and tshark: interfaces, directions, timestamps, lengths', (t) => {
  const w = new PcapngWriter();
  const a = w.addInterface({ linkType: LINKTYPE.ETHERNET, snaplen: 200, name: 'eth0', description: 'broker unix:/run/a.sock' });
  const b = w.addInterface({ linkType: LINKTYPE.ETHERNET, snaplen: 200, name: 'B/eth0', description: 'broker tcp:192.0.2.9:7000' });
  const file = join(dir, 't.pcapng');
  const stats = { timestampNs: T0 + 3_000_000_000n, received: 3n, captured: 2n, droppedByKernel: 1n, droppedByBroker: 0n };
  writeFileSync(file, Buffer.concat([
    w.header(), a.block, b.block,
    w.mixed([{ id: a.id, packet: PACKETS[0]! }, { id: b.id, packet: PACKETS[1]! }, { id: a.id, packet: PACKETS[2]! }]),
    w.statistics(a.id, stats), w.statistics(b.id, { ...stats, captured: 1n }),
  ]));
  const lines = tcpdump(file).trim().split('\n');
  t.is(lines.length, 3);
  t.is(lines[0], '1700000000.123456789 IP 192.0.2.1.1000 > 192.0.2.2.2000: UDP, length 3');
  const f = tshark(file, 'frame.time_epoch', 'frame.len', 'frame.cap_len', 'frame.interface_name', 'frame.interface_description', 'frame.packet_flags_direction');
  t.deepEqual(f, [
    ['1700000000.123456789', '45', '45', 'eth0', 'broker unix:/run/a.sock', '0x00000001'],
    ['1700000001.123456790', '49', '49', 'B/eth0', 'broker tcp:192.0.2.9:7000', '0x00000002'],
    ['1700000002.623456789', '342', '200', 'eth0', 'broker unix:/run/a.sock', ''],
  ]);
  const info = execFileSync('capinfos', [file], { encoding: 'utf8' });
  t.regex(info, /Number of interfaces in file: 2/);
  t.regex(info, /Time precision = nanoseconds \(9\)/);
  t.regex(info, /Number of stat entries = 1/);
});

test('seconds + nanos become the exact 64-bit ns halves without bigints; writers give the same bytes either way', (t) => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * n;
  for (let i = 0; i < 2000; i++) {
    const sec = Math.floor(rand(2 ** 32));
    const nanos = Math.floor(rand(1e9));
    const v = BigInt(sec) * 1_000_000_000n + BigInt(nanos);
    t.deepEqual(nsHalves(sec, nanos), [Number(v >> 32n), Number(v & 0xffffffffn)]);
  }
  const p = PACKETS[1]!;
  const split = { ...p, seconds: Number(p.timestampNs / 1_000_000_000n), nanos: Number(p.timestampNs % 1_000_000_000n) };
  const ng = new PcapngWriter();
  ng.addInterface({ linkType: 1, snaplen: 100, name: 'x' });
  t.deepEqual(ng.packets(0, [split]), ng.packets(0, [p]));
  const pc = new PcapWriter({ linkType: 1, snaplen: 100 });
  t.deepEqual(pc.packets([split]), pc.packets([p]));
});

test('pcap records straight from a received batch are the bytes the writer makes from its packets', (t) => {
  const datas = [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(106, 7), Buffer.alloc(3000, 9)];
  const entries = Buffer.alloc(datas.reduce((n, d) => n + PACKET_OVERHEAD + d.length, 0));
  let pos = 0;
  datas.forEach((d, i) => (pos = writePacket(entries, pos, 1_700_000_000 + i, i * 333_333_333, d.length + i, 0, 1, 1, null, d, 0, d.length)));
  const msg = encodeBatchResponse(entries.subarray(0, pos), { received: 4, captured: 4, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 3107 }, 1, 2);
  const batch = decodeCaptureResponse(Buffer.concat([Buffer.from('padding'), msg]).subarray(7)).batch!;
  t.is(batch.count, 4);
  for (const w of [new PcapWriter({ linkType: 1, snaplen: 262144 }), new PcapWriter({ linkType: 1, snaplen: 100, nanosecond: false })]) {
    t.deepEqual(pcapRecordsFromWire(w, batch.buf, batch.fields, batch.count), w.packets(batch.packets.map((p) => ({ ...p, timestampNs: p.timestampNs, direction: undefined }))));
  }
});
