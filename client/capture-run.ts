// What `sockbroker capture` and `sockbroker extcap` do, over the SDK only: captures on one or
// more brokers (one capture per broker and interface, so each pcapng interface block gets its
// own counters), merged in timestamp order when there are several, written as pcap or pcapng
// batch by batch, until a count, a signal, or the end of every stream.
import { connect, type SocketModule } from './module.js';
import type { TransportOptions } from './transport.js';
import type { Capture, CaptureBatch, CaptureOptions, CaptureStats, CapturedPacket } from './capture.js';
import { CaptureMerge } from './capture-merge.js';
import { PcapngWriter, PcapWriter, pcapRecordsFromWire } from './pcap.js';

export interface CaptureRunOptions {
  /** Broker addresses (unix:/PATH or tcp:HOST:PORT); [undefined] = the SDK's default broker. */
  brokers: Array<string | undefined>;
  /** How to reach the tcp: ones (TLS, token); local unix: brokers know the caller by its credentials. */
  connect?: TransportOptions;
  /** What to capture; `interfaces` are captured one stream each (none = 'any'). */
  capture: CaptureOptions;
  /** File format; default pcapng for several brokers or interfaces, else pcap. */
  format?: 'pcap' | 'pcapng';
  /** Where the file's bytes go; resolves when the bytes were taken (backpressure). */
  write: (chunk: Buffer) => Promise<void> | void;
  /** Stop after this many packets. */
  count?: number;
  /** Aborting stops the capture (the summary still follows). */
  signal?: AbortSignal;
  /** Called once every capture is armed, one entry per source. */
  onArmed?: (sources: readonly SourceInfo[]) => void;
  /** Called after every batch with the totals so far. */
  onProgress?: (totals: CaptureTotals) => void;
  /** How often interface statistics blocks are written (ms); default 10 s. */
  statisticsIntervalMs?: number;
}

export interface SourceInfo {
  broker: string;
  interface: string;
  linkType: number;
  snaplen: number;
}

/**
 * The summary in tcpdump's terms: captured + droppedByKernel + droppedByBroker = received, except
 * that after a count (-c) packets the brokers delivered past it count as received only, as in tcpdump.
 */
export interface CaptureTotals {
  /** Packets written. */
  captured: number;
  /** Packets the filters accepted (what the brokers had accounted for when the capture stopped). */
  received: number;
  droppedByKernel: number;
  droppedByBroker: number;
}

interface Source {
  info: SourceInfo;
  capture: Capture;
  /** pcapng interface id. */
  id: number;
  stats: CaptureStats;
  /** Packets this source delivered that were not written (cut by -c). */
  unwritten: number;
}

interface Item {
  timestampNs: bigint;
  id: number;
  packet: CapturedPacket;
}

const ZERO: CaptureStats = { received: 0, captured: 0, droppedByKernel: 0, droppedByBroker: 0, pending: 0, freezeCount: 0, capturedBytes: 0 };

