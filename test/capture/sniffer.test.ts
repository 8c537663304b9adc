// The seed's sniffer socket on the batched path, as nobody in namespace A on lo: recvfrom is
// served from packets the SDK read ahead (batches of the socket's TPACKET_V3 ring on its Sniff
// stream), in arrival order, none lost or repeated; poll() sees read-ahead packets as readable and
// waits for one that comes later; a timeout still raises socket.timeout once nothing is waiting,
// non-blocking mode BlockingIOError; MSG_PEEK leaves the packet; the counters add up in
// sniffStats and the kernel's show in getsockopt(SOL_PACKET, PACKET_STATISTICS); close discards
// what was read ahead and ends a recv that was waiting with EBADF.
import test from 'ava';
import { useTestNet } from '../helpers/netns.js';
import { withDaemon } from '../helpers/daemon.js';
import { nobodyIn, policyFile, PRELUDE } from '../privileged/helpers.js';

const net = useTestNet(test);

const GRANT = policyFile(`
rules:
  - name: nobody-sniffer
    match: { uid: 65534 }
    grant:
      sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_IP }]
      interfaces: [lo]
      promiscuous: true
`);

const N = 500;

const SCRIPT = `${PRELUDE}
import dgram from 'node:dgram';
const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
await s.bind(['127.0.0.1', 0]);
await s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1);
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
const u = dgram.createSocket('udp4');
for (let i = 0; i < ${N}; i++) {
  const b = Buffer.alloc(16); b.writeUInt32LE(i, 0);
  await new Promise((res) => u.send(b, 9999, '127.0.0.1', res));
}
await s.settimeout(5);
const seqs = [];
let polled = null;
while (new Set(seqs).size < ${N}) {
  const [pkt, addr] = await s.recvfrom(65565);
  if (pkt[9] === 17 && pkt.readUInt16BE(22) === 9999) {
    seqs.push(pkt.readUInt32LE(28));
    out.addr = addr;
    if (polled === null && s.readAhead > 0) polled = { ahead: s.readAhead, ready: (await socket.poll([s], socket.POLLIN, 0)).map(([x, ev]) => [x === s, ev]) };
  }
}
// On lo each datagram passes twice (out, then in), as the sniffer reports both directions.
out.inOrder = seqs.every((v, i) => i === 0 || v === seqs[i - 1] || v === seqs[i - 1] + 1) && seqs.length >= 2 * ${N} - 1; // the loop stops at the last one's first copy
out.polled = polled;
// The kernel's counters as an int (tp_packets), before the drain: the stream's totals stay exact.
out.statsInt = await s.getsockopt(socket.SOL_PACKET, socket.PACKET_STATISTICS);
// Drain what is left, then a timeout.
await s.settimeout(0.3);
await probe('timeout', async () => { for (;;) await s.recvfrom(65565); });
const st = await s.getsockopt(socket.SOL_PACKET, socket.PACKET_STATISTICS, 8);
out.stats = { packets: st.readUInt32LE(0), drops: st.readUInt32LE(4) };
out.sniffStats = s.sniffStats;
s.setblocking(false);
await probe('nonblocking', () => s.recvfrom(100));
// poll waits for a packet sent while it waits (nothing is read ahead now).
const t0 = Date.now();
setTimeout(() => u.send(Buffer.from('late'), 9999, '127.0.0.1'), 300);
out.pollLater = (await socket.poll([s], socket.POLLIN, 10)).map(([x, ev]) => [x === s, ev]);
out.pollMs = Date.now() - t0;
const [peeked] = await s.recvfrom(65565, socket.MSG_PEEK);
const [got] = await s.recvfrom(65565);
out.peek = peeked.equals(got) && got.subarray(28).toString() === 'late';
await s.settimeout(0.3);
await probe('drained', async () => { for (;;) await s.recvfrom(65565); });
s.setblocking(true);
const waiting = s.recvfrom(100).then(() => 'data', (e) => e.errno);
await new Promise((r) => setTimeout(r, 100));
await s.close();
out.waitingAtClose = await waiting;
await probe('afterClose', () => s.recvfrom(100));
u.close();
await done();
`;

test.serial('recvfrom in a loop is served from the read-ahead batch, in order; poll, timeout, counters and close behave', async (t) => {
  t.timeout(90_000);
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, SCRIPT);
    t.true(out.inOrder, 'every datagram (twice on lo: out and in), in arrival order');
    t.deepEqual(out.addr, ['127.0.0.1', 0]);
    t.truthy(out.polled, 'some packets were read ahead');
    t.deepEqual(out.polled.ready, [[true, 1]], 'read-ahead packets make the socket readable at once');
    t.like(out.timeout, { error: 'timeout' });
    t.true(out.statsInt > 0 && out.statsInt + out.stats.packets >= 2 * N, JSON.stringify([out.statsInt, out.stats]));
    t.is(out.stats.drops, 0, 'nothing dropped at this rate');
    const st = out.sniffStats;
    t.true(st.received >= 2 * N, JSON.stringify(st));
    t.is(st.captured + st.droppedByKernel + st.droppedByBroker + st.pending, st.received, 'the counters add up');
    t.like(st, { droppedByKernel: 0, droppedByBroker: 0, droppedBySdk: 0, readAhead: 0 });
    t.like(out.nonblocking, { error: 'BlockingIOError', errno: 11 });
    t.deepEqual(out.pollLater, [[true, 1]], 'poll waited for the packet sent later');
    t.true(out.pollMs >= 250 && out.pollMs < 5000, `poll took ${out.pollMs} ms`);
    t.true(out.peek, 'MSG_PEEK returned the packet the next recvfrom took');
    t.like(out.drained, { error: 'timeout' });
    t.is(out.waitingAtClose, 9, 'a recv waiting at close raises EBADF');
    t.like(out.afterClose, { error: 'OSError', errno: 9 });
  }, { args: ['--config', GRANT] });
});
