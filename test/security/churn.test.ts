// Churn: 10,000 socket open/close cycles through the SDK, and 100 clients killed with SIGKILL
// while blocked in recv/accept/poll, leave the daemon's fd count at its baseline (the killed
// clients' sockets after the grace period, 2 s in the fixture).
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from '../../client/index.js';
import { withDaemon, publicTempDir, worldCopy, DIST, until, warmBaseline } from '../helpers/daemon.js';

test('10,000 socket open/close cycles through the SDK leave the fd count at baseline', async (t) => {
  t.timeout(110_000);
  await withDaemon(async (d) => {
    const baseline = await warmBaseline(d);
    const socket = await connect(d.address);
    await (await socket.socket()).close();
    // With the session open, its connection is one more fd of the daemon.
    const open = d.fdCount();
    const CYCLES = 10_000;
    const BATCH = 50;
    let opened = 0;
    let peak = 0;
    // Batches whose own sockets were not all daemon fds, or that found more than their own open.
    const short: string[] = [];
    const over: string[] = [];
    const start = performance.now();
    for (let b = 0; b < CYCLES / BATCH; b++) {
      // A batch: 50 sockets opened, pipelined on the session's Call stream; TCP, UDP (IPv4 and
      // IPv6) and socketpairs (two sockets, counted as two cycles) in turn.
      const batch = (await Promise.all(Array.from({ length: BATCH }, async (_, i) => {
        const k = (b * BATCH + i) % 5;
        if (k === 4) return i % 2 === 0 ? socket.socketpair() : [];
        return [await socket.socket(k === 2 ? socket.AF_INET6 : socket.AF_INET, k % 2 === 0 ? socket.SOCK_STREAM : socket.SOCK_DGRAM)];
      }))).flat();
      opened += batch.length;
      // Read while the batch is open: its sockets are daemon fds now, and the earlier batches'
      // (all closed before this one opened) must be gone.
      const held = d.fdCount() - open;
      peak = Math.max(peak, held);
      if (held < batch.length) short.push(`batch ${b}: ${held} fds for ${batch.length} sockets`);
      if (held > batch.length + 8) over.push(`batch ${b}: ${held} fds for ${batch.length} sockets`);
      await Promise.all(batch.map((s) => s.close()));
    }
    const seconds = (performance.now() - start) / 1000;
    t.log(`${opened} sockets opened and closed in ${seconds.toFixed(1)} s (${Math.round(opened / seconds)}/s); fd baseline ${baseline} (${open} with the session open), most fds held by one open batch: ${peak}`);
    t.is(opened, CYCLES);
    t.deepEqual(short, [], "each open batch's sockets are daemon fds");
    t.deepEqual(over, [], 'no earlier batch outlives its close');
    // Closed sockets are gone at once, before the session ends.
    t.true(await until(() => d.fdCount() <= open, 5000), `fd count back to ${open} with the session still open, is ${d.fdCount()}`);
    await socket.disconnect();
    t.true(await until(() => d.fdCount() <= baseline, 5000), `fd count back to ${baseline} after disconnect, is ${d.fdCount()}`);
    t.is(d.proc.exitCode, null);
  });
});

/**
 * A client that opens a session with a few sockets (a listener, a socketpair, a UDP socket), blocks
 * in accept, recv and poll on them, says "ready" and waits to be killed.
 */
const BLOCKED_CLIENT = (clientPath: string): string => `
import { connect } from ${JSON.stringify(clientPath)};
const socket = await connect(process.env.ADDR);
const srv = await socket.socket();
await srv.bind(['127.0.0.1', 0]);
await srv.listen();
const [a, b] = await socket.socketpair();
const udp = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
await udp.bind(['127.0.0.1', 0]);
const calls = [srv.accept(), a.recv(10), udp.recvfrom(100), socket.poll([b, udp], socket.POLLIN)];
for (const c of calls) c.then(() => console.log('unexpected answer'), () => {});
// The calls are on the wire: one more round trip on the same stream proves they reached the broker.
await srv.getsockname();
console.log('ready');
setInterval(() => {}, 1000);
`;

const SOCKETS_PER_CLIENT = 4;

test('100 clients killed with SIGKILL mid-call leave the fd count at baseline after the grace period', async (t) => {
  t.timeout(170_000);
  await withDaemon(async (d) => {
    const baseline = await warmBaseline(d);
    const dir = publicTempDir('sb-churn-');
    const file = join(dir, 'client.mjs');
    // The clients load the SDK from the test run's own copy of the build when there is one (npm
    // test makes it), so a rebuild of dist/ while they start cannot hand them half-written files.
    const build = process.env.SOCKBROKER_WORLD_COPY ? join(worldCopy(), 'dist') : DIST;
    writeFileSync(file, BLOCKED_CLIENT(join(build, 'client', 'index.js')));
    const CLIENTS = 100;
    const BATCH = 10;
    const start = performance.now();
    let killed = 0;
    let maxHeld = 0;
    const children = new Set<ChildProcess>();
    const gone = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;
    try {
      for (let b = 0; b < CLIENTS / BATCH; b++) {
        const batch = await Promise.all(Array.from({ length: BATCH }, async () => {
          const child: ChildProcess = spawn(process.execPath, [file], { env: { ...process.env, ADDR: d.address }, stdio: ['ignore', 'pipe', 'pipe'] });
          children.add(child);
          const exited = once(child, 'exit');
          let out = '';
          let err = '';
          child.stdout!.on('data', (c: Buffer) => (out += c));
          child.stderr!.on('data', (c: Buffer) => (err += c));
          const ready = await Promise.race([
            until(() => out.includes('ready'), 60_000),
            exited.then(() => false),
          ]);
          return { child, exited, ready, out: () => out, err: () => err };
        }));
        const notReady = batch.find((c) => !c.ready);
        if (notReady) {
          t.fail(`a client did not get ready: ${notReady.out()} ${notReady.err()}`);
          return;
        }
        const held = d.fdCount() - baseline;
        maxHeld = Math.max(maxHeld, held);
        t.true(held >= BATCH * SOCKETS_PER_CLIENT, `the batch holds ${held} daemon fds`);
        await Promise.all(batch.map(async (c) => {
          t.false(c.out().includes('unexpected answer'), 'the blocking calls were still pending');
          c.child.kill('SIGKILL');
          await c.exited;
          killed++;
        }));
      }
      const spawned = (performance.now() - start) / 1000;
      t.is(killed, CLIENTS);
      // The killed clients' sessions outlive them for the grace period (2 s), then close.
      const back = await until(() => d.fdCount() <= baseline, 20_000);
      const total = (performance.now() - start) / 1000;
      const graceEnds = d.logs.filter((l) => l.includes('"event":"session.end"') && l.includes('"why":"grace period over"')).length;
      t.log(`${CLIENTS} clients (${SOCKETS_PER_CLIENT} sockets each) started and killed in ${spawned.toFixed(1)} s, fd count back at ${total.toFixed(1)} s; ${graceEnds} sessions ended by their grace period; most fds held by one batch: ${maxHeld}`);
      t.true(back, `fd count back to ${baseline}, is ${d.fdCount()}`);
      t.true(graceEnds >= CLIENTS, `${graceEnds} sessions ended after their grace period`);
      t.is(d.proc.exitCode, null, 'the daemon is still running');
      // And it still serves.
      const socket = await connect(d.address);
      const [a, b] = await socket.socketpair();
      await a.sendall(Buffer.from('ok'));
      t.is((await b.recv(2)).toString(), 'ok');
      await socket.disconnect();
    } finally {
      for (const c of children) if (!gone(c)) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
