// `sockbroker policy check` and `policy explain`, offline, on good and bad files: a bad file is
// exit 1 with the loader's error naming the place; explain credits each grant to the rule the
// broker would credit (the first matching one) and shows where each quota comes from.
import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DIST } from '../helpers/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'sb-policy-cli-'));
const file = (name: string, text: string): string => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [join(DIST, 'daemon', 'cli.js'), 'policy', ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const GOOD = file('good.yaml', `
rules:
  - name: nobody-raw
    match: { user: nobody }
    grant:
      sockets:
        - { family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }
      ports: [80, "440-443"]
      options: [SO_MARK]
    quotas: { sockets_per_session: 16 }
  - name: web
    match: { gid: 65534 }
    grant: { ports: [80], share: true }
    quotas: { bytes_per_call: 1024 }
  - name: hostnamer
    match: { uid: 1000 }
    grant: { sethostname: true }
`);

test('check: a good file is OK, exit 0', async (t) => {
  const r = await cli('check', GOOD);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `${GOOD}: OK (3 rules, 0 tokens)\n`);
});

test("check: deploy/policy.example.yaml loads here as shipped (every user and group it names exists)", async (t) => {
  const example = join(DIST, '..', 'deploy', 'policy.example.yaml');
  const r = await cli('check', example);
  t.is(r.stderr, '');
  t.is(r.code, 0);
  t.regex(r.stdout, /policy\.example\.yaml: OK \(\d+ rules, 0 tokens\)\n$/);
});

test('check: a bad file is exit 1 with the error naming the place', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['range.yaml', 'rules:\n  - match: { uid: 1 }\n    grant: { ports: ["90-80"] }\n', /range\.yaml: rules\[0\]\.grant\.ports\[0\]: bad range "90-80"/],
    ['key.yaml', 'rules:\n  - match: { uid: 1 }\n    grant: { sockets: [], bogus: true }\n', /key\.yaml: rules\[0\]\.grant: must NOT have additional properties \(bogus\)/],
    ['const.yaml', 'rules:\n  - match: { uid: 1 }\n    grant:\n      sockets: [{ family: AF_NOPE }]\n', /const\.yaml: rules\[0\]\.grant\.sockets\[0\]\.family: unknown constant "AF_NOPE"/],
    ['user.yaml', 'rules:\n  - match: { user: no-such-user-here }\n', /user\.yaml: rules\[0\]\.match\.user\[0\]: no such user "no-such-user-here"/],
    ['syntax.yaml', 'rules: [\n', /syntax\.yaml: /],
    ['handoff.yaml', 'rules:\n  - match: { uid: 1 }\n    grant:\n      sockets: [{ family: AF_PACKET }]\n      interfaces: [veth0]\n      handoff: [AF_PACKET]\n', /handoff\.yaml: rules\[0\]\.grant\.handoff\[0\]: handoff of AF_PACKET next to interfaces/],
  ];
  for (const [name, text, error] of cases) {
    const r = await cli('check', file(name, text));
    t.is(r.code, 1, name);
    t.regex(r.stderr, error, name);
    t.is(r.stdout, '', name);
  }
  const missing = await cli('check', join(dir, 'absent.yaml'));
  t.is(missing.code, 1);
  t.regex(missing.stderr, /absent\.yaml: ENOENT/);
});

