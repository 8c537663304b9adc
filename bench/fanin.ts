// The fan-in section: FANIN_CLIENTS client processes (bench/fanin-client.ts) × FANIN_CONNS
// connections each, every connection a closed 64 B echo loop, all at once, against the same
// daemon, TCP echo peer and bare gRPC server as the other scenarios. The clients are started
// once and run every fan-in scenario in FANIN_ROUNDS interleaved rounds; a round sets all of
// them up and warms them, then starts them together and measures FANIN_MS.
import { join } from 'node:path';
import { reportWithin, start, stopAll, type Child } from './children.js';
import { processCpuUs, summarize, type Latency } from './stats.js';
import { FANIN_CLIENTS, FANIN_CONNS, FANIN_MS, FANIN_ROUNDS, type FaninReport } from './protocol.js';

export const FANIN_ROWS = [
  ['fanin-native', 'native net, TCP loopback'],
  ['fanin-grpc', 'bare grpc-js bidi messages, Unix socket'],
  ['fanin-broker', 'broker: sendall, then recv until 64 B'],
  ['fanin-handoff', 'broker with hand-off'],
] as const;

export interface FaninResult {
  kind: 'fanin';
  /** Aggregate round trips/s of every round (the sum over all connections of count / wall). */
  rates: number[];
  latency: Latency;
  /** Round trips of the slowest client process (and connection) / the mean: 1 = fair, 0 = starved. */
  minClientShare: number;
  minConnShare: number;
  /** CPU µs per round trip by process (clients summed). */
  cpuUsPerOp: Record<string, number>;
  /** CPU time / wall time by process over the measured phases (1 = one core busy). */
  cores: Record<string, number>;
}

const SETUP_TIMEOUT_MS = 60_000;

/** Runs the fan-in scenarios named in `selected`; `pids` are the servers whose CPU is sampled. */
export async function runFanin(
  selected: ReadonlyArray<string>,
  here: string,
  env: Record<string, string>,
  pids: Record<string, number>,
  clkTck: number,
): Promise<Record<string, FaninResult>> {
  if (selected.length === 0) return {};
  const clients: Child[] = [];
  const byScenario = new Map<string, Array<{ reports: FaninReport[]; server: Record<string, number> }>>();
  try {
    for (let i = 0; i < FANIN_CLIENTS; i++) clients.push(start(`fan-in client ${i}`, [join(here, 'fanin-client.js')], env, { stdin: true }));
    for (let round = 1; round <= FANIN_ROUNDS; round++) {
      for (const name of selected) {
        process.stderr.write(`bench: fan-in round ${round}/${FANIN_ROUNDS}: ${name} (${FANIN_CLIENTS} processes × ${FANIN_CONNS} connections)\n`);
        for (const c of clients) c.send({ setup: name });
        await Promise.all(clients.map((c, i) => reportWithin(c, SETUP_TIMEOUT_MS, `fan-in client ${i} setup`)));
        const cpu0 = serverCpu(pids, clkTck);
        for (const c of clients) c.send({ go: FANIN_MS });
        const reports = await Promise.all(clients.map((c, i) => reportWithin<FaninReport>(c, FANIN_MS + SETUP_TIMEOUT_MS, `fan-in client ${i}`)));
        const cpu1 = serverCpu(pids, clkTck);
        const server = Object.fromEntries(Object.keys(cpu0).map((k) => [k, cpu1[k]! - cpu0[k]!]));
        byScenario.set(name, [...(byScenario.get(name) ?? []), { reports, server }]);
      }
    }
  } finally {
    await stopAll(clients);
  }
  return Object.fromEntries([...byScenario].map(([name, rounds]) => [name, pool(rounds)]));
}

function serverCpu(pids: Record<string, number>, clkTck: number): Record<string, number> {
  return Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, processCpuUs(pid, clkTck)]));
}

