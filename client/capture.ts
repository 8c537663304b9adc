// socket.capture(options): a filtered packet capture on the broker host (CaptureService), as an
// async iterable of packets or of batches, with the capture's live counters. The stream's own
// flow control carries backpressure: when the program reads slower than packets come, the SDK
// stops reading the stream (a few batches are held), the broker's queue fills, and the chosen
// policy applies there (block: the kernel drops; drop-oldest/-newest: the broker drops), each
// drop counted. Ending the iteration (break/return/throw) or close() cancels the stream.
import type * as grpc from '@grpc/grpc-js';
import { CaptureBackpressure, CaptureDirection, CaptureRequest, type CaptureArmed } from '../proto/gen/sockbroker/v1/capture.js';
import { decodeCaptureResponse, type WireBatch, type WireResponse, type WireStats } from '../proto/codec/capture.js';
import { streamError } from './errors.js';
import type { PacketRecord } from './pcap.js';
import type { Transport } from './transport.js';

export interface CaptureOptions {
  /** Interface names on the broker host; empty or ['any'] = every interface (cooked, LINUX_SLL2). */
  interfaces?: string[];
  /** A pcap-filter(7) expression (tcpdump's); '' = every packet. */
  filter?: string;
  /** Bytes kept of each packet; 0/undefined = 262144. */
  snaplen?: number;
  /** Promiscuous mode for the capture's lifetime (default true, as tcpdump; needs the grant). */
  promiscuous?: boolean;
  /** Which packets by direction (tcpdump's -Q); default 'inout'. */
  direction?: 'in' | 'out' | 'inout';
  /** Kernel ring bytes per interface (tcpdump's -B, in bytes); default 2 MiB. */
  bufferBytes?: number;
  /** Largest batch in bytes (4 KiB .. 1 MiB; default 256 KiB). */
  batchMaxBytes?: number;
  /** Longest a packet waits for its batch, ms (1 .. 1000; default 100). */
  batchMaxLatencyMs?: number;
  /** What the broker does when this program reads too slowly (default 'block'). */
  backpressure?: 'block' | 'drop-oldest' | 'drop-newest';
  /** Bytes the broker queues for this capture (default 4 MiB). */
  queueBytes?: number;
  /** Capture this program's own gRPC connection too (excluded by default for TCP callers). */
  includeOwnConnection?: boolean;
}

/** One interface of a capture. */
export interface CaptureInterface {
  /** Interface name on the broker host ('any' for the cooked all-interfaces socket). */
  name: string;
  /** ifindex on the broker host (0 for 'any'). */
  index: number;
  /** LINKTYPE_* of its packets (1 = Ethernet, 276 = LINUX_SLL2). */
  linkType: number;
}

/** A captured packet: the writers' PacketRecord plus where it was captured. */
export interface CapturedPacket extends PacketRecord {
  data: Buffer;
  /** Index into capture.interfaces. */
  interface: number;
  /** The ifindex the packet crossed (for 'any': the real interface). */
  ifindex: number;
}

/** A capture's counters since it was armed (captured + droppedByKernel + droppedByBroker + pending = received). */
export type CaptureStats = WireStats;

export interface CaptureBatch {
  /** The packets (objects made on first use). */
  readonly packets: CapturedPacket[];
  /** @internal The packets as numbers (WireBatch.fields) and the message they point into: the CLI's pcap writer reads these. */
  readonly wire: Pick<WireBatch, 'count' | 'fields' | 'buf'>;
  /** The counters as of this batch. */
  stats: CaptureStats;
  /** No later packet of this capture is older than this (ns since the epoch). */
  watermarkNs: bigint;
}

/** Most batches the SDK holds before it stops reading the stream (each up to ~1 MiB). */
const HELD_BATCHES = 8;

const DIRECTIONS = { in: CaptureDirection.CAPTURE_DIRECTION_IN, out: CaptureDirection.CAPTURE_DIRECTION_OUT, inout: CaptureDirection.CAPTURE_DIRECTION_INOUT } as const;
const POLICIES = {
  block: CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK,
  'drop-oldest': CaptureBackpressure.CAPTURE_BACKPRESSURE_DROP_OLDEST,
  'drop-newest': CaptureBackpressure.CAPTURE_BACKPRESSURE_DROP_NEWEST,
} as const;

function u32(v: number | undefined, name: string): number {
  if (v === undefined) return 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`capture: ${name} must be an integer 0..4294967295, not ${v}`);
  return v;
}

/** The request for `opts`, validated (the broker validates again). */
export function captureRequest(opts: CaptureOptions): CaptureRequest {
  const interfaces = opts.interfaces ?? [];
  if (!Array.isArray(interfaces) || interfaces.some((i) => typeof i !== 'string' || i === '' || i.length > 15 && i !== 'any')) {
    throw new TypeError('capture: interfaces must be interface names (at most 15 characters)');
  }
  const filter = opts.filter ?? '';
  if (typeof filter !== 'string') throw new TypeError('capture: filter must be a string');
  const direction = opts.direction ?? 'inout';
  if (!(direction in DIRECTIONS)) throw new TypeError(`capture: direction must be 'in', 'out' or 'inout', not ${JSON.stringify(direction)}`);
  const backpressure = opts.backpressure ?? 'block';
  if (!(backpressure in POLICIES)) throw new TypeError(`capture: backpressure must be 'block', 'drop-oldest' or 'drop-newest', not ${JSON.stringify(backpressure)}`);
  return {
    interfaces,
    filter,
    snaplen: u32(opts.snaplen, 'snaplen'),
    promiscuous: opts.promiscuous ?? true,
    direction: DIRECTIONS[direction],
    bufferBytes: u32(opts.bufferBytes, 'bufferBytes'),
    batchMaxBytes: u32(opts.batchMaxBytes, 'batchMaxBytes'),
    batchMaxLatencyMs: u32(opts.batchMaxLatencyMs, 'batchMaxLatencyMs'),
    backpressure: POLICIES[backpressure],
    queueBytes: u32(opts.queueBytes, 'queueBytes'),
    includeOwnConnection: Boolean(opts.includeOwnConnection),
  };
}

