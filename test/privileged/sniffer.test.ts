// SIO_RCVALL on Linux: the seed's Windows sniffer example, transliterated and run as nobody
// with a grant, captures packets a test sends across a veth pair (both directions). The
// interface's promiscuity count (`ip -d link`) goes up with RCVALL_ON and back down after
// RCVALL_OFF, after close, and after the client is killed and the grace period ends.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { useTestNet } from '../helpers/netns.js';
import { until, withDaemon, worldCopy } from '../helpers/daemon.js';
import { PRELUDE, nobodyIn, policyFile } from './helpers.js';

const net = useTestNet(test);

const HOSTS = '127.0.0.1 localhost\n198.51.100.1 sniffhost\n';

const SNIFFER = `
import { connect } from 'sockbroker';
import { createInterface } from 'node:readline';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await input.next()).value;
const say = (o) => console.log(JSON.stringify(o));

// the public network interface
const HOST = await socket.gethostbyname(await socket.gethostname());
// create a raw socket and bind it to the public interface
let s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
await s.bind([HOST, 0]);
// Include IP headers
await s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1);
// receive all packages
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
say({ step: 'on', host: HOST, name: String(await s.getsockname()) });
await next();
// receive a package (until both test packets, one each way, were seen)
const seen = {};
while (!seen.in || !seen.out) {
  const [pkt, addr] = await s.recvfrom(65565);
  const text = pkt.subarray(28).toString();
  if (pkt[9] === 17 && (text === 'sniff in' || text === 'sniff out')) {
    seen[text.slice(6)] = { addr, src: [...pkt.subarray(12, 16)].join('.'), dst: [...pkt.subarray(16, 20)].join('.'), len: pkt.length };
  }
}
say({ step: 'got', seen });
// disabled promiscuous mode
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_OFF);
say({ step: 'off' });
await next();
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
say({ step: 'on again' });
await next();
await s.close();
say({ step: 'closed' });
await next();
s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
await s.bind([HOST, 0]);
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
say({ step: 'on before kill' });
await new Promise(() => {});
`;

const GRANT = policyFile(`
rules:
  - name: nobody-sniffer
    match: { uid: 65534 }
    grant:
      sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_IP }]
      interfaces: [a0]
      promiscuous: true
`);

/** The sniffer as nobody in namespace A, driven line by line. */
function startSniffer(address: string): { proc: ChildProcess; step: () => Promise<any>; go: () => void; cleanup: () => void } {
  const file = join(worldCopy(), `sniffer-${process.pid}.mjs`);
  writeFileSync(file, SNIFFER);
  chmodSync(file, 0o644);
  const proc = spawn('ip', ['netns', 'exec', net.a, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file], {
    cwd: worldCopy(),
    env: { PATH: process.env.PATH!, HOME: '/tmp', SOCKBROKER_ADDRESS: address },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  return {
    proc,
    step: async () => JSON.parse((await lines.next()).value),
    go: () => proc.stdin!.write('go\n'),
    cleanup: () => rmSync(file, { force: true }),
  };
}

const send = (ns: string, to: string, text: string) =>
  net.exec(ns, 'python3', '-c', `import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'${text}', ('${to}', 7777))`);

test.serial('the seed sniffer captures both directions; promiscuity follows ON, OFF, close and a killed client', async (t) => {
  t.timeout(90_000);
  await withDaemon(async (d) => {
    const base = net.promiscuity('a0');
    const sniffer = startSniffer(d.address);
    try {
      const on = await sniffer.step();
      t.is(on.host, '198.51.100.1');
      t.is(on.name, '198.51.100.1,0');
      t.is(net.promiscuity('a0'), base + 1, 'RCVALL_ON adds a promiscuous membership');
      send(net.b, '198.51.100.1', 'sniff in');
      send(net.a, '198.51.100.2', 'sniff out');
      sniffer.go();
      const got = await sniffer.step();
      t.deepEqual(got.seen.in, { addr: ['198.51.100.2', 0], src: '198.51.100.2', dst: '198.51.100.1', len: 36 });
      t.deepEqual(got.seen.out, { addr: ['198.51.100.1', 0], src: '198.51.100.1', dst: '198.51.100.2', len: 37 });
      t.like(await sniffer.step(), { step: 'off' });
      t.is(net.promiscuity('a0'), base, 'RCVALL_OFF drops it');
      sniffer.go();
      t.like(await sniffer.step(), { step: 'on again' });
      t.is(net.promiscuity('a0'), base + 1);
      sniffer.go();
      t.like(await sniffer.step(), { step: 'closed' });
      t.is(net.promiscuity('a0'), base, 'close drops it');
      sniffer.go();
      t.like(await sniffer.step(), { step: 'on before kill' });
      t.is(net.promiscuity('a0'), base + 1);
      const held = d.fdCount();
      sniffer.proc.kill('SIGKILL');
      await new Promise((r) => sniffer.proc.on('exit', r));
      // Once the daemon has closed the dead client's connection, the socket (and its promiscuity)
      // is kept for the grace period (10 s here), then dropped.
      t.true(await until(() => d.fdCount() < held, 10_000), 'the daemon closed the connection');
      t.is(net.promiscuity('a0'), base + 1, 'kept during the grace period');
      t.true(await until(() => net.promiscuity('a0') === base, 30_000));
      t.is(net.promiscuity('a0'), base, 'gone after the grace period');
      const audit = d.logs.filter((l) => l.includes('"event":"policy.allow"') && l.includes('promiscuous'));
      t.is(audit.length, 3, 'one audit line per RCVALL_ON');
    } finally {
      sniffer.proc.kill('SIGKILL');
      sniffer.cleanup();
    }
  }, { netns: net.a, hosts: HOSTS, hostname: 'sniffhost', args: ['--config', GRANT], graceSeconds: 10 });
});

test.serial('without the promiscuous grant RCVALL_ON is refused; without a socket grant the socket is', async (t) => {
  const noPromisc = policyFile(`
rules:
  - match: { uid: 65534 }
    grant: { sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_IP }], interfaces: [a0] }
`);
  const script = `${PRELUDE}
await probe('socket', async () => {
  const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
  await s.bind(['198.51.100.1', 0]);
  await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
});
await done();`;
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, script);
    t.like(out.socket, { error: 'PermissionError', errno: 1 });
    t.regex(out.socket.message, /promiscuous mode on "a0" needs a grant/);
    t.is(net.promiscuity('a0'), 0);
  }, { netns: net.a, args: ['--config', noPromisc] });
  await withDaemon(async (d) => {
    const out = await nobodyIn(net.a, d.address, script);
    t.like(out.socket, { error: 'PermissionError', errno: 1 });
    t.regex(out.socket.message, /raw sockets/);
  }, { netns: net.a });
});
