// Identities from cgroups: a rule may match the caller's cgroup v2 path (as the initial cgroup
// namespace sees it) and the unit, pod and container derived from anchored, well-known layouts.
// A "pod" made here — a client in new user, network, mount, PID and cgroup namespaces, chrooted
// into a root where only the broker's socket directory is shared, placed in a kubepods cgroup —
// gets its sockets in its own network namespace, is not host root, and gets raw ICMP only when a
// rule matching its cgroup (or its pod UID) grants it. Look-alike cgroups that `nobody` makes in
// a subtree delegated to it match nothing.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { publicTempDir, until, withDaemon, worldCopy } from '../helpers/daemon.js';
import { cgroupFacts, parseProcCgroup, reachesDelegatedSubtree } from '../../daemon/cgroup.js';
import { compilePolicy, PolicyError } from '../../daemon/policy-file.js';
import { matches } from '../../daemon/policy.js';
import { DEFAULT_LIMITS, defaultQuotas } from '../../daemon/limits.js';
import type { Identity } from '../../daemon/identity.js';

const QUOTAS = defaultQuotas(DEFAULT_LIMITS);
const hex = (n: number) => randomBytes(n).toString('hex');

test('the cgroup v2 path is the one 0:: line of /proc/PID/cgroup', (t) => {
  t.is(parseProcCgroup('9:name=systemd:/\n4:memory:/x\n0::/kubepods.slice/a.scope\n'), '/kubepods.slice/a.scope');
  t.is(parseProcCgroup('0::/\n'), '/');
  t.is(parseProcCgroup('0::/../../outside\n'), undefined, "outside the reader's cgroup namespace");
  t.is(parseProcCgroup('0::/a\n0::/b\n'), undefined, 'ambiguous');
  t.is(parseProcCgroup('1:cpu:/\n'), undefined, 'no v2 line');
});

test('unit, pod and container come only from anchored, well-known layouts', (t) => {
  const uid = randomUUID();
  const id = hex(32);
  const sd = uid.replaceAll('-', '_');
  t.deepEqual(cgroupFacts('/system.slice/nginx.service'), { unit: 'nginx.service' });
  t.deepEqual(cgroupFacts('/system.slice/system-getty.slice/getty@tty1.service'), { unit: 'getty@tty1.service' });
  t.deepEqual(cgroupFacts('/system.slice/docker.service/sub'), { unit: 'docker.service' });
  t.deepEqual(cgroupFacts(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${sd}.slice/cri-containerd-${id}.scope`), { pod: uid, container: id });
  t.deepEqual(cgroupFacts(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${sd}.slice/crio-${id}.scope`), { pod: uid, container: id });
  t.deepEqual(cgroupFacts(`/kubepods.slice/kubepods-pod${sd}.slice/docker-${id}.scope`), { pod: uid, container: id }, 'guaranteed QoS');
  t.deepEqual(cgroupFacts(`/kubepods.slice/kubepods-pod${sd}.slice`), { pod: uid });
  t.deepEqual(cgroupFacts(`/kubepods/besteffort/pod${uid}/${id}`), { pod: uid, container: id }, 'cgroupfs driver');
  t.deepEqual(cgroupFacts(`/kubepods/pod${uid}/${id}`), { pod: uid, container: id });
  for (const lookalike of [
    `/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod${sd}.slice/docker-${id}.scope`,
    `/user.slice/user-1000.slice/user@1000.service/system.slice/sshd.service`,
    `/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod${sd}.slice`,
    `/kubepods.slice/kubepods-pod${sd}.slice/crio-conmon-${id}.scope`,
    '/system.slice/notaunit',
    `/kubepods/pod${sd}`,
  ]) {
    const facts = cgroupFacts(lookalike);
    t.is(facts.unit, undefined, lookalike);
    t.is(facts.container, undefined, lookalike);
    if (!lookalike.startsWith(`/kubepods.slice/kubepods-pod${sd}.slice/`)) t.is(facts.pod, undefined, lookalike);
  }
});

