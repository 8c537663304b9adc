// Containers get their own network: a client (root or nobody) inside an `ip netns` namespace gets
// sockets created in that namespace, is not treated as host root, and reaches the host's
// namespace only with a grant.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { withDaemon, worldCopy, publicTempDir } from '../helpers/daemon.js';

const ns = `sbtest-${randomBytes(3).toString('hex')}`;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

test.before(() => {
  ip('netns', 'add', ns);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'link', 'add', 'sbv0', 'type', 'veth', 'peer', 'name', 'sbv1');
  ip('-n', ns, 'addr', 'add', '198.51.100.1/24', 'dev', 'sbv0');
  ip('-n', ns, 'link', 'set', 'sbv0', 'up');
  ip('-n', ns, 'link', 'set', 'sbv1', 'up');
});

test.after.always(() => {
  try {
    ip('netns', 'del', ns);
  } catch {
    // already gone
  }
});

const PROBE = `
import { connect } from 'sockbroker';
const out = {};
const probe = async (name, fn) => {
  try { out[name] = 'ok:' + JSON.stringify(await fn()); }
  catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
};
const hostNetwork = process.env.HOST_NETWORK === '1';
let socket;
try { socket = await connect(process.env.SOCKBROKER_ADDRESS, { hostNetwork }); }
catch (e) { console.log(JSON.stringify({ connect: e.constructor.name + ':' + e.errno })); process.exit(0); }
await probe('bindNsAddress', async () => { const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM); await s.bind(['198.51.100.1', 0]); const a = await s.getsockname(); await s.close(); return a[0]; });
await probe('route', async () => { const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM); await s.connect(['198.51.100.77', 9]); const a = await s.getsockname(); await s.close(); return a[0]; });
await probe('raw', async () => { const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); await s.close(); });
await probe('ifs', async () => (await socket.ifNameindex()).map(([, name]) => name).sort());
await probe('sbv0', async () => socket.ifIndextoname(await socket.ifNametoindex('sbv0')));
await socket.disconnect();
console.log(JSON.stringify({ uid: process.getuid(), ...out }));
`;

async function inNamespace(address: string, asNobody: boolean, hostNetwork = false): Promise<Record<string, unknown>> {
  const world = worldCopy();
  const file = join(world, `netns-${randomBytes(4).toString('hex')}.mjs`);
  writeFileSync(file, PROBE);
  chmodSync(file, 0o644);
  try {
    const cmd = asNobody
      ? ['netns', 'exec', ns, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file]
      : ['netns', 'exec', ns, process.execPath, file];
    const proc = spawn('ip', cmd, { cwd: world, env: { PATH: process.env.PATH!, HOME: '/tmp', SOCKBROKER_ADDRESS: address, HOST_NETWORK: hostNetwork ? '1' : '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d) => (stdout += d));
    proc.stderr!.on('data', (d) => (stderr += d));
    const [code] = await once(proc, 'exit');
    if (code !== 0) throw new Error(`probe exited ${code}: ${stderr}`);
    return JSON.parse(stdout.trim().split('\n').pop()!);
  } finally {
    rmSync(file, { force: true });
  }
}

for (const asNobody of [false, true]) {
  const who = asNobody ? 'nobody' : 'root';
  test(`${who} inside a netns gets sockets in that namespace and is not host root`, async (t) => {
    await withDaemon(async (d) => {
      const out = await inNamespace(d.address, asNobody);
      t.is(out.uid, asNobody ? 65534 : 0);
      t.is(out.bindNsAddress, 'ok:"198.51.100.1"', "the namespace's own address is bindable");
      t.is(out.route, 'ok:"198.51.100.1"', "routing follows the namespace's table");
      t.is(out.raw, 'PermissionError:1', 'root in a container is an ordinary identity');
      t.is(out.ifs, 'ok:["lo","sbv0","sbv1"]', "interface functions answer from the caller's namespace");
      t.is(out.sbv0, 'ok:"sbv0"');
      const opened = d.logs.map((l) => JSON.parse(l)).find((e) => e.event === 'session.open');
      t.is(opened.hostRoot, false);
      t.is(opened.hostNetwork, false);
    });
  });
}

test("the host's namespace needs a grant", async (t) => {
  const dir = publicTempDir('sb-netns-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'rules:\n  - name: nobody-host-net\n    match: { uid: 65534 }\n    grant: { host_network: true }\n');
  chmodSync(policy, 0o644);
  await withDaemon(async (d) => {
    // Without the grant (root in the namespace has none): refused.
    t.deepEqual(await inNamespace(d.address, false, true), { connect: 'PermissionError:1' });
    // With it: the session's sockets live in the host's namespace, where 198.51.100.1 is no address.
    const out = await inNamespace(d.address, true, true);
    t.is(out.bindNsAddress, 'OSError:99', 'EADDRNOTAVAIL: this socket is in the host namespace');
    t.true(await d.logged((l) => l.includes('"event":"policy.allow"') && l.includes('"by":"nobody-host-net"')));
    t.true(await d.logged((l) => l.includes('"event":"policy.deny"') && l.includes('host-network')));
  }, { args: ['--config', policy] });
});
