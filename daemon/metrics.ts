// Metrics. The daemon's hot paths bump plain numbers here (a Map lookup and an add: no label
// strings are built per call, nothing is allocated once a label set has been seen); they become
// Prometheus metrics only when scraped, through prom-client collect() callbacks. Label values
// come from bounded sets only — operation names, errno names, gRPC code names, grant names,
// families, policy rule names — never a uid, pid or session id.
import http from 'node:http';
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { status as Code } from '@grpc/grpc-js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { linux as C } from '../native/constants.js';
import type { BrokerError } from './errors.js';
import type { Listen } from './server.js';
import type { Session, Sessions } from './sessions.js';

/** outer key → inner key → count. */
type Table = Map<string, Map<string, number>>;

function bump(table: Table, a: string, b: string, n = 1): void {
  let inner = table.get(a);
  if (!inner) table.set(a, (inner = new Map()));
  inner.set(b, (inner.get(b) ?? 0) + n);
}

const calls: Table = new Map();
const denials = new Map<string, number>();
const quotas = new Map<string, number>();
const bytes = { in: 0, out: 0 };
const sessionsOpened = { n: 0 };
const handoffs = new Map<string, number>();
const readAheadDropped = { n: 0 };

/** What metrics read of a capture (daemon/capture.ts's counters). */
export interface CaptureCounts {
  captured: number;
  capturedBytes: number;
  droppedByKernel: number;
  droppedByBroker: number;
}

const liveCaptures = new Map<object, { session: Session; stats: () => CaptureCounts }>();
const endedCaptures = { started: 0, captured: 0, capturedBytes: 0, droppedByKernel: 0, droppedByBroker: 0 };

const CODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Code).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k]));

/** A failed call's outcome label: the errno name for OS errors, else the gRPC code name. */
export function outcomeOf(err: BrokerError): string {
  return err.metadata.kind === 'os' ? err.reason : (CODE_NAMES[err.code] ?? 'UNKNOWN');
}

/** One call of `op` ended: outcome 'ok', an errno name or a gRPC code name. */
export function countCall(op: string, outcome: string): void {
  bump(calls, op, outcome);
}

/** Bytes a caller's socket received (in) or sent (out); also kept on the session for `status`. */
export function countBytesIn(session: Session, n: number): void {
  session.bytesIn += n;
  bytes.in += n;
}

export function countBytesOut(session: Session, n: number): void {
  session.bytesOut += n;
  bytes.out += n;
}

/** The policy refused an action; `grant` names what would have allowed it. */
export function countDenial(grant: string): void {
  denials.set(grant, (denials.get(grant) ?? 0) + 1);
}

/** A quota or bound refused something: `which` is its name (bytes_per_call, sockets_per_session, ...). */
export function countQuota(which: string): void {
  quotas.set(which, (quotas.get(which) ?? 0) + 1);
}

/** A hand-off step: offered (ticket issued), handed_off (fd sent), expired (ticket unclaimed), dropped (side-channel request failed). */
export function countHandoff(outcome: 'offered' | 'handed_off' | 'expired' | 'dropped'): void {
  handoffs.set(outcome, (handoffs.get(outcome) ?? 0) + 1);
}

/** Datagrams read ahead for a recv whose reply could not be delivered (cancelled, stream gone). */
export function countReadAheadDropped(n: number): void {
  readAheadDropped.n += n;
}

/**
 * A capture of `session` is running; `stats` reads its counters (at scrape time only). Call the
 * returned function once with its final counters when it ends.
 */
export function trackCapture(session: Session, stats: () => CaptureCounts): (final: CaptureCounts) => void {
  const key = {};
  liveCaptures.set(key, { session, stats });
  endedCaptures.started++;
  return (final) => {
    if (!liveCaptures.delete(key)) return;
    endedCaptures.captured += final.captured;
    endedCaptures.capturedBytes += final.capturedBytes;
    endedCaptures.droppedByKernel += final.droppedByKernel;
    endedCaptures.droppedByBroker += final.droppedByBroker;
  };
}

/** Running captures of `session` (for `status`). */
export function capturesOf(session: Session): number {
  let n = 0;
  for (const c of liveCaptures.values()) if (c.session === session) n++;
  return n;
}

/** Totals over ended and running captures. */
function captureTotals(): typeof endedCaptures {
  const t = { ...endedCaptures };
  for (const c of liveCaptures.values()) {
    const s = c.stats();
    t.captured += s.captured;
    t.capturedBytes += s.capturedBytes;
    t.droppedByKernel += s.droppedByKernel;
    t.droppedByBroker += s.droppedByBroker;
  }
  return t;
}

export function countSessionOpened(): void {
  sessionsOpened.n++;
}

// AF_* names by number; aliases (AF_LOCAL, AF_FILE, AF_ROUTE) give way to the usual names.
const familyNames = new Map<number, string>(Object.entries(C).filter(([k]) => /^AF_/.test(k) && !['AF_LOCAL', 'AF_FILE', 'AF_ROUTE'].includes(k)).map(([k, v]) => [v, k]));

