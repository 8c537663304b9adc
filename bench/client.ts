// One bench client process: runs the scenario named in argv[2] and reports its figures as one
// JSON line. The runner starts a fresh process per scenario, as a user's program would be.
import net from 'node:net';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { connect, type Socket, type SocketModule } from '../client/index.js';
import { BARE_SERVICE, CLIENT_OPTIONS } from './grpc-bare.js';
import {
  arg, report, lengthHeader, ECHO_BYTES, ECHO_WARMUP, ECHO_ITERATIONS, CHUNK_BYTES, BULK_BYTES, BULK_WARMUP_BYTES, BULK_REPS, type PeerPorts,
} from './protocol.js';
import { processCpuUs, summarize, usSince, type Latency } from './stats.js';

const PEERS = JSON.parse(arg('BENCH_PEERS')) as PeerPorts;
/** Other bench processes by role (daemon, peer, grpc), whose CPU time is sampled around the measured phase. */
const PIDS = JSON.parse(arg('BENCH_PIDS')) as Record<string, number>;
const CLK_TCK = Number(arg('BENCH_CLK_TCK'));
const BROKER = arg('BENCH_BROKER');
const GRPC_PATH = arg('BENCH_GRPC_PATH');
const HOST = '127.0.0.1';

/** CPU microseconds so far of this process and of each other bench process. */
function cpuNow(): Record<string, number> {
  const u = process.cpuUsage();
  const out: Record<string, number> = { client: u.user + u.system };
  for (const [role, pid] of Object.entries(PIDS)) out[role] = processCpuUs(pid, CLK_TCK);
  return out;
}

function cpuSince(c0: Record<string, number>): Record<string, number> {
  const c1 = cpuNow();
  return Object.fromEntries(Object.keys(c0).map((k) => [k, c1[k]! - c0[k]!]));
}

export interface EchoResult {
  kind: 'latency';
  latency: Latency;
  /** Broker echo only: the sendall and recv halves of each round trip. */
  parts?: Record<string, Latency>;
  /** CPU microseconds per round trip, by process, over the measured phase. */
  cpuUsPerOp: Record<string, number>;
}

export interface BulkResult {
  kind: 'bulk';
  /** MiB/s of each measured transfer. */
  mibps: number[];
  /** CPU time / wall time over the measured transfers, by process (1 = one core busy). */
  cores: Record<string, number>;
  /** Broker recv only: mean bytes a recv(1 MiB) call returned over the measured transfers. */
  bytesPerRecv?: number;
}

/** Warms up, then times ECHO_ITERATIONS calls of `rt(i)`; `i` is -1 during warm-up. */
async function measureEcho(rt: (i: number) => Promise<void>): Promise<Omit<EchoResult, 'parts'>> {
  for (let i = 0; i < ECHO_WARMUP; i++) await rt(-1);
  const samples = new Float64Array(ECHO_ITERATIONS);
  const c0 = cpuNow();
  for (let i = 0; i < ECHO_ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    await rt(i);
    samples[i] = usSince(t0);
  }
  const cpu = cpuSince(c0);
  return {
    kind: 'latency',
    latency: summarize(samples),
    cpuUsPerOp: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / ECHO_ITERATIONS])),
  };
}

/** One warm-up transfer, then BULK_REPS timed ones of `transfer(bytes)` (which resolves when done). */
async function measureBulk(transfer: (bytes: number) => Promise<void>): Promise<BulkResult> {
  await transfer(BULK_WARMUP_BYTES);
  const mibps: number[] = [];
  const c0 = cpuNow();
  const w0 = process.hrtime.bigint();
  for (let r = 0; r < BULK_REPS; r++) {
    const t0 = process.hrtime.bigint();
    await transfer(BULK_BYTES);
    mibps.push(BULK_BYTES / (1 << 20) / (usSince(t0) / 1e6));
  }
  const wall = usSince(w0);
  const cpu = cpuSince(c0);
  return { kind: 'bulk', mibps, cores: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / wall])) };
}

// --- native Node net --------------------------------------------------------------------------

async function netConnect(port: number): Promise<net.Socket> {
  const sock = net.connect({ host: HOST, port, noDelay: true });
  await once(sock, 'connect');
  return sock;
}

/** Resolves once `n` more bytes have arrived on `sock`. */
function receive(sock: net.Socket, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= n) {
        sock.off('data', onData).off('close', onClose);
        resolve();
      }
    };
    const onClose = (): void => reject(new Error('peer closed'));
    sock.on('data', onData).once('close', onClose);
  });
}

/** Writes `bytes` in `chunk`-sized writes, waiting for 'drain' whenever the stream is full. */
async function writeChunks(stream: { write(b: Buffer): boolean } & NodeJS.EventEmitter, chunk: Buffer, bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= chunk.length) {
    if (!stream.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(stream, 'drain');
  }
}

async function echoNative(): Promise<EchoResult> {
  const sock = await netConnect(PEERS.echo);
  const msg = Buffer.alloc(ECHO_BYTES, 0x61);
  const res = await measureEcho(() => {
    const p = receive(sock, ECHO_BYTES);
    sock.write(msg);
    return p;
  });
  sock.destroy();
  return res;
}

async function sendNative(): Promise<BulkResult> {
  const sock = await netConnect(PEERS.sink);
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a);
  const res = await measureBulk(async (bytes) => {
    const ack = receive(sock, 1);
    sock.write(lengthHeader(bytes));
    await writeChunks(sock, chunk, bytes);
    await ack;
  });
  sock.destroy();
  return res;
}

