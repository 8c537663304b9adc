// Summaries of measured samples and CPU time of other processes.
import { readFileSync } from 'node:fs';

export interface Latency {
  /** Round trips measured. */
  n: number;
  /** Microseconds. */
  p50: number;
  p90: number;
  p99: number;
  min: number;
  mean: number;
}

/** Nearest-rank percentile of ascending `sorted`. */
function rank(sorted: Float64Array, p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Summarises samples given in microseconds. */
export function summarize(samplesUs: Float64Array): Latency {
  const s = Float64Array.from(samplesUs).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, p50: rank(s, 50), p90: rank(s, 90), p99: rank(s, 99), min: s[0]!, mean: sum / s.length };
}

/** The median of a few values. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Microseconds since `t0` (a process.hrtime.bigint() value). */
export function usSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1000;
}

/** CPU time (user + system, all threads) of process `pid` so far, in microseconds; clock-tick
 * resolution (10 ms at the usual CLK_TCK of 100), so only meaningful over long phases. */
export function processCpuUs(pid: number, clkTck: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces): state is field 3.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / clkTck;
}

/** CPU time all CPUs spent busy (user, nice, system, irq, softirq) since boot, in microseconds. */
export function systemBusyUs(clkTck: number): number {
  const [, user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  return ((user! + nice! + system! + irq! + softirq!) * 1e6) / clkTck;
}

/** CPU time of this process and of its children it has reaped, in microseconds. */
export function selfAndReapedCpuUs(clkTck: number): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime: fields 14-17
  return ((Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])) * 1e6) / clkTck;
}