/** Sums the sources' counters; packets still pending at the end were neither delivered nor dropped. */
function totals(sources: readonly Source[], written: number): CaptureTotals {
  const t = { captured: written, received: 0, droppedByKernel: 0, droppedByBroker: 0 };
  for (const s of sources) {
    t.received += s.stats.received - s.stats.pending;
    t.droppedByKernel += s.stats.droppedByKernel;
    t.droppedByBroker += s.stats.droppedByBroker;
  }
  return t;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Runs a capture to the end and resolves to its totals. */
export async function runCapture(opts: CaptureRunOptions): Promise<CaptureTotals> {
  const brokers = opts.brokers.length > 0 ? opts.brokers : [undefined];
  const interfaces = opts.capture.interfaces && opts.capture.interfaces.length > 0 ? opts.capture.interfaces : ['any'];
  const modules: SocketModule[] = [];
  const sources: Source[] = [];
  try {
    // Arm every capture before writing anything: the file's header needs every interface.
    for (const address of brokers) {
      const m = await connect(address, address?.startsWith('tcp:') ? opts.connect : {});
      modules.push(m);
      for (const name of interfaces) {
        const capture = await m.capture({ ...opts.capture, interfaces: [name] });
        const i = capture.interfaces[0]!;
        sources.push({ info: { broker: address ?? 'default', interface: i.name, linkType: i.linkType, snaplen: capture.armed.snaplen }, capture, id: 0, stats: ZERO, unwritten: 0 });
      }
    }
    return await write(opts, sources);
  } finally {
    for (const s of sources) s.capture.close();
    await Promise.all(modules.map((m) => m.disconnect().catch(() => undefined)));
  }
}

async function write(opts: CaptureRunOptions, sources: Source[]): Promise<CaptureTotals> {
  const format = opts.format ?? (sources.length > 1 ? 'pcapng' : 'pcap');
  const snaplen = Math.max(...sources.map((s) => s.info.snaplen));
  let encode: (items: readonly Item[]) => Buffer;
  let encodeOne: (s: Source, packets: readonly CapturedPacket[]) => Buffer;
  /** A whole batch's records straight from its message (pcap), when the format allows. */
  let encodeWire: ((b: CaptureBatch) => Buffer) | undefined;
  let ng: PcapngWriter | undefined;
  const start = nowNs();
  if (format === 'pcap') {
    const linkTypes = new Set(sources.map((s) => s.info.linkType));
    if (linkTypes.size > 1) throw new TypeError(`a pcap file has one link type; these interfaces have ${[...linkTypes].join(', ')}: use --format pcapng`);
    const w = new PcapWriter({ linkType: sources[0]!.info.linkType, snaplen });
    await opts.write(w.header());
    encode = (items) => w.packets(items.map((i) => i.packet));
    encodeOne = (_s, packets) => w.packets(packets);
    encodeWire = (b) => pcapRecordsFromWire(w, b.wire.buf, b.wire.fields, b.wire.count);
  } else {
    const w = (ng = new PcapngWriter());
    const blocks = [w.header()];
    for (const s of sources) {
      // One snap length for all (libpcap refuses a pcapng whose interfaces differ in it).
      const idb = w.addInterface({ linkType: s.info.linkType, snaplen, name: s.info.interface, description: `sockbroker ${s.info.broker}` });
      s.id = idb.id;
      blocks.push(idb.block);
    }
    await opts.write(Buffer.concat(blocks));
    encode = (items) => w.mixed(items.map((i) => ({ id: i.id, packet: i.packet })));
    encodeOne = (s, packets) => w.packets(s.id, packets);
  }
  opts.onArmed?.(sources.map((s) => s.info));

  const stats = (): Buffer | undefined => {
    if (!ng) return undefined;
    const ts = nowNs();
    return Buffer.concat(sources.map((s) => ng!.statistics(s.id, {
      timestampNs: ts, startNs: start,
      received: BigInt(s.stats.received - s.stats.pending), captured: BigInt(s.stats.captured - s.unwritten),
      droppedByKernel: BigInt(s.stats.droppedByKernel), droppedByBroker: BigInt(s.stats.droppedByBroker),
    })));
  };

  let written = 0;
  const limit = opts.count ?? Infinity;
  const stopAll = () => sources.forEach((s) => s.capture.close());
  if (opts.signal?.aborted) stopAll();
  opts.signal?.addEventListener('abort', stopAll, { once: true });
  // Writes go one after another (the sources run concurrently).
  let chain: Promise<void> = Promise.resolve();
  const out = (b: Buffer | undefined) => {
    if (b && b.length > 0) chain = chain.then(() => opts.write(b));
    return chain;
  };
  // Every batch and idle heartbeat carries its broker's watermark: no clock of ours is needed.
  const merge = sources.length > 1 ? new CaptureMerge<Item>(sources.length) : undefined;
  const emit = (items: Item[]) => {
    if (items.length === 0) return;
    const room = limit - written;
    if (items.length > room) {
      for (const it of items.slice(room)) sources.find((s) => s.id === it.id)!.unwritten++;
      items = items.slice(0, room);
    }
    written += items.length;
    out(encode(items));
    if (written >= limit) stopAll();
  };
  const periodic = ng ? setInterval(() => out(stats()), opts.statisticsIntervalMs ?? 10_000) : undefined;
  try {
    await Promise.all(sources.map(async (s, index) => {
      for await (const b of s.capture.batches()) {
        s.stats = b.stats;
        if (merge) {
          emit(merge.push(index, b.packets.map((packet) => ({ timestampNs: packet.timestampNs, id: s.id, packet })), b.watermarkNs));
        } else if (encodeWire && b.wire.count > 0 && b.wire.count <= limit - written) {
          written += b.wire.count;
          await out(encodeWire(b));
          if (written >= limit) stopAll();
        } else if (b.packets.length > 0) {
          let packets = b.packets;
          if (packets.length > limit - written) {
            s.unwritten += packets.length - (limit - written);
            packets = packets.slice(0, limit - written);
          }
          written += packets.length;
          if (packets.length > 0) await out(encodeOne(s, packets));
          if (written >= limit) stopAll();
        }
        opts.onProgress?.(totals(sources, written));
        await chain;
      }
      if (merge) emit(merge.end(index));
    }));
    if (merge) emit(merge.flush());
    await out(stats());
  } finally {
    clearInterval(periodic);
    opts.signal?.removeEventListener('abort', stopAll);
  }
  await chain;
  return totals(sources, written);
}
