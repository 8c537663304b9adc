// A first-in first-out lock. When free, run() starts `fn` synchronously, so an operation that
// arrives on the Call stream tries its syscall before the next message is handled; when held,
// callers queue in arrival order. Used to keep writes on one socket in order (the SDK pipelines
// sendall, so a second one may arrive while the first waits for buffer space).
export class FifoLock {
  #held = false;
  readonly #waiters: Array<() => void> = [];

  /** Whether nothing holds or waits for the lock (a caller may then act at once, in order). */
  get idle(): boolean {
    return !this.#held;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#held) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#held = true;
    try {
      return await fn();
    } finally {
      const next = this.#waiters.shift();
      if (next) next();
      else this.#held = false;
    }
  }
}
