// `npm run bench`: end-to-end figures of the broker against baselines measured in the same run.
// Processes are placed as users run them, each its own and none pinned: the daemon (started
// here, as the current user, on a temp socket), the TCP peers (echo / sink / source on
// 127.0.0.1), a bare grpc-js server (the gRPC floor), and a fresh client process per scenario.
// Prints a table and writes it as JSON to bench/results/latest.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { reportWithin, start, stopAll, waitListening, type Child } from './children.js';
import { renderCapture, runCaptureBench } from './capture.js';
import { FANIN_ROWS, renderFanin, runFanin, type FaninResult } from './fanin.js';
import { median, processCpuUs, selfAndReapedCpuUs, summarize, systemBusyUs, type Latency } from './stats.js';
import {
  BULK_BYTES, BULK_REPS, CHUNK_BYTES, ECHO_BYTES, ECHO_ITERATIONS, ECHO_WARMUP, ROUNDS,
  DGRAM_BYTES, DGRAM_MS,
  type BulkReport, type DgramReport, type EchoReport, type PeerPorts,
} from './protocol.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '..', '..');
const RESULTS = join(ROOT, 'bench', 'results', 'latest.json');
/** Longest a single scenario may take before it is killed. */
const SCENARIO_TIMEOUT_MS = 60_000;

