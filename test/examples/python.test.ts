// examples/python: a Python client built from the .proto files alone (stubs generated here, at
// test time, by examples/python/generate.sh) pings through a raw ICMP socket of the broker as
// nobody: refused without a grant, answered with one. Daemon and client run in a private netns.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createTestNet, type TestNet } from '../helpers/netns.js';
import { publicTempDir, ROOT, withDaemon } from '../helpers/daemon.js';
import { policyFile } from '../privileged/helpers.js';

let net: TestNet;
let stubs: string;
test.before(() => {
  net = createTestNet();
  stubs = publicTempDir('sb-python-');
  execFileSync('sh', [join(ROOT, 'examples', 'python', 'generate.sh'), stubs], { stdio: 'pipe' });
  copyFileSync(join(ROOT, 'examples', 'python', 'ping.py'), join(stubs, 'ping.py'));
  execFileSync('chmod', ['-R', 'a+rX', stubs]);
});
test.after.always(() => {
  net?.destroy();
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

const GRANT = policyFile(`
rules:
  - name: nobody-icmp
    match: { uid: 65534 }
    grant:
      sockets:
        - { family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }
`);

/** ping.py as nobody inside namespace A, on Debian's python3 (not a PATH python). */
async function pingAsNobody(address: string, host: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = ['netns', 'exec', net.a, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
    '/usr/bin/python3', join(stubs, 'ping.py'), '--broker', address, '-c', '2', host];
  return promisify(execFile)('ip', argv, { env: { PATH: '/usr/bin:/bin', PYTHONPATH: stubs, HOME: '/tmp' }, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

test('the Python example pings through the broker as nobody, with a grant only', async (t) => {
  await withDaemon(async (d) => {
    const r = await pingAsNobody(d.address, '198.51.100.2');
    t.is(r.code, 2, r.stdout);
    t.regex(r.stderr, /\[Errno 1\] Operation not permitted \(sockbroker policy: raw sockets \(SOCK_RAW\) need a grant; grant: sockets\)/);
  }, { netns: net.a });
  await withDaemon(async (d) => {
    const r = await pingAsNobody(d.address, '198.51.100.2');
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^\d+ bytes from 198\.51\.100\.2: icmp_seq=1 ttl=64 time=[\d.]+ ms$/m);
    t.regex(r.stdout, /^\d+ bytes from 198\.51\.100\.2: icmp_seq=2 ttl=64 time=[\d.]+ ms$/m);
    t.regex(r.stdout, /^2 packets transmitted, 2 received$/m);
    t.true(await d.logged((l) => l.includes('"event":"policy.allow"') && l.includes('"by":"nobody-icmp"') && l.includes('"uid":65534')));
  }, { netns: net.a, args: ['--config', GRANT] });
});
