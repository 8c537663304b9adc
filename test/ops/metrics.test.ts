// `serve --metrics`: after a scripted workload of a nobody client, a scrape shows the counters
// that workload moved (sessions and sockets by family and rule, calls by op and outcome, bytes,
// a policy denial, a quota breach), and promtool accepts the text as Prometheus exposition.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { runAsNobody, startDaemon, publicTempDir } from '../helpers/daemon.js';
import { SessionServiceClient } from '../../proto/gen/sockbroker/v1/session.js';
import { SocketServiceClient } from '../../proto/gen/sockbroker/v1/socket.js';
import dgram from 'node:dgram';
import { startCapture } from '../capture/daemon-helpers.js';
import { listSessions } from '../../client/admin.js';
import { policyFile } from '../privileged/helpers.js';

const POLICY = policyFile(`
rules:
  - name: nobody-ops
    match: { uid: 65534 }
    quotas: { bytes_per_call: 16 }
    # Every socket stays on the broker, so the workload's calls and bytes all pass through it.
    no_handoff: true
`);

/** GET /metrics over a Unix socket. */
function scrape(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

/** Samples by `name{label="v",...}` with labels sorted, so lookups do not depend on their order. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = m[2] ? [...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`).sort().join(',') : '';
    out.set(labels ? `${m[1]}{${labels}}` : m[1]!, Number(m[3]));
  }
  return out;
}

// The client scrapes while it still holds its session and sockets, then prints the text.
const WORKLOAD = (metricsPath: string): string => `
import { connect } from 'sockbroker';
import http from 'node:http';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const srv = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
await srv.bind(['127.0.0.1', 0]);
await srv.listen();
const c = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
await c.connect(await srv.getsockname());
const [conn] = await srv.accept();
await c.sendall(Buffer.from('hello'));
const got = await conn.recv(5);
let denied = '', breached = '';
try { await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); } catch (e) { denied = e.constructor.name; }
try { await c.send(Buffer.alloc(32)); } catch (e) { breached = e.code; }
const text = await new Promise((resolve, reject) => http.get({ socketPath: ${JSON.stringify(metricsPath)}, path: '/metrics' }, (res) => {
  let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => resolve(b));
}).on('error', reject));
await socket.disconnect();
console.log(JSON.stringify({ got: got.toString(), denied, breached, text }));
`;

test('a scrape after a workload shows what it moved, in valid exposition format', async (t) => {
  const metricsPath = join(publicTempDir('sb-metrics-'), 'metrics.sock');
  const d = await startDaemon({ args: ['--config', POLICY, '--metrics', `unix:${metricsPath}`] });
  try {
    t.true(await d.logged((l) => l.includes(`"metrics":"unix:${metricsPath}"`)));
    const idle = samples(await scrape(metricsPath));
    t.is(idle.get('sockbroker_sessions_opened_total'), 0);

    const r = await runAsNobody(WORKLOAD(metricsPath), { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.like(out, { got: 'hello', denied: 'PermissionError', breached: 'EMSGSIZE' });

    // promtool lints the exposition text (exit 0: it parses and follows the conventions).
    t.notThrows(() => execFileSync('promtool', ['check', 'metrics'], { input: out.text, stdio: ['pipe', 'pipe', 'pipe'] }));
    const during = samples(out.text);
    t.is(during.get('sockbroker_sessions{rule="nobody-ops"}'), 1);
    t.is(during.get('sockbroker_sockets{family="AF_INET",rule="nobody-ops"}'), 3, 'listener, client and accepted socket');
    t.is(during.get('sockbroker_calls_total{op="create",outcome="ok"}'), 2);
    t.is(during.get('sockbroker_calls_total{op="create",outcome="EPERM"}'), 1);
    t.is(during.get('sockbroker_calls_total{op="accept",outcome="ok"}'), 1);
    t.is(during.get('sockbroker_calls_total{op="send",outcome="EMSGSIZE"}'), 1);
    t.is(during.get('sockbroker_bytes_total{direction="out"}'), 5);
    t.is(during.get('sockbroker_bytes_total{direction="in"}'), 5);
    t.is(during.get('sockbroker_policy_denials_total{grant="sockets"}'), 1);
    t.is(during.get('sockbroker_quota_breaches_total{quota="bytes_per_call"}'), 1);
    t.true((during.get('process_open_fds') ?? 0) > 0);
    t.true(during.has('nodejs_eventloop_lag_p99_seconds'));
    // No identity ever becomes a label.
    t.false(/\b(uid|pid|session)="/.test(out.text));

    // The session ended: gauges fall back, counters stay.
    const after = samples(await scrape(metricsPath));
    t.is(after.get('sockbroker_sessions{rule="nobody-ops"}'), undefined);
    t.is(after.get('sockbroker_sessions_opened_total'), 1);
    t.is(after.get('sockbroker_bytes_total{direction="out"}'), 5);
  } finally {
    await d.stop();
  }
});

test('hand-offs are counted: a ticket offered, and expired when nobody claims it', async (t) => {
  const metricsPath = join(publicTempDir('sb-metrics-'), 'metrics.sock');
  process.env.SOCKBROKER_HANDOFF_TTL_MS = '200'; // the daemon inherits it
  const d = await startDaemon({ args: ['--metrics', `unix:${metricsPath}`] });
  const sessions = new SessionServiceClient(d.address, grpc.credentials.createInsecure());
  const sockets = new SocketServiceClient(d.address, grpc.credentials.createInsecure(), { channelOverride: sessions.getChannel() });
  try {
    const unary = <T>(f: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> => new Promise((res, rej) => f((e, r) => (e ? rej(e) : res(r))));
    const { sessionId } = await unary<{ sessionId: string }>((cb) => sessions.openSession({ resumeSessionId: '', hostNetwork: false }, cb));
    const md = new grpc.Metadata();
    md.set('sockbroker-session', sessionId);
    const created = await unary<{ handoffTicket?: Buffer }>((cb) => sockets.create({ family: 2, type: 1, protocol: 0, handoff: true }, md, cb));
    t.is(created.handoffTicket?.length, 16);
    let now = samples(await scrape(metricsPath));
    for (let i = 0; i < 200 && now.get('sockbroker_handoffs_total{outcome="expired"}') === undefined; i++) {
      await new Promise((r) => setTimeout(r, 50));
      now = samples(await scrape(metricsPath));
    }
    t.is(now.get('sockbroker_handoffs_total{outcome="expired"}'), 1);
    t.is(now.get('sockbroker_handoffs_total{outcome="offered"}'), 1);
    t.is(now.get('sockbroker_handoffs_total{outcome="handed_off"}'), undefined);
  } finally {
    sessions.close();
    await d.stop();
  }
});

test('captures are counted: running, started, packets captured; status shows the session\'s capture', async (t) => {
  const metricsPath = join(publicTempDir('sb-metrics-'), 'metrics.sock');
  const d = await startDaemon({ args: ['--metrics', `unix:${metricsPath}`] });
  const sender = dgram.createSocket('udp4');
  try {
    // Host root captures its own UDP datagrams on loopback, to a port nothing else uses.
    await new Promise<void>((r) => sender.bind(0, '127.0.0.1', () => r()));
    const port = sender.address().port;
    const run = await startCapture(d.address, { interfaces: ['lo'], filter: `udp and src port ${port}` });
    await run.armed;
    const n = 5;
    for (let i = 0; i < n; i++) await new Promise<void>((r) => sender.send(Buffer.from(`pkt-${i}`), 9, '127.0.0.1', () => r()));
    t.true(await run.until(() => run.packets.length >= n, 20_000), `captured ${run.packets.length}`);
    const during = samples(await scrape(metricsPath));
    t.is(during.get('sockbroker_captures'), 1);
    t.is(during.get('sockbroker_captures_started_total'), 1);
    t.true((during.get('sockbroker_capture_packets_total{outcome="captured"}') ?? 0) >= n);
    t.is(during.get('sockbroker_capture_packets_total{outcome="dropped_by_broker"}'), 0);
    t.true((during.get('sockbroker_capture_bytes_total') ?? 0) > 0);
    const status = await listSessions(d.address);
    t.deepEqual(status.sessions.map((x) => x.captures), [1]);
    run.close();
    await run.ended;
    let after = samples(await scrape(metricsPath));
    for (let i = 0; i < 200 && after.get('sockbroker_captures') !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = samples(await scrape(metricsPath));
    }
    t.is(after.get('sockbroker_captures'), 0);
    t.true((after.get('sockbroker_capture_packets_total{outcome="captured"}') ?? 0) >= n, 'ended captures stay counted');
  } finally {
    sender.close();
    await d.stop();
  }
});

test('metrics are off by default', async (t) => {
  const d = await startDaemon();
  try {
    t.false(d.logs.some((l) => l.includes('"metrics"')));
  } finally {
    await d.stop();
  }
});
