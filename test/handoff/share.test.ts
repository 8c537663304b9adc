// share(pid) of a handed-off socket: the fd goes back to the broker for the call, which makes the
// token as for its own sockets; fromshare in another session gets a broker handle on the same
// socket. A socket the broker never saw (a local socketpair end) cannot be shared that way.
import test from 'ava';
import { connect, OSError } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';

test('share() of a handed-off socket works through the broker; a locally made socket says EOPNOTSUPP', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(d.address, { handoff: true });
    const other = await connect(d.address, { handoff: false });
    try {
      const l = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
      await l.bind(['127.0.0.1', 0]);
      await l.listen();
      const c = await socket.createConnection((await l.getsockname()) as [string, number]);
      const [a] = await l.accept();
      t.true(c._handedOff && a._handedOff);
      const token = await c.share(process.pid);
      const s = await other.fromshare(token);
      t.false(s._handedOff);
      await s.sendall(Buffer.from('shared'));
      t.is((await a.recv(100)).toString(), 'shared');
      t.true(await d.logged((l) => l.includes('"event":"handoff.sendback"') && l.includes('"op":"share"')));
      const [p] = await socket.socketpair();
      const err = await t.throwsAsync(p.share(process.pid));
      t.true(err instanceof OSError);
      t.is((err as OSError).errno, 95);
      for (const x of [l, c, a, s, p]) await x.close();
    } finally {
      await other.disconnect();
      await socket.disconnect();
    }
  });
});
