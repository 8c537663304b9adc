// Filter correctness against libpcap itself: as nobody with a capture grant, one unfiltered and
// one filtered capture per expression run side by side on a0 while the client sends a mix of
// traffic to B (UDP of several ports and sizes, TCP to a closed port, ARP for a missing
// neighbour, ICMP errors coming back). For each expression, the packets the broker delivered
// equal what `tcpdump -r` selects from the unfiltered capture.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useTestNet } from '../helpers/netns.js';
import { withDaemon } from '../helpers/daemon.js';
import { nobodyIn, policyFile } from '../privileged/helpers.js';
import { readPcap, writePcap, type SimplePacket } from './daemon-helpers.js';

const net = useTestNet(test);

const EXPRESSIONS = [
  'udp',
  'udp port 53',
  'host 198.51.100.2 and udp dst port 10',
  'not udp',
  'tcp or arp',
  'len > 200',
  'udp[8] = 0x41',
  'ip[2:2] > 100 and not icmp',
  'icmp',
  'not (udp port 53 or udp port 10)',
  'ether broadcast',
  'tcp[tcpflags] & tcp-syn != 0',
];

const GRANT = policyFile(`
rules:
  - name: nobody-capture
    match: { uid: 65534 }
    grant:
      capture: { interfaces: ["*"] }
    quotas: { captures_per_identity: 16 }
`);

const CLIENT = (exprs: string[]) => `
import { startCapture, simple } from './dist/test/capture/daemon-helpers.js';
import dgram from 'node:dgram';
import net from 'node:net';
const address = process.env.SOCKBROKER_ADDRESS;
const exprs = ${JSON.stringify(exprs)};
const all = await startCapture(address, { interfaces: ['a0'], filter: '', batchMaxLatencyMs: 20 });
const runs = [];
for (const filter of exprs) runs.push(await startCapture(address, { interfaces: ['a0'], filter, batchMaxLatencyMs: 20 }));
await all.armed;
for (const r of runs) await r.armed;
// Background frames (IPv6 ND/MLD of the new links) may reach the captures armed first: compare
// only what came once every capture was armed.
const start = Date.now();
await new Promise((res) => setTimeout(res, 5));
const s = dgram.createSocket('udp4');
const send = (port, len, first = 0x41, host = '198.51.100.2') => new Promise((res) => {
  const b = Buffer.alloc(len, 0x20); b[0] = first;
  s.send(b, port, host, res);
});
for (const [port, len, first] of [[10, 10, 0x41], [53, 300, 0x42], [4000, 20, 0x41], [10, 600, 0x43], [53, 8, 0x41], [7, 150, 0x44]]) await send(port, len, first);
await send(9, 12, 0x41, '198.51.100.9'); // no such neighbour: ARP broadcasts
await new Promise((res) => { const c = net.connect(81, '198.51.100.2'); c.on('error', res); c.on('close', res); });
await new Promise((res) => setTimeout(res, 300)); // let B's ICMP errors and the ARP retries come
const end = Date.now();
for (const r of [all, ...runs]) if (!(await r.complete(end))) throw new Error('capture did not complete');
const out = { start, all: { stats: all.stats(), packets: simple(all.packets) }, runs: runs.map((r) => ({ stats: r.stats(), packets: simple(r.packets) })) };
console.log(JSON.stringify(out, (k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v)));
for (const r of [all, ...runs]) r.close();
s.close();
process.exit(0);
`;

// Each AF_PACKET socket stamps an outgoing packet itself (a few hundred ns apart): compare bytes.
const key = (p: SimplePacket): string => `${p.len} ${p.data.toString('hex')}`;

test.serial('each expression captures exactly what tcpdump -r selects from the unfiltered capture', async (t) => {
  t.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'sb-filters-'));
  try {
    await withDaemon(async (d) => {
      const out = await nobodyIn(net.a, d.address, CLIENT(EXPRESSIONS));
      const since = (p: { sec: number; nsec: number }): boolean => p.sec * 1000 + p.nsec / 1e6 >= out.start;
      const parse = (ps: Array<{ sec: number; nsec: number; len: number; data: string }>): SimplePacket[] =>
        ps.filter(since).map((p) => ({ sec: p.sec, nsec: p.nsec, len: p.len, data: Buffer.from(p.data, 'hex') }));
      const all = parse(out.all.packets);
      t.true(all.length >= 10, `unfiltered capture has ${all.length} packets`);
      t.is(out.all.stats.droppedByKernel, 0);
      const file = join(dir, 'all.pcap');
      writePcap(file, 1, all);
      for (const [i, expr] of EXPRESSIONS.entries()) {
        const sel = join(dir, `sel-${i}.pcap`);
        execFileSync('tcpdump', ['--time-stamp-precision', 'nano', '-r', file, '-w', sel, expr], { stdio: 'pipe' });
        const want = readPcap(sel).map(key).sort();
        const got = parse(out.runs[i].packets).map(key).sort();
        t.deepEqual(got, want, expr);
        const st = out.runs[i].stats;
        t.is(st.captured + st.droppedByKernel + st.droppedByBroker + st.pending, st.received, `${expr}: counters add up`);
      }
      // The mix really exercised the expressions: some select and some reject packets.
      t.true(EXPRESSIONS.some((_, i) => out.runs[i].packets.length === 0) || EXPRESSIONS.every((_, i) => out.runs[i].packets.length < all.length));
    }, { args: ['--config', GRANT] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
