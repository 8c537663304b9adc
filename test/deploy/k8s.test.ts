// The Kubernetes deployment: every manifest validates against the Kubernetes schemas (offline,
// kubernetes-models), the DaemonSet has exactly the systemd unit's capabilities, client pods
// need none, and the policy is reloaded when its ConfigMap volume swaps `..data`.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { ROOT, publicTempDir, until, withDaemon } from '../helpers/daemon.js';
import { nobodyIn, PRELUDE } from '../privileged/helpers.js';
import { compilePolicy } from '../../daemon/policy-file.js';
import { DEFAULT_LIMITS, defaultQuotas } from '../../daemon/limits.js';
import { containerCapabilities, manifests, unitCapabilities } from './helpers.js';

const K8S = join(ROOT, 'deploy', 'k8s');
const MODELS: Record<string, new (doc: any) => { validate(): void }> = {
  'apps/v1/DaemonSet': DaemonSet,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Pod': Pod,
};

const all = readdirSync(K8S).filter((f) => f.endsWith('.yaml')).flatMap((f) => manifests(join(K8S, f)).map((doc) => ({ file: f, doc })));
const one = (kind: string) => all.find((m) => m.doc.kind === kind)!.doc;

test('every manifest validates against the Kubernetes schemas', (t) => {
  t.true(all.length >= 4);
  for (const { file, doc } of all) {
    const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
    if (!Model) return t.fail(`${file}: no schema for ${doc.apiVersion} ${doc.kind}`);
    t.notThrows(() => new Model(doc).validate(), file);
  }
  // And a broken one does not (the validation is real).
  const broken = structuredClone(one('DaemonSet'));
  broken.spec.template.spec.containers[0].securityContext.capabilities.add = 'NET_RAW';
  t.throws(() => new DaemonSet(broken).validate());
});

test("the DaemonSet: one broker per node on the host's PID and network namespaces, with exactly the unit's capabilities", (t) => {
  const ds = one('DaemonSet');
  const pod = ds.spec.template.spec;
  t.true(pod.hostPID);
  t.true(pod.hostNetwork);
  t.is(pod.containers.length, 1);
  const [broker] = pod.containers;
  t.deepEqual(broker.securityContext.capabilities.drop, ['ALL']);
  t.deepEqual(containerCapabilities(broker), unitCapabilities(readFileSync(join(ROOT, 'deploy', 'sockbroker.service'), 'utf8')));
  t.not(broker.securityContext.privileged, true);
  // The socket directory is a hostPath; the policy a ConfigMap directory (never subPath).
  const socketDir = pod.volumes.find((v: any) => v.hostPath);
  t.is(socketDir.hostPath.path, '/run/sockbroker');
  const policyVolume = pod.volumes.find((v: any) => v.configMap);
  t.is(policyVolume.configMap.name, one('ConfigMap').metadata.name);
  for (const m of broker.volumeMounts) t.is(m.subPath, undefined, 'a subPath mount never sees ConfigMap updates');
  const policyMount = broker.volumeMounts.find((m: any) => m.name === policyVolume.name);
  const config = broker.args[broker.args.indexOf('--config') + 1];
  t.is(config, `${policyMount.mountPath}/policy.yaml`);
  const listen = broker.args[broker.args.indexOf('--listen') + 1];
  t.is(listen, `unix:${broker.volumeMounts.find((m: any) => m.name === socketDir.name).mountPath}/sockbroker.sock`);
  // The ConfigMap's policy compiles, without warnings.
  const compiled = compilePolicy(one('ConfigMap').data['policy.yaml'], 'policy.yaml', defaultQuotas(DEFAULT_LIMITS));
  t.true(compiled.policy.rules.length > 0);
  t.deepEqual(compiled.warnings, []);
});

test('the example client pod has no capabilities and reaches the broker through the socket directory', (t) => {
  const pod = one('Pod').spec;
  const ds = one('DaemonSet').spec.template.spec;
  for (const c of pod.containers) {
    t.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
    t.false(c.securityContext.allowPrivilegeEscalation);
    const address = c.env.find((e: any) => e.name === 'SOCKBROKER_ADDRESS').value;
    const mount = c.volumeMounts.find((m: any) => address.startsWith(`unix:${m.mountPath}/`));
    t.truthy(mount, 'the address lies in a mounted directory');
    t.true(mount.readOnly, 'connecting needs no write access to the mount');
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    t.is(volume.hostPath.path, ds.volumes.find((v: any) => v.hostPath).hostPath.path);
  }
  t.not(pod.hostNetwork, true);
  t.not(pod.hostPID, true);
});

/** A ConfigMap volume as the kubelet writes it: ..data → a timestamped dir; policy.yaml → ..data/policy.yaml. */
function configMapVolume(dir: string) {
  let current: string | undefined;
  const publish = (text: string) => {
    const version = `..${Date.now()}_${randomBytes(3).toString('hex')}`;
    mkdirSync(join(dir, version), { mode: 0o755 });
    writeFileSync(join(dir, version, 'policy.yaml'), text);
    chmodSync(join(dir, version, 'policy.yaml'), 0o644);
    symlinkSync(version, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // the atomic swap
    if (current) rmSync(join(dir, current), { recursive: true });
    current = version;
  };
  return { publish, path: join(dir, 'policy.yaml'), init: () => symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml')) };
}

test('a ConfigMap update (the ..data swap) reloads the policy; a bad one keeps the old policy', async (t) => {
  const ns = `sb-cm-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const dir = publicTempDir('sb-configmap-');
  const volume = configMapVolume(dir);
  volume.publish('rules: []\n');
  volume.init();
  const probe = `${PRELUDE}
    await probe('raw', async () => { const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); await s.close(); return true; });
    await done();`;
  const events = (d: { logs: string[] }, event: string) => d.logs.filter((l) => l.includes(`"event":"${event}"`)).length;
  try {
    await withDaemon(async (d) => {
      t.is((await nobodyIn(ns, d.address, probe)).raw.errno, 1, 'no rule yet');
      volume.publish('rules:\n  - name: cm-ping\n    match: { uid: 65534 }\n    grant:\n      sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }]\n');
      t.true(await until(() => events(d, 'policy.reloaded') === 1, 20_000), 'reloaded once after the swap (debounced)');
      t.deepEqual((await nobodyIn(ns, d.address, probe)).raw, { ok: true });
      volume.publish('rules:\n  - match: { uid: [65534\n');
      t.true(await until(() => events(d, 'policy.reload_failed') === 1, 20_000), 'the bad file is reported');
      t.true(d.logs.find((l) => l.includes('"event":"policy.reload_failed"'))!.includes('policy.yaml'));
      t.deepEqual((await nobodyIn(ns, d.address, probe)).raw, { ok: true }, 'the old policy stays in force');
      t.is(events(d, 'policy.reloaded'), 1);
    }, { netns: ns, args: ['--config', volume.path] });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
});