async function recvNative(): Promise<BulkResult> {
  const sock = await netConnect(PEERS.source);
  const res = await measureBulk(async (bytes) => {
    const all = receive(sock, bytes);
    sock.write(lengthHeader(bytes));
    await all;
  });
  sock.destroy();
  return res;
}

// --- bare grpc-js -----------------------------------------------------------------------------

function bareStream(path: string): { client: grpc.Client; call: grpc.ClientDuplexStream<Buffer, Buffer> } {
  const client = new grpc.Client(`unix:${GRPC_PATH}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
  const id = (b: Buffer): Buffer => b;
  const call = client.makeBidiStreamRequest(path, id, id);
  return { client, call };
}

async function echoGrpc(): Promise<EchoResult> {
  const { client, call } = bareStream('/bench.Bare/Echo');
  const msg = Buffer.alloc(ECHO_BYTES, 0x61);
  let done: (() => void) | undefined;
  call.on('data', () => done!());
  const res = await measureEcho(
    () =>
      new Promise<void>((resolve) => {
        done = resolve;
        call.write(msg);
      }),
  );
  call.end();
  client.close();
  return res;
}

async function sendGrpc(): Promise<BulkResult> {
  const { client, call } = bareStream('/bench.Bare/Sink');
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a);
  const res = await measureBulk(async (bytes) => {
    const ack = once(call, 'data');
    call.write(lengthHeader(bytes));
    await writeChunks(call, chunk, bytes);
    await ack;
  });
  call.end();
  client.close();
  return res;
}

// --- through the broker -----------------------------------------------------------------------

async function brokerSocket(port: number): Promise<{ socket: SocketModule; s: Socket }> {
  const socket = await connect(BROKER);
  const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
  await s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1);
  await s.connect([HOST, port]);
  return { socket, s };
}

/** recv calls made by recvExactly so far. */
let recvCalls = 0;

/** recv until `n` bytes came back, as a Python user writes it. */
async function recvExactly(s: Socket, n: number, bufsize: number): Promise<void> {
  for (let got = 0; got < n; ) {
    const d = await s.recv(Math.min(bufsize, n - got));
    recvCalls++;
    if (d.length === 0) throw new Error('peer closed');
    got += d.length;
  }
}

async function echoBroker(): Promise<EchoResult> {
  const { socket, s } = await brokerSocket(PEERS.echo);
  const msg = Buffer.alloc(ECHO_BYTES, 0x61);
  const sendUs = new Float64Array(ECHO_ITERATIONS);
  const recvUs = new Float64Array(ECHO_ITERATIONS);
  const res = await measureEcho(async (i) => {
    const t0 = process.hrtime.bigint();
    await s.sendall(msg);
    const t1 = process.hrtime.bigint();
    await recvExactly(s, ECHO_BYTES, ECHO_BYTES);
    if (i >= 0) {
      sendUs[i] = Number(t1 - t0) / 1000;
      recvUs[i] = usSince(t1);
    }
  });
  await s.close();
  await socket.disconnect();
  return { ...res, parts: { sendall: summarize(sendUs), recv: summarize(recvUs) } };
}

/** sendall and the first recv issued together: what a client that pipelines can get. */
async function echoBrokerPipelined(): Promise<EchoResult> {
  const { socket, s } = await brokerSocket(PEERS.echo);
  const msg = Buffer.alloc(ECHO_BYTES, 0x61);
  const res = await measureEcho(async () => {
    const [, first] = await Promise.all([s.sendall(msg), s.recv(ECHO_BYTES)]);
    if (first.length < ECHO_BYTES) await recvExactly(s, ECHO_BYTES - first.length, ECHO_BYTES);
  });
  await s.close();
  await socket.disconnect();
  return res;
}

/** An operation with no socket I/O to wait for: the SDK + gRPC + daemon dispatch cost alone. */
async function opBroker(): Promise<EchoResult> {
  const { socket, s } = await brokerSocket(PEERS.echo);
  const res = await measureEcho(async () => {
    await s.getsockname();
  });
  await s.close();
  await socket.disconnect();
  return res;
}

async function sendBroker(): Promise<BulkResult> {
  const { socket, s } = await brokerSocket(PEERS.sink);
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a);
  const res = await measureBulk(async (bytes) => {
    await s.sendall(lengthHeader(bytes));
    for (let left = bytes; left > 0; left -= chunk.length) await s.sendall(left >= chunk.length ? chunk : chunk.subarray(0, left));
    await recvExactly(s, 1, 1);
  });
  await s.close();
  await socket.disconnect();
  return res;
}

async function recvBroker(): Promise<BulkResult> {
  const { socket, s } = await brokerSocket(PEERS.source);
  let measured = 0;
  const res = await measureBulk(async (bytes) => {
    await s.sendall(lengthHeader(bytes));
    if (bytes === BULK_BYTES && measured++ === 0) recvCalls = 0; // count the measured transfers only
    await recvExactly(s, bytes, CHUNK_BYTES);
  });
  await s.close();
  await socket.disconnect();
  return { ...res, bytesPerRecv: (BULK_BYTES * BULK_REPS) / recvCalls };
}

const SCENARIOS = {
  'echo-native': echoNative,
  'echo-grpc': echoGrpc,
  'echo-broker': echoBroker,
  'echo-broker-pipelined': echoBrokerPipelined,
  'op-broker': opBroker,
  'send-native': sendNative,
  'send-broker': sendBroker,
  'send-grpc': sendGrpc,
  'recv-native': recvNative,
  'recv-broker': recvBroker,
} as const;

const name = process.argv[2] as keyof typeof SCENARIOS;
const run = SCENARIOS[name];
if (!run) throw new Error(`bench: unknown scenario ${String(name)}`);
report(await run());
// grpc-js and net keep timers and handles; the report is out, so leave now.
process.exit(0);
