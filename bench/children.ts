// The runner's child processes: started with piped output, each reporting JSON lines on
// stdout; all of them killed at the end whatever happens (and on exit, as a last resort).
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface Child {
  proc: ChildProcess;
  /** Resolves to the next JSON line the child writes on stdout. */
  nextReport<T>(): Promise<T>;
  /** Stderr lines so far (shown when something fails). */
  stderr: string[];
  /** Writes one JSON line to the child's stdin (started with `stdin: true`). */
  send(value: unknown): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

/** BENCH_CPU_PROF=DIR: every child writes a V8 CPU profile there when it exits (for investigations). */
const NODE_FLAGS = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];

export function start(label: string, args: string[], env: Record<string, string> = {}, opts: { stdin?: boolean } = {}): Child {
  const proc = spawn(process.execPath, [...NODE_FLAGS, ...args], { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  live.add(proc);
  proc.stdin?.on('error', () => undefined); // a child that died: its exit is reported instead
  let closed = false;
  // 'close' (not 'exit'): stdout is drained by then, so a last report is never lost.
  const exited = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  void exited.then(() => {
    closed = true;
    live.delete(proc);
  });
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(...d.split('\n').filter(Boolean)));
  const lines: string[] = [];
  const waiters: Array<(line: string | null) => void> = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  void exited.then(() => {
    for (const w of waiters.splice(0)) w(null);
  });
  const fail = (why: string): Error => new Error(`${label} ${why}${stderr.length ? `:\n  ${stderr.join('\n  ')}` : ''}`);
  return {
    proc,
    stderr,
    async nextReport<T>(): Promise<T> {
      const line = lines.shift() ?? (await new Promise<string | null>((resolve) => (closed ? resolve(null) : waiters.push(resolve))));
      if (line === null) throw fail(`exited (code ${proc.exitCode}, signal ${proc.signalCode}) without reporting`);
      try {
        return JSON.parse(line) as T;
      } catch {
        throw fail(`wrote a line that is not JSON: ${line}`);
      }
    },
    send(value: unknown) {
      proc.stdin!.write(`${JSON.stringify(value)}\n`);
    },
    async stop(graceMs = 2000) {
      if (closed) return;
      // A child reading commands on stdin exits by itself when it closes; a client exits by
      // itself after its report. Either way with BENCH_CPU_PROF it writes its profile (SIGTERM would lose it).
      if (proc.stdin && !proc.stdin.destroyed) proc.stdin.end();
      if (proc.stdin || NODE_FLAGS.length) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
        clearTimeout(timer);
      }
      if (closed) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Kills every child still running (SIGTERM, then SIGKILL). */
export async function stopAll(children: Child[]): Promise<void> {
  await Promise.all(children.map((c) => c.stop()));
}

/** Rejects unless `child` reports within `ms`; kills it then. */
export async function reportWithin<T>(child: Child, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.proc.kill('SIGKILL');
      reject(new Error(`${label} did not report within ${ms / 1000} s`));
    }, ms);
  });
  try {
    return await Promise.race([child.nextReport<T>(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once a Unix socket at `path` accepts connections; rejects if `child` exits first. */
export async function waitListening(path: string, child: Child, ms: number, label: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new Error(`${label} exited early (code ${child.proc.exitCode}):\n  ${child.stderr.join('\n  ')}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(path, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${label} is not listening on ${path} after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
