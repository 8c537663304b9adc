// The reactor survives interrupted waits: a signal delivered to the threadpool thread blocked in
// epoll_wait (EINTR) must not end the daemon.
import test from 'ava';
import { readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { connect } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';

test('signals delivered to every daemon thread do not stop it (epoll_wait EINTR is retried)', async (t) => {
  await withDaemon(async (d) => {
    const socket = await connect(d.address);
    const [a, b] = await socket.socketpair();
    const pending = b.recv(4); // a waiter, so the reactor is armed
    // SIGHUP has a handler in the daemon (policy reload), so it interrupts the blocking syscall
    // of whichever thread it is sent to; a reload without a policy file does nothing.
    for (let round = 0; round < 5; round++) {
      // tgkill: a thread-directed signal (kill(1) would pick any one thread of the process).
      const tids = readdirSync(`/proc/${d.pid}/task`).join(',');
      execFileSync('python3', ['-c', `import ctypes, signal\nlibc = ctypes.CDLL(None, use_errno=True)\nfor tid in [${tids}]: libc.syscall(234, ${d.pid}, tid, signal.SIGHUP)`]);
      await new Promise((r) => setTimeout(r, 50));
    }
    await a.sendall(Buffer.from('ping'));
    t.is((await pending).toString(), 'ping');
    t.is(d.proc.exitCode, null, 'the daemon is still running');
    await socket.disconnect();
  });
});
