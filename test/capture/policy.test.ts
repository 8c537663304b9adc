// The capture grant, as nobody in namespace A: no grant or a non-granted interface is a
// PermissionError naming the grant; the guard filter cannot be widened — not by a filter built
// to break out of parentheses, not on "any" (cooked packets), not while captures are armed over
// and over under a flood of packets outside the guard; promiscuity goes up for a promiscuous
// capture and back down when it is cancelled and when its client is killed.
import test from 'ava';
import { spawn } from 'node:child_process';
import { useTestNet } from '../helpers/netns.js';
import { until, withDaemon, worldCopy } from '../helpers/daemon.js';
import { policyFile } from '../privileged/helpers.js';
import { flood, nobodyInteractive, SCRIPT_PRELUDE } from './daemon-helpers.js';

const net = useTestNet(test);

const GUARDED = policyFile(`
rules:
  - name: nobody-guarded
    match: { uid: 65534 }
    grant:
      capture: { interfaces: [a0, any], filter: "udp port 10", promiscuous: true }
    quotas: { captures_per_identity: 8 }
`);

/** UDP ports of a packet (Ethernet or LINUX_SLL2), or null when it is not IPv4 UDP. */
const PORTS = `
const ports = (d, cooked) => {
  const type = cooked ? d.readUInt16BE(0) : d.readUInt16BE(12);
  const ip = cooked ? 20 : 14;
  if (type !== 0x0800 || d[ip + 9] !== 17) return null;
  const l4 = ip + (d[ip] & 15) * 4;
  return [d.readUInt16BE(l4), d.readUInt16BE(l4 + 2)];
};
const outside = (ps, cooked) => ps.filter((p) => { const x = ports(Buffer.from(p.data), cooked); return !x || (x[0] !== 10 && x[1] !== 10); }).length;
`;

test.serial('no grant, a non-granted interface, "any" or promiscuity beyond the grant: PermissionError naming the grant', async (t) => {
  t.timeout(60_000);
  const script = `${SCRIPT_PRELUDE}
say({ a0: await refusal({ interfaces: ['a0'] }) });
`;
  await withDaemon(async (d) => {
    const s = nobodyInteractive(net.a, d.address, script, worldCopy());
    try {
      const { a0 } = await s.step();
      t.like(a0, { error: 'PermissionError', errno: 1 });
      t.regex(a0.message, /grant: capture/);
    } finally {
      s.cleanup();
    }
  });
  const ONLY_A0 = policyFile(`
rules:
  - name: nobody-a0
    match: { uid: 65534 }
    grant:
      capture: { interfaces: [a0] }
`);
  const script2 = `${SCRIPT_PRELUDE}
say({ p0: await refusal({ interfaces: ['p0'] }), any: await refusal({ interfaces: [] }), promisc: await refusal({ interfaces: ['a0'], promiscuous: true }), ok: await refusal({ interfaces: ['a0'] }) });
`;
  await withDaemon(async (d) => {
    const s = nobodyInteractive(net.a, d.address, script2, worldCopy());
    try {
      const r = await s.step();
      for (const k of ['p0', 'any', 'promisc']) {
        t.like(r[k], { error: 'PermissionError', errno: 1 }, k);
        t.regex(r[k].message, /grant: capture/, k);
      }
      t.regex(r.promisc.message, /promiscuous/);
      t.deepEqual(r.ok, { armed: true });
      t.true(await d.logged((l) => l.includes('"event":"policy.deny"') && l.includes('"op":"capture"')));
    } finally {
      s.cleanup();
    }
  }, { args: ['--config', ONLY_A0] });
});

