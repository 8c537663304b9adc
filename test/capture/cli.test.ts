// `sockbroker capture` end to end, run as nobody with a capture grant against a root broker in a
// private network namespace: files (pcap and pcapng, to a file and to `-w -`) that tcpdump and
// tshark read back with the packets, timestamps and lengths the test sent; the -c and SIGINT
// summaries; a refused capture naming the grant; two brokers in two namespaces merged into one
// pcapng in timestamp order.
import test from 'ava';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createTestNet, type TestNet } from '../helpers/netns.js';
import { publicTempDir, startDaemon, until, worldCopy, type Daemon } from '../helpers/daemon.js';
import { tokenDigest } from '../../daemon/policy-file.js';
import { policyFile } from '../privileged/helpers.js';
import { readPcapngBlocks } from './pcapng-read.js';

let net: TestNet;
let a: Daemon;
let b: Daemon;
const out = mkdtempSync(join(tmpdir(), 'sb-capcli-'));
chmodSync(out, 0o777); // nobody writes the files here

const TOKEN = 'capture-token-1';
const tls = publicTempDir('sb-capcli-tls-');
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: tls, stdio: 'pipe' });

/** Broker B is another host: reached over TCP with TLS (its certificate names 198.51.100.2) and a token. */
function makeCerts(): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=b', '-keyout', 'b.key', '-out', 'b.csr');
  writeFileSync(join(tls, 'b.ext'), 'subjectAltName=IP:198.51.100.2\n');
  openssl('x509', '-req', '-in', 'b.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'b.pem', '-extfile', 'b.ext');
  for (const f of ['ca.pem', 'b.pem', 'b.key']) chmodSync(join(tls, f), 0o644);
}

const policy = () => policyFile(`
tls: { cert: ${join(tls, 'b.pem')}, key: ${join(tls, 'b.key')} }
tokens:
  - { name: capcli, sha256: ${tokenDigest(TOKEN)} }
rules:
  - name: nobody-capture
    match: { uid: 65534 }
    grant:
      capture: { interfaces: [a0, b0, lo, any], promiscuous: true }
  - name: token-capture
    match: { token: capcli }
    grant:
      capture: { interfaces: [b0, any], promiscuous: true }
`);
let bTcp = '';

test.before(async () => {
  net = createTestNet();
  makeCerts();
  const p = policy();
  a = await startDaemon({ netns: net.a, args: ['--config', p] });
  b = await startDaemon({ netns: net.b, args: ['--config', p, '--listen', 'tcp:198.51.100.2:0'] });
  bTcp = b.addresses.find((x) => x.startsWith('tcp:'))!;
});
test.after.always(async () => {
  await a?.stop();
  await b?.stop();
  net?.destroy();
  rmSync(out, { recursive: true, force: true });
  rmSync(tls, { recursive: true, force: true });
});

interface Cli {
  proc: ChildProcess;
  stderr: () => string;
  /** Resolves once the capture printed its `listening on` line(s). */
  armed: Promise<void>;
  exit: Promise<number | null>;
}

