// What the bench processes agree on: sizes, the peers' tiny wire protocol, and how a child
// process reports to the runner (one JSON line on stdout).
//
// Peer protocol (TCP, 127.0.0.1):
//   echo   — every byte received is written back.
//   sink   — the client sends an 8-byte big-endian length N, then N bytes; the sink answers one
//            byte once all N arrived. Repeats on the same connection.
//   source — the client sends an 8-byte big-endian length N; the source writes N bytes as fast
//            as the socket takes them. Repeats on the same connection.

/** Bytes of one echo round trip. */
export const ECHO_BYTES = 64;
/** Bytes of one send/recv call in the bulk runs. */
export const CHUNK_BYTES = 1 << 20;
/** Bytes of one measured bulk transfer. */
export const BULK_BYTES = 64 << 20;
/** Bytes of the warm-up transfer each client makes before its measured ones. */
export const BULK_WARMUP_BYTES = 16 << 20;
/** Round trips each client makes before measuring. */
export const ECHO_WARMUP = 1000;
/**
 * The scenarios run in ROUNDS interleaved rounds (A B C … A B C …), a fresh client process each
 * time, and their samples are pooled: load from elsewhere on the machine then skews every
 * scenario alike instead of whichever ran while it lasted.
 */
export const ROUNDS = 3;
/** Measured round trips per echo scenario, over all rounds. */
export const ECHO_ITERATIONS = 6000;
/** Measured transfers per bulk scenario, over all rounds (the median is reported). */
export const BULK_REPS = 6;

/** Fan-in: client processes, connections each, ms every connection warms up for (echoing). */
export const FANIN_CLIENTS = Number(process.env.BENCH_FANIN_CLIENTS) || 32;
export const FANIN_CONNS = Number(process.env.BENCH_FANIN_CONNS) || 4;
export const FANIN_WARMUP_MS = 300;
/** Fan-in: measured ms per round (all clients at once), and rounds (interleaved across scenarios). */
export const FANIN_MS = 1500;
export const FANIN_ROUNDS = 2;

/** The 8-byte length prefix of the sink and source protocols. */
export function lengthHeader(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** Datagrams: payload bytes, ms measured per round (after DGRAM_WARMUP_MS), and the recv window. */
export const DGRAM_BYTES = 64;
export const DGRAM_MS = 500;
export const DGRAM_WARMUP_MS = 200;
export const DGRAM_WINDOW = 64;
/** Asks the UDP sink for its count. */
export const DGRAM_COUNT_QUERY = Buffer.from('COUNT?');

/** Ports of the peers, as the peer process reports them (TCP; UDP on 127.0.0.1 too). */
export interface PeerPorts {
  echo: number;
  sink: number;
  source: number;
  /** Counts the datagrams it gets (see peer-server.ts). */
  udpSink: number;
  /** Sends datagrams against credits (see peer-server.ts). */
  udpSource: number;
}

/** What a datagram client reports: datagrams sent or received in the measured wall µs. */
export interface DgramReport {
  kind: 'dgram';
  count: number;
  wallUs: number;
  cpuUs: Record<string, number>;
  /** Send: how many of them the sink counted. */
  delivered?: number;
  /** Recv: datagrams the source had to send again (lost on the way). */
  lost?: number;
  /** Why the scenario could not run here (raw sockets need root). */
  skipped?: string;
}

/** What an echo client reports: per round trip µs, and CPU µs by process over the measured phase. */
export interface EchoReport {
  kind: 'echo';
  samples: number[];
  /** Broker echo only: µs until sendall() resolved, and from then until the echo was back. */
  parts?: { sendall: number[]; recv: number[] };
  cpuUs: Record<string, number>;
}

/** What a bulk client reports: MiB/s per measured transfer, their wall and CPU µs by process. */
export interface BulkReport {
  kind: 'bulk';
  mibps: number[];
  wallUs: number;
  cpuUs: Record<string, number>;
  /** Broker recv only: recv calls the measured transfers took. */
  recvCalls?: number;
}

/** What a fan-in client process reports for one measured round. */
export interface FaninReport {
  kind: 'fanin';
  /** Round trips completed on each of its connections. */
  counts: number[];
  /** µs of each round trip (all connections). */
  samples: number[];
  wallUs: number;
  /** This process's CPU µs over the round. */
  cpuUs: number;
}

/** Writes the one line a child reports to the runner. */
export function report(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** A Unix socket path or port the runner passes a child, from argv or the environment. */
export function arg(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`bench: ${name} is not set`);
  return v;
}
