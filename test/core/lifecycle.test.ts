// Lifecycle: a killed client's sockets close after the grace period (the daemon's fd count
// returns to its baseline), and data read for a cancelled recv is delivered by the next one.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Transport } from '../../client/transport.js';
import { connect } from '../../client/index.js';
import { withDaemon, publicTempDir, startDaemon, DIST, until, warmBaseline } from '../helpers/daemon.js';

test('a client killed with SIGKILL has its sockets closed after the grace period', async (t) => {
  await withDaemon(async (d) => {
    const baseline = await warmBaseline(d);
    const dir = publicTempDir();
    const file = join(dir, 'client.mjs');
    writeFileSync(file, `
      import { connect } from ${JSON.stringify(join(DIST, 'client', 'index.js'))};
      const socket = await connect(process.env.ADDR);
      const srv = await socket.socket();
      await srv.bind(['127.0.0.1', 0]);
      await srv.listen();
      for (let i = 0; i < 10; i++) await socket.socketpair();
      srv.accept().catch(() => {});
      console.log('ready');
      setInterval(() => {}, 1000);
    `);
    const child = spawn(process.execPath, [file], { env: { ...process.env, ADDR: d.address }, stdio: ['ignore', 'pipe', 'inherit'] });
    await once(child.stdout!, 'data');
    // The client's 21 sockets and its connection.
    const held = d.fdCount();
    t.true(held >= baseline + 22, `the client holds 21 daemon sockets and a connection (${held - baseline} fds)`);
    child.kill('SIGKILL');
    await once(child, 'exit');
    // Once the daemon has closed the dead client's connection, its sockets are still there for
    // the grace period (10 s here)...
    t.true(await until(() => d.fdCount() < held, 10_000), 'the daemon closed the connection');
    t.true(d.fdCount() >= baseline + 21, 'sockets survive while the session may resume');
    // ...and gone after it.
    t.true(await until(() => d.fdCount() <= baseline, 30_000), `fd count back to ${baseline}, is ${d.fdCount()}`);
    t.true(await until(() => d.logs.some((l) => l.includes('"why":"grace period over"')), 5000));
  }, { graceSeconds: 10 });
});

test('data read for a cancelled recv is delivered by the next recv, in order', async (t) => {
  await withDaemon(async (d) => {
    const tr = await Transport.open(d.address);
    const pair = await tr.call('socketpair', { family: 1, type: 1, protocol: 0 });
    const [a, b] = [pair.handleA, pair.handleB];
    const N = 300;
    const got: number[] = [];
    let cancelled = 0;
    for (let i = 0; i < N; i++) {
      // A blocked recv, cancelled in the same tick as the byte that satisfies it arrives:
      // whichever wins, the byte must not be lost nor overtaken by a later one.
      const ac = new AbortController();
      const pending = tr.call('recv', { handle: a, bufsize: 1, flags: 0, wantAddress: false }, null, ac.signal);
      await tr.call('send', { handle: b, data: Buffer.from([i & 0xff]), flags: 0 });
      ac.abort(new Error('cancelled by test'));
      try {
        got.push(...(await pending).data);
      } catch {
        cancelled++;
      }
    }
    // Drain: everything not delivered above must come now.
    while (got.length < N) {
      const r = await tr.call('recv', { handle: a, bufsize: 4096, flags: 0, wantAddress: false, timeout: 2 });
      got.push(...r.data);
    }
    // The bytes as sent, in the order sent: none lost, duplicated or reordered.
    t.deepEqual(got, Array.from({ length: N }, (_, i) => i & 0xff), `cancelled ${cancelled}`);
    t.true(cancelled > 0, 'some recvs were cancelled');
    await tr.close();
  });
});

test('a client whose daemon restarted gets a clear "session lost" error, not a hang', async (t) => {
  const { SessionLostError } = await import('../../client/index.js');
  const d = await startDaemon();
  const socket = await connect(d.address);
  const [a] = await socket.socketpair();
  const pending = a.recv(10);
  await d.stop('SIGKILL');
  const err = await t.throwsAsync(pending, { instanceOf: SessionLostError });
  t.regex(err!.message, /session/);
  await t.throwsAsync(a.send(Buffer.from('x')), { instanceOf: SessionLostError });
});
