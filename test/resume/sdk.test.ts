// The SDK survives a dropped connection: through a proxy the test controls, the connection is
// cut idle, with calls in flight both ways, inside a data-bearing frame, between a send running
// and its reply arriving, at random points under a numbered stream, and silently (blackhole).
// The same socket objects keep working, no byte is lost or doubled, and the session's events
// come in order. A cut longer than the grace period, or a restarted broker, loses the session at
// once, saying which.
import test from 'ava';
import { once } from 'node:events';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { connect, SessionLostError, timeout as SocketTimeout, type SocketModule } from '../../client/index.js';
import { startDaemon, withDaemon, publicTempDir, type Daemon } from '../helpers/daemon.js';
import { startProxy, type Proxy } from '../helpers/proxy.js';

/** A daemon behind a proxy, and a client of it with its events recorded. */
async function through<T>(fn: (m: SocketModule, proxy: Proxy, events: string[], d: Daemon) => Promise<T>, graceSeconds = 20): Promise<T> {
  return withDaemon(
    async (d) => {
      const dir = publicTempDir();
      const proxy = await startProxy({ path: d.path }, { path: join(dir, 'proxy.sock') });
      const m = await connect(proxy.address);
      const events: string[] = [];
      for (const e of ['reconnecting', 'resumed', 'lost'] as const) m.session.on(e as 'lost', () => events.push(e));
      try {
        return await fn(m, proxy, events, d);
      } finally {
        await m.disconnect().catch(() => undefined);
        await proxy.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    { graceSeconds },
  );
}

const resumed = (m: SocketModule) => once(m.session as never, 'resumed');

/** `n` bytes numbered from `from`: byte i is (from + i) mod 251. */
function numbered(from: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) % 251;
  return b;
}

/** Reads exactly `n` bytes. */
async function readExactly(s: Awaited<ReturnType<SocketModule['socket']>>, n: number, chunk = 4096): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const b = await s.recv(Math.min(chunk, n - got));
    if (b.length === 0) throw new Error(`EOF after ${got} of ${n} bytes`);
    parts.push(b);
    got += b.length;
  }
  return Buffer.concat(parts);
}

test('an idle cut: the session resumes and the same sockets go on', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    await a.sendall(Buffer.from('before'));
    t.is((await b.recv(64)).toString(), 'before');
    const back = resumed(m);
    proxy.cut();
    await back;
    t.is(m.session.state, 'open');
    await a.sendall(Buffer.from('after'));
    t.is((await b.recv(64)).toString(), 'after');
    t.deepEqual(events, ['reconnecting', 'resumed']);
    t.true(proxy.accepted >= 2, 'a new connection carries the session');
  });
});

test('calls in flight both ways survive a cut: waiting reads get their data, pipelined sends run once', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    const [c, d] = await m.socketpair();
    // Reads waiting at the broker (their replies will travel back), sends on their way to it.
    const reads = [b.recv(100), d.recv(100)];
    await new Promise((r) => setImmediate(r));
    const sends = [a.sendall(Buffer.from('to-b')), c.sendall(Buffer.from('to-d'))];
    proxy.cut();
    await Promise.all(sends);
    t.deepEqual((await Promise.all(reads)).map(String), ['to-b', 'to-d']);
    for (const s of [b, d]) s.settimeout(0.3);
    await t.throwsAsync(b.recv(100), { instanceOf: SocketTimeout }, 'nothing twice');
    await t.throwsAsync(d.recv(100), { instanceOf: SocketTimeout }, 'nothing twice');
    t.deepEqual(events, ['reconnecting', 'resumed']);
  });
});

test('a cut inside a data-bearing reply: the whole result comes again, once', async (t) => {
  await through(async (m, proxy) => {
    const [a, b] = await m.socketpair();
    const data = numbered(0, 60_000);
    await a.sendall(data);
    // Let the sendall's acknowledgement pass, then cut 1000 bytes into the recv's reply.
    await new Promise((r) => setTimeout(r, 50));
    const cut = proxy.cutAfter(1000);
    const got = await readExactly(b, data.length, 60_000);
    await cut;
    t.true(got.equals(data));
    b.settimeout(0.3);
    await t.throwsAsync(b.recv(10), { instanceOf: SocketTimeout });
  });
});

test('a cut between a send running and its reply arriving: the send is not run again', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    a.settimeout(5); // not pipelined: the send waits for its own reply
    const cut = proxy.cutAfter(1); // the next reply dies after its first byte
    t.is(await a.send(Buffer.from('exactly-once')), 12);
    await cut;
    t.is((await b.recv(64)).toString(), 'exactly-once');
    b.settimeout(0.3);
    await t.throwsAsync(b.recv(64), { instanceOf: SocketTimeout }, 'the send ran once');
    t.deepEqual(events, ['reconnecting', 'resumed']);
  });
});

test('cut at random points under a numbered stream: no byte lost or doubled, same sockets', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    const total = 400_000;
    const seed = Number(process.env.SOCKBROKER_FUZZ_SEED ?? Date.now() % 100_000);
    t.log(`seed ${seed}`);
    let x = seed;
    const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
    const writer = (async () => {
      for (let sent = 0; sent < total; ) {
        const n = Math.min(1 + rand(3000), total - sent);
        await a.sendall(numbered(sent, n));
        sent += n;
      }
    })();
    let cuts = 0;
    let stop = false;
    const cutter = (async () => {
      while (!stop && cuts < 25) {
        await new Promise((r) => setTimeout(r, 5 + rand(60)));
        if (m.session.state !== 'open') continue;
        if (rand(2) === 0) proxy.cut();
        else void proxy.cutAfter(1 + rand(5000));
        cuts++;
      }
    })();
    const got = await readExactly(b, total, 2048);
    stop = true;
    await Promise.all([writer, cutter]);
    t.log(`${cuts} cuts, ${events.filter((e) => e === 'resumed').length} resumes`);
    t.true(got.equals(numbered(0, total)), 'every byte once, in order');
    t.false(events.includes('lost'));
    t.true(events.includes('resumed'));
    b.settimeout(0.3);
    await t.throwsAsync(b.recv(10), { instanceOf: SocketTimeout });
  });
});

