// No confused deputy: as `nobody`, the broker's root identity is never lent. Unix paths are
// refused without a grant and, with one, checked by the kernel with the caller's ids (a peer's
// SO_PEERCRED shows nobody, never uid 0); abstract names, netlink and privileged options are
// refused; SO_REUSEPORT cannot hijack another uid's port because sockets belong to the caller.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, runAsNobody, publicTempDir, until } from '../helpers/daemon.js';

/** A root python3 Unix server: prints 'ready', then for each connection the peer's uid. */
function peercredServer(path: string): { proc: ChildProcess; ready: Promise<void>; uids: () => number[] } {
  const code = `
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(8)
import os; os.chmod(sys.argv[1], 0o777)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    pid, uid, gid = struct.unpack('3i', c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    print('uid', uid, flush=True)
    c.close()
`;
  const proc = spawn('python3', ['-c', code, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve) => proc.stdout!.on('data', (d) => { out += d; if (out.includes('ready')) resolve(); }));
  return { proc, ready, uids: () => [...out.matchAll(/uid (\d+)/g)].map((m) => Number(m[1])) };
}

const PROBE = `
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const out = {};
const probe = async (name, fn) => {
  try { out[name] = 'ok:' + JSON.stringify(await fn()); }
  catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
};
const unix = () => socket.socket(socket.AF_UNIX, socket.SOCK_STREAM);
await probe('connectPrivate', async () => { const s = await unix(); await s.connect(process.env.PRIVATE_SOCK); });
await probe('connectPublic', async () => { const s = await unix(); await s.connect(process.env.PUBLIC_SOCK); await s.close(); });
await probe('connectAbstract', async () => { const s = await unix(); await s.connect(Buffer.from('\\0sockbroker-test-abstract')); });
await probe('bindPrivate', async () => { const s = await unix(); await s.bind(process.env.PRIVATE_DIR + '/mine.sock'); });
await probe('pairConnect', async () => { const [a] = await socket.socketpair(); await a.connect(process.env.PUBLIC_SOCK); });
await probe('netlink', () => socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE));
await probe('reuseport', async () => {
  const s = await socket.socket();
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1);
  await s.bind(['127.0.0.1', Number(process.env.TAKEN_PORT)]);
});
for (const [name, level, opt, value] of [['mark', 'SOL_SOCKET', 'SO_MARK', 1], ['bindtodevice', 'SOL_SOCKET', 'SO_BINDTODEVICE', Buffer.from('lo')], ['transparent', 'IPPROTO_IP', 'IP_TRANSPARENT', 1]]) {
  await probe(name, async () => { const s = await socket.socket(); await s.setsockopt(socket[level], socket[opt], value); });
}
await socket.disconnect();
console.log(JSON.stringify(out));
`;

async function scenario(t: any, grantUnix: boolean): Promise<{ out: Record<string, string>; uids: number[]; logs: string[] }> {
  const dir = publicTempDir('sb-deputy-');
  const privateDir = join(dir, 'root-only');
  mkdirSync(privateDir, { mode: 0o700 });
  chmodSync(privateDir, 0o700);
  const publicDir = join(dir, 'public');
  mkdirSync(publicDir);
  chmodSync(publicDir, 0o777);
  const priv = peercredServer(join(privateDir, 's.sock'));
  const pub = peercredServer(join(publicDir, 's.sock'));
  // A root process holds a port with SO_REUSEPORT; another uid must not join its group.
  const holder = spawn('python3', ['-c', `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
import time; time.sleep(120)
`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [portLine] = (await once(holder.stdout!, 'data')) as [Buffer];
  await Promise.all([priv.ready, pub.ready]);
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, `rules:\n  - name: unix-under-test-dir\n    match: { uid: 65534 }\n    grant: { unix_paths: ["${dir}/*"] }\n`);
  chmodSync(policy, 0o644);
  try {
    return await withDaemon(async (d) => {
      const r = await runAsNobody(PROBE, {
        SOCKBROKER_ADDRESS: d.address,
        PRIVATE_SOCK: join(privateDir, 's.sock'),
        PRIVATE_DIR: privateDir,
        PUBLIC_SOCK: join(publicDir, 's.sock'),
        TAKEN_PORT: portLine.toString().trim(),
      });
      t.is(r.code, 0, r.stderr);
      // Awaited, not slept: the denials' audit lines (9 by default), or the granted path's
      // server reporting its peer's uid.
      const settled = grantUnix ? () => priv.uids().length + pub.uids().length > 0 : () => d.logs.filter((l) => l.includes('"event":"policy.deny"')).length >= 9;
      t.true(await until(settled, 10_000), 'the daemon and the test servers caught up');
      return { out: JSON.parse(r.stdout.trim().split('\n').pop()!), uids: [...priv.uids(), ...pub.uids()], logs: d.logs };
    }, grantUnix ? { args: ['--config', policy] } : {});
  } finally {
    for (const p of [priv.proc, pub.proc, holder]) p.kill('SIGKILL');
  }
}

test('under the default policy nobody can reach no Unix socket, netlink or privileged option', async (t) => {
  const { out, uids, logs } = await scenario(t, false);
  t.like(out, {
    connectPrivate: 'PermissionError:1',
    connectPublic: 'PermissionError:1',
    connectAbstract: 'PermissionError:1',
    bindPrivate: 'PermissionError:1',
    pairConnect: 'PermissionError:1',
    netlink: 'PermissionError:1',
    mark: 'PermissionError:1',
    bindtodevice: 'PermissionError:1',
    transparent: 'PermissionError:1',
  });
  t.is(out.reuseport, 'OSError:98', 'EADDRINUSE: the port belongs to another uid');
  t.deepEqual(uids, [], 'no test server saw any connection');
  t.is(logs.filter((l) => l.includes('"event":"policy.deny"')).length, 9);
});

test('with a unix_paths grant the kernel checks paths with nobody\'s ids, and peers see nobody', async (t) => {
  const { out, uids } = await scenario(t, true);
  t.is(out.connectPrivate, 'PermissionError:13', 'EACCES from the kernel: the directory is root-only');
  t.is(out.bindPrivate, 'PermissionError:13');
  t.is(out.connectPublic, 'ok:undefined');
  t.is(out.connectAbstract, 'PermissionError:1', 'abstract names need their own grant');
  t.deepEqual(uids, [65534], 'the server\'s SO_PEERCRED shows nobody, never uid 0');
  t.is(out.reuseport, 'OSError:98');
});
