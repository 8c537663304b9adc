// Forced overload, as nobody in namespace A: a tiny ring and queue, a client that stops reading
// while a C sender floods lo. Under each backpressure policy every packet is either delivered or
// counted (captured + dropped by kernel + dropped by broker = received, nothing pending at the
// end), the drops land in the counter the policy names, each delivered packet is unique, and the
// daemon still answers other calls meanwhile.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { useTestNet } from '../helpers/netns.js';
import { until, withDaemon, worldCopy } from '../helpers/daemon.js';
import { policyFile } from '../privileged/helpers.js';
import { flood, nobodyInteractive, SCRIPT_PRELUDE } from './daemon-helpers.js';

const net = useTestNet(test);

const GRANT = policyFile(`
rules:
  - name: nobody-capture
    match: { uid: 65534 }
    grant:
      capture: { interfaces: [lo] }
`);

const SENT = 40_000;

const script = (backpressure: number) => `${SCRIPT_PRELUDE}
import * as grpc from '@grpc/grpc-js';
import { SessionServiceClient } from './dist/proto/gen/sockbroker/v1/session.js';
const c = await startCapture(address, { interfaces: ['lo'], filter: 'udp dst port 9999', bufferBytes: 262144, batchMaxBytes: 16384, queueBytes: 16384, batchMaxLatencyMs: 5, backpressure: ${backpressure} });
await c.armed;
c.pause();
say({ step: 'paused' });
await next(); // the flood ran
// The daemon answers while this capture is stuck behind its client.
const sessions = new SessionServiceClient(address, grpc.credentials.createInsecure());
const opened = await new Promise((res) => sessions.openSession({ resumeSessionId: '', hostNetwork: false }, (err, r) => res(!err && r.sessionId.length === 32)));
sessions.close();
const end = Date.now();
c.resume();
const complete = await c.complete(end, 60_000);
const seqs = new Set(c.packets.map((p) => Buffer.from(p.data).readUInt32LE(42)));
say({ opened, complete, stats: c.stats(), delivered: c.packets.length, unique: seqs.size });
c.close();
process.exit(0);
`;

for (const [name, bp] of [['BLOCK', 1], ['DROP_OLDEST', 2], ['DROP_NEWEST', 3]] as const) {
  test.serial(`overload under ${name}: every packet delivered or counted`, async (t) => {
    t.timeout(120_000);
    await withDaemon(async (d) => {
      const s = nobodyInteractive(net.a, d.address, script(bp), worldCopy());
      try {
        t.like(await s.step(), { step: 'paused' });
        const sent = Number(execFileSync('ip', ['netns', 'exec', net.a, flood(), '127.0.0.1', '9999', String(SENT), '0'], { encoding: 'utf8' }).trim());
        t.is(sent, SENT);
        s.say();
        const r = await s.step();
        t.true(r.opened, 'the daemon answered another call during the overload');
        t.true(r.complete);
        const st = r.stats;
        t.is(st.pending, 0);
        t.is(st.captured + st.droppedByKernel + st.droppedByBroker, st.received);
        t.is(r.delivered, st.captured);
        t.is(r.unique, st.captured, 'no packet delivered twice');
        t.true(st.received <= SENT && st.received > 0);
        if (name === 'BLOCK') {
          t.true(st.droppedByKernel > 0, 'the full ring drops in the kernel');
          t.is(st.droppedByBroker, 0);
        } else {
          t.true(st.droppedByBroker > 0, 'the broker drops under its policy');
        }
        t.true(await until(() => d.logs.some((l) => l.includes('"event":"capture.end"')), 10_000), 'an audit line ends the capture');
      } finally {
        s.cleanup();
      }
    }, { args: ['--config', GRANT] });
  });
}
