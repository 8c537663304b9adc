// Capture benchmark (`npm run bench`, or alone: `BENCH_ONLY=capture npm run bench`, or
// `node dist/bench/capture.js`). Needs root: it runs itself in a private network namespace
// (`unshare --net`), where a C sender (compiled here with gcc) floods 127.0.0.1 with 64 B UDP
// datagrams carrying sequence numbers at fixed rates. Side by side on the same floods:
// tcpdump, `sockbroker capture` over the local Unix socket, and over TCP with TLS (and a
// token), each writing its file to tmpfs; then the seed's sniffer example through the broker.
// Counted: unique sequence numbers in each file (AF_PACKET sees each lo packet twice; both
// tools keep one), the tools' own drop counters, and CPU of the daemon and the client.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { processCpuUs } from './stats.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '..', '..');
const CLI = join(ROOT, 'dist', 'daemon', 'cli.js');
const RATES = (process.env.BENCH_CAPTURE_RATES ?? '100000,300000').split(',').map(Number);
/** Which rows to run (comma-separated; default all): tcpdump, broker-unix, broker-tls, seed-sniffer. */
const TOOLS = (process.env.BENCH_CAPTURE_TOOLS ?? 'tcpdump,broker-unix,broker-tls,seed-sniffer').split(',').map((s) => s.trim());
const SECONDS = Number(process.env.BENCH_CAPTURE_SECONDS ?? 3);
const PORT = 9;
const TOKEN = 'bench-capture-token';

export interface CaptureRow {
  tool: string;
  rate: number;
  sent: number;
  /** Unique sequence numbers captured. */
  unique: number;
  /** unique / sender's run time. */
  perSecond: number;
  /** The tool's own counters (null where it has none). */
  captured: number | null;
  received: number | null;
  droppedByKernel: number | null;
  droppedByBroker: number | null;
  /** CPU µs per unique packet captured. */
  cpuUsPerPacket: { daemon?: number; client: number };
}

interface Started {
  proc: ChildProcess;
  stderr: () => string;
  closed: Promise<void>;
}

/** BENCH_CPU_PROF=DIR: the node children (daemon, CLI) write V8 CPU profiles there when they exit. */
const PROF = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];

function run(cmd: string, args: string[], env: Record<string, string> = {}): Started {
  if (cmd === process.execPath) args = [...PROF, ...args];
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.on('data', () => undefined);
  return { proc, stderr: () => err, closed: once(proc, 'close').then(() => undefined) };
}

async function untilText(s: Started, re: RegExp, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(s.stderr())) {
    if (s.proc.exitCode !== null || Date.now() > end) throw new Error(`no ${re} from ${s.proc.spawnargs.join(' ')}:\n${s.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Unique sequence numbers in a pcap file of the flood (Ethernet/IPv4/UDP on lo). */
function uniqueSeqs(file: string, sent: number): number {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian pcap file`);
  const seen = new Uint8Array(sent);
  let unique = 0;
  for (let o = 24; o + 16 <= b.length;) {
    const caplen = b.readUInt32LE(o + 8);
    const p = o + 16;
    o = p + caplen;
    if (o > b.length) break;
    if (caplen < 50 || b.readUInt16BE(p + 12) !== 0x0800 || b[p + 23] !== 17 || b.readUInt16BE(p + 36) !== PORT) continue;
    const seq = Number(b.readBigUInt64LE(p + 42));
    if (seq < sent && !seen[seq]) {
      seen[seq] = 1;
      unique++;
    }
  }
  return unique;
}

