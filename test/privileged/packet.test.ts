// AF_PACKET through the broker, as nobody with a grant, on a veth pair inside a private
// namespace: a frame sent on one end arrives on the other with CPython's address tuple, and a
// socket whose grant names one interface never sees another's frames.
import test from 'ava';
import { useTestNet } from '../helpers/netns.js';
import { withDaemon, publicTempDir } from '../helpers/daemon.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PRELUDE, nobodyIn, policyFile, readyLine } from './helpers.js';

const net = useTestNet(test);

const ETHERTYPE = 0x88b5; // IEEE 802 local experimental

const EXCHANGE = `${PRELUDE}
const ETH = ${ETHERTYPE};
const mac = (s) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
const rx = await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH));
await rx.bind(['p1', ETH]);
rx.settimeout(5);
const tx = await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0);
const frame = Buffer.concat([mac(process.env.P1), mac(process.env.P0), Buffer.from([ETH >> 8, ETH & 255]), Buffer.from('hello over p0 -> p1')]);
await probe('sent', () => tx.sendto(frame, ['p0', ETH]));
await probe('received', async () => {
  const [data, addr] = await rx.recvfrom(2048);
  return { frame: data.subarray(0, frame.length).toString('hex'), addr: [addr[0], addr[1], addr[2], addr[3], addr[4].toString('hex')] };
});
await probe('stats', async () => {
  const b = await rx.getsockopt(socket.SOL_PACKET, socket.PACKET_STATISTICS, 8);
  return { packets: b.readUInt32LE(0), drops: b.readUInt32LE(4) };
});
await probe('other', async () => { const s = await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); await s.bind(['a0', ETH]); });
out.frame = frame.toString('hex');
await done();
`;

test('a frame sent on one end of a veth pair arrives on the other with its address tuple', async (t) => {
  const policy = policyFile(`
rules:
  - name: nobody-packet
    match: { uid: 65534 }
    grant:
      sockets: [{ family: AF_PACKET, type: SOCK_RAW }]
      interfaces: [p0, p1]
`);
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, EXCHANGE, { P0: net.mac.p0!, P1: net.mac.p1! });
    t.deepEqual(out.sent, { ok: out.frame.length / 2 });
    // (ifname, proto, pkttype, hatype, addr): PACKET_HOST 0, ARPHRD_ETHER 1, the sender's MAC.
    t.deepEqual(out.received, { ok: { frame: out.frame, addr: ['p1', ETHERTYPE, 0, 1, net.mac.p0!.replaceAll(':', '')] } });
    t.true(out.stats.ok.packets >= 1);
    t.like(out.other, { error: 'PermissionError', errno: 1 });
    t.regex(out.other.message, /interface "a0"/);
  }, { netns: net.a, args: ['--config', policy] });
});

test('without a grant AF_PACKET is refused', async (t) => {
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, `${PRELUDE}
await probe('packet', () => socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)));
await done();`);
    t.like(out.packet, { error: 'PermissionError', errno: 1 });
  }, { netns: net.a });
});

