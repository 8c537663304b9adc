import { readdirSync, readlinkSync } from 'node:fs';
import type { ExecutionContext, TestFn } from 'ava';
import { close } from '../../../native/libc.js';

/**
 * Tracks the fds a test opens and closes the ones still open at teardown,
 * so a failing assertion never leaks one.
 */
export function fdTracker(t: ExecutionContext) {
  const open = new Set<number>();
  t.teardown(() => {
    for (const fd of open) close(fd);
    open.clear();
  });
  return {
    /** Registers fd (or each fd of a pair) and returns it. */
    add<T extends number | readonly number[]>(fds: T): T {
      for (const fd of typeof fds === 'number' ? [fds] : (fds as readonly number[])) open.add(fd);
      return fds;
    },
    /** Closes fd now; teardown will not touch it again. */
    close(fd: number): void {
      open.delete(fd);
      close(fd);
    },
    /** Forgets fd: the test closed it some other way (closeOffThread). */
    forget(fd: number): void {
      open.delete(fd);
    },
  };
}

/** Fails the file if it ends with fds open that it did not start with. */
export function checkNoFdLeaks(test: TestFn): void {
  const atStart = new Set<string>();
  test.before(() => {
    for (const fd of readdirSync('/proc/self/fd')) atStart.add(fd);
  });
  test.after.always('no fd leaked', (t) => {
    const leaked = readdirSync('/proc/self/fd')
      .filter((fd) => !atStart.has(fd))
      .map((fd) => [fd, target(fd)])
      .filter(([, to]) => to !== null) // the fd readdir itself used
      .map(([fd, to]) => `${fd} -> ${to}`);
    t.deepEqual(leaked, []);
  });
}

function target(fd: string): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}