function machine() {
  const cpu = cpus();
  const grpcVersion = (createRequire(import.meta.url)('@grpc/grpc-js/package.json') as { version: string }).version;
  let commit = 'unknown';
  try {
    const git = (...args: string[]): string => execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    commit = git('rev-parse', '--short', 'HEAD');
    // The build is of the working tree: say when the code measured is not exactly the commit.
    if (git('status', '--porcelain', '--', 'client', 'daemon', 'native', 'proto') !== '') commit += ' + uncommitted changes';
  } catch {
    // not a checkout
  }
  return {
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    grpcJs: grpcVersion,
    uid: process.getuid?.() ?? -1,
    commit,
  };
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

const LATENCY_ROWS = [
  ['echo-native', 'native net, TCP loopback'],
  ['echo-grpc', 'bare grpc-js bidi message, Unix socket'],
  ['echo-broker', 'broker: sendall, then recv until 64 B'],
  ['echo-handoff', 'broker with hand-off: the same, fd in-process'],
  ['op-broker', 'broker: getsockname (no socket I/O)'],
] as const;

const BULK_ROWS = [
  ['send-native', 'send: native net → TCP sink'],
  ['send-broker', 'send: broker sendall → TCP sink'],
  ['send-handoff', 'send: hand-off sendall → TCP sink'],
  ['send-grpc', 'send: bare grpc-js stream → sink'],
  ['recv-native', 'recv: TCP source → native net'],
  ['recv-broker', 'recv: TCP source → broker recv(1 MiB)'],
  ['recv-handoff', 'recv: TCP source → hand-off recv(1 MiB)'],
  ['recv-grpc', 'recv: bare grpc-js stream ← source'],
] as const;

const DGRAM_ROWS = [
  ['dgram-send-native', 'UDP send: native dgram → UDP sink'],
  ['dgram-send-broker', 'UDP send: broker sendto → UDP sink'],
  ['dgram-send-handoff', 'UDP send: hand-off sendto → UDP sink'],
  ['dgram-recv-native', 'UDP recv: UDP source → native dgram'],
  ['dgram-recv-broker', 'UDP recv: UDP source → broker recvfrom'],
  ['dgram-recv-handoff', 'UDP recv: UDP source → hand-off recvfrom'],
  ['raw-send-broker', 'raw send: broker IPPROTO_UDP sendto → sink'],
  ['raw-send-handoff', 'raw send: hand-off IPPROTO_UDP sendto'],
  ['raw-recv-broker', 'raw recv: broker IPPROTO_UDP recvfrom'],
  ['raw-recv-handoff', 'raw recv: hand-off IPPROTO_UDP recvfrom'],
] as const;

/** A datagram scenario's pooled rounds. */
interface DgramResult {
  kind: 'dgram';
  /** Datagrams/s of each round. */
  rates: number[];
  /** CPU µs per datagram, by process. */
  cpuUsPerOp: Record<string, number>;
  /** Send: fraction of the datagrams sent that the sink counted. */
  delivered?: number;
  /** Recv: datagrams lost on the way (sent again). */
  lost?: number;
  skipped?: string;
}

/** An echo scenario's pooled rounds. */
interface EchoResult {
  kind: 'echo';
  latency: Latency;
  /** Broker echo only: until sendall() resolved, and from then until the echo was back. */
  parts?: Record<string, Latency>;
  /** CPU µs per round trip, by process, over the measured phases. */
  cpuUsPerOp: Record<string, number>;
}

/** A bulk scenario's pooled rounds. */
interface BulkResult {
  kind: 'bulk';
  /** MiB/s of each measured transfer. */
  mibps: number[];
  /** CPU time / wall time over the measured transfers, by process (1 = one core busy). */
  cores: Record<string, number>;
  /** Broker recv only: mean bytes a recv(1 MiB) call returned. */
  bytesPerRecv?: number;
}

type Results = Record<string, EchoResult | BulkResult | FaninResult | DgramResult>;

function sumBy(reports: Array<{ cpuUs: Record<string, number> }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.cpuUs)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function pool(reports: Array<EchoReport | BulkReport | DgramReport>): EchoResult | BulkResult | DgramResult {
  if (reports[0]!.kind === 'dgram') {
    const d = reports as DgramReport[];
    const skipped = d.find((r) => r.skipped)?.skipped;
    if (skipped) return { kind: 'dgram', rates: [], cpuUsPerOp: {}, skipped };
    const n = d.reduce((sum, r) => sum + r.count, 0);
    const sent = d.every((r) => r.delivered !== undefined);
    return {
      kind: 'dgram',
      rates: d.map((r) => r.count / (r.wallUs / 1e6)),
      cpuUsPerOp: Object.fromEntries(Object.entries(sumBy(d)).map(([k, v]) => [k, v / n])),
      delivered: sent ? d.reduce((sum, r) => sum + r.delivered!, 0) / n : undefined,
      lost: sent ? undefined : d.reduce((sum, r) => sum + (r.lost ?? 0), 0),
    };
  }
  if (reports[0]!.kind === 'echo') {
    const echo = reports as EchoReport[];
    const all = (pick: (r: EchoReport) => number[]): Float64Array => Float64Array.from(echo.flatMap(pick));
    const n = echo.reduce((sum, r) => sum + r.samples.length, 0);
    return {
      kind: 'echo',
      latency: summarize(all((r) => r.samples)),
      parts: echo[0]!.parts && { sendall: summarize(all((r) => r.parts!.sendall)), recv: summarize(all((r) => r.parts!.recv)) },
      cpuUsPerOp: Object.fromEntries(Object.entries(sumBy(echo)).map(([k, v]) => [k, v / n])),
    };
  }
  const bulk = reports as BulkReport[];
  const wall = bulk.reduce((sum, r) => sum + r.wallUs, 0);
  const calls = bulk.reduce((sum, r) => sum + (r.recvCalls ?? 0), 0);
  const mibps = bulk.flatMap((r) => r.mibps);
  return {
    kind: 'bulk',
    mibps,
    cores: Object.fromEntries(Object.entries(sumBy(bulk)).map(([k, v]) => [k, v / wall])),
    bytesPerRecv: calls > 0 ? (BULK_BYTES * mibps.length) / calls : undefined,
  };
}

const f1 = (v: number): string => v.toFixed(1);
const fx = (v: number): string => `${v.toFixed(2)}×`;
const pad = (s: string, n: number): string => s.padEnd(n);
const num = (s: string, n = 8): string => s.padStart(n);

function cpuCell(cpu: Record<string, number>, fmt: (v: number) => string): string {
  // Processes idle in a scenario (a timer tick or so) would only clutter the row.
  return Object.entries(cpu)
    .filter(([, v]) => Number(fmt(v)) > 0)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(', ');
}

/** The datagram table and its ratios (through `ratio`, which records them). */
function renderDgram(r: Results, ratio: (name: string, a: string, b: string, value: (k: string) => number) => string): string[] {
  if (!DGRAM_ROWS.some(([k]) => k in r)) return [];
  const out: string[] = [];
  out.push(`Datagrams: ${DGRAM_BYTES} B payloads, each call awaited (a Python loop), datagrams/s (median of ${ROUNDS} rounds of ${DGRAM_MS} ms)`);
  out.push(`  ${pad('', 44)}${num('dgram/s', 9)}${num('min', 9)}${num('max', 9)}   CPU µs per datagram`);
  for (const [k, label] of DGRAM_ROWS) {
    const d = r[k] as DgramResult | undefined;
    if (!d) continue;
    if (d.skipped) {
      out.push(`  ${pad(label, 44)}   skipped: ${d.skipped}`);
      continue;
    }
    const extra = d.delivered !== undefined ? `; ${(100 * d.delivered).toFixed(1)}% reached the sink` : d.lost ? `; ${d.lost} lost` : '';
    out.push(`  ${pad(label, 44)}${num(median(d.rates).toFixed(0), 9)}${num(Math.min(...d.rates).toFixed(0), 9)}${num(Math.max(...d.rates).toFixed(0), 9)}   ${cpuCell(d.cpuUsPerOp, (v) => v.toFixed(1))}${extra}`);
  }
  out.push('');
  const dgramRatio = (label: string, a: string, b: string, name: string): void => {
    const ok = (k: string): boolean => k in r && !(r[k] as DgramResult).skipped;
    out.push(`  ${pad(label, 44)}${ok(a) && ok(b) ? ratio(name, a, b, (k) => median((r[k] as DgramResult).rates)) : num('—')}`);
  };
  dgramRatio('broker / native, UDP send', 'dgram-send-broker', 'dgram-send-native', 'dgram.send.broker/native');
  dgramRatio('broker / native, UDP recv', 'dgram-recv-broker', 'dgram-recv-native', 'dgram.recv.broker/native');
  dgramRatio('hand-off / native, UDP send', 'dgram-send-handoff', 'dgram-send-native', 'dgram.send.handoff/native');
  dgramRatio('hand-off / native, UDP recv', 'dgram-recv-handoff', 'dgram-recv-native', 'dgram.recv.handoff/native');
  dgramRatio('raw broker / native UDP, send', 'raw-send-broker', 'dgram-send-native', 'raw.send.broker/native');
  dgramRatio('raw broker / native UDP, recv', 'raw-recv-broker', 'dgram-recv-native', 'raw.recv.broker/native');
  dgramRatio('raw hand-off / native UDP, send', 'raw-send-handoff', 'dgram-send-native', 'raw.send.handoff/native');
  dgramRatio('raw hand-off / native UDP, recv', 'raw-recv-handoff', 'dgram-recv-native', 'raw.recv.handoff/native');
  out.push('');
  return out;
}

/** Cores other processes (not this run's) kept busy on average while the bench ran. */
type OtherLoad = number;

function render(m: ReturnType<typeof machine>, r: Results, elapsedS: number, otherCores: OtherLoad): { text: string; ratios: Record<string, number> } {
  const out: string[] = [];
  const lat = (k: string): Latency => (r[k] as EchoResult).latency;
  const bulk = (k: string): number => median((r[k] as BulkResult).mibps);
  out.push(`sockbroker bench — ${new Date().toISOString()} — commit ${m.commit}`);
  out.push(`machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}; Node ${m.node}, grpc-js ${m.grpcJs}; uid ${m.uid}`);
  out.push('processes: daemon, TCP peer, bare gRPC server, one client per scenario; none pinned');
  // Not the load average: `npm run bench` builds just before, which raises it.
  out.push(`other work on the machine: ${otherCores.toFixed(2)} cores busy on average during the run${otherCores > 0.1 ? ' — expect noisy figures' : ''}`);
  out.push('');
  out.push(`${ECHO_BYTES}-byte echo round trip, µs (${ECHO_ITERATIONS} measured in ${ROUNDS} interleaved rounds, each after ${ECHO_WARMUP} warm-up)`);
  out.push(`  ${pad('', 44)}${num('p50')}${num('p90')}${num('p99')}${num('mean')}   CPU µs per round trip`);
  for (const [k, label] of LATENCY_ROWS) {
    if (!(k in r)) continue;
    const e = r[k] as EchoResult;
    const l = e.latency;
    out.push(`  ${pad(label, 44)}${num(f1(l.p50))}${num(f1(l.p90))}${num(f1(l.p99))}${num(f1(l.mean))}   ${cpuCell(e.cpuUsPerOp, (v) => v.toFixed(0))}`);
    if (e.parts) {
      for (const [part, pl] of Object.entries(e.parts)) {
        out.push(`  ${pad(`  of which ${part === 'sendall' ? 'until sendall() resolved' : 'then recv until 64 B'}`, 44)}${num(f1(pl.p50))}${num(f1(pl.p90))}${num(f1(pl.p99))}${num(f1(pl.mean))}`);
      }
    }
  }
  // Each ratio needs both of its scenarios (BENCH_ONLY may leave some out).
  const ratios: Record<string, number> = {};
  const ratio = (name: string, a: string, b: string, value: (scenario: string) => number): string => {
    if (!(a in r) || !(b in r)) return num('—');
    const v = value(a) / value(b);
    ratios[name] = v;
    return num(fx(v));
  };
  const echoRatio = (label: string, a: string, b: string, name: string): void => {
    const p50 = ratio(`echo.p50.${name}`, a, b, (k) => lat(k).p50);
    const p99 = ratio(`echo.p99.${name}`, a, b, (k) => lat(k).p99);
    out.push(`  ${pad(label, 44)}${p50}${p99}`);
  };
  out.push('');
  out.push(`  ${pad('ratios', 44)}${num('p50')}${num('p99')}`);
  echoRatio('broker / native', 'echo-broker', 'echo-native', 'broker/native');
  echoRatio('broker / bare gRPC', 'echo-broker', 'echo-grpc', 'broker/grpc');
  echoRatio('bare gRPC / native', 'echo-grpc', 'echo-native', 'grpc/native');
  echoRatio('hand-off / native', 'echo-handoff', 'echo-native', 'handoff/native');
  out.push('');
  out.push(`Bulk: ${BULK_BYTES >> 20} MiB in ${CHUNK_BYTES >> 20} MiB calls, MiB/s (median of ${BULK_REPS} in ${ROUNDS} interleaved rounds, each after a warm-up transfer)`);
  out.push(`  ${pad('', 44)}${num('median')}${num('min')}${num('max')}   CPU, cores busy`);
  for (const [k, label] of BULK_ROWS) {
    if (!(k in r)) continue;
    const b = r[k] as BulkResult;
    out.push(`  ${pad(label, 44)}${num(median(b.mibps).toFixed(0))}${num(Math.min(...b.mibps).toFixed(0))}${num(Math.max(...b.mibps).toFixed(0))}   ${cpuCell(b.cores, (v) => v.toFixed(2))}`);
    if (b.bytesPerRecv !== undefined) out.push(`  ${pad('  mean bytes per recv call', 44)}${num((b.bytesPerRecv / 1024).toFixed(0))} KiB`);
  }
  out.push('');
  const bulkRatio = (label: string, a: string, b: string, name: string): void => {
    out.push(`  ${pad(label, 44)}${ratio(name, a, b, bulk)}`);
  };
  bulkRatio('broker / native, send', 'send-broker', 'send-native', 'send.broker/native');
  bulkRatio('broker / native, recv', 'recv-broker', 'recv-native', 'recv.broker/native');
  bulkRatio('bare gRPC / native, send', 'send-grpc', 'send-native', 'send.grpc/native');
  bulkRatio('bare gRPC / native, recv', 'recv-grpc', 'recv-native', 'recv.grpc/native');
  bulkRatio('broker / bare gRPC, send', 'send-broker', 'send-grpc', 'send.broker/grpc');
  bulkRatio('broker / bare gRPC, recv', 'recv-broker', 'recv-grpc', 'recv.broker/grpc');
  bulkRatio('hand-off / native, send', 'send-handoff', 'send-native', 'send.handoff/native');
  bulkRatio('hand-off / native, recv', 'recv-handoff', 'recv-native', 'recv.handoff/native');
  out.push('');
  out.push(...renderDgram(r, ratio));
  const fanin = Object.fromEntries(Object.entries(r).filter(([, v]) => v.kind === 'fanin')) as Record<string, FaninResult>;
  const faninText = renderFanin(fanin, ratios);
  if (faninText) out.push(faninText, '');
  out.push(`total ${elapsedS.toFixed(1)} s`);
  return { text: out.join('\n'), ratios };
}

/** The scenarios to run: all, or those named in BENCH_ONLY (comma-separated), for investigations. */
function selectScenarios(): ReadonlyArray<readonly [string, string]> {
  const all = [...LATENCY_ROWS, ...BULK_ROWS, ...DGRAM_ROWS, ...FANIN_ROWS];
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter((s) => s && s !== 'capture');
  if (!only?.length) return process.env.BENCH_ONLY?.includes('capture') ? [] : all;
  const unknown = only.filter((n) => !all.some(([k]) => k === n));
  if (unknown.length) throw new Error(`BENCH_ONLY: unknown scenario ${unknown.join(', ')}; known: ${all.map(([k]) => k).join(', ')}`);
  return all.filter(([k]) => only.includes(k));
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const selected = selectScenarios();
  if (selected.length === 0) return; // BENCH_ONLY=capture
  const m = machine();
  const clkTck = clockTicks();
  const busy0 = systemBusyUs(clkTck);
  const ours0 = selfAndReapedCpuUs(clkTck);
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-'));
  const brokerPath = join(dir, 'sb.sock');
  const grpcPath = join(dir, 'grpc.sock');
  const children: Child[] = [];
  const onSignal = (sig: NodeJS.Signals): void => {
    void stopAll(children).finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let daemon: Child | undefined;
  try {
    daemon = start('daemon', [join(ROOT, 'dist', 'daemon', 'cli.js'), 'serve', '--listen', `unix:${brokerPath}`, '--log-level', 'warn']);
    children.push(daemon);
    const peer = start('peer', [join(HERE, 'peer-server.js')]);
    children.push(peer);
    const grpcServer = start('grpc server', [join(HERE, 'grpc-echo-server.js')], { BENCH_GRPC_PATH: grpcPath });
    children.push(grpcServer);
    const [peerInfo, grpcInfo] = await Promise.all([
      reportWithin<{ pid: number; ports: PeerPorts }>(peer, 10_000, 'peer'),
      reportWithin<{ pid: number }>(grpcServer, 10_000, 'grpc server'),
      waitListening(brokerPath, daemon, 10_000, 'daemon'),
    ]);
    const env = {
      BENCH_BROKER: `unix:${brokerPath}`,
      BENCH_GRPC_PATH: grpcPath,
      BENCH_PEERS: JSON.stringify(peerInfo.ports),
      BENCH_PIDS: JSON.stringify({ daemon: daemon.proc.pid, peer: peerInfo.pid, grpc: grpcInfo.pid }),
      BENCH_CLK_TCK: String(clkTck),
    };
    const reports = new Map<string, Array<EchoReport | BulkReport | DgramReport>>();
    const isFanin = (name: string): boolean => name.startsWith('fanin-');
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, label] of selected.filter(([k]) => !isFanin(k))) {
        process.stderr.write(`bench: round ${round}/${ROUNDS}: ${label}\n`);
        const count = Math.ceil((name.startsWith('echo') || name.startsWith('op') ? ECHO_ITERATIONS : BULK_REPS) / ROUNDS);
        const client = start(`client ${name}`, [join(HERE, 'client.js'), name], { ...env, BENCH_COUNT: String(count) });
        children.push(client);
        const report = await reportWithin<EchoReport | BulkReport | DgramReport>(client, SCENARIO_TIMEOUT_MS, `client ${name}`);
        await client.stop();
        children.splice(children.indexOf(client), 1);
        reports.set(name, [...(reports.get(name) ?? []), report]);
      }
    }
    const fanin = await runFanin(
      selected.filter(([k]) => isFanin(k)).map(([k]) => k),
      HERE,
      env,
      { daemon: daemon.proc.pid!, peer: peerInfo.pid, grpc: grpcInfo.pid },
      clkTck,
    );
    const results: Results = { ...Object.fromEntries([...reports].map(([name, r]) => [name, pool(r)])), ...fanin };
    // The servers are still running: their CPU counts as ours; the clients' is in our reaped children's.
    const servers = [daemon.proc.pid!, peerInfo.pid, grpcInfo.pid].reduce((sum, pid) => sum + processCpuUs(pid, clkTck), 0);
    const ours = selfAndReapedCpuUs(clkTck) - ours0 + servers;
    const otherCores = Math.max(0, systemBusyUs(clkTck) - busy0 - ours) / ((Date.now() - t0) * 1000);
    const daemonWarnings = daemon.stderr.slice();
    const { text, ratios } = render(m, results, (Date.now() - t0) / 1000, otherCores);
    process.stdout.write(`\n${text}\n`);
    if (daemonWarnings.length) process.stdout.write(`\ndaemon logged:\n  ${daemonWarnings.join('\n  ')}\n`);
    mkdirSync(dirname(RESULTS), { recursive: true });
    writeFileSync(
      RESULTS,
      `${JSON.stringify({ date: new Date().toISOString(), machine: m, config: { ECHO_BYTES, ECHO_WARMUP, ECHO_ITERATIONS, CHUNK_BYTES, BULK_BYTES, BULK_REPS, ROUNDS, scenarios: selected.map(([k]) => k) }, results, ratios, otherCores }, null, 2)}\n`,
    );
    process.stdout.write(`\nresults: ${RESULTS}\n`);
  } catch (err) {
    // A client that lost its session says little: the daemon's own last words say why.
    const { exitCode, signalCode } = daemon?.proc ?? {};
    if (exitCode != null || signalCode != null) (err as Error).message += `\nthe daemon exited (code ${exitCode}, signal ${signalCode})`;
    if (daemon && daemon.stderr.length > 0) (err as Error).message += `\ndaemon stderr:\n  ${daemon.stderr.slice(-20).join('\n  ')}`;
    throw err;
  } finally {
    await stopAll(children);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The capture section (bench/capture.ts): run unless BENCH_ONLY names other scenarios only. */
async function captureSection(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  if (only && !only.split(',').map((s) => s.trim()).includes('capture')) return;
  const r = await runCaptureBench();
  process.stdout.write(`\n${renderCapture(r)}\n`);
  mkdirSync(dirname(RESULTS), { recursive: true });
  if (r) writeFileSync(RESULTS.replace(/\.json$/, '-capture.json'), `${JSON.stringify({ date: new Date().toISOString(), ...r }, null, 2)}\n`);
}

main().then(captureSection).catch((err: Error) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exitCode = 1;
});
