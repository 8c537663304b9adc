// Merges packet streams from several sources (brokers, interfaces) into one in timestamp order.
// Each source delivers its packets in order; its watermark is the time before which it will
// deliver nothing more: the last timestamp it delivered, or later when the source says so
// (a heartbeat) or when it has been idle long enough (its clock, estimated from its last batch,
// has passed the batching latency bound). A packet is released once every live source's
// watermark has reached it, so an idle source never stalls the output. Buffering is bounded:
// past the bound the oldest packets are released anyway, and counted (`forced`).

/** The merge's view of a packet: only its timestamp matters. */
export interface Timestamped {
  timestampNs: bigint;
}

export interface MergeOptions {
  /** Most packets held back in all; beyond it the oldest go out regardless of watermarks. */
  maxBuffered?: number;
  /**
   * How late (ms) a source may deliver a packet after its own clock passed its timestamp (the
   * batching latency bound plus transit): an idle source's watermark is its estimated clock
   * minus this.
   */
  lateMs?: number;
  /** Local clock in ns (for tests). */
  now?: () => bigint;
}

interface Source<T> {
  queue: T[];
  head: number;
  /** Nothing earlier than this will come from the source. */
  watermark: bigint;
  /** The source's clock minus the local one, from its latest delivery (undefined before one). */
  offset: bigint | undefined;
  ended: boolean;
}

export class CaptureMerge<T extends Timestamped> {
  readonly #sources: Source<T>[] = [];
  readonly #maxBuffered: number;
  readonly #lateNs: bigint;
  readonly #now: () => bigint;
  #buffered = 0;
  /** Packets released by the buffer bound before every watermark reached them. */
  forced = 0;
  /** Packets that arrived older than what was already released (released at once). */
  late = 0;
  #released = -1n << 64n;

  constructor(sources: number, opts: MergeOptions = {}) {
    for (let i = 0; i < sources; i++) this.#sources.push({ queue: [], head: 0, watermark: -1n << 64n, offset: undefined, ended: false });
    this.#maxBuffered = opts.maxBuffered ?? 65_536;
    this.#lateNs = BigInt(Math.round((opts.lateMs ?? 1000) * 1e6));
    this.#now = opts.now ?? (() => process.hrtime.bigint() + EPOCH_OFFSET);
  }

  /** Packets held back now. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * A batch from `source` (in timestamp order), optionally with the source's own watermark
   * (e.g. the time its batch was cut). Returns the packets now releasable, in order.
   */
  push(source: number, packets: readonly T[], watermarkNs?: bigint): T[] {
    const s = this.#source(source);
    for (const p of packets) {
      if (p.timestampNs > s.watermark) s.watermark = p.timestampNs;
      s.queue.push(p);
    }
    this.#buffered += packets.length;
    if (watermarkNs !== undefined && watermarkNs > s.watermark) s.watermark = watermarkNs;
    if (packets.length > 0 || watermarkNs !== undefined) {
      // Every observation lags the source's clock (batching, transit; an idle source may repeat
      // an old watermark): the largest lead seen is the best estimate of its clock.
      const lead = s.watermark - this.#now();
      if (s.offset === undefined || lead > s.offset) s.offset = lead;
    }
    return this.#release();
  }

  /** The source says nothing before `watermarkNs` will come (a heartbeat). */
  advance(source: number, watermarkNs: bigint): T[] {
    return this.push(source, [], watermarkNs);
  }

  /** The source is done: it no longer holds anything back. */
  end(source: number): T[] {
    this.#source(source).ended = true;
    return this.#release();
  }

  /** Call periodically: idle sources' watermarks advance with their estimated clocks. */
  tick(): T[] {
    const now = this.#now();
    for (const s of this.#sources) {
      if (s.ended || s.offset === undefined) continue;
      const w = now + s.offset - this.#lateNs;
      if (w > s.watermark) s.watermark = w;
    }
    return this.#release();
  }

  /** Everything still held, in order (at the end of a capture). */
  flush(): T[] {
    for (const s of this.#sources) s.ended = true;
    return this.#release();
  }

  #source(i: number): Source<T> {
    const s = this.#sources[i];
    if (!s) throw new RangeError(`no merge source ${i}`);
    return s;
  }

  #release(): T[] {
    let safe: bigint | undefined;
    for (const s of this.#sources) {
      if (s.ended) continue;
      // A live source that never spoke holds everything back (until the buffer bound).
      if (safe === undefined || s.watermark < safe) safe = s.watermark;
    }
    const out: T[] = [];
    for (;;) {
      let best: Source<T> | undefined;
      for (const s of this.#sources) {
        if (s.head < s.queue.length && (!best || s.queue[s.head]!.timestampNs < best.queue[best.head]!.timestampNs)) best = s;
      }
      if (!best) break;
      const p = best.queue[best.head]!;
      const forced = this.#buffered > this.#maxBuffered;
      if (!forced && safe !== undefined && p.timestampNs > safe) break;
      if (forced && safe !== undefined && p.timestampNs > safe) this.forced++;
      if (p.timestampNs < this.#released) this.late++;
      else this.#released = p.timestampNs;
      out.push(p);
      this.#buffered--;
      if (++best.head === best.queue.length || best.head > 4096) {
        best.queue = best.queue.slice(best.head);
        best.head = 0;
      }
    }
    return out;
  }
}

/** Wall clock minus the monotonic clock, in ns: hrtime + this ≈ now since the epoch. */
const EPOCH_OFFSET = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