test('calls made while reconnecting wait for it, or fail at their own timeout', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    proxy.refuse(true);
    proxy.cut();
    await once(m.session as never, 'reconnecting');
    b.settimeout(0.5);
    const t0 = Date.now();
    await t.throwsAsync(b.recv(10), { instanceOf: SocketTimeout });
    const took = Date.now() - t0;
    t.true(took >= 450 && took < 3000, `timed out after ${took} ms`);
    b.settimeout(null);
    const waiting = b.recv(10);
    const sending = a.sendall(Buffer.from('late'));
    proxy.refuse(false);
    await sending;
    t.is((await waiting).toString(), 'late');
    t.deepEqual(events, ['reconnecting', 'resumed']);
  });
});

test('a silent dead peer (blackhole) is found by the stream ping within 8 s, then resumed', async (t) => {
  await through(async (m, proxy, events) => {
    const [a, b] = await m.socketpair();
    const reading = b.recv(10);
    const t0 = Date.now();
    proxy.blackhole();
    await once(m.session as never, 'reconnecting');
    const found = Date.now() - t0;
    t.log(`dead peer found after ${found} ms`);
    t.true(found <= 9000, `found after ${found} ms`);
    await resumed(m);
    await a.sendall(Buffer.from('alive'));
    t.is((await reading).toString(), 'alive');
    t.deepEqual(events, ['reconnecting', 'resumed']);
  });
});

test('a cut longer than the grace period: SessionLostError naming expiry, for every call, at once', async (t) => {
  await through(
    async (m, proxy, events) => {
      const [, b] = await m.socketpair();
      const reading = b.recv(10);
      proxy.refuse(true);
      proxy.cut();
      const [lost] = (await once(m.session as never, 'lost')) as [SessionLostError];
      t.is(lost.reason, 'expired');
      t.regex(lost.message, /grace period/);
      const err = await t.throwsAsync(reading, { instanceOf: SessionLostError });
      t.is(err!.reason, 'expired');
      await t.throwsAsync(b.recv(10), { instanceOf: SessionLostError });
      t.deepEqual(events, ['reconnecting', 'lost']);
      t.is(m.session.state, 'lost');
    },
    1,
  );
});

test('a restarted broker: SessionLostError at once, telling restart from expiry', async (t) => {
  await through(async (m, proxy, events, d) => {
    const [, b] = await m.socketpair();
    const reading = b.recv(10);
    // A crash (no goodbye), then a new daemon behind the same address.
    proxy.refuse(true);
    await d.stop('SIGKILL');
    const d2 = await startDaemon({ graceSeconds: 20 });
    try {
      proxy.retarget({ path: d2.path });
      const t0 = Date.now();
      proxy.refuse(false);
      const err = await t.throwsAsync(reading, { instanceOf: SessionLostError });
      t.is(err!.reason, 'restarted');
      t.regex(err!.message, /broker restarted/);
      t.true(Date.now() - t0 < 5000, 'at the first reconnect after it is back (backoff at most 2 s)');
      t.deepEqual(events, ['reconnecting', 'lost']);
    } finally {
      await d2.stop();
    }
  });
});

test('a broker shutting down ends the session at once, saying so', async (t) => {
  await through(async (m, _proxy, events, d) => {
    const [, b] = await m.socketpair();
    const reading = b.recv(10);
    await d.stop('SIGTERM');
    const err = await t.throwsAsync(reading, { instanceOf: SessionLostError });
    t.is(err!.reason, 'shutdown');
    t.regex(err!.message, /shutting down/);
    t.deepEqual(events, ['lost']);
  });
});

test('a bulk read-ahead running across a cut: the bytes that arrived, then ConnectionResetError; the socket goes on', async (t) => {
  await through(async (m, proxy, events) => {
    const srv = await m.socket(m.AF_INET, m.SOCK_STREAM);
    await srv.bind(['127.0.0.1', 0]);
    await srv.listen(1);
    const c = await m.socket(m.AF_INET, m.SOCK_STREAM);
    await c.connect((await srv.getsockname())!);
    const [conn] = await srv.accept();
    const data = numbered(0, 1 << 20);
    await c.sendall(data);
    // Two large reads in a row start the socket's read-ahead (its Data stream).
    const head = Buffer.concat([await readExactly(conn, 65536, 65536), await readExactly(conn, 65536, 65536)]);
    t.true(head.equals(data.subarray(0, head.length)));
    const back = resumed(m);
    proxy.cut();
    await back;
    let got = head.length;
    const err = await t.throwsAsync(
      (async () => {
        for (;;) {
          const b = await conn.recv(65536);
          t.true(b.equals(data.subarray(got, got + b.length)), 'what arrives is in order');
          got += b.length;
        }
      })(),
      { instanceOf: m.ConnectionResetError },
    );
    t.regex(err!.message, /does not resume/);
    t.log(`${got} of ${data.length} bytes before the reset`);
    // The socket itself goes on over the Call stream.
    await conn.sendall(Buffer.from('still here'));
    t.is((await readExactly(c, 10)).toString(), 'still here');
    t.deepEqual(events, ['reconnecting', 'resumed']);
  });
});
