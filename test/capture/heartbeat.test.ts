// An idle capture's heartbeats carry a watermark that follows the broker's clock (the time before
// which no packet can still come: the ring's block retire timeout and a margin behind it), every
// batch latency bound (100 ms here), so a merge of several captures never waits long for an idle
// one (client/capture-merge.ts has no clock of its own).
import test from 'ava';
import { useTestNet } from '../helpers/netns.js';
import { withDaemon } from '../helpers/daemon.js';
import { nobodyIn, policyFile } from '../privileged/helpers.js';

const net = useTestNet(test);

const GRANT = policyFile(`
rules:
  - name: nobody-capture
    match: { uid: 65534 }
    grant:
      capture: { interfaces: [lo] }
`);

const CLIENT = `
import { startCapture } from './dist/test/capture/daemon-helpers.js';
const c = await startCapture(process.env.SOCKBROKER_ADDRESS, { interfaces: ['lo'], filter: 'udp port 1', batchMaxLatencyMs: 100 });
await c.armed;
const lags = [];
for (let i = 0; i < 8; i++) {
  await new Promise((r) => setTimeout(r, 150));
  lags.push(Date.now() - c.watermarkMs());
}
c.close();
console.log(JSON.stringify({ lags }));
process.exit(0);
`;

test.serial("an idle capture's watermark advances with the broker's clock, every latency bound", async (t) => {
  t.timeout(60_000);
  await withDaemon(async (d) => {
    const { lags } = await nobodyIn(net.a, d.address, CLIENT);
    // Sampled every 150 ms: a heartbeat at least every 100 ms, each ~52 ms (2 retire periods + 20 ms) behind.
    for (const lag of lags.slice(1)) t.true(lag > 0 && lag < 400, JSON.stringify(lags));
  }, { args: ['--config', GRANT] });
});
