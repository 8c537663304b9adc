// The Data stream (bulk path): large sendall and recv loops through it are byte-exact both ways,
// at sizes around the chunk and window boundaries, and keep order with the Call stream's reads.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { Socket } from '../../client/index.js';
import { useDaemon, tcpPair } from '../socket/helpers/fixture.js';

const fx = useDaemon(test);
const MiB = 1 << 20;

/** recv(bufsize) until `n` bytes came (fewer only at EOF). */
async function recvAll(s: Socket, n: number, bufsize = MiB): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const d = await s.recv(Math.min(bufsize, n - got));
    if (d.length === 0) break;
    parts.push(Buffer.from(d));
    got += d.length;
  }
  return Buffer.concat(parts);
}

for (const size of [64 * 1024 + 1, MiB - 1, MiB, MiB + 1, 4 * MiB - 7, 4 * MiB + 13, 9 * MiB + 5]) {
  test(`sendall and recv loops of ${size} bytes are byte-exact both ways`, async (t) => {
    const socket = fx.socket();
    const [c, a, l] = await tcpPair(socket);
    const out = randomBytes(size);
    const back = randomBytes(size);
    const [got, , gotBack] = await Promise.all([recvAll(a, size), c.sendall(out), recvAll(c, size, 256 * 1024), a.sendall(back)]);
    t.true(got.equals(out), 'c → a');
    t.true(gotBack.equals(back), 'a → c');
    for (const s of [c, a, l]) await s.close();
  });
}

test('consecutive 1 MiB sendall calls that reuse one buffer stream byte-exact (each copies what it was given)', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  const calls = 24;
  const buf = Buffer.alloc(MiB);
  const sent: Buffer[] = [];
  const receiving = recvAll(a, calls * MiB);
  for (let i = 0; i < calls; i++) {
    randomBytes(MiB).copy(buf);
    sent.push(Buffer.from(buf));
    // Blocking mode: it resolves while its bytes are still on the way; the caller overwrites them next.
    await c.sendall(buf);
  }
  t.true((await receiving).equals(Buffer.concat(sent)));
  for (const s of [c, a, l]) await s.close();
});

test('recv returns at most n bytes and never more than arrived, through the read-ahead', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  const data = randomBytes(3 * MiB);
  await c.sendall(data);
  // Two large reads start the read-ahead; then small and odd sizes are served from it.
  const parts = [await a.recv(MiB), await a.recv(MiB)];
  for (const n of [1, 7, 4096, 65537, 100]) {
    const d = await a.recv(n);
    t.true(d.length >= 1 && d.length <= n, `recv(${n}) gave ${d.length}`);
    parts.push(Buffer.from(d));
  }
  parts.push(await recvAll(a, data.length - parts.reduce((s, p) => s + p.length, 0)));
  t.true(Buffer.concat(parts).equals(data));
  for (const s of [c, a, l]) await s.close();
});

test('bulk and Call-stream reads interleaved on one socket see the bytes in order', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  const data = randomBytes(6 * MiB);
  const sending = c.sendall(data);
  const parts: Buffer[] = [];
  let got = 0;
  const take = (d: Buffer): void => {
    parts.push(Buffer.from(d));
    got += d.length;
  };
  for (let i = 0; got < data.length; i++) {
    switch (i % 6) {
      case 0:
      case 1:
      case 2:
        take(await a.recv(256 * 1024));
        break;
      case 3: {
        const peek = await a.recv(1000, socket.MSG_PEEK);
        const d = await a.recv(1000, socket.MSG_PEEK);
        t.true(d.equals(peek.subarray(0, d.length)) || peek.equals(d.subarray(0, peek.length)), 'peek twice sees the same bytes');
        break;
      }
      case 4: {
        const [d] = await a.recvmsg(5000);
        take(d);
        break;
      }
      case 5: {
        const [d] = await a.recvfrom(3000);
        take(d);
        break;
      }
    }
  }
  await sending;
  t.true(Buffer.concat(parts).equals(data));
  for (const s of [c, a, l]) await s.close();
});

test('poll sees bytes the read-ahead holds; recv_into and a later EOF come in order', async (t) => {
  const socket = fx.socket();
  const [c, a, l] = await tcpPair(socket);
  const data = randomBytes(2 * MiB + 3);
  await c.sendall(data);
  await c.shutdown(socket.SHUT_WR);
  const first = Buffer.concat([Buffer.from(await a.recv(MiB)), Buffer.from(await a.recv(MiB))]);
  // The rest may sit in the read-ahead: the broker's poll must still report it readable.
  const ready = await socket.poll([a], socket.POLLIN, 10);
  t.is(ready.length, 1);
  const buf = Buffer.alloc(MiB);
  const parts = [first];
  for (;;) {
    const n = await a.recvInto(buf);
    if (n === 0) break;
    parts.push(Buffer.from(buf.subarray(0, n)));
  }
  t.true(Buffer.concat(parts).equals(data));
  t.is((await a.recv(MiB)).length, 0, 'EOF repeats');
  for (const s of [c, a, l]) await s.close();
});
