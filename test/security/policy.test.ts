// The policy file: nobody is denied the privileged things under the default policy and allowed
// each when a rule grants it to its uid or group; the file is validated with errors naming the
// place; SIGHUP reloads it and a bad reload keeps the old policy.
import test from 'ava';
import { writeFileSync, chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, runAsNobody, publicTempDir, until } from '../helpers/daemon.js';
import { compilePolicy, PolicyError } from '../../daemon/policy-file.js';
import { CAPTURE_QUOTA_DEFAULTS } from '../../daemon/policy.js';

const QUOTAS = { socketsPerSession: 10, sessionsPerIdentity: 2, bytesPerCall: 100, bufferedBytes: 100, ...CAPTURE_QUOTA_DEFAULTS };

// Each privileged thing nobody might try, reported as ok or the exception's class and errno.
const PROBE = `
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const out = {};
const probe = async (name, fn) => {
  try { await fn(); out[name] = 'ok'; }
  catch (e) { out[name] = e.constructor.name + ':' + e.errno; }
};
await probe('raw', async () => (await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)).close());
await probe('packet', async () => (await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)).close());
await probe('port', async () => { const s = await socket.socket(); await s.bind(['127.0.0.1', 995]); await s.close(); });
await probe('mark', async () => { const s = await socket.socket(); await s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 7); await s.close(); });
await probe('transparent', async () => { const s = await socket.socket(); await s.setsockopt(socket.IPPROTO_IP, socket.IP_TRANSPARENT, 1); await s.close(); });
await socket.disconnect();
console.log(JSON.stringify(out));
`;

function policyFile(text: string): string {
  const dir = publicTempDir('sb-policy-');
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, text);
  chmodSync(file, 0o644);
  return file;
}

