// Sessions are isolated: handle numbers mean nothing across sessions, a session id is bound to
// its identity, and a closed handle number never reaches a socket opened later.
import test from 'ava';
import { connect, OSError } from '../../client/index.js';
import { withDaemon, runAsNobody } from '../helpers/daemon.js';

test('a handle of one session means nothing in another', async (t) => {
  await withDaemon(async (d) => {
    const a = await connect(d.address);
    const b = await connect(d.address);
    const sa = await a.socket();
    await sa.bind(['127.0.0.1', 0]);
    const stolen = await b.socket(b.AF_INET, b.SOCK_STREAM, 0, sa.fileno());
    const err = await t.throwsAsync(stolen.getsockname(), { instanceOf: OSError });
    t.is(err?.errno, 9);
    t.deepEqual((await sa.getsockname())?.[0], '127.0.0.1');
    await a.disconnect();
    await b.disconnect();
  });
});

test('a closed handle number never reaches a socket opened later', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(d.address);
    const first = await socket.socket();
    const n = first.fileno();
    await first.close();
    const second = await socket.socket();
    t.not(second.fileno(), n);
    const ghost = await socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, n);
    const err = await t.throwsAsync(ghost.getsockname(), { instanceOf: OSError });
    t.is(err?.errno, 9);
    t.is(err?.message, '[Errno 9] Bad file descriptor');
    await socket.disconnect();
  });
});

test('a session id presented by another uid is refused', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(d.address);
    const s = await socket.socket();
    const script = `
      import * as grpc from '@grpc/grpc-js';
      import { SocketServiceClient } from './dist/proto/gen/sockbroker/v1/socket.js';
      const client = new SocketServiceClient(process.env.SOCKBROKER_ADDRESS, grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set('sockbroker-session', process.env.SESSION);
      client.getSockName({ handle: Number(process.env.HANDLE) }, md, (err, res) => {
        console.log(JSON.stringify(err ? { code: err.code, details: err.details } : { res }));
        client.close();
      });
    `;
    const r = await runAsNobody(script, { SOCKBROKER_ADDRESS: d.address, SESSION: socket.sessionId, HANDLE: String(s.fileno()) });
    t.is(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim());
    t.is(out.code, 7); // PERMISSION_DENIED
    t.is(out.details, 'session belongs to another identity');
    // The owner still uses it.
    t.truthy(await s.getsockname());
    await socket.disconnect();
  });
});