test.serial('the guard cannot be widened: break-out text, "any", and arming under a flood', async (t) => {
  t.timeout(120_000);
  const script = `${SCRIPT_PRELUDE}${PORTS}
import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
const send = (port) => new Promise((res) => s.send(Buffer.from('guard'), port, '198.51.100.2', res));
say({ breakout: await refusal({ interfaces: ['a0'], filter: 'udp port 10) or (udp port 10' }) });
const wide = await startCapture(address, { interfaces: ['a0'], filter: 'udp or tcp or arp', batchMaxLatencyMs: 10 });
const any = await startCapture(address, { interfaces: [], filter: '', batchMaxLatencyMs: 10 });
await wide.armed; await any.armed;
for (const port of [20, 10, 30, 10]) await send(port);
const end = Date.now() + 50;
await wide.complete(end); await any.complete(end);
say({ wide: { n: wide.packets.length, outside: outside(wide.packets, false) }, any: { n: any.packets.length, outside: outside(any.packets, true), link: (await any.armed).interfaces[0].linkType } });
wide.close(); any.close();
say({ step: 'flood now' });
await next();
// Arm and drop captures, on a0 and on any, while the flood runs.
const results = [];
for (let i = 0; i < 12; i++) {
  const c = await startCapture(address, { interfaces: i % 2 ? ['a0'] : [], filter: i % 3 ? '' : 'udp or tcp', batchMaxLatencyMs: 5, bufferBytes: 262144 });
  await c.armed;
  await send(10);
  const t0 = Date.now() + 30;
  await c.complete(t0);
  const st = c.stats();
  results.push({ n: c.packets.length, outside: outside(c.packets, i % 2 === 0), adds: st.captured + st.droppedByKernel + st.droppedByBroker + st.pending === st.received });
  c.close();
}
say({ results });
process.exit(0);
`;
  await withDaemon(async (d) => {
    const s = nobodyInteractive(net.a, d.address, script, worldCopy());
    let flooder: ReturnType<typeof spawn> | undefined;
    try {
      const { breakout } = await s.step();
      t.like(breakout, { error: 'ValueError' });
      t.regex(breakout.message, /bad filter/);
      const r = await s.step();
      t.is(r.wide.n, 2, 'only the two port-10 datagrams');
      t.is(r.wide.outside, 0);
      t.true(r.any.n >= 2);
      t.is(r.any.outside, 0);
      t.is(r.any.link, 276);
      t.like(await s.step(), { step: 'flood now' });
      // Packets outside the guard, as fast as the sender can, for the whole arming loop.
      flooder = spawn('ip', ['netns', 'exec', net.a, flood(), '198.51.100.2', '20', '100000000', '0'], { stdio: 'ignore' });
      s.say();
      const { results } = await s.step();
      for (const x of results) {
        t.is(x.outside, 0);
        t.true(x.n >= 1);
        t.true(x.adds);
      }
    } finally {
      flooder?.kill('SIGKILL');
      s.cleanup();
    }
  }, { args: ['--config', GUARDED] });
});

test.serial('promiscuity goes up for a promiscuous capture and back down after cancel and after SIGKILL of the client', async (t) => {
  t.timeout(90_000);
  const script = `${SCRIPT_PRELUDE}
let c = await startCapture(address, { interfaces: ['a0'], promiscuous: true });
say({ armed: (await c.armed).promiscuous });
await next();
c.close();
await c.ended;
say({ step: 'cancelled' });
await next();
c = await startCapture(address, { interfaces: ['a0'], promiscuous: true });
await c.armed;
say({ step: 'armed again' });
await new Promise(() => {});
`;
  await withDaemon(async (d) => {
    const base = net.promiscuity('a0');
    const s = nobodyInteractive(net.a, d.address, script, worldCopy());
    try {
      t.deepEqual(await s.step(), { armed: true });
      t.is(net.promiscuity('a0'), base + 1);
      s.say();
      t.like(await s.step(), { step: 'cancelled' });
      t.true(await until(() => net.promiscuity('a0') === base, 10_000), 'down after cancel');
      s.say();
      t.like(await s.step(), { step: 'armed again' });
      t.is(net.promiscuity('a0'), base + 1);
      s.proc.kill('SIGKILL');
      t.true(await until(() => net.promiscuity('a0') === base, 15_000), 'down after SIGKILL and the grace period');
      t.true(await until(() => d.logs.some((l) => l.includes('"event":"capture.end"') && l.includes('went away') || l.includes('"event":"capture.end"') && l.includes('client ended')), 10_000));
    } finally {
      s.cleanup();
    }
  }, { args: ['--config', GUARDED], graceSeconds: 1 });
});
