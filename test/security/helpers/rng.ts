// A small seeded PRNG for fuzz and property tests: the same seed gives the same sequence, so a
// failure replays with SOCKBROKER_FUZZ_SEED=<the seed the test logged>.
import { randomInt } from 'node:crypto';

/** The run's seed: SOCKBROKER_FUZZ_SEED when set (to replay), else a fresh random one. */
export function fuzzSeed(): number {
  const env = process.env.SOCKBROKER_FUZZ_SEED;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`SOCKBROKER_FUZZ_SEED must be a 32-bit unsigned integer, got ${env}`);
    return n;
  }
  return randomInt(0, 0xffffffff);
}

/** sfc32 seeded from one 32-bit number. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(readonly seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** [0, 1). */
  float(): number {
    return this.u32() / 0x100000000;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A uniform signed 32-bit integer. */
  i32(): number {
    return this.u32() | 0;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A child generator (its own sequence, derived from this one). */
  fork(): Rng {
    return new Rng(this.u32());
  }
}