test('cgroup globs that can reach into a user-delegated subtree are warned about', (t) => {
  for (const g of ['*', '*/pod', '/user.slice/*', '/user.slice/user-1000.slice/user@1000.service/app.slice/x.service', '/u*/y']) t.true(reachesDelegatedSubtree(g), g);
  for (const g of ['/kubepods.slice/*', '/system.slice/*', '/kubepods/*', '/user.slice/user-1000.slice/user@1000.service', '/user.slice/user-1000.slice/session-1.scope']) t.false(reachesDelegatedSubtree(g), g);
  const c = compilePolicy('rules:\n  - match: { cgroup: ["/kubepods.slice/*", "*/pod"] }\n', 'p.yaml', QUOTAS);
  t.is(c.warnings.length, 1);
  t.regex(c.warnings[0]!, /^p\.yaml: rules\[0\]\.match\.cgroup\[1\]: "\*\/pod" can match cgroups inside a user@UID\.service subtree/);
  t.throws(() => compilePolicy('rules:\n  - match: { cgroup: kubepods.slice }\n', 'p.yaml', QUOTAS), { instanceOf: PolicyError, message: /rules\[0\]\.match\.cgroup/ });
  t.throws(() => compilePolicy('rules:\n  - match: { pod: not-a-uid }\n', 'p.yaml', QUOTAS), { instanceOf: PolicyError, message: /rules\[0\]\.match\.pod/ });
});

test('cgroup-derived keys fail closed for an identity without a cgroup', (t) => {
  const base: Identity = { kind: 'local', uid: 0, gid: 0, groups: [], pid: 1, userNs: 'u', netNs: 'n', hostRoot: false, key: 'k' };
  const uid = randomUUID();
  for (const m of [{ cgroups: ['*'] }, { units: ['*'] }, { pods: [uid] }, { containers: ['a'.repeat(64)] }]) {
    t.false(matches(m, base), JSON.stringify(m));
  }
  const inPod = { ...base, cgroup: '/kubepods/pod' + uid, pod: uid };
  t.true(matches({ cgroups: ['/kubepods/*'], pods: [uid] }, inPod));
  t.false(matches({ cgroups: ['/kubepods/*'], uids: [5] }, inPod), 'every key given must match');
});

// ---- a "pod" on this machine ----

function cgroup2Root(): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => / - cgroup2 /.test(l));
  if (!line) throw new Error('no cgroup2 mount');
  return line.split(' ')[4]!;
}

/** Makes a cgroup (and its parents, which a concurrent run may be removing) and returns its fs path. */
function makeCgroup(root: string, path: string): string {
  const dir = join(root, path);
  for (let i = 0; ; i++) {
    try {
      mkdirSync(dir, { recursive: true });
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || i > 20) throw err;
    }
  }
}

/** Removes a cgroup and then its parents up to (not including) `stop`, while they are empty. */
async function removeCgroup(root: string, path: string, stop = '/'): Promise<void> {
  for (let p = path; p !== stop && p !== '/'; p = dirname(p)) {
    const dir = join(root, p);
    // A process that just exited may still be leaving the cgroup.
    const gone = await until(() => {
      try {
        rmdirSync(dir);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        return code === 'ENOENT' || code === 'ENOTEMPTY';
      }
    }, 5000);
    if (!gone) return;
  }
}

const CLIENT = `
import { connect } from 'sockbroker';
import { ping } from './dist/client/ping.js';
const out = { uid: process.getuid() };
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
out.ifs = await socket.ifNameindex();
try { out.raw = (await ping(socket, '127.0.0.1', { count: 1, timeout: 5, interval: 0 })).replies.length; }
catch (e) { out.raw = e.constructor.name + ':' + e.errno; }
await socket.disconnect();
console.log(JSON.stringify(out));
`;