const ZERO_STATS: CaptureStats = { received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0 };

/** A running capture. Iterate it for packets, or `batches()` for batches (one consumer at a time). */
export class Capture implements AsyncIterable<CapturedPacket> {
  /** The interfaces captured, in request order. */
  readonly interfaces: readonly CaptureInterface[];
  /** Effective snap length, filter, guard and the other settings the broker chose. */
  readonly armed: Readonly<CaptureArmed>;
  #stats: CaptureStats = ZERO_STATS;
  #watermarkNs = 0n;
  readonly #call: grpc.ClientReadableStream<WireResponse>;
  readonly #queue: WireBatch[] = [];
  #wake: (() => void) | undefined;
  #done = false;
  #error: Error | undefined;
  #closed = false;
  #reading = false;

  /** @internal Built by socket.capture() once the broker armed it. */
  constructor(call: grpc.ClientReadableStream<WireResponse>, armed: CaptureArmed) {
    this.#call = call;
    this.armed = armed;
    this.interfaces = armed.interfaces.map((i) => ({ name: i.name, index: i.index, linkType: i.linkType }));
    call.on('data', (m: WireResponse) => {
      if (!m.batch) return;
      this.#queue.push(m.batch);
      if (this.#queue.length >= HELD_BATCHES) call.pause();
      this.#notify();
    });
    call.on('error', (err: grpc.ServiceError) => {
      // Our own cancel ends the stream as CANCELLED: that is a normal end.
      if (!this.#closed) this.#error = streamError(err);
      this.#finish();
    });
    call.on('end', () => this.#finish());
  }

  /** The latest counters (updated as batches are read). */
  get stats(): CaptureStats {
    return this.#stats;
  }

  /** The latest watermark: no later packet is older (ns since the epoch). */
  get watermarkNs(): bigint {
    return this.#watermarkNs;
  }

  /** True once the stream has ended (closed, cancelled, or ended by the broker). */
  get ended(): boolean {
    return this.#done && this.#queue.length === 0;
  }

  #finish(): void {
    this.#done = true;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** The next batch, or undefined at the end; throws the error that ended the stream. */
  async next(): Promise<CaptureBatch | undefined> {
    for (;;) {
      const b = this.#queue.shift();
      if (b) {
        if (this.#queue.length < HELD_BATCHES / 2 && !this.#done) this.#call.resume();
        return this.#accept(b);
      }
      if (this.#done) {
        if (this.#error) throw this.#error;
        return undefined;
      }
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  #accept(b: WireBatch): CaptureBatch {
    if (b.stats) this.#stats = b.stats;
    if (b.watermarkNs > this.#watermarkNs) this.#watermarkNs = b.watermarkNs;
    let packets: CapturedPacket[] | undefined;
    return {
      get packets(): CapturedPacket[] {
        if (packets) return packets;
        packets = b.packets as unknown as CapturedPacket[];
        for (const p of b.packets as Array<WireBatchPacket>) {
          // The wire's direction enum becomes the writers' 'in' / 'out' (in place: no copy per packet).
          const d = p.direction;
          (p as unknown as CapturedPacket).direction = d === 1 ? 'in' : d === 2 ? 'out' : undefined;
        }
        return packets;
      },
      wire: b,
      stats: this.#stats,
      watermarkNs: this.#watermarkNs,
    };
  }

  /** The batches as they come (empty ones included: they carry counters and the watermark). */
  async *batches(): AsyncGenerator<CaptureBatch, void, undefined> {
    this.#claim();
    try {
      for (;;) {
        const b = await this.next();
        if (!b) return;
        yield b;
      }
    } finally {
      this.#reading = false;
      this.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<CapturedPacket, void, undefined> {
    for await (const b of this.batches()) yield* b.packets;
  }

  #claim(): void {
    if (this.#reading) throw new Error('capture: already being iterated');
    this.#reading = true;
  }

  /** Stops the capture (cancels the stream; the broker releases its ring at once). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#done) this.#call.cancel();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

type WireBatchPacket = WireBatch['packets'][number];

/** Opens a capture on `t`'s channel and session; resolves once the broker has armed it. */
export function openCapture(t: Transport, opts: CaptureOptions): Promise<Capture> {
  const req = Buffer.from(CaptureRequest.encode(captureRequest(opts)).finish());
  const call = t.serverStream('/sockbroker.v1.CaptureService/Capture', req, decodeCaptureResponse);
  return new Promise<Capture>((resolve, reject) => {
    const onData = (m: WireResponse) => {
      if (!m.armed) return;
      call.off('data', onData);
      call.off('error', onError);
      call.off('end', onEnd);
      resolve(new Capture(call, m.armed));
    };
    const onError = (err: grpc.ServiceError) => reject(streamError(err));
    const onEnd = () => reject(new Error('capture: the broker ended the stream before arming it'));
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
  });
}
