// A share token expires: after its lifetime fromshare refuses it and the daemon's duplicate is closed.
import test from 'ava';
import { connect, OSError } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';

test('an unredeemed share token expires and its duplicate fd is closed', async (t) => {
  process.env.SOCKBROKER_SHARE_TTL_MS = '300';
  try {
    await withDaemon(async (d) => {
      const socket = await connect(d.address);
      const other = await connect(d.address);
      const [a, b] = await socket.socketpair();
      const base = d.fdCount();
      const token = await a.share(process.pid);
      t.is(d.fdCount(), base + 1);
      await new Promise((r) => setTimeout(r, 600));
      t.is(d.fdCount(), base);
      const err = await t.throwsAsync(other.fromshare(token));
      t.true(err instanceof OSError);
      t.is((err as OSError).errno, 22);
      for (const s of [a, b]) await s.close();
      await socket.disconnect();
      await other.disconnect();
    });
  } finally {
    delete process.env.SOCKBROKER_SHARE_TTL_MS;
  }
});
