// A remote client (TCP, TLS, a bearer token; run as nobody) resumes its session the same way
// when its connection to the broker is cut: its TCP sockets on the broker keep their data.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { SessionServiceClient, type OpenSessionRequest, type OpenSessionResponse } from '../../proto/gen/sockbroker/v1/session.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { join } from 'node:path';
import { withDaemon, publicTempDir, spawnAsNobody } from '../helpers/daemon.js';
import { startProxy } from '../helpers/proxy.js';
import { tokenDigest } from '../../daemon/policy-file.js';

const dir = publicTempDir('sb-resume-tls-');
const f = (name: string) => join(dir, name);
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

test.before(() => {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=server', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', 'server.pem', '-extfile', 'server.ext');
  writeFileSync(f('policy.yaml'), `
tls: { cert: ${f('server.pem')}, key: ${f('server.key')}, ca: ${f('ca.pem')} }
tokens:
  - { name: ci-runner, sha256: ${tokenDigest('resume-token')} }
  - { name: other, sha256: ${tokenDigest('other-token')} }
`);
});

const CLIENT = `
import { connect } from 'sockbroker';
import { readFileSync } from 'node:fs';
const m = await connect(process.env.ADDR, { tls: { ca: readFileSync(process.env.CA) }, token: 'resume-token' });
const events = [];
for (const e of ['reconnecting', 'resumed', 'lost']) m.session.on(e, () => events.push(e));
const srv = await m.socket(m.AF_INET, m.SOCK_STREAM);
await srv.bind(['127.0.0.1', 0]);
await srv.listen(1);
const c = await m.socket(m.AF_INET, m.SOCK_STREAM);
await c.connect(await srv.getsockname());
const [conn] = await srv.accept();
const waiting = conn.recv(100);
const resumed = new Promise((r) => m.session.once('resumed', r));
console.log('ready');
await resumed;
await c.sendall(Buffer.from('after the cut'));
const got = (await waiting).toString();
await conn.sendall(Buffer.from('and back'));
const back = (await c.recv(100)).toString();
console.log(JSON.stringify({ events, got, back, session: m.session.state }));
await m.disconnect();
`;

test('a remote client over TCP with a token resumes after its connection is cut', async (t) => {
  await withDaemon(
    async (d) => {
      const tcp = d.addresses.find((a) => a.startsWith('tcp:'))!;
      const port = Number(tcp.split(':').pop());
      const proxy = await startProxy({ host: '127.0.0.1', port }, { host: '127.0.0.1', port: 0 });
      try {
        let cut = false;
        const run = spawnAsNobody(CLIENT, { ADDR: proxy.address, CA: f('ca.pem') }, 60_000, undefined, (out) => {
          if (!cut && out.includes('ready')) {
            cut = true;
            proxy.cut();
          }
        });
        const r = await run.done;
        t.is(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
        t.deepEqual(out, { events: ['reconnecting', 'resumed'], got: 'after the cut', back: 'and back', session: 'open' });
        t.true(proxy.accepted >= 2);
      } finally {
        await proxy.close();
      }
    },
    { args: ['--config', f('policy.yaml'), '--listen', 'tcp:127.0.0.1:0'], graceSeconds: 20 },
  );
});

test('a session resumed under another token is refused, naming the identity', async (t) => {
  await withDaemon(
    async (d) => {
      const target = d.addresses.find((a) => a.startsWith('tcp:'))!.slice('tcp:'.length);
      const client = new SessionServiceClient(target, grpc.credentials.createSsl(readFileSync(f('ca.pem'))));
      const as = (token: string) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${token}`);
        return md;
      };
      const open = (req: Partial<OpenSessionRequest>, token: string) =>
        new Promise<OpenSessionResponse>((resolve, reject) =>
          client.openSession({ resumeSessionId: '', hostNetwork: false, ...req }, as(token), (err, res) => (err ? reject(err) : resolve(res!))),
        );
      try {
        const mine = await open({ resumable: true }, 'resume-token');
        const err = (await t.throwsAsync(open({ resumeSessionId: mine.sessionId, brokerInstance: mine.brokerInstance }, 'other-token'))) as unknown as grpc.ServiceError;
        t.is(err.code, grpc.status.PERMISSION_DENIED);
        const info = ErrorInfo.decode(Status.decode(err.metadata.get('grpc-status-details-bin')[0] as Buffer).details[0]!.value);
        t.is(info.metadata.lost, 'identity');
        // Its own identity still resumes it.
        t.true((await open({ resumeSessionId: mine.sessionId, brokerInstance: mine.brokerInstance }, 'resume-token')).resumed);
      } finally {
        client.close();
      }
    },
    { args: ['--config', f('policy.yaml'), '--listen', 'tcp:127.0.0.1:0'] },
  );
});
