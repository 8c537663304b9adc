// The event loop never blocks: with 1,000 sockets blocked in recv and one close lingering
// (SO_LINGER), another client connects and echoes, and all of it ends before the close does.
import test from 'ava';
import { connect } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';

const LINGER_S = 5;

test('1,000 blocked recvs and a lingering close do not stall another client', async (t) => {
  t.timeout(60_000);
  await withDaemon(async (d) => {
    const busy = await connect(d.address);
    const pairs = [];
    for (let i = 0; i < 500; i++) pairs.push(await busy.socketpair());
    // 1,000 recvs that will wait for the whole test.
    const blocked = pairs.flatMap(([a, b]) => [a.recv(16).catch((e) => e), b.recv(16).catch((e) => e)]);

    // A TCP connection whose peer never reads: fill its buffers, then close with SO_LINGER 3 s.
    const srv = await busy.socket();
    await srv.bind(['127.0.0.1', 0]);
    await srv.listen();
    const port = ((await srv.getsockname()) as [string, number])[1];
    const lingerer = await busy.socket();
    await lingerer.setsockopt(busy.SOL_SOCKET, busy.SO_SNDBUF, 4096);
    const [, [peer]] = await Promise.all([lingerer.connect(['127.0.0.1', port]), srv.accept()]);
    await peer.setsockopt(busy.SOL_SOCKET, busy.SO_RCVBUF, 4096);
    lingerer.setblocking(false);
    const chunk = Buffer.alloc(65536);
    for (;;) {
      try {
        await lingerer.send(chunk);
      } catch (e) {
        if ((e as { errno?: number }).errno === 11) break;
        throw e;
      }
    }
    const linger = Buffer.alloc(8);
    linger.writeInt32LE(1, 0);
    linger.writeInt32LE(LINGER_S, 4);
    await lingerer.setsockopt(busy.SOL_SOCKET, busy.SO_LINGER, linger);
    const closeStart = Date.now();
    const closing = lingerer.close().then(() => Date.now());

    // Meanwhile another client connects and echoes: all of it (the connect included) must end
    // before the close does. A daemon blocked by the close would answer nothing until it ends.
    const other = await connect(d.address);
    const [x, y] = await other.socketpair();
    for (let i = 0; i < 20; i++) {
      await x.sendall(Buffer.from('ping'));
      await y.sendall(await y.recv(4));
      t.is((await x.recv(4)).toString(), 'ping');
    }
    const echoEnd = Date.now();
    const closeEnd = await closing;
    t.log(`connect + 20 echo round trips ended ${echoEnd - closeStart} ms after the close began; the close ended after ${closeEnd - closeStart} ms`);
    t.true(closeEnd - closeStart >= (LINGER_S - 0.5) * 1000, 'the close did linger');
    t.true(echoEnd < closeEnd, 'the echoes ended while the close was still lingering');
    await other.disconnect();
    await busy.disconnect();
    // The 1,000 recvs waited the whole test: none returned (data or EOF); each failed when the
    // session ended (SessionLostError, or EBADF where its socket closed first).
    const outcomes = await Promise.all(blocked);
    t.deepEqual(outcomes.filter((o) => !(o instanceof busy.SessionLostError || (o instanceof busy.error && o.errno === 9))).map(String), []);
  });
});
