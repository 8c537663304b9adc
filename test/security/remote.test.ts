// Remote callers: TCP with TLS. A client certificate from the configured CA gets in with that
// identity (its grants apply); one without a certificate, or with one from another CA, is
// refused. A bearer token listed in the config works the same way; a wrong one is refused.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, SessionLostError, PermissionError } from '../../client/index.js';
import { withDaemon, publicTempDir, until } from '../helpers/daemon.js';
import { tokenDigest } from '../../daemon/policy-file.js';

const dir = publicTempDir('sb-tls-');
const f = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
}

function makeCert(name: string, ca: string, ext?: string): void {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  if (ext) writeFileSync(f(`${name}.ext`), ext);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, ...(ext ? ['-extfile', `${name}.ext`] : []));
}

test.before(() => {
  makeCa('ca1');
  makeCa('ca2');
  makeCert('server', 'ca1', 'subjectAltName=IP:127.0.0.1\n');
  makeCert('client1', 'ca1');
  makeCert('intruder', 'ca2');
  writeFileSync(f('policy.yaml'), `
tls: { cert: ${f('server.pem')}, key: ${f('server.key')}, ca: ${f('ca1.pem')} }
tokens:
  - { name: ci-runner, sha256: ${tokenDigest('s3cret-token')} }
rules:
  - name: client1-raw-icmp
    match: { cert_subject: "CN=client1" }
    grant: { sockets: [{ family: AF_INET, type: SOCK_RAW, protocol: IPPROTO_ICMP }] }
  - name: ci-runner-port-80
    match: { token: ci-runner }
    grant: { ports: [80] }
`);
});

const DAEMON = { args: ['--config', f('policy.yaml'), '--listen', 'tcp:127.0.0.1:0'] };
const tcpOf = (addresses: string[]) => addresses.find((a) => a.startsWith('tcp:'))!;
const ca = () => readFileSync(f('ca1.pem'));
const client = (name: string) => ({ ca: ca(), cert: readFileSync(f(`${name}.pem`)), key: readFileSync(f(`${name}.key`)) });

test('mTLS: a certificate from the configured CA gets in with its identity and grants', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(tcpOf(d.addresses), { tls: client('client1') });
    const raw = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP);
    await raw.close();
    // The token rule is not this identity's.
    const s = await socket.socket();
    await t.throwsAsync(s.bind(['127.0.0.1', 80]), { instanceOf: PermissionError });
    await socket.disconnect();
    // The daemon's log lines arrive through a pipe: wait for them rather than read at once.
    const events = () => d.logs.map((l) => JSON.parse(l));
    t.true(await until(() => events().some((e) => e.event === 'session.open' && e.remote === 'cert:CN=client1'), 10_000));
    t.true(await until(() => events().some((e) => e.event === 'policy.allow' && e.by === 'client1-raw-icmp' && e.remote === 'cert:CN=client1'), 10_000));
  }, DAEMON);
});

test('mTLS: no certificate, or one from another CA, is refused', async (t) => {
  await withDaemon(async (d) => {
    const none = await t.throwsAsync(connect(tcpOf(d.addresses), { tls: { ca: ca() } }), { instanceOf: SessionLostError });
    t.regex(none!.message, /client certificate from the configured CA or a valid bearer token/);
    await t.throwsAsync(connect(tcpOf(d.addresses), { tls: client('intruder') }), { instanceOf: SessionLostError });
  }, DAEMON);
});

test('a bearer token from the config gets in with its identity; a wrong one is refused', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(tcpOf(d.addresses), { tls: { ca: ca() }, token: 's3cret-token' });
    const s = await socket.socket();
    await s.bind(['127.0.0.1', 80]);
    await s.close();
    await t.throwsAsync(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), { instanceOf: PermissionError });
    await socket.disconnect();
    t.true(await until(() => d.logs.some((l) => l.includes('"by":"ci-runner-port-80"') && l.includes('"remote":"token:ci-runner"')), 10_000));
    await t.throwsAsync(connect(tcpOf(d.addresses), { tls: { ca: ca() }, token: 'guess' }), { instanceOf: SessionLostError });
  }, DAEMON);
});

test('plain TCP is refused unless explicitly allowed, and then only on loopback', async (t) => {
  const start = withDaemon(async () => undefined, { args: ['--listen', 'tcp:127.0.0.1:0'] });
  await t.throwsAsync(start, { message: /needs TLS/ });
  const start2 = withDaemon(async () => undefined, { args: ['--listen', 'tcp:0.0.0.0:0', '--insecure-loopback'] });
  await t.throwsAsync(start2, { message: /only on loopback/ });
  await withDaemon(async (d) => {
    // Plain loopback TCP still needs a token; there is none in the default policy.
    await t.throwsAsync(connect(tcpOf(d.addresses)), { instanceOf: SessionLostError });
  }, { args: ['--listen', 'tcp:127.0.0.1:0', '--insecure-loopback'] });
});