/** The label of a family number (a number the table lacks stays a number: still bounded by the kernel). */
export function familyName(family: number): string {
  return familyNames.get(family) ?? String(family);
}

/** A registry whose metrics read the counters above and the live sessions. */
export function createRegistry(sessions: Sessions): Registry {
  const register = new Registry();
  // Process and Node metrics: open fds, event-loop delay (monitorEventLoopDelay), memory, CPU.
  collectDefaultMetrics({ register });
  // Gauges named *_total (promtool's lint refuses them), each a copy of the one without the suffix.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) register.removeSingleMetric(name);
  new Gauge({
    name: 'sockbroker_sessions',
    help: 'Open sessions, by the policy rule that first matches their identity (default: none; host-root)',
    labelNames: ['rule'],
    registers: [register],
    collect() {
      this.reset();
      for (const s of sessions.all()) this.inc({ rule: s.rule });
    },
  });
  new Gauge({
    name: 'sockbroker_sockets',
    help: 'Open sockets, by family and by the policy rule of their session',
    labelNames: ['family', 'rule'],
    registers: [register],
    collect() {
      this.reset();
      for (const s of sessions.all()) for (const e of s.table.entries()) this.inc({ family: familyName(e.info.family), rule: s.rule });
    },
  });
  const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter) => void): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        fill(this);
      },
    });
  };
  counter('sockbroker_sessions_opened_total', 'Sessions opened', [], (c) => c.inc(sessionsOpened.n));
  counter('sockbroker_calls_total', 'Socket operations ended, by operation and outcome (ok, an errno name, or a gRPC code name)', ['op', 'outcome'], (c) => {
    for (const [op, m] of calls) for (const [outcome, n] of m) c.inc({ op, outcome }, n);
  });
  counter('sockbroker_bytes_total', "Bytes through callers' sockets: in = received from the network, out = sent", ['direction'], (c) => {
    c.inc({ direction: 'in' }, bytes.in);
    c.inc({ direction: 'out' }, bytes.out);
  });
  counter('sockbroker_policy_denials_total', 'Actions the policy refused, by the grant that would allow them', ['grant'], (c) => {
    for (const [grant, n] of denials) c.inc({ grant }, n);
  });
  counter('sockbroker_quota_breaches_total', 'Requests refused by a quota or bound, by its name', ['quota'], (c) => {
    for (const [quota, n] of quotas) c.inc({ quota }, n);
  });
  new Gauge({
    name: 'sockbroker_captures',
    help: 'Running packet captures (CaptureService streams)',
    registers: [register],
    collect() {
      this.set(liveCaptures.size);
    },
  });
  counter('sockbroker_captures_started_total', 'Packet captures started', [], (c) => c.inc(endedCaptures.started));
  counter('sockbroker_capture_packets_total', 'Captured packets: captured = delivered to the client, dropped_by_kernel = the ring was full, dropped_by_broker = the backpressure policy discarded them', ['outcome'], (c) => {
    const t = captureTotals();
    c.inc({ outcome: 'captured' }, t.captured);
    c.inc({ outcome: 'dropped_by_kernel' }, t.droppedByKernel);
    c.inc({ outcome: 'dropped_by_broker' }, t.droppedByBroker);
  });
  counter('sockbroker_capture_bytes_total', 'Bytes of captured packets delivered (as captured, after snaplen)', [], (c) => c.inc(captureTotals().capturedBytes));
  counter('sockbroker_handoffs_total', 'Socket hand-offs (SCM_RIGHTS) by outcome: offered, handed_off, expired, dropped', ['outcome'], (c) => {
    for (const [outcome, n] of handoffs) c.inc({ outcome }, n);
  });
  counter('sockbroker_read_ahead_dropped_total', 'Datagrams read ahead (RecvRequest.batch) for a recv whose reply could not be delivered', [], (c) => c.inc(readAheadDropped.n));
  return register;
}

export interface MetricsServer {
  address: string;
  close(): Promise<void>;
}

/** Serves GET /metrics (Prometheus text) on `listen`. */
export async function serveMetrics(listen: Listen, register: Registry): Promise<MetricsServer> {
  const srv = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    register.metrics().then(
      (text) => res.writeHead(200, { 'content-type': register.contentType }).end(text),
      (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  srv.headersTimeout = 10_000;
  srv.requestTimeout = 10_000;
  srv.maxConnections = 64;
  if (listen.kind === 'unix') {
    mkdirSync(dirname(listen.path), { recursive: true, mode: 0o755 });
    if (existsSync(listen.path) && lstatSync(listen.path).isSocket()) unlinkSync(listen.path);
  }
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    if (listen.kind === 'unix') srv.listen(listen.path, () => resolve());
    else srv.listen(listen.port, listen.host, () => resolve());
  });
  let address: string;
  if (listen.kind === 'unix') {
    chmodSync(listen.path, listen.mode);
    address = `unix:${listen.path}`;
  } else {
    const a = srv.address() as import('node:net').AddressInfo;
    address = `tcp:${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
        if (listen.kind === 'unix') {
          try {
            unlinkSync(listen.path);
          } catch {
            // already gone
          }
        }
      }),
  };
}