function counters(text: string) {
  const n = (what: string) => {
    const m = new RegExp(`^(\\d+) packets? ${what}$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { captured: n('captured'), received: n('received by filter'), droppedByKernel: n('dropped by kernel'), droppedByBroker: n('dropped by broker') };
}

function flood(sender: string, rate: number): Promise<{ sent: number; seconds: number }> {
  const s = spawn(sender, [String(rate), String(SECONDS), String(PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  s.stdout!.on('data', (d) => (out += d));
  return once(s, 'close').then(() => JSON.parse(out));
}

interface Env {
  sender: string;
  dir: string;
  daemonPid: number;
  unix: string;
  tcp: string;
  tls: string[];
  clkTck: number;
}

/** One tool on one flood: start it, wait until armed, flood, stop it with SIGINT, count. */
async function measure(env: Env, tool: string, rate: number): Promise<CaptureRow> {
  const file = join('/dev/shm', `sb-bench-${process.pid}-${tool}.pcap`);
  const filter = ['udp', 'dst', 'port', String(PORT)];
  const c = tool === 'tcpdump'
    ? run('tcpdump', ['-i', 'lo', '-n', '-Z', 'root', '-w', file, ...filter])
    : run(process.execPath, [CLI, 'capture', '--format', 'pcap', '-i', 'lo', '-w', file, ...(tool === 'broker-tls' ? ['--broker', env.tcp, ...env.tls] : ['--broker', env.unix]), ...filter]);
  try {
    await untilText(c, /listening on /, 20_000);
    const d0 = processCpuUs(env.daemonPid, env.clkTck);
    const c0 = processCpuUs(c.proc.pid!, env.clkTck);
    const f = await flood(env.sender, rate);
    // The last batch leaves the broker within its latency bound (100 ms): give it that and a margin.
    await new Promise((r) => setTimeout(r, 500));
    const d1 = processCpuUs(env.daemonPid, env.clkTck);
    const c1 = processCpuUs(c.proc.pid!, env.clkTck);
    c.proc.kill('SIGINT');
    await c.closed;
    const unique = uniqueSeqs(file, f.sent);
    const per = (us: number) => (unique > 0 ? us / unique : NaN);
    return {
      tool, rate, sent: f.sent, unique, perSecond: unique / f.seconds, ...counters(c.stderr()),
      cpuUsPerPacket: { ...(tool === 'tcpdump' ? {} : { daemon: per(d1 - d0) }), client: per(c1 - c0) },
    };
  } finally {
    c.proc.kill('SIGKILL');
    rmSync(file, { force: true });
  }
}

async function sniffer(env: Env, rate: number): Promise<CaptureRow> {
  const sent = Math.round(rate * SECONDS);
  const c = run(process.execPath, [join(HERE, 'capture-sniffer.js')], { BENCH_BROKER: env.unix, BENCH_PORT: String(PORT), BENCH_SENT: String(sent) });
  let out = '';
  c.proc.stdout!.on('data', (d) => (out += d));
  const end = Date.now() + 20_000;
  while (!out.includes('"armed"')) {
    if (c.proc.exitCode !== null || Date.now() > end) throw new Error(`sniffer did not arm:\n${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const d0 = processCpuUs(env.daemonPid, env.clkTck);
  const c0 = processCpuUs(c.proc.pid!, env.clkTck);
  const f = await flood(env.sender, rate);
  const d1 = processCpuUs(env.daemonPid, env.clkTck);
  const c1 = processCpuUs(c.proc.pid!, env.clkTck);
  await c.closed;
  const r = JSON.parse(out.trim().split('\n').pop()!) as { unique: number; stats: { received: number; captured: number; droppedByKernel: number; droppedByBroker: number; droppedBySdk: number } };
  const per = (us: number) => (r.unique > 0 ? us / r.unique : NaN);
  // The sniffer counts frames (each lo packet twice); its SDK drops count with the broker's.
  return {
    tool: 'seed-sniffer', rate, sent: f.sent, unique: r.unique, perSecond: r.unique / f.seconds,
    captured: r.stats.captured, received: r.stats.received, droppedByKernel: r.stats.droppedByKernel, droppedByBroker: r.stats.droppedByBroker + r.stats.droppedBySdk,
    cpuUsPerPacket: { daemon: per(d1 - d0), client: per(c1 - c0) },
  };
}

function certificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=bench-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=broker', '-keyout', 'b.key', '-out', 'b.csr');
  writeFileSync(join(dir, 'b.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'b.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'b.pem', '-extfile', 'b.ext');
}

/** Inside the private namespace: everything, then one JSON line with the rows. */
async function inside(): Promise<void> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-capture-'));
  const sender = join(dir, 'udp-flood');
  execFileSync('gcc', ['-O2', '-o', sender, join(ROOT, 'bench', 'c', 'udp-flood.c')]);
  certificates(dir);
  const digest = createHash('sha256').update(TOKEN).digest('hex');
  writeFileSync(join(dir, 'policy.yaml'), `
tls: { cert: ${join(dir, 'b.pem')}, key: ${join(dir, 'b.key')} }
tokens:
  - { name: bench, sha256: ${digest} }
rules:
  - name: bench-capture
    match: { token: bench }
    grant: { capture: { interfaces: [lo], promiscuous: true } }
`);
  chmodSync(dir, 0o755);
  const daemon = run(process.execPath, [CLI, 'serve', '--listen', `unix:${join(dir, 'sb.sock')}`, '--listen', 'tcp:127.0.0.1:0', '--config', join(dir, 'policy.yaml'), '--log-level', 'info']);
  try {
    await untilText(daemon, /"event":"listening"/, 20_000);
    const listening = JSON.parse(daemon.stderr().split('\n').find((l) => l.includes('"event":"listening"'))!);
    const env: Env = {
      sender, dir, daemonPid: daemon.proc.pid!, unix: `unix:${join(dir, 'sb.sock')}`,
      tcp: listening.addresses.find((a: string) => a.startsWith('tcp:')), tls: ['--tls-ca', join(dir, 'ca.pem'), '--token', TOKEN],
      clkTck: Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100,
    };
    const rows: CaptureRow[] = [];
    for (const rate of RATES) {
      for (const tool of ['tcpdump', 'broker-unix', 'broker-tls'].filter((t) => TOOLS.includes(t))) {
        process.stderr.write(`bench: capture ${tool} at ${rate}/s\n`);
        rows.push(await measure(env, tool, rate));
      }
      if (!TOOLS.includes('seed-sniffer')) continue;
      process.stderr.write(`bench: seed sniffer at ${rate}/s\n`);
      rows.push(await sniffer(env, rate));
    }
    process.stdout.write(`${JSON.stringify({ rows, load: loadavg() })}\n`);
  } finally {
    daemon.proc.kill('SIGTERM');
    await daemon.closed;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the capture bench (re-executing itself in a private network namespace); null when not root. */
export async function runCaptureBench(): Promise<{ rows: CaptureRow[]; load: number[] } | null> {
  if (process.getuid?.() !== 0) return null;
  const c = spawn('unshare', ['--net', process.execPath, fileURLToPath(import.meta.url)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_CAPTURE_INSIDE: '1' } });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  const [code] = await once(c, 'close');
  if (code !== 0) throw new Error(`capture bench exited ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!);
}

const n = (v: number | null | undefined, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '—' : v.toFixed(digits));

/** The capture table, with each broker row's ratio to tcpdump's unique packets on the same flood. */
export function renderCapture(r: { rows: CaptureRow[]; load: number[] } | null): string {
  if (!r) return 'capture: skipped (needs root for a private network namespace)';
  const out = [`capture: 64 B UDP flood on lo in a private netns, ${SECONDS} s per run; load average at the end ${r.load.map((x) => x.toFixed(1)).join(' ')}`,
    '| tool | offered/s | sent | unique captured | per s | × tcpdump | captured | recv by filter | drop kernel | drop broker | CPU µs/pkt daemon | CPU µs/pkt client |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const row of r.rows) {
    const base = r.rows.find((x) => x.tool === 'tcpdump' && x.rate === row.rate);
    const ratio = base && base.unique > 0 ? (row.unique / base.unique).toFixed(3) : '—';
    out.push(`| ${row.tool} | ${row.rate} | ${row.sent} | ${row.unique} | ${n(row.perSecond)} | ${ratio} | ${n(row.captured)} | ${n(row.received)} | ${n(row.droppedByKernel)} | ${n(row.droppedByBroker)} | ${n(row.cpuUsPerPacket.daemon, 2)} | ${n(row.cpuUsPerPacket.client, 2)} |`);
  }
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.env.BENCH_CAPTURE_INSIDE) {
    inside().catch((err: Error) => {
      process.stderr.write(`bench capture: ${err.stack ?? err.message}\n`);
      process.exit(1);
    });
  } else {
    runCaptureBench().then((r) => process.stdout.write(`${renderCapture(r)}\n`)).catch((err: Error) => {
      process.stderr.write(`bench capture: ${err.stack ?? err.message}\n`);
      process.exitCode = 1;
    });
  }
}