test('explain: each grant with the rule that grants it, and the quotas with their source', async (t) => {
  const r = await cli('explain', GOOD, '--uid', '65534');
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.is(lines[0], "identity: uid=65534 gid=65534, local, in the broker's namespaces");
  t.true(lines.includes('  matches   nobody-raw'));
  t.true(lines.includes('  matches   web'));
  t.true(lines.includes('  no match  hostnamer'));
  const granted = (what: string): string | undefined => lines.find((l) => l.trimStart().startsWith(what))?.split('<- ')[1];
  t.is(granted('socket AF_INET SOCK_RAW IPPROTO_ICMP'), 'nobody-raw');
  t.is(granted('bind port 80 '), 'nobody-raw', 'the first matching rule is credited, as the broker credits it');
  t.is(granted('bind port 440-443'), 'nobody-raw');
  t.is(granted('setsockopt SO_MARK'), 'nobody-raw');
  t.is(granted('share sockets'), 'web');
  t.is(granted('sethostname'), undefined);
  t.true(lines.includes('  sockets_per_session = 16  (nobody-raw)'));
  t.true(lines.includes('  bytes_per_call = 1024  (web)'));
  t.true(lines.includes('  sessions_per_identity = 64  (default)'));

  const other = await cli('explain', GOOD, '--uid', '1000', '--gid', '1000');
  t.is(other.code, 0, other.stderr);
  t.regex(other.stdout, /^ {2}sethostname {2}<- hostnamer$/m);
  t.notRegex(other.stdout, /SO_MARK/);
  t.regex(other.stdout, /bytes_per_call = 4194304 {2}\(default\)/);

  // The gid alone can match: uid 1234 in group 65534 gets web's grants only.
  const byGroup = await cli('explain', GOOD, '--uid', '1234', '--gid', '65534');
  t.regex(byGroup.stdout, /^ {2}bind port 80 +<- web$/m);

  const root = await cli('explain', GOOD, '--uid', '0');
  t.regex(root.stdout, /host root: may do everything/);

  const none = await cli('explain', file('empty.yaml', 'rules: []\n'), '--uid', '65534');
  t.regex(none.stdout, /granted:\n {2}nothing beyond the default\n/);
});

test('check prints the loader\'s warnings and still exits 0', async (t) => {
  const r = await cli('check', file('warn.yaml', 'rules:\n  - name: any-app\n    match: { cgroup: "*/app.service" }\n'));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^warning: .*warn\.yaml: rules\[0\]\.match\.cgroup\[0\]: "\*\/app\.service" can match cgroups inside a user@UID\.service subtree/m);
  t.regex(r.stdout, /warn\.yaml: OK \(1 rule, 0 tokens\)/);
});

test('explain --cgroup: cgroup and unit rules match the path given, and nothing without it', async (t) => {
  const f = file('cgroup.yaml', `
rules:
  - name: app-raw
    match: { uid: 65534, cgroup: /system.slice/app.service }
    grant:
      sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }]
  - name: app-unit
    match: { unit: app.service }
    grant: { ports: [443] }
`);
  const withCgroup = await cli('explain', f, '--uid', '65534', '--cgroup', '/system.slice/app.service');
  t.is(withCgroup.code, 0, withCgroup.stderr);
  t.regex(withCgroup.stdout, /^identity: uid=65534 gid=65534 cgroup=\/system\.slice\/app\.service unit=app\.service, local/);
  t.regex(withCgroup.stdout, /^ {2}socket AF_INET SOCK_RAW IPPROTO_ICMP +<- app-raw$/m);
  t.regex(withCgroup.stdout, /^ {2}bind port 443 +<- app-unit$/m);
  const other = await cli('explain', f, '--uid', '65534', '--cgroup', '/user.slice/user-1000.slice/user@1000.service/app.service');
  t.regex(other.stdout, /nothing beyond the default/);
  const without = await cli('explain', f, '--uid', '65534');
  t.regex(without.stdout, /no match {2}app-raw\n {2}no match {2}app-unit/);
});

test('explain: a bad file or a bad uid is exit 1', async (t) => {
  const bad = await cli('explain', file('bad2.yaml', 'rules: 3\n'), '--uid', '1');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /bad2\.yaml: rules: must be array/);
  const uid = await cli('explain', GOOD, '--uid', 'nobody');
  t.is(uid.code, 1);
  t.regex(uid.stderr, /--uid <n>' argument 'nobody' is invalid/);
});
