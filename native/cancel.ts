// A call's cancellation as the I/O driver and the reactor use it: what they need of an
// AbortSignal (which satisfies it), and Cancellation, a stand-in without the AbortController a
// signal costs (~3-8 µs to make on Node 20, paid by every call on the Call stream although
// almost none is ever cancelled).

/** What the driver needs to know of a call's cancellation. */
export interface Cancel {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A one-shot abort: its listeners run once, synchronously, on the first abort(). */
export class Cancellation implements Cancel {
  aborted = false;
  reason: unknown = undefined;
  #listeners: Set<() => void> | undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners) for (const l of listeners) l();
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    // As an AbortSignal: a listener added after the abort never runs.
    if (!this.aborted) (this.#listeners ??= new Set()).add(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners?.delete(listener);
  }
}
