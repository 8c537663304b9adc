// Quotas: the N+1th socket, an oversized send and the N+1th session are refused cleanly
// (RESOURCE_EXHAUSTED on the wire, a Python-shaped error in the SDK); everyone else is served.
import test from 'ava';
import { writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../../client/index.js';
import { withDaemon, runAsNobody, publicTempDir } from '../helpers/daemon.js';

const PROBE = `
import { connect } from 'sockbroker';
const out = {};
const err = (e) => ({ cls: e.constructor.name, errno: e.errno, message: e.message });
const a = await connect(process.env.SOCKBROKER_ADDRESS);
const b = await connect(process.env.SOCKBROKER_ADDRESS);
out.limits = { maxSendBytes: a.limits.maxSendBytes, maxSockets: a.limits.maxSockets };
try { await connect(process.env.SOCKBROKER_ADDRESS); out.third = 'ok'; } catch (e) { out.third = err(e); }
const socks = [];
for (let i = 0; i < 3; i++) socks.push(await a.socket(a.AF_INET, a.SOCK_DGRAM));
try { await a.socket(); out.fourth = 'ok'; } catch (e) { out.fourth = err(e); }
await socks[0].bind(['127.0.0.1', 0]);
const addr = await socks[0].getsockname();
try { await socks[1].sendto(Buffer.alloc(5000), addr); out.big = 'ok'; } catch (e) { out.big = err(e); }
out.small = await socks[1].sendto(Buffer.alloc(1000), addr);
out.got = (await socks[0].recv(2000)).length;
await socks[2].close();
out.again = (await a.socket()).fileno() > 0;
// The other session of the same identity has its own socket quota.
out.otherSession = (await b.socket()).fileno() > 0;
await a.disconnect();
await b.disconnect();
console.log(JSON.stringify(out));
`;

test('the N+1th socket, an oversized send and the N+1th session are refused; others keep working', async (t) => {
  const dir = publicTempDir('sb-quota-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'rules:\n  - name: nobody-small\n    match: { uid: 65534 }\n    quotas: { sockets_per_session: 3, sessions_per_identity: 2, bytes_per_call: 1000 }\n');
  chmodSync(policy, 0o644);
  await withDaemon(async (d) => {
    const r = await runAsNobody(PROBE, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.deepEqual(out.limits, { maxSendBytes: 1000, maxSockets: 3 });
    t.is(out.third.cls, 'SessionLostError');
    t.regex(out.third.message, /too many sessions for this identity \(limit 2\)/);
    t.like(out.fourth, { cls: 'OSError', errno: 24 });
    t.regex(out.fourth.message, /session limit 3 sockets/);
    t.like(out.big, { cls: 'OSError', errno: 90 });
    t.regex(out.big.message, /quota: at most 1000 bytes per call/);
    t.is(out.small, 1000);
    t.is(out.got, 1000);
    t.true(out.again);
    t.true(out.otherSession);
    // Root (no quota rule) is served as usual meanwhile.
    const root = await connect(d.address);
    const socks = await Promise.all(Array.from({ length: 10 }, () => root.socket()));
    t.is(socks.length, 10);
    await root.disconnect();
    t.true(await d.logged((l) => l.includes('"event":"quota.sessions"')));
  }, { args: ['--config', policy] });
});

test('a sendall larger than the per-call quota is split by the SDK and arrives whole', async (t) => {
  const dir = publicTempDir('sb-quota-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'rules:\n  - match: { uid: 65534 }\n    quotas: { bytes_per_call: 1000 }\n');
  chmodSync(policy, 0o644);
  await withDaemon(async (d) => {
    const r = await runAsNobody(`
      import { connect } from 'sockbroker';
      const socket = await connect(process.env.SOCKBROKER_ADDRESS);
      const srv = await socket.socket();
      await srv.bind(['127.0.0.1', 0]);
      await srv.listen();
      const c = await socket.socket();
      await c.connect(await srv.getsockname());
      const [conn] = await srv.accept();
      conn.settimeout(10);
      // Small enough to be pipelined by default, larger than this caller's quota per call.
      await c.sendall(Buffer.alloc(5000, 7));
      let got = 0;
      while (got < 5000) got += (await conn.recv(8192)).length;
      await socket.disconnect();
      console.log(JSON.stringify({ got }));
    `, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    t.deepEqual(JSON.parse(r.stdout.trim()), { got: 5000 });
  }, { args: ['--config', policy] });
});