test('an AF_PACKET socket limited to one interface never sees another interface\'s frames', async (t) => {
  const policy = policyFile(`
rules:
  - name: nobody-p1-only
    match: { uid: 65534 }
    grant:
      sockets: [{ family: AF_PACKET, type: SOCK_RAW }]
      interfaces: [p1]
`);
  // Root traffic on a0 (ARP and UDP to B) and one frame on p1; the confined ETH_P_ALL socket
  // must see only the p1 one.
  await withDaemon(async (d) => {
    const script = `${PRELUDE}
const all = await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3));
all.settimeout(30);
console.log('ready');
// Until the p1 frame, sent after all of the a0 traffic, arrives.
const seen = [];
for (;;) {
  const [, addr] = await all.recvfrom(2048);
  seen.push(addr[0]);
  if (addr[0] === 'p1') break;
}
out.seen = [...new Set(seen)];
out.count = seen.length;
await probe('escape', () => all.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, Buffer.from('a0')));
await probe('send', () => all.sendto(Buffer.alloc(60), ['a0', 3]));
await done();
`;
    const { ready, isReady } = readyLine();
    const client = nobodyIn(net.a, d.address, script, {}, ready);
    await Promise.race([isReady, client]);
    net.exec(net.a, 'python3', '-c', "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3):\n    s.sendto(b'on a0', ('198.51.100.2', 9)); time.sleep(0.2)");
    net.exec(net.a, 'python3', '-c', `
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('p0', 0))
s.send(bytes.fromhex('${net.mac.p1!.replaceAll(':', '')}${net.mac.p0!.replaceAll(':', '')}88b5') + b'x' * 50)
`);
    const out = await client;
    t.deepEqual(out.seen, ['p1']);
    t.true(out.count >= 1);
    t.like(out.escape, { error: 'PermissionError', errno: 1 });
    t.like(out.send, { error: 'PermissionError', errno: 1 });
  }, { netns: net.a, args: ['--config', policy] });
});

test.serial('SOCK_DGRAM packet sockets, PACKET_ADD_MEMBERSHIP (promiscuous only with the grant) and PACKET_IGNORE_OUTGOING', async (t) => {
  const script = `${PRELUDE}
const ETH = ${ETHERTYPE + 1};
const mac = (s) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
const mreq = (ifindex, type) => { const b = Buffer.alloc(16); b.writeInt32LE(ifindex, 0); b.writeUInt16LE(type, 4); return b; };
const p1 = await socket.ifNametoindex('p1');
const rx = await socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH));
await rx.bind(['p1', ETH]);
await rx.setsockopt(socket.SOL_PACKET, socket.PACKET_IGNORE_OUTGOING, 1);
await probe('promisc', () => rx.setsockopt(socket.SOL_PACKET, socket.PACKET_ADD_MEMBERSHIP, mreq(p1, socket.PACKET_MR_PROMISC)));
// The test reads the promiscuity count now, then creates the GO file.
console.log('ready');
const { existsSync } = await import('node:fs');
while (!existsSync(process.env.GO)) await new Promise((r) => setTimeout(r, 20));
const tx = await socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0);
// A cooked send: the kernel builds the Ethernet header from the address tuple.
await tx.sendto(Buffer.from('cooked payload'), ['p0', ETH, 0, 1, mac(process.env.P1)]);
rx.settimeout(5);
await probe('cooked', async () => { const [data, addr] = await rx.recvfrom(100); return { data: data.toString(), from: addr[0], proto: addr[1], pkttype: addr[2] }; });
await done();
`;
  const grant = (promiscuous: boolean) => policyFile(`
rules:
  - match: { uid: 65534 }
    grant:
      sockets: [{ family: AF_PACKET }]
      interfaces: [p0, p1]
      promiscuous: ${promiscuous}
`);
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, script, { P1: net.mac.p1!, GO: '/' });
    t.like(out.promisc, { error: 'PermissionError', errno: 1 });
    t.deepEqual(out.cooked, { ok: { data: 'cooked payload', from: 'p1', proto: ETHERTYPE + 1, pkttype: 0 } });
  }, { netns: net.a, args: ['--config', grant(false)] });
  await withDaemon(async (d) => {
    const before = net.promiscuity('p1');
    const go = join(publicTempDir('sb-go-'), 'go');
    const { ready, isReady } = readyLine();
    const client = nobodyIn(net.a, d.address, script, { P1: net.mac.p1!, GO: go }, ready);
    await Promise.race([isReady, client]);
    const during = net.promiscuity('p1');
    writeFileSync(go, '');
    const out = await client;
    t.deepEqual(out.promisc, {});
    t.is(during, before + 1, 'the membership made p1 promiscuous');
    t.deepEqual(out.cooked.ok.data, 'cooked payload');
  }, { netns: net.a, args: ['--config', grant(true)] });
});