async function run(argv: string[], env: Record<string, string>, cwd: string): Promise<any> {
  const handoff = process.env.SOCKBROKER_HANDOFF ? { SOCKBROKER_HANDOFF: process.env.SOCKBROKER_HANDOFF } : {};
  const proc = spawn(argv[0]!, argv.slice(1), { cwd, env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/tmp', ...handoff, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (b) => (out += b));
  proc.stderr!.on('data', (b) => (err += b));
  const [code] = await once(proc, 'exit');
  if (code !== 0) throw new Error(`client exited ${code}: ${err}`);
  return JSON.parse(out.trim().split('\n').pop()!);
}

// Inside the new namespaces: bring up the pod's loopback, build a root from the host's /usr,
// /etc and /dev (the "image"), the app, and the broker's socket directory (read-only, as the
// example pod mounts it), with a /proc of the pod's PID namespace; chroot there and run.
const POD = `set -e
ip link set lo up
mount -t tmpfs -o mode=755 pod "$ROOTFS"
cd "$ROOTFS"
mkdir -p usr etc dev proc app tmp run/sockbroker
for d in usr etc dev; do mount --rbind "/$d" "$d"; done
for l in bin sbin lib lib64; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$l"; elif [ -d "/$l" ]; then mkdir "$l"; mount --rbind "/$l" "$l"; fi
done
mount --rbind "$WORLD" app
mount --bind "$SOCKDIR" run/sockbroker
mount -o remount,bind,ro run/sockbroker
mount -t proc proc proc
exec chroot "$ROOTFS" "$NODE" "/app/$CLIENT"
`;

test('a pod gets sockets in its own network namespace, is not host root, and gets raw ICMP only by a rule matching its cgroup; look-alikes made by nobody match nothing', async (t) => {
  const root = cgroup2Root();
  const tag = hex(3);
  const pods = [randomUUID(), randomUUID(), randomUUID()].map((uid) => {
    const id = hex(32);
    return { uid, id, path: `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-${id}.scope` };
  });
  const [byCgroup, byPod, unmatched] = pods as [typeof pods[0], typeof pods[0], typeof pods[0]];
  // A subtree delegated to nobody, as systemd delegates user@UID.service to its user.
  const delegated = `/user.slice/user-65534.slice/user@65534.service/sb-${tag}`;
  const world = worldCopy();
  const client = `cgroup-${tag}.mjs`;
  writeFileSync(join(world, client), CLIENT);
  chmodSync(join(world, client), 0o644);
  const dir = publicTempDir('sb-cgroup-');
  const policy = join(dir, 'policy.yaml');
  const icmp = '{ sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }] }';
  writeFileSync(policy, [
    'rules:',
    `  - { name: by-cgroup, match: { cgroup: "${dirname(byCgroup.path)}/*" }, grant: ${icmp} }`,
    `  - { name: by-pod, match: { pod: ${byPod.uid} }, grant: ${icmp} }`,
    `  - { name: too-wide, match: { cgroup: "*/sb-none-${tag}" }, grant: ${icmp} }`,
    '',
  ].join('\n'));
  chmodSync(policy, 0o644);
  const made: Array<[string, string]> = [];
  try {
    for (const p of pods) {
      makeCgroup(root, p.path);
      made.push([p.path, '/']);
    }
    const deleg = makeCgroup(root, delegated);
    made.push([delegated, '/']);
    for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) chownSync(join(deleg, f), 65534, 65534);
    await withDaemon(async (d) => {
      t.true(await d.logged((l) => l.includes('"event":"policy.warning"') && l.includes(`rules[2].match.cgroup[0]: \\"*/sb-none-${tag}\\"`)), 'the too-wide glob is warned about');
      const pod = (p: typeof byCgroup) => {
        const rootfs = publicTempDir('sb-podroot-');
        return run(
          ['sh', '-c', 'echo $$ > "$CG/cgroup.procs" && exec unshare --user --map-root-user --net --mount --pid --fork --cgroup --propagation private sh -c "$POD"'],
          { CG: join(root, p.path), POD, ROOTFS: rootfs, WORLD: world, SOCKDIR: dirname(d.path), NODE: process.execPath, CLIENT: client, SOCKBROKER_ADDRESS: `unix:/run/sockbroker/${d.path.split('/').pop()}` },
          world,
        ).finally(() => rmSync(rootfs, { recursive: true, force: true }));
      };
      // nobody makes a cgroup named like a real one inside its own subtree and moves into it.
      const lookalike = (path: string) => run(
        ['sh', '-c', 'echo $$ > "$D/cgroup.procs" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c \'mkdir -p "$L" && echo $$ > "$L/cgroup.procs" && exec "$NODE" "$CLIENT"\''],
        { D: deleg, L: join(root, delegated, path), NODE: process.execPath, CLIENT: client, SOCKBROKER_ADDRESS: d.address },
        world,
      );
      const [a, b, c] = [await pod(byCgroup), await pod(byPod), await pod(unmatched)];
      for (const out of [a, b, c]) {
        t.is(out.uid, 0, 'root inside the pod');
        t.deepEqual(out.ifs, [[1, 'lo']], "the pod's own network namespace");
      }
      t.is(a.raw, 1, 'granted by its cgroup: an echo reply on its own loopback');
      t.is(b.raw, 1, 'granted by its pod UID');
      t.is(c.raw, 'PermissionError:1', 'no rule matches: root in a pod is an ordinary identity');
      const l1 = await lookalike(byCgroup.path);
      const l2 = await lookalike(byPod.path);
      t.is(l1.uid, 65534);
      t.is(l1.raw, 'PermissionError:1', 'a cgroup path ending like the granted one is not it');
      t.is(l2.raw, 'PermissionError:1', "a kubepods layout below a user's subtree names no pod");
      const entries = d.logs.map((l) => JSON.parse(l));
      const opened = (p: typeof byCgroup) => entries.find((e) => e.event === 'session.open' && e.cgroup === p.path);
      for (const p of pods) {
        const e = opened(p);
        t.truthy(e, `a session from ${p.path}`);
        t.like(e, { uid: 0, hostRoot: false, pod: p.uid, container: p.id });
      }
      t.like(entries.find((e) => e.event === 'policy.allow' && e.by === 'by-cgroup'), { cgroup: byCgroup.path, pod: byCgroup.uid });
      t.like(entries.find((e) => e.event === 'policy.allow' && e.by === 'by-pod'), { pod: byPod.uid, container: byPod.id });
      const fakes = entries.filter((e) => e.event === 'session.open' && e.uid === 65534);
      t.is(fakes.length, 2);
      for (const e of fakes) {
        t.true(e.cgroup.startsWith(`${delegated}/`));
        t.is(e.pod, undefined);
        t.is(e.container, undefined);
      }
    }, { args: ['--config', policy] });
  } finally {
    rmSync(join(world, client), { force: true });
    rmSync(dir, { recursive: true, force: true });
    // Deepest first: nobody's look-alikes, its subtree, the pods, then any parents left empty.
    for (const p of [byCgroup.path, byPod.path]) await removeCgroup(root, delegated + p, delegated);
    for (const [p, stop] of made.reverse()) await removeCgroup(root, p, stop);
  }
});

test("a broker in its own cgroup namespace reads callers' paths as the initial namespace does, or fails cgroup rules closed", async (t) => {
  const root = cgroup2Root();
  const tag = hex(3);
  const [brokerCg, clientCg] = [`/sb-broker-${tag}`, `/sb-client-${tag}`];
  const dir = publicTempDir('sb-cgns-');
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, `rules:\n  - { name: by-cgroup, match: { cgroup: "${clientCg}", uid: 65534 }, grant: { sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }] } }\n`);
  chmodSync(policy, 0o644);
  const world = worldCopy();
  const client = `cgns-${tag}.mjs`;
  writeFileSync(join(world, client), `
    import { connect } from 'sockbroker';
    const socket = await connect(process.env.SOCKBROKER_ADDRESS);
    let raw;
    try { const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); await s.close(); raw = 'ok'; }
    catch (e) { raw = e.constructor.name + ':' + e.errno; }
    await socket.disconnect();
    console.log(JSON.stringify({ raw }));
  `);
  chmodSync(join(world, client), 0o644);
  try {
    const brokerDir = makeCgroup(root, brokerCg);
    const clientDir = makeCgroup(root, clientCg);
    // The broker moves into its own cgroup, then into a new cgroup namespace rooted there.
    const wrap = ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec unshare --cgroup "$@"', brokerDir];
    await withDaemon(async (d) => {
      t.is(readFileSync(`/proc/${d.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::')), `0::${brokerCg}`);
      const out = await run(
        ['sh', '-c', 'echo $$ > "$CG/cgroup.procs" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$NODE" "$CLIENT"'],
        { CG: clientDir, NODE: process.execPath, CLIENT: client, SOCKBROKER_ADDRESS: d.address },
        world,
      );
      const opened = d.logs.map((l) => JSON.parse(l)).find((e) => e.event === 'session.open' && e.uid === 65534);
      if (d.logs.some((l) => l.includes('"event":"cgroup.namespace"'))) {
        // It could not join (here host pid 1's namespaces are unreadable even to root): the
        // caller's path is outside its namespace, so it has none and the rule fails closed.
        t.is(opened.cgroup, undefined);
        t.is(out.raw, 'PermissionError:1');
      } else {
        t.is(opened.cgroup, clientCg);
        t.is(out.raw, 'ok');
      }
    }, { wrap, args: ['--config', policy] });
  } finally {
    rmSync(join(world, client), { force: true });
    rmSync(dir, { recursive: true, force: true });
    for (const p of [clientCg, brokerCg]) await removeCgroup(root, p);
  }
});
