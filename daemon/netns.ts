// Callers' network namespaces: one open fd per namespace, shared by the connections and
// sessions that live in it (reference counted, closed with the last), and a helper that runs a
// synchronous syscall with the main thread switched into one. setns changes only the calling
// thread, and nothing else runs on it between the two switches.
import { close } from '../native/libc.js';
import { openReadOnly, setns } from '../native/creds.js';
import { os } from '../native/constants.js';

interface Held {
  fd: number;
  refs: number;
}

export class NetnsRegistry {
  readonly #byId = new Map<string, Held>();
  readonly #ownFd = openReadOnly('/proc/self/ns/net');

  /** Takes a reference to namespace `id`; `fd` is a freshly opened fd of it (kept or closed here). */
  acquire(id: string, fd: number): string {
    const held = this.#byId.get(id);
    if (held) {
      held.refs++;
      close(fd);
    } else {
      this.#byId.set(id, { fd, refs: 1 });
    }
    return id;
  }

  /** Another reference to a namespace already held. */
  retain(id: string): string {
    const held = this.#byId.get(id);
    if (!held) throw new Error(`network namespace ${id} is not held`);
    held.refs++;
    return id;
  }

  release(id: string): void {
    const held = this.#byId.get(id);
    if (!held) return;
    if (--held.refs === 0) {
      this.#byId.delete(id);
      close(held.fd);
    }
  }

  /** Runs `fn` with this thread in namespace `id` (null = the daemon's own). */
  run<T>(id: string | null, fn: () => T): T {
    if (id === null) return fn();
    const held = this.#byId.get(id);
    if (!held) throw new Error(`network namespace ${id} is not held`);
    setns(held.fd, os.CLONE_NEWNET);
    try {
      return fn();
    } finally {
      setns(this.#ownFd, os.CLONE_NEWNET);
    }
  }

  get size(): number {
    return this.#byId.size;
  }

  closeAll(): void {
    for (const { fd } of this.#byId.values()) close(fd);
    this.#byId.clear();
    close(this.#ownFd);
  }
}