function pool(rounds: Array<{ reports: FaninReport[]; server: Record<string, number> }>): FaninResult {
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const rates = rounds.map(({ reports }) => sum(reports.map((r) => sum(r.counts) / (r.wallUs / 1e6))));
  const all = rounds.flatMap(({ reports }) => reports);
  const total = sum(all.map((r) => sum(r.counts)));
  const wallUs = sum(rounds.map(({ reports }) => Math.max(...reports.map((r) => r.wallUs))));
  // Shares within each round (every client ran the same time), the worst over the rounds.
  const minShare = (per: (r: FaninReport) => number[]): number =>
    Math.min(
      ...rounds.map(({ reports }) => {
        const rates = reports.flatMap((r) => per(r).map((c) => c / r.wallUs));
        return Math.min(...rates) / (sum(rates) / rates.length);
      }),
    );
  const cpu: Record<string, number> = { clients: sum(all.map((r) => r.cpuUs)) };
  for (const { server } of rounds) for (const [k, v] of Object.entries(server)) cpu[k] = (cpu[k] ?? 0) + v;
  return {
    kind: 'fanin',
    rates,
    latency: summarize(Float64Array.from(all.flatMap((r) => r.samples))),
    minClientShare: minShare((r) => [sum(r.counts)]),
    minConnShare: minShare((r) => r.counts),
    cpuUsPerOp: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / total])),
    cores: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / wallUs])),
  };
}

const pad = (s: string, n: number): string => s.padEnd(n);
const num = (s: string, n = 8): string => s.padStart(n);

/** The fan-in table and its ratios (added to `ratios`). */
export function renderFanin(r: Record<string, FaninResult>, ratios: Record<string, number>): string {
  if (Object.keys(r).length === 0) return '';
  const rate = (k: string): number => r[k]!.rates.reduce((a, b) => a + b, 0) / r[k]!.rates.length;
  const out: string[] = [];
  out.push(`Fan-in: ${FANIN_CLIENTS} client processes × ${FANIN_CONNS} connections, 64 B echo, closed loops (${FANIN_ROUNDS} interleaved rounds of ${FANIN_MS} ms, mean)`);
  out.push(`  ${pad('', 44)}${num('rt/s', 9)}${num('p50 µs')}${num('p99 µs')}${num('min cl')}${num('min cn')}   CPU µs per round trip; cores busy`);
  for (const [k, label] of FANIN_ROWS) {
    const f = r[k];
    if (!f) continue;
    const cpu = Object.entries(f.cpuUsPerOp)
      .filter(([p]) => f.cores[p]! >= 0.005)
      .map(([p, v]) => `${p} ${v.toFixed(1)}`)
      .join(', ');
    const cores = Object.entries(f.cores)
      .filter(([, v]) => v >= 0.005)
      .map(([p, v]) => `${p} ${v.toFixed(2)}`)
      .join(', ');
    out.push(`  ${pad(label, 44)}${num(rate(k).toFixed(0), 9)}${num(f.latency.p50.toFixed(0))}${num(f.latency.p99.toFixed(0))}${num(f.minClientShare.toFixed(2))}${num(f.minConnShare.toFixed(2))}   ${cpu}; ${cores}`);
  }
  out.push(`  (min cl / min cn: round trips/s of the slowest client process / connection over the mean; 1 = fair)`);
  out.push('');
  const ratio = (label: string, a: string, b: string, name: string): void => {
    if (!r[a] || !r[b]) return void out.push(`  ${pad(label, 44)}${num('—', 9)}`);
    const v = rate(a) / rate(b);
    ratios[name] = v;
    out.push(`  ${pad(label, 44)}${num(`${v.toFixed(2)}×`, 9)}`);
  };
  out.push(`  ${pad('ratios, aggregate round trips/s', 44)}`);
  ratio('broker / native', 'fanin-broker', 'fanin-native', 'fanin.broker/native');
  ratio('broker / bare gRPC', 'fanin-broker', 'fanin-grpc', 'fanin.broker/grpc');
  ratio('bare gRPC / native', 'fanin-grpc', 'fanin-native', 'fanin.grpc/native');
  ratio('hand-off / native', 'fanin-handoff', 'fanin-native', 'fanin.handoff/native');
  return out.join('\n');
}