async function probeAsNobody(address: string): Promise<Record<string, string>> {
  const r = await runAsNobody(PROBE, { SOCKBROKER_ADDRESS: address });
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const DENIED = { raw: 'PermissionError:1', packet: 'PermissionError:1', port: 'PermissionError:13', mark: 'PermissionError:1', transparent: 'PermissionError:1' };

test('nobody is denied raw IP, AF_PACKET, ports below 1024 and privileged options by default, each logged', async (t) => {
  await withDaemon(async (d) => {
    t.deepEqual(await probeAsNobody(d.address), DENIED);
    const denials = d.logs.filter((l) => l.includes('"event":"policy.deny"')).map((l) => JSON.parse(l));
    t.is(denials.length, 5, 'one audit line per denial');
    t.true(denials.every((e) => e.uid === 65534 && e.outcome === 'denied' && typeof e.grant === 'string'));
    t.deepEqual(denials.map((e) => e.action.op), ['socket', 'socket', 'bind', 'setsockopt', 'setsockopt']);
  });
});

test('a policy file grants each of them to nobody by uid or by group', async (t) => {
  const file = policyFile(`
rules:
  - name: nobody-raw
    match: { uid: 65534 }
    grant:
      sockets:
        - { family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }
        - { family: AF_PACKET, type: SOCK_RAW }
  - name: nogroup-ports-and-options
    match: { group: nogroup }
    grant:
      ports: ["990-999"]
      options: [SO_MARK, IP_TRANSPARENT]
`);
  await withDaemon(async (d) => {
    t.deepEqual(await probeAsNobody(d.address), { raw: 'ok', packet: 'ok', port: 'ok', mark: 'ok', transparent: 'ok' });
    const allows = d.logs.filter((l) => l.includes('"event":"policy.allow"')).map((l) => JSON.parse(l));
    t.deepEqual(allows.map((e) => e.by), ['nobody-raw', 'nobody-raw', 'nogroup-ports-and-options', 'nogroup-ports-and-options', 'nogroup-ports-and-options']);
    t.true(allows.every((e) => e.uid === 65534 && e.outcome === 'allowed'));
    t.false(d.logs.some((l) => l.includes('"event":"policy.deny"')));
  }, { args: ['--config', file] });
});

test('a grant to another uid gives nobody nothing', async (t) => {
  const file = policyFile(`
rules:
  - match: { uid: 1000 }
    grant: { sockets: [{ family: AF_INET, type: SOCK_RAW }], ports: ["1-1023"], options: [SO_MARK, IP_TRANSPARENT] }
`);
  await withDaemon(async (d) => {
    t.deepEqual(await probeAsNobody(d.address), DENIED);
  }, { args: ['--config', file] });
});

test('SIGHUP reloads the policy; a bad file keeps the old one', async (t) => {
  const file = policyFile('rules: []\n');
  // The daemon reads it through a link in another directory: the directory it watches sees no
  // change of the file, so only SIGHUP can reload it.
  const link = join(publicTempDir('sb-policy-link-'), 'policy.yaml');
  symlinkSync(file, link);
  await withDaemon(async (d) => {
    t.is((await probeAsNobody(d.address)).raw, 'PermissionError:1');
    writeFileSync(file, 'rules:\n  - match: { uid: 65534 }\n    grant: { sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }] }\n');
    d.proc.kill('SIGHUP');
    t.true(await until(() => d.logs.some((l) => l.includes('"event":"policy.reloaded"')), 10_000));
    t.is((await probeAsNobody(d.address)).raw, 'ok');
    writeFileSync(file, 'rules:\n  - match: { uid: 65534 }\n    grant: { sockets: [{ family: AF_BOGUS }] }\n');
    d.proc.kill('SIGHUP');
    t.true(await until(() => d.logs.some((l) => l.includes('"event":"policy.reload_failed"')), 10_000));
    const failed = d.logs.find((l) => l.includes('"event":"policy.reload_failed"'));
    t.regex(JSON.parse(failed!).err, /rules\[0\]\.grant\.sockets\[0\]\.family: unknown constant "AF_BOGUS"/);
    t.is((await probeAsNobody(d.address)).raw, 'ok', 'the old policy stays in force');
  }, { args: ['--config', link] });
});

test('a bad policy file is an error naming the place', (t) => {
  const bad = (text: string, name = 'p.yaml') => t.throws(() => compilePolicy(text, name, QUOTAS), { instanceOf: PolicyError })!.message;
  t.is(bad('rules:\n  - match: { uid: 1 }\n    grant: { portz: [80] }\n'), 'p.yaml: rules[0].grant: must NOT have additional properties (portz)');
  t.is(bad('rules:\n  - match: { uid: 1 }\n    grant: { ports: [70000] }\n'), 'p.yaml: rules[0].grant.ports[0]: must be <= 65535');
  t.regex(bad('rules:\n  - match: { group: no-such-group-here }\n'), /^p\.yaml: rules\[0\]\.match\.group\[0\]: no such group "no-such-group-here"$/);
  t.regex(bad('rules: [\n'), /^p\.yaml: .*line 2/s);
  t.is(bad('{"rules": [{"match": {}}]}', 'p.json'), 'p.json: rules[0].match: must NOT have fewer than 1 properties');
  t.is(bad('tokens: [{ name: a, sha256: xyz }]\n'), 'p.yaml: tokens[0].sha256: must match pattern "^[0-9a-f]{64}$"');
  t.regex(bad('rules:\n  - match: { uid: 1 }\n    grant: { options: [SO_NOPE] }\n'), /options\[0\]: unknown constant "SO_NOPE"/);
  // A good one compiles names to numbers.
  const ok = compilePolicy('rules:\n  - name: r\n    match: { uid: [1, 2] }\n    grant: { sockets: [{ family: AF_INET, type: SOCK_RAW }], ports: [80, "100-200"] }\n    quotas: { sockets_per_session: 5 }\n', 'p.yaml', QUOTAS);
  t.deepEqual(ok.policy.rules[0]!.grant.sockets, [{ family: 2, type: 3, protocol: '*' }]);
  t.deepEqual(ok.policy.rules[0]!.grant.ports, [[80, 80], [100, 200]]);
  t.deepEqual(ok.policy.rules[0]!.match, { uids: [1, 2] });
  t.deepEqual(ok.policy.rules[0]!.quotas, { socketsPerSession: 5 });
});
