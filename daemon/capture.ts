// One running capture: its armed sockets (each with a TPACKET_V3 ring and a locked kernel
// filter), a reader per socket woken by the reactor, the batcher, and the bounded queue between
// the rings and the client's stream, run under the client's backpressure policy:
//   BLOCK        the readers stop taking blocks while the queue is full: the ring fills and the
//                kernel drops (dropped_by_kernel);
//   DROP_OLDEST  the oldest queued batches not yet handed to gRPC are discarded (dropped_by_broker);
//   DROP_NEWEST  a batch that does not fit is discarded (dropped_by_broker).
// Counters, summed over the sockets: received (kernel tp_packets, read after the rings were
// drained) = captured + dropped_by_kernel + dropped_by_broker + pending, exactly, in every batch.
import type { Reactor } from '../native/reactor.js';
import { close } from '../native/libc.js';
import { forEachPacket, type PacketRing } from '../native/packet-ring.js';
import { SLL2_HDR_LEN } from '../native/bpf.js';
import { linux } from '../native/constants.js';
import { BATCH_HEAD_ROOM, BATCH_TAIL_ROOM, batchResponseAround, encodeBatchResponse, PACKET_OVERHEAD, writePacket, type StatsValues } from '../proto/codec/capture.js';
import { CaptureBackpressure, CaptureDirection } from '../proto/gen/sockbroker/v1/capture.js';

const PACKET_OUTGOING = linux.PACKET_OUTGOING ?? 4;
/** Most blocks one reader takes before letting other work run. */
const BLOCKS_PER_TURN = 16;
/**
 * An idle capture sends its counters and watermark every batch latency bound, within these (ms):
 * a merge of several captures waits about this long for an idle one.
 */
const HEARTBEAT_MIN_MS = 100;
const HEARTBEAT_MAX_MS = 1000;

/** One armed socket of a capture. */
export interface CaptureSocket {
  fd: number;
  ring: PacketRing;
  /** Index into CaptureArmed.interfaces. */
  slot: number;
  /** Data needs a LINUX_SLL2 header built from the ring's sockaddr_ll (a SOCK_DGRAM socket). */
  cooked: boolean;
}

export interface CaptureOptions {
  batchMaxBytes: number;
  latencyMs: number;
  queueBytes: number;
  backpressure: CaptureBackpressure;
  /** 0 = unbounded. */
  packetsPerSecond: number;
  bytesPerSecond: number;
  /** Kernel block retire timeout, ms (bounds how long a packet waits in a half-full block). */
  retireMs: number;
  /** Each packet carries its data only (a sniffer socket's recvfrom needs nothing else). */
  dataOnly?: boolean;
}

/** Where sealed batches go: returns false while the stream wants no more (gRPC's backpressure). */
export interface CaptureSink {
  /** Writes one encoded CaptureResponse; `done` runs once gRPC flushed it. */
  write(msg: Buffer, done: () => void): void;
}

interface Batch {
  /** Packet entries at [BATCH_HEAD_ROOM, end), room for the rest of the message around them. */
  buf: Buffer;
  end: number;
  packets: number;
  bytes: number;
  /** Smallest timestamp in the batch, ns (bigint: exact). */
  minTs: number;
}

/** Wall clock in ns as a double (~256 ns precision: enough for a watermark). */
const nowNs = (): number => Date.now() * 1e6;

export class Capture {
  readonly #socks: CaptureSocket[];
  readonly #opts: CaptureOptions;
  readonly #sink: CaptureSink;
  readonly #reactor: Reactor;
  readonly #ac = new AbortController();
  #stopped = false;
  // The open batch being filled: the front of #work, whose back (from #openSize) takes each ring
  // block, so packets move from block to batch by copyWithin (no allocation per packet or block).
  readonly #work: Buffer;
  readonly #openSize: number;
  readonly #blockArea: Buffer;
  #openPos = 0;
  #openPackets = 0;
  #openBytes = 0;
  #openMinTs = -1;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  // Sealed batches not yet handed to gRPC, and bytes handed but not yet flushed.
  readonly #queue: Batch[] = [];
  #queuedBytes = 0;
  #inflightBytes = 0;
  #inflight = 0;
  #resume: (() => void) | undefined;
  /** Wall time (ns) each socket was last seen empty, for the watermark. */
  readonly #drainedAt: number[];
  readonly counters: { captured: number; capturedBytes: number; droppedByBroker: number };
  // Rate quota: a token bucket per second.
  #rateWindow = 0;
  #ratePackets = 0;
  #rateBytes = 0;
  readonly #sllHeader = Buffer.alloc(SLL2_HDR_LEN);
  readonly #readers: Promise<void>[] = [];

