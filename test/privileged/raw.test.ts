// Raw IP through the broker, as nobody with a grant (and refused without one), in private
// network namespaces: an ICMP echo built byte by byte, an IP_HDRINCL packet arriving at the
// peer exactly as written, and `sockbroker ping`.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { useTestNet } from '../helpers/netns.js';
import { startDaemon, withDaemon, worldCopy, type Daemon } from '../helpers/daemon.js';
import { PRELUDE, nobodyIn, policyFile } from './helpers.js';

const net = useTestNet(test);

const GRANT = policyFile(`
rules:
  - name: nobody-raw
    match: { uid: 65534 }
    grant:
      sockets:
        - { family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }
        - { family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_RAW }
        - { family: AF_INET6, type: SOCK_RAW, protocol: IPPROTO_ICMPV6 }
`);

const ECHO = `${PRELUDE}
// An ICMP echo request, byte by byte: type 8, code 0, checksum, identifier, sequence, data.
const msg = Buffer.alloc(8 + 16);
msg[0] = 8; msg[1] = 0;
msg.writeUInt16BE(0x5342, 4); msg.writeUInt16BE(7, 6);
Buffer.from('sockbroker-echo!').copy(msg, 8);
let sum = 0;
for (let i = 0; i < msg.length; i += 2) sum += msg.readUInt16BE(i);
while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
msg.writeUInt16BE(~sum & 0xffff, 2);
await probe('echo', async () => {
  const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP);
  s.settimeout(5);
  await s.sendto(msg, ['198.51.100.2', 0]);
  for (;;) {
    const [pkt, addr] = await s.recvfrom(2048);
    const icmp = pkt.subarray((pkt[0] & 15) * 4);
    if (icmp[0] === 0 && icmp.readUInt16BE(4) === 0x5342) {
      await s.close();
      return { from: addr, seq: icmp.readUInt16BE(6), data: icmp.subarray(8).toString() };
    }
  }
});
await done();
`;

test('an ICMP echo built byte by byte: refused without a grant, answered with one', async (t) => {
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, ECHO);
    t.like(out.echo, { error: 'PermissionError', errno: 1 });
  }, { netns: net.a });
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, ECHO);
    t.deepEqual(out.echo, { ok: { from: ['198.51.100.2', 0], seq: 7, data: 'sockbroker-echo!' } });
    t.true(await d.logged((l) => l.includes('"event":"policy.allow"') && l.includes('"by":"nobody-raw"')));
  }, { netns: net.a, args: ['--config', GRANT] });
});

test('an IP_HDRINCL packet arrives at the peer namespace exactly as written', async (t) => {
  // A root raw UDP listener in namespace B prints the first packet from A to port 9999 in hex.
  const listener = spawn('ip', ['netns', 'exec', net.b, 'python3', '-c', `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.settimeout(15)
print('ready', flush=True)
while True:
    pkt, addr = s.recvfrom(65535)
    if addr[0] == '198.51.100.1' and pkt[22:24] == (9999).to_bytes(2, 'big'):
        print(pkt.hex(), flush=True)
        break
`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const exited = once(listener, 'exit');
  await new Promise<void>((resolve, reject) => {
    listener.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve();
    });
    void exited.then(([code]) => reject(new Error(`listener exited ${code} before it was ready`)));
  });
  const script = `${PRELUDE}
const payload = Buffer.from('written by hand');
const udp = Buffer.alloc(8 + payload.length);
udp.writeUInt16BE(4242, 0); udp.writeUInt16BE(9999, 2); udp.writeUInt16BE(udp.length, 4);
payload.copy(udp, 8);
const ip = Buffer.alloc(20);
ip[0] = 0x45; ip[1] = 0x10; ip.writeUInt16BE(20 + udp.length, 2); ip.writeUInt16BE(0x1234, 4);
ip[8] = 33; ip[9] = 17;
Buffer.from([198, 51, 100, 1]).copy(ip, 12); Buffer.from([198, 51, 100, 2]).copy(ip, 16);
let sum = 0;
for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
ip.writeUInt16BE(~sum & 0xffff, 10);
const packet = Buffer.concat([ip, udp]);
await probe('sent', async () => {
  const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW);
  await s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1);
  const n = await s.sendto(packet, ['198.51.100.2', 0]);
  await s.close();
  return { n, hex: packet.toString('hex') };
});
await done();
`;
  await withDaemon(async (d) => {
    const res = await nobodyIn(net.a, d.address, script);
    t.is(res.sent.ok.n, 43);
    const [code] = await exited;
    t.is(code, 0);
    t.is(out.split('\n')[1], res.sent.ok.hex, 'the peer received the packet byte for byte');
  }, { netns: net.a, args: ['--config', GRANT] });
});

test('sockbroker ping works for nobody with a grant and fails cleanly without', async (t) => {
  const run = (d: Daemon) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('ip', ['netns', 'exec', net.a, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, join(worldCopy(), 'dist', 'daemon', 'cli.js'), 'ping', '-c', '2', '-i', '0.2', '--broker', d.address, '198.51.100.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (x) => (out += x));
      p.stderr!.on('data', (x) => (out += x));
      p.on('exit', (code) => resolve({ code, out }));
    });
  const denied = await startDaemon({ netns: net.a });
  try {
    const r = await run(denied);
    t.is(r.code, 1);
    t.regex(r.out, /PermissionError|Operation not permitted/);
  } finally {
    await denied.stop();
  }
  const granted = await startDaemon({ netns: net.a, args: ['--config', GRANT] });
  try {
    const r = await run(granted);
    t.is(r.code, 0, r.out);
    t.regex(r.out, /bytes from 198\.51\.100\.2: icmp_seq=1 ttl=64/);
    t.regex(r.out, /2 packets transmitted, 2 received, 0% packet loss/);
  } finally {
    await granted.stop();
  }
});

test('an ICMPv6 echo through a raw AF_INET6 socket (the kernel fills the ICMPv6 checksum)', async (t) => {
  const script = `${PRELUDE}
await probe('echo6', async () => {
  const s = await socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6);
  s.settimeout(5);
  const msg = Buffer.alloc(8 + 8);
  msg[0] = 128; msg.writeUInt16BE(0x5343, 4); msg.writeUInt16BE(3, 6);
  Buffer.from('icmpv6!!').copy(msg, 8);
  await s.sendto(msg, ['2001:db8::2', 0]);
  for (;;) {
    const [icmp, addr] = await s.recvfrom(2048);
    if (icmp[0] === 129 && icmp.readUInt16BE(4) === 0x5343) { await s.close(); return { from: addr[0], seq: icmp.readUInt16BE(6), data: icmp.subarray(8).toString() }; }
  }
});
await done();
`;
  await withDaemon(async (d) => {
    t.like((await nobodyIn(net.a, d.address, script)).echo6, { error: 'PermissionError', errno: 1 });
  }, { netns: net.a });
  await withDaemon(async (d) => {
    t.deepEqual((await nobodyIn(net.a, d.address, script)).echo6, { ok: { from: '2001:db8::2', seq: 3, data: 'icmpv6!!' } });
  }, { netns: net.a, args: ['--config', GRANT] });
});
