// Descriptor-level calls the handle operations need: dup with close-on-exec, and what kind of
// socket an fd is (for fds that arrive by SCM_RIGHTS).
import { linux as C, os } from './constants.js';
import { fcntl, getsockopt } from './libc.js';

// fcntl's F_DUPFD_CLOEXEC is 1030 on every Linux architecture (asm-generic/fcntl.h F_LINUX_SPECIFIC_BASE + 6).
const F_DUPFD_CLOEXEC = 1030;
const { SO_TYPE, SO_PROTOCOL, SO_DOMAIN } = C as Record<string, number>;

/** A new fd for the same open file, close-on-exec, numbered from 0. */
export function dupCloexec(fd: number): number {
  return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/** Makes fd close-on-exec and non-blocking (every daemon fd is both). */
export function makeDaemonFd(fd: number): void {
  fcntl(fd, os.F_SETFD!, os.FD_CLOEXEC!);
  fcntl(fd, os.F_SETFL!, fcntl(fd, os.F_GETFL!, 0) | os.O_NONBLOCK!);
}

/** The family, type and protocol of a socket fd; null when fd is not a socket. */
export function socketInfo(fd: number): { family: number; type: number; protocol: number } | null {
  const int = (name: number | undefined): number => getsockopt(fd, C.SOL_SOCKET!, name!, 4).readInt32LE(0);
  try {
    return { family: int(SO_DOMAIN), type: int(SO_TYPE), protocol: int(SO_PROTOCOL) };
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOTSOCK') return null;
    throw err;
  }
}