/** `sockbroker capture ARGS` as nobody in namespace `ns` (via `sh -c` when `pipe` is given: `CMD | pipe`). */
function cli(ns: string, args: string[], opts: { pipe?: string; listening?: number } = {}): Cli {
  const cmd = [process.execPath, join(worldCopy(), 'dist', 'daemon', 'cli.js'), 'capture', ...args];
  const quoted = cmd.map((c) => `'${c.replace(/'/g, `'\\''`)}'`).join(' ');
  const argv = opts.pipe
    ? ['ip', 'netns', 'exec', ns, 'sh', '-c', `setpriv --reuid=nobody --regid=nogroup --clear-groups ${quoted} | ${opts.pipe}`]
    : ['ip', 'netns', 'exec', ns, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', ...cmd];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: worldCopy(), env: { PATH: process.env.PATH!, HOME: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let armed: () => void;
  const armedP = new Promise<void>((r) => (armed = r));
  proc.stderr!.on('data', (d) => {
    err += d;
    if ((err.match(/^listening on /gm)?.length ?? 0) >= (opts.listening ?? 1)) armed();
  });
  const exit = once(proc, 'close').then(([code]) => code as number | null);
  exit.then(() => armed());
  return { proc, stderr: () => err, armed: armedP, exit };
}

let port = 20000;

interface Sent {
  payload: string;
  /** Wall clock (ns) just before and just after the send. */
  before: bigint;
  after: bigint;
}

/** Sends `n` UDP datagrams from namespace `ns` to `to`:`dport`, recording the wall clock around each. */
function send(ns: string, to: string, dport: number, n: number, tag: string): Sent[] {
  const py = `
import socket, time, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out = []
for i in range(${n}):
    p = ('${tag}-%d-' % i) + 'x' * (i * 7)
    t0 = time.time_ns(); s.sendto(p.encode(), ('${to}', ${dport})); t1 = time.time_ns()
    out.append([p, t0, t1])
print(json.dumps(out))
`;
  return (JSON.parse(net.exec(ns, 'python3', '-c', py)) as [string, number, number][]).map(([payload, t0, t1]) => ({ payload, before: BigInt(t0), after: BigInt(t1) }));
}

/** tcpdump -r: [timestamp ns, UDP payload length] per packet. */
function tcpdumpRead(file: string, filter: string[] = []): Array<[bigint, number]> {
  const text = execFileSync('tcpdump', ['-r', file, '-nn', '-tt', '--time-stamp-precision=nano', ...filter], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return text.trim().split('\n').filter(Boolean).map((l) => {
    const m = /^(\d+)\.(\d{9}) .*UDP, length (\d+)/.exec(l)!;
    return [BigInt(m[1]!) * 1_000_000_000n + BigInt(m[2]!), Number(m[3])];
  });
}

/** tshark -r fields per packet. */
function tsharkRead(file: string, ...fields: string[]): string[][] {
  return execFileSync('tshark', ['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .replace(/\n$/, '').split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

const epoch = (s: string) => {
  const [sec, frac = ''] = s.split('.');
  return BigInt(sec!) * 1_000_000_000n + BigInt(frac.padEnd(9, '0'));
};

/** The packets of a file are the ones sent: same payloads in order, each timestamp within its send. */
function checkSent(t: import('ava').ExecutionContext, file: string, sent: Sent[]): void {
  const td = tcpdumpRead(file);
  t.deepEqual(td.map(([, len]) => len), sent.map((s) => s.payload.length), 'tcpdump: the sent lengths, in order');
  for (const [i, [ts]] of td.entries()) t.true(ts >= sent[i]!.before && ts <= sent[i]!.after + 1_000_000n, `timestamp of packet ${i} within its send`);
  const ts = tsharkRead(file, 'frame.time_epoch', 'frame.len', 'udp.payload');
  t.deepEqual(ts.map((f) => Buffer.from(f[2]!.replace(/:/g, ''), 'hex').toString()), sent.map((s) => s.payload), 'tshark: the sent payloads');
  t.deepEqual(ts.map((f) => epoch(f[0]!)), td.map(([x]) => x), 'tshark and tcpdump agree on the ns timestamps');
  t.deepEqual(ts.map((f) => Number(f[1])), sent.map((s) => 14 + 20 + 8 + s.payload.length), 'frame lengths');
}

/** Complete packet blocks written so far to a pcapng file that is still growing. */
function packetsIn(file: string): number {
  if (!existsSync(file)) return 0;
  const b = readFileSync(file);
  let n = 0;
  for (let o = 0; o + 8 <= b.length;) {
    const len = b.readUInt32LE(o + 4);
    if (len < 12 || o + len > b.length) break;
    if (b.readUInt32LE(o) === 6) n++;
    o += len;
  }
  return n;
}

const summary = (text: string) => {
  const n = (what: string) => Number(new RegExp(`^(\\d+) packets ${what}$`, 'm').exec(text)?.[1] ?? NaN);
  return { captured: n('captured'), received: n('received by filter'), kernel: n('dropped by kernel'), broker: n('dropped by broker') };
};

test('pcap to a file with -c: tcpdump and tshark read back the sent packets; the summary adds up', async (t) => {
  const dport = port++;
  const file = join(out, 'c.pcap');
  const c = cli(net.a, ['--broker', a.address, '-i', 'a0', '-w', file, '-c', '5', '-p', 'udp', 'and', 'dst', 'port', String(dport)]);
  await c.armed;
  t.regex(c.stderr(), /^listening on a0, link-type EN10MB \(Ethernet\), snapshot length 262144 bytes$/m);
  const sent = send(net.a, '198.51.100.2', dport, 5, 'c');
  t.is(await c.exit, 0, c.stderr());
  checkSent(t, file, sent);
  t.deepEqual(summary(c.stderr()), { captured: 5, received: 5, kernel: 0, broker: 0 });
});

test('SIGINT ends a pcapng capture with the summary; interface name, broker and direction in the file; ISB counters', async (t) => {
  const dport = port++;
  const file = join(out, 'int.pcapng');
  const c = cli(net.a, ['--broker', a.address, '-i', 'a0', '-w', file, '--format', 'pcapng', '-p', 'udp port', String(dport)]);
  await c.armed;
  const sent = send(net.a, '198.51.100.2', dport, 4, 'int');
  await until(() => packetsIn(file) >= sent.length, 20_000);
  c.proc.kill('SIGINT');
  t.is(await c.exit, 0, c.stderr());
  t.deepEqual(summary(c.stderr()), { captured: 4, received: 4, kernel: 0, broker: 0 });
  checkSent(t, file, sent);
  const f = tsharkRead(file, 'frame.interface_name', 'frame.interface_description', 'frame.packet_flags_direction');
  t.deepEqual(f, sent.map(() => ['a0', `sockbroker ${a.address}`, '0x00000002']));
  const isb = readPcapngBlocks(readFileSync(file)).filter((bl) => bl.type === 5).pop()!;
  t.is(isb.options.get(8)!.readBigUInt64LE(0), 4n, 'isb_usrdeliv');
  t.is(isb.options.get(6)!.readBigUInt64LE(0), 4n, 'isb_filteraccept');
  t.is(isb.options.get(7)!.readBigUInt64LE(0), 0n, 'isb_osdrop');
});

test('-w - into tcpdump -r -: the pipe carries every batch as it comes', async (t) => {
  const dport = port++;
  const file = join(out, 'pipe.pcap');
  // tcpdump -r - writes its own copy (-w) so the test reads exactly what passed the pipe.
  const c = cli(net.a, ['--broker', a.address, '-i', 'a0', '-w', '-', '-c', '3', '-p', `udp port ${dport}`], { pipe: `tcpdump -r - -w '${file}'` });
  await c.armed;
  const sent = send(net.a, '198.51.100.2', dport, 3, 'pipe');
  t.is(await c.exit, 0, c.stderr());
  checkSent(t, file, sent);
  t.regex(c.stderr(), /^3 packets captured$/m);
});

test('a capture without a grant, or on an interface not granted, exits non-zero naming the grant', async (t) => {
  const policy = policyFile('rules: []\n');
  const d = await startDaemon({ netns: net.a, args: ['--config', policy] });
  try {
    const c = cli(net.a, ['--broker', d.address, '-i', 'a0', '-w', join(out, 'no.pcap')]);
    t.not(await c.exit, 0);
    t.regex(c.stderr(), /PermissionError|Operation not permitted/);
    t.regex(c.stderr(), /grant: capture/);
  } finally {
    await d.stop();
  }
  const c = cli(net.a, ['--broker', a.address, '-i', 'p0', '-w', join(out, 'p0.pcap')]);
  t.not(await c.exit, 0);
  t.regex(c.stderr(), /grant: capture/);
});

test('two brokers in two namespaces (one local, one over TLS with a token): one pcapng in timestamp order, one interface block each', async (t) => {
  const dport = port++;
  const file = join(out, 'two.pcapng');
  const remote = ['--tls-ca', join(tls, 'ca.pem'), '--token', TOKEN];
  const c = cli(net.a, ['--broker', a.address, '--broker', bTcp, ...remote, '-i', 'any', '-w', file, '-c', '12', '-p', `udp port ${dport}`], { listening: 2 });
  await c.armed;
  t.regex(c.stderr(), new RegExp(`^listening on any \\(broker ${a.address}\\), link-type LINUX_SLL2`, 'm'));
  // Each datagram crosses the veth pair: A sees it leave, B sees it arrive (and the other way).
  const sent: Sent[] = [];
  for (let i = 0; i < 3; i++) {
    sent.push(...send(net.a, '198.51.100.2', dport, 1, `ab${i}`));
    sent.push(...send(net.b, '198.51.100.1', dport, 1, `ba${i}`));
  }
  t.is(await c.exit, 0, c.stderr());
  const f = tsharkRead(file, 'frame.time_epoch', 'frame.interface_description', 'udp.payload');
  t.is(f.length, 12);
  const times = f.map((x) => epoch(x[0]!));
  for (let i = 1; i < times.length; i++) t.true(times[i]! >= times[i - 1]!, `packet ${i} not before packet ${i - 1}`);
  const payloads = f.map((x) => Buffer.from(x[2]!.replace(/:/g, ''), 'hex').toString());
  for (const s of sent) {
    const where = f.filter((_x, i) => payloads[i] === s.payload).map((x) => x[1]);
    t.deepEqual(where.sort(), [`sockbroker ${a.address}`, `sockbroker ${bTcp}`].sort(), `${s.payload} seen on both brokers`);
  }
  // The sends were sequential: in the file, every copy of send i precedes every copy of send i+1.
  const order = payloads.map((p) => sent.findIndex((s) => s.payload === p));
  t.deepEqual(order, [...order].sort((x, y) => x - y));
  const blocks = readPcapngBlocks(readFileSync(file));
  t.is(blocks.filter((bl) => bl.type === 1).length, 2);
  t.is(tcpdumpRead(file).length, 12, 'tcpdump reads the merged file too');
});
