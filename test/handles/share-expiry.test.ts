// A share token expires: after its lifetime fromshare refuses it and the daemon's duplicate is closed.
import test from 'ava';
import { readdirSync, readlinkSync } from 'node:fs';
import { connect, OSError } from '../../client/index.js';
import { withDaemon, until } from '../helpers/daemon.js';

/** How many of the daemon's fds name each socket inode. */
function socketRefs(pid: number): Map<string, number> {
  const refs = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (link.startsWith('socket:')) refs.set(link, (refs.get(link) ?? 0) + 1);
  }
  return refs;
}

test('an unredeemed share token expires and its duplicate fd is closed', async (t) => {
  process.env.SOCKBROKER_SHARE_TTL_MS = '2000';
  try {
    await withDaemon(async (d) => {
      const socket = await connect(d.address);
      const other = await connect(d.address);
      const [a, b] = await socket.socketpair();
      const before = socketRefs(d.pid);
      const token = await a.share(process.pid);
      // The share holds a duplicate: exactly one socket is now named by one more daemon fd.
      const after = socketRefs(d.pid);
      const duplicated = [...after].filter(([inode, n]) => n === (before.get(inode) ?? 0) + 1).map(([inode]) => inode);
      t.is(duplicated.length, 1, 'one socket gained a duplicate fd');
      const [inode] = duplicated;
      t.true(await until(() => (socketRefs(d.pid).get(inode!) ?? 0) === before.get(inode!), 20_000), 'the duplicate is closed when the token expires');
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
