// Test fixtures: a live root daemon on a private socket (optionally in its own mount namespace
// with a hosts file the test controls, never real DNS), clients run as `nobody`, and fd counts.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, chmodSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { connect } from '../../client/index.js';

/** dist/ of this build (the tests run compiled). */
export const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ROOT = resolve(DIST, '..');

export interface Daemon {
  address: string;
  path: string;
  pid: number;
  proc: ChildProcess;
  /** Every address it listens on (unix:..., tcp:HOST:PORT), from its "listening" log line. */
  addresses: string[];
  /** Lines the daemon logged so far (pino JSON). */
  logs: string[];
  /** Waits up to `ms` for a logged line that `match`es (lines come through a pipe: never read at once). */
  logged(match: (line: string) => boolean, ms?: number): Promise<boolean>;
  /** Number of open fds of the daemon process. */
  fdCount(): number;
  /** Waits up to `ms` for the daemon to exit by itself (never signals it): its exit code, or 'running'. */
  waitExit(ms: number): Promise<number | null | 'running'>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface DaemonOptions {
  graceSeconds?: number;
  /** Contents of /etc/hosts as the daemon sees it (private mount namespace). */
  hosts?: string;
  /** Contents of /etc/services, /etc/protocols and /etc/nsswitch.conf as the daemon sees them. */
  services?: string;
  protocols?: string;
  nsswitch?: string;
  /** The daemon's host name, in a private UTS namespace. */
  hostname?: string;
  logLevel?: string;
  /** More `serve` arguments (--config FILE, --listen tcp:..., --insecure-loopback). */
  args?: string[];
  /** Run the daemon inside this `ip netns` namespace. */
  netns?: string;
  /** A command that execs the daemon (its argv follows), e.g. setpriv with a bounding set. */
  wrap?: string[];
  /** Extra environment for the daemon (NOTIFY_SOCKET, ...). */
  env?: Record<string, string>;
}

/** A world-readable temp dir (so `nobody` can reach sockets and files in it). */
export function publicTempDir(prefix = 'sb-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** Spawns `cmd` (inside `ip netns exec NS` when given; every step execs, so the pid is the daemon's). */
function spawnIn(netns: string | undefined, cmd: string, args: string[], wrap: string[] = [], env?: Record<string, string>): ChildProcess {
  const argv = [...wrap, cmd, ...args];
  const [c, a] = netns ? ['ip', ['netns', 'exec', netns, ...argv]] : [argv[0]!, argv.slice(1)];
  return spawn(c, a, { stdio: ['ignore', 'ignore', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
  const dir = publicTempDir();
  const path = join(dir, 'sb.sock');
  const args = [join(DIST, 'daemon', 'cli.js'), 'serve', '--listen', `unix:${path}`, '--grace-period', String(opts.graceSeconds ?? 2), '--log-level', opts.logLevel ?? 'info', ...(opts.args ?? [])];
  let proc: ChildProcess;
  const files = (['hosts', 'services', 'protocols', 'nsswitch'] as const).filter((k) => opts[k] !== undefined);
  if (files.length > 0 || opts.hostname !== undefined) {
    // A private mount namespace: the files are ours for this daemon only (and a private UTS
    // namespace for its host name). Each is bind-mounted over /etc/NAME.
    const steps: string[] = [];
    for (const k of files) {
      const f = join(dir, k);
      writeFileSync(f, opts[k]!);
      chmodSync(f, 0o644);
      steps.push(`mount --bind '${f}' /etc/${k === 'nsswitch' ? 'nsswitch.conf' : k}`);
    }
    const unshare = ['--mount', '--propagation', 'private'];
    if (opts.hostname !== undefined) {
      if (!/^[A-Za-z0-9.-]{1,64}$/.test(opts.hostname)) throw new Error(`bad test host name ${opts.hostname}`);
      unshare.push('--uts');
      steps.push(`echo '${opts.hostname}' > /proc/sys/kernel/hostname`);
    }
    proc = spawnIn(opts.netns, 'unshare', [...unshare, 'sh', '-c', `${steps.join(' && ')} && exec "$@"`, 'sh', ...(opts.wrap ?? []), process.execPath, ...args], [], opts.env);
  } else {
    proc = spawnIn(opts.netns, process.execPath, args, opts.wrap, opts.env);
  }
  const logs: string[] = [];
  let buf = '';
  let ready: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  proc.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      logs.push(line);
      if (line.includes('"event":"listening"')) ready();
    }
  });
  const exited = once(proc, 'exit');
  await Promise.race([readyP, exited.then(() => { throw new Error(`daemon exited early:\n${logs.join('\n')}`); })]);
  const pid = daemonPid(proc.pid!);
  const listening = JSON.parse(logs.find((l) => l.includes('"event":"listening"'))!);
  return {
    address: `unix:${path}`,
    addresses: listening.addresses ?? [],
    path,
    pid,
    proc,
    logs,
    logged: (match, ms = 10_000) => until(() => logs.some(match), ms),
    fdCount: () => readdirSync(`/proc/${pid}/fd`).length,
    async waitExit(ms: number) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
      const r = await Promise.race([exited.then(([code]) => code as number | null), timeout]);
      clearTimeout(timer);
      return r;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null) {
        rmSync(dir, { recursive: true, force: true });
        return proc.exitCode;
      }
      proc.kill(signal);
      const [code] = (await exited) as [number | null];
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** The node process itself (unshare execs into sh, which execs node: same pid). */
function daemonPid(pid: number): number {
  return pid;
}

/** Runs `fn` with a fresh daemon and always stops it. */
export async function withDaemon<T>(fn: (d: Daemon) => Promise<T>, opts?: DaemonOptions): Promise<T> {
  const d = await startDaemon(opts);
  try {
    return await fn(d);
  } finally {
    await d.stop();
  }
}

/** Where the world-readable copy of the build lives (made by scripts/test.mjs). */
export function worldCopy(): string {
  const dir = process.env.SOCKBROKER_WORLD_COPY;
  if (!dir || !existsSync(dir)) throw new Error('SOCKBROKER_WORLD_COPY is not set: run the tests through `npm test`');
  return dir;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs an ES module source as `nobody` (setpriv) from the world-readable copy of the build,
 * so `import { connect } from 'sockbroker'` resolves to this build. Resolves when it exits.
 */
export async function runAsNobody(source: string, env: Record<string, string> = {}, timeoutMs = 60_000, netns?: string, onStdout?: (soFar: string) => void): Promise<RunResult> {
  return spawnAsNobody(source, env, timeoutMs, netns, onStdout).done;
}

/** runAsNobody, also giving the process's pid (every step execs: it is node's) to signal it;
 * `onStdout` sees the output so far as it comes (to await a client's "ready" line). */
export function spawnAsNobody(source: string, env: Record<string, string> = {}, timeoutMs = 60_000, netns?: string, onStdout?: (soFar: string) => void): { pid: number; done: Promise<RunResult> } {
  const world = worldCopy();
  const file = join(world, `nobody-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, source);
  chmodSync(file, 0o644);
  const argv = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file];
  const proc = spawn(netns ? 'ip' : argv[0]!, netns ? ['netns', 'exec', netns, ...argv] : argv.slice(1), {
    cwd: world,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp', ...(process.env.SOCKBROKER_HANDOFF ? { SOCKBROKER_HANDOFF: process.env.SOCKBROKER_HANDOFF } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => {
    stdout += d;
    onStdout?.(stdout);
  });
  proc.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const done = (async () => {
    try {
      const [code] = (await once(proc, 'exit')) as [number | null];
      return { code, stdout, stderr };
    } finally {
      clearTimeout(timer);
      rmSync(file, { force: true });
    }
  })();
  return { pid: proc.pid!, done };
}

/**
 * Runs python3 in the daemon's mount and UTS namespaces (so it sees the same /etc/hosts,
 * /etc/services, ... and host name as the daemon): `input` on stdin, stdout returned.
 */
export function pythonInDaemonView(d: Daemon, args: string[], input = ''): string {
  return execFileSync('nsenter', ['-t', String(d.pid), '-m', '-u', 'python3', ...args], { input, encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** Runs python3 code and returns its stdout (the living reference for socket behaviour). */
export function python(code: string): string {
  return execFileSync('python3', ['-c', code], { encoding: 'utf8' });
}

/** Polls `cond` every 50 ms until it holds or `ms` pass; resolves to its last value. */
/** The daemon's fd count once its lazily opened fds (threadpool, epoll) exist: a session made and
 * disconnected, awaited until it has ended and its connection has closed. */
export async function warmBaseline(d: Daemon): Promise<number> {
  const ended = () => d.logs.filter((l) => l.includes('"event":"session.end"')).length;
  const before = ended();
  const warm = await connect(d.address);
  await (await warm.socket()).close();
  const withConnection = d.fdCount();
  await warm.disconnect();
  if (!(await until(() => ended() > before && d.fdCount() < withConnection, 10_000))) throw new Error('the warming session did not end');
  return d.fdCount();
}

export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return cond();
}
