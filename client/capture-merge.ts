// Merges packet streams from several sources (brokers, interfaces) into one in timestamp order.
// Each source delivers its packets in order; its watermark is the time before which it will
// deliver nothing more: the last timestamp it delivered, or later when the source says so. A
// broker says so with every batch and, when idle, with a heartbeat at least every batch latency
// bound (100 ms .. 1 s) whose watermark follows its clock (daemon/capture.ts), so an idle source
// never stalls the output for longer than that. A packet is released once every live source's
// watermark has reached it. Buffering is bounded: past the bound the oldest packets are released
// anyway, and counted (`forced`).

/** The merge's view of a packet: only its timestamp matters. */
export interface Timestamped {
  timestampNs: bigint;
}

export interface MergeOptions {
  /** Most packets held back in all; beyond it the oldest go out regardless of watermarks. */
  maxBuffered?: number;
}

interface Source<T> {
  queue: T[];
  head: number;
  /** Nothing earlier than this will come from the source. */
  watermark: bigint;
  ended: boolean;
}

export class CaptureMerge<T extends Timestamped> {
  readonly #sources: Source<T>[] = [];
  readonly #maxBuffered: number;
  #buffered = 0;
  /** Packets released by the buffer bound before every watermark reached them. */
  forced = 0;
  /** Packets that arrived older than what was already released (released at once). */
  late = 0;
  #released = -1n << 64n;

  constructor(sources: number, opts: MergeOptions = {}) {
    for (let i = 0; i < sources; i++) this.#sources.push({ queue: [], head: 0, watermark: -1n << 64n, ended: false });
    this.#maxBuffered = opts.maxBuffered ?? 65_536;
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
    // A watermark never moves back (an older one, e.g. from a reordered heartbeat, is ignored).
    if (watermarkNs !== undefined && watermarkNs > s.watermark) s.watermark = watermarkNs;
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