  /** `counters` may carry on from an earlier stream over the same rings (a sniffer socket's). */
  constructor(socks: CaptureSocket[], opts: CaptureOptions, sink: CaptureSink, reactor: Reactor, counters = { captured: 0, capturedBytes: 0, droppedByBroker: 0 }) {
    this.counters = counters;
    this.#socks = socks;
    this.#opts = opts;
    this.#sink = sink;
    this.#reactor = reactor;
    const blockMax = Math.max(0, ...socks.map((s) => s.ring.blockSize));
    // Any packet fits a block, so any packet (with its cooked header) fits an empty batch.
    this.#openSize = Math.max(opts.batchMaxBytes, blockMax + SLL2_HDR_LEN) + PACKET_OVERHEAD * 2;
    this.#work = Buffer.allocUnsafe(this.#openSize + blockMax);
    this.#blockArea = this.#work.subarray(this.#openSize);
    this.#drainedAt = socks.map(() => nowNs());
  }

  /** Starts the readers and the heartbeat. */
  start(): void {
    for (const s of this.#socks) this.#readers.push(this.#read(s));
    this.#heartbeat = setInterval(() => {
      // An idle ring has no readiness to wake its reader: look at it here, so the watermark
      // moves on (and half-full blocks the kernel handed over are not left waiting).
      for (const s of this.#socks) this.#drain(s, BLOCKS_PER_TURN);
      if (this.#inflight === 0 && this.#queue.length === 0) this.#flushOpen(true);
    }, Math.min(HEARTBEAT_MAX_MS, Math.max(HEARTBEAT_MIN_MS, this.#opts.latencyMs)));
  }

  /** The counters now (rings' statistics read after their last drain). */
  stats(): StatsValues {
    let received = 0, drops = 0, freezes = 0;
    for (const s of this.#socks) {
      const st = s.ring.readStats();
      received += st.packets;
      drops += st.drops;
      freezes += st.freezes;
    }
    const { captured, droppedByBroker, capturedBytes } = this.counters;
    return {
      received, captured, droppedByKernel: drops, droppedByBroker, freezeCount: freezes, capturedBytes,
      pending: Math.max(0, received - captured - drops - droppedByBroker),
    };
  }

  /**
   * Stops reading: the readers end, the rings are drained once more, and what is queued is
   * either sent (`flush`) or counted as dropped by the broker. The caller closes the sockets.
   */
  async stop(flush: boolean): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#ac.abort();
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    this.#resume?.();
    await Promise.allSettled(this.#readers);
    if (!flush) return;
    for (const s of this.#socks) this.#drain(s, Infinity);
    this.#seal();
    while (this.#queue.length) this.#send(this.#queue.shift()!);
    this.#queuedBytes = 0;
    this.#sendEmpty();
  }

  /** Whether the queue leaves room for another batch. */
  #room(): boolean {
    return this.#queuedBytes + this.#inflightBytes + this.#opts.batchMaxBytes <= this.#opts.queueBytes;
  }

  async #read(s: CaptureSocket): Promise<void> {
    const signal = this.#ac.signal;
    while (!this.#stopped) {
      if (this.#opts.backpressure === CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK && !this.#room()) {
        await new Promise<void>((resolve) => {
          const prev = this.#resume;
          this.#resume = () => {
            this.#resume = undefined;
            prev?.();
            resolve();
          };
        });
        continue;
      }
      const more = this.#drain(s, BLOCKS_PER_TURN);
      if (more) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      try {
        await this.#reactor.wait(s.fd, 'read', signal);
      } catch {
        return;
      }
    }
  }

  /** Takes up to `max` blocks from a ring; true when it stopped with blocks left. */
  #drain(s: CaptureSocket, max: number): boolean {
    for (let n = 0; n < max; n++) {
      if (this.#opts.backpressure === CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK && !this.#room() && !this.#stopped) return true;
      const block = s.ring.take(this.#blockArea);
      if (!block) {
        this.#drainedAt[s.slot] = nowNs();
        return false;
      }
      forEachPacket(block, (p) => {
        const dataLen = p.caplen + (s.cooked ? SLL2_HDR_LEN : 0);
        if (!this.#admit(dataLen)) {
          this.counters.droppedByBroker++;
          return;
        }
        if (this.#openPos + PACKET_OVERHEAD + dataLen > this.#openSize) this.#seal();
        let header: Buffer | null = null;
        if (s.cooked) {
          header = this.#sllHeader;
          header.fill(0);
          header.writeUInt16BE(p.protocol, 0);
          header.writeUInt32BE(p.ifindex >>> 0, 4);
          header.writeUInt16BE(p.hatype, 8);
          header[10] = p.pkttype;
          header[11] = p.halen;
          block.copy(header, 12, p.addrOffset, p.addrOffset + p.halen);
        }
        const dir = p.pkttype === PACKET_OUTGOING ? CaptureDirection.CAPTURE_DIRECTION_OUT : CaptureDirection.CAPTURE_DIRECTION_IN;
        this.#openPos = this.#opts.dataOnly
          ? writePacket(this.#work, this.#openPos, 0, 0, 0, 0, 0, 0, null, block, p.offset, p.offset + p.caplen)
          : writePacket(this.#work, this.#openPos, p.sec, p.nsec, p.len + (s.cooked ? SLL2_HDR_LEN : 0), s.slot, p.ifindex, dir, header, block, p.offset, p.offset + p.caplen);
        const ts = p.sec * 1e9 + p.nsec; // ordering only: double precision (~256 ns) is enough
        if (this.#openPackets === 0) {
          this.#openMinTs = ts;
          this.#timer ??= setTimeout(() => {
            this.#timer = undefined;
            this.#seal();
          }, this.#opts.latencyMs);
        } else if (ts < this.#openMinTs) {
          this.#openMinTs = ts;
        }
        this.#openPackets++;
        this.#openBytes += dataLen;
        if (this.#openBytes >= this.#opts.batchMaxBytes) this.#seal();
      });
    }
    return true;
  }

  /** The rate quota: whether one more packet of `bytes` may be delivered this second. */
  #admit(bytes: number): boolean {
    const { packetsPerSecond: pps, bytesPerSecond: bps } = this.#opts;
    if (!pps && !bps) return true;
    const now = Math.floor(performance.now() / 1000);
    if (now !== this.#rateWindow) {
      this.#rateWindow = now;
      this.#ratePackets = 0;
      this.#rateBytes = 0;
    }
    if ((pps && this.#ratePackets + 1 > pps) || (bps && this.#rateBytes + bytes > bps)) return false;
    this.#ratePackets++;
    this.#rateBytes += bytes;
    return true;
  }

  /** Closes the open batch into the queue (or drops it, or old ones, when the queue is full). */
  #seal(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#openPackets === 0) return;
    // The one copy of a batch: into the buffer its message is finished in (#send).
    const buf = Buffer.allocUnsafe(BATCH_HEAD_ROOM + this.#openPos + BATCH_TAIL_ROOM);
    this.#work.copy(buf, BATCH_HEAD_ROOM, 0, this.#openPos);
    const batch: Batch = { buf, end: BATCH_HEAD_ROOM + this.#openPos, packets: this.#openPackets, bytes: this.#openBytes, minTs: this.#openMinTs };
    this.#openPos = 0;
    this.#openPackets = 0;
    this.#openBytes = 0;
    const bp = this.#opts.backpressure;
    if (!this.#stopped && this.#queuedBytes + this.#inflightBytes + batch.bytes > this.#opts.queueBytes) {
      if (bp === CaptureBackpressure.CAPTURE_BACKPRESSURE_DROP_OLDEST) {
        while (this.#queue.length && this.#queuedBytes + this.#inflightBytes + batch.bytes > this.#opts.queueBytes) {
          const old = this.#queue.shift()!;
          this.#queuedBytes -= old.bytes;
          this.counters.droppedByBroker += old.packets;
        }
      }
      if (bp !== CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK && this.#queuedBytes + this.#inflightBytes + batch.bytes > this.#opts.queueBytes) {
        this.counters.droppedByBroker += batch.packets;
        return;
      }
    }
    this.#queue.push(batch);
    this.#queuedBytes += batch.bytes;
    this.#pump();
  }

  /** Hands queued batches to gRPC, at most two in flight. */
  #pump(): void {
    while (this.#queue.length && this.#inflight < 2) {
      const b = this.#queue.shift()!;
      this.#queuedBytes -= b.bytes;
      this.#send(b);
    }
  }

  /** [seconds, nanoseconds] below which no later packet can be stamped. */
  #watermark(): [number, number] {
    // Packets still in a kernel block were stamped at most ~2 retire periods before it was
    // handed over; the queued and open batches hold older ones. Rounded down to a microsecond.
    let wm = Math.min(...this.#drainedAt) - (2 * this.#opts.retireMs + 20) * 1e6;
    for (const b of this.#queue) wm = Math.min(wm, b.minTs);
    if (this.#openPackets) wm = Math.min(wm, this.#openMinTs);
    const us = Math.max(0, Math.floor(wm / 1000) - 1);
    return [Math.floor(us / 1e6), (us % 1e6) * 1000];
  }

  #send(b: Batch): void {
    this.counters.captured += b.packets;
    this.counters.capturedBytes += b.bytes;
    this.#inflight++;
    this.#inflightBytes += b.bytes;
    const [sec, nsec] = this.#watermark();
    const msg = batchResponseAround(b.buf, BATCH_HEAD_ROOM, b.end, this.stats(), sec, nsec);
    this.#sink.write(msg, () => {
      this.#inflight--;
      this.#inflightBytes -= b.bytes;
      if (!this.#stopped) this.#pump();
      if (this.#room()) this.#resume?.();
    });
  }

  #sendEmpty(): void {
    const [sec, nsec] = this.#watermark();
    this.#inflight++;
    this.#sink.write(encodeBatchResponse(Buffer.alloc(0), this.stats(), sec, nsec), () => {
      this.#inflight--;
    });
  }

  /** Heartbeat: seals what is open (or sends counters alone when nothing is). */
  #flushOpen(idle: boolean): void {
    if (this.#openPackets) this.#seal();
    else if (idle) this.#sendEmpty();
  }
}

/** Closes a capture's sockets and unmaps their rings (the memory is never viewed by a Buffer). */
export function releaseSockets(reactor: Reactor, socks: Array<{ fd: number; ring?: PacketRing }>): void {
  for (const s of socks) {
    reactor.forget(s.fd);
    s.ring?.unmap();
    try {
      close(s.fd);
    } catch {
      // already closed
    }
  }
}
