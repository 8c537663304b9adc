// One bench client process: runs the scenario named in argv[2] and reports its figures as one
// JSON line. The runner starts a fresh process per scenario, as a user's program would be.
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { connect, type Socket, type SocketModule } from '../client/index.js';
import { BARE_SERVICE, CLIENT_OPTIONS } from './grpc-bare.js';
import {
  arg, report, lengthHeader, ECHO_BYTES, ECHO_WARMUP, CHUNK_BYTES, BULK_BYTES, BULK_WARMUP_BYTES,
  DGRAM_BYTES, DGRAM_COUNT_QUERY, DGRAM_MS, DGRAM_WARMUP_MS, DGRAM_WINDOW,
  type BulkReport, type DgramReport, type EchoReport, type PeerPorts,
} from './protocol.js';
import { processCpuUs, usSince } from './stats.js';

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

/** Measured iterations (echo) or transfers (bulk) this process makes: its share of a round. */
const COUNT = Number(arg('BENCH_COUNT'));

/** Rounds to 0.01 µs: enough, and keeps the report line short. */
const round2 = (v: number): number => Math.round(v * 100) / 100;

/** Warms up, then times COUNT calls of `rt(i)`; `i` is -1 during warm-up. */
async function measureEcho(rt: (i: number) => Promise<void>): Promise<EchoReport> {
  for (let i = 0; i < ECHO_WARMUP; i++) await rt(-1);
  const samples = new Array<number>(COUNT);
  const c0 = cpuNow();
  for (let i = 0; i < COUNT; i++) {
    const t0 = process.hrtime.bigint();
    await rt(i);
    samples[i] = round2(usSince(t0));
  }
  return { kind: 'echo', samples, cpuUs: cpuSince(c0) };
}

/** One warm-up transfer, then COUNT timed ones of `transfer(bytes)` (which resolves when done). */
async function measureBulk(transfer: (bytes: number) => Promise<void>): Promise<BulkReport> {
  await transfer(BULK_WARMUP_BYTES);
  const mibps: number[] = [];
  const c0 = cpuNow();
  const w0 = process.hrtime.bigint();
  for (let r = 0; r < COUNT; r++) {
    const t0 = process.hrtime.bigint();
    await transfer(BULK_BYTES);
    mibps.push(BULK_BYTES / (1 << 20) / (usSince(t0) / 1e6));
  }
  return { kind: 'bulk', mibps, wallUs: usSince(w0), cpuUs: cpuSince(c0) };
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

async function echoNative(): Promise<EchoReport> {
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

async function sendNative(): Promise<BulkReport> {
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

async function recvNative(): Promise<BulkReport> {
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

async function echoGrpc(): Promise<EchoReport> {
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

async function sendGrpc(): Promise<BulkReport> {
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

async function recvGrpc(): Promise<BulkReport> {
  const { client, call } = bareStream('/bench.Bare/Source');
  const res = await measureBulk(async (bytes) => {
    let got = 0;
    const all = new Promise<void>((resolve) => {
      const onData = (m: Buffer): void => {
        got += m.length;
        if (got >= bytes) {
          call.off('data', onData);
          resolve();
        }
      };
      call.on('data', onData);
    });
    call.write(lengthHeader(bytes));
    await all;
  });
  call.end();
  client.close();
  return res;
}

// --- through the broker -----------------------------------------------------------------------

/** A broker socket connected to the peer: streamed (kept on the broker), or handed off to this process. */
async function brokerSocket(port: number, handoff = false): Promise<{ socket: SocketModule; s: Socket }> {
  const socket = await connect(BROKER, { handoff });
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

async function echoBroker(handoff = false): Promise<EchoReport> {
  const { socket, s } = await brokerSocket(PEERS.echo, handoff);
  const msg = Buffer.alloc(ECHO_BYTES, 0x61);
  const sendUs = new Array<number>(COUNT);
  const recvUs = new Array<number>(COUNT);
  const res = await measureEcho(async (i) => {
    const t0 = process.hrtime.bigint();
    await s.sendall(msg);
    const t1 = process.hrtime.bigint();
    await recvExactly(s, ECHO_BYTES, ECHO_BYTES);
    if (i >= 0) {
      sendUs[i] = round2(Number(t1 - t0) / 1000);
      recvUs[i] = round2(usSince(t1));
    }
  });
  await s.close();
  await socket.disconnect();
  return { ...res, parts: { sendall: sendUs, recv: recvUs } };
}

/** An operation with no socket I/O to wait for: the SDK + gRPC + daemon dispatch cost alone. */
async function opBroker(): Promise<EchoReport> {
  const { socket, s } = await brokerSocket(PEERS.echo);
  const res = await measureEcho(async () => {
    await s.getsockname();
  });
  await s.close();
  await socket.disconnect();
  return res;
}

async function sendBroker(handoff = false): Promise<BulkReport> {
  const { socket, s } = await brokerSocket(PEERS.sink, handoff);
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

async function recvBroker(handoff = false): Promise<BulkReport> {
  const { socket, s } = await brokerSocket(PEERS.source, handoff);
  let measured = 0;
  const res = await measureBulk(async (bytes) => {
    await s.sendall(lengthHeader(bytes));
    if (bytes === BULK_BYTES && measured++ === 0) recvCalls = 0; // count the measured transfers only
    await recvExactly(s, bytes, CHUNK_BYTES);
  });
  await s.close();
  await socket.disconnect();
  return { ...res, recvCalls };
}

// --- datagrams --------------------------------------------------------------------------------

const DGRAM = Buffer.alloc(DGRAM_BYTES, 0x64);

/** The UDP sink's count so far (asked from a native socket of this process; retried if lost). */
async function sinkCount(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  try {
    for (;;) {
      const answer = once(sock, 'message');
      sock.send(DGRAM_COUNT_QUERY, PEERS.udpSink, HOST);
      const got = await Promise.race([answer, new Promise<null>((r) => setTimeout(r, 200, null).unref())]);
      if (got) return Number((got[0] as Buffer).readBigUInt64BE());
    }
  } finally {
    sock.close();
  }
}

/** Sends for DGRAM_WARMUP_MS, then counts the sends of DGRAM_MS (each awaited, as a Python loop). */
async function measureDgramSend(send: () => Promise<unknown>): Promise<DgramReport> {
  for (let end = performance.now() + DGRAM_WARMUP_MS; performance.now() < end; ) await send();
  const before = await sinkCount();
  const c0 = cpuNow();
  const w0 = process.hrtime.bigint();
  let count = 0;
  for (let end = performance.now() + DGRAM_MS; performance.now() < end; count++) await send();
  const wallUs = usSince(w0);
  const cpuUs = cpuSince(c0);
  return { kind: 'dgram', count, wallUs, cpuUs, delivered: (await sinkCount()) - before };
}

/**
 * Receives from the credit-based UDP source (peer-server.ts): `recv` resolves true per datagram,
 * false when it timed out; `credit(got)` tells the source how many arrived. Warms up, then counts
 * the datagrams of DGRAM_MS.
 */
async function measureDgramRecv(recv: () => Promise<boolean>, credit: (got: number) => Promise<unknown>): Promise<DgramReport> {
  let got = 0;
  let lost = 0;
  await credit(0);
  const loop = async (ms: number): Promise<number> => {
    const start = got;
    for (let end = performance.now() + ms; performance.now() < end; ) {
      if (!(await recv())) {
        lost++;
        await credit(got);
        continue;
      }
      if (++got % (DGRAM_WINDOW / 2) === 0) await credit(got);
    }
    return got - start;
  };
  await loop(DGRAM_WARMUP_MS);
  const c0 = cpuNow();
  const w0 = process.hrtime.bigint();
  lost = 0;
  const count = await loop(DGRAM_MS);
  return { kind: 'dgram', count, wallUs: usSince(w0), cpuUs: cpuSince(c0), lost };
}

const creditMsg = (got: number): Buffer => Buffer.from(`C ${got} ${DGRAM_WINDOW} ${DGRAM_BYTES}`);
/** How long a recv waits before the datagrams it waits for count as lost. */
const LOST_AFTER_S = 0.2;

async function dgramSendNative(): Promise<DgramReport> {
  const sock = dgram.createSocket('udp4');
  const res = await measureDgramSend(() => new Promise<void>((resolve, reject) => sock.send(DGRAM, PEERS.udpSink, HOST, (err) => (err ? reject(err) : resolve()))));
  sock.close();
  return res;
}

async function dgramRecvNative(): Promise<DgramReport> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, HOST, resolve));
  const queue: Buffer[] = [];
  let wake: ((ok: boolean) => void) | undefined;
  sock.on('message', (m: Buffer) => {
    if (wake) {
      const w = wake;
      wake = undefined;
      w(true);
    } else queue.push(m);
  });
  const recv = (): Promise<boolean> => {
    if (queue.shift()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve(false);
      }, LOST_AFTER_S * 1000);
      wake = (ok) => {
        clearTimeout(timer);
        resolve(ok);
      };
    });
  };
  const res = await measureDgramRecv(recv, (got) => new Promise<void>((resolve) => sock.send(creditMsg(got), PEERS.udpSource, HOST, () => resolve())));
  sock.close();
  return res;
}

async function brokerUdp(handoff: boolean): Promise<{ socket: SocketModule; s: Socket }> {
  const socket = await connect(BROKER, { handoff });
  const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  return { socket, s };
}

async function dgramSendBroker(handoff = false): Promise<DgramReport> {
  const { socket, s } = await brokerUdp(handoff);
  const to: [string, number] = [HOST, PEERS.udpSink];
  const res = await measureDgramSend(() => s.sendto(DGRAM, to));
  await s.close();
  await socket.disconnect();
  return res;
}

/** recvfrom with a timeout: true per datagram that passes `want`, false on a timeout. */
function timedRecv(socket: SocketModule, s: Socket, want: (d: Buffer) => boolean = () => true): () => Promise<boolean> {
  s.settimeout(LOST_AFTER_S);
  return async () => {
    try {
      for (;;) if (want((await s.recvfrom(2048))[0])) return true;
    } catch (err) {
      if (err instanceof socket.timeout) return false;
      throw err;
    }
  };
}

async function dgramRecvBroker(handoff = false): Promise<DgramReport> {
  const { socket, s } = await brokerUdp(handoff);
  await s.bind([HOST, 0]);
  const to: [string, number] = [HOST, PEERS.udpSource];
  const res = await measureDgramRecv(timedRecv(socket, s), (got) => s.sendto(creditMsg(got), to));
  await s.close();
  await socket.disconnect();
  return res;
}

const notRoot = (): DgramReport | null =>
  process.getuid?.() === 0 ? null : { kind: 'dgram', count: 0, wallUs: 0, cpuUs: {}, skipped: 'raw sockets need root (run the bench as root)' };

/** Raw IPPROTO_UDP send: a UDP header (checksum 0: none, as IPv4 allows) + payload to the sink. */
async function rawSend(handoff: boolean): Promise<DgramReport> {
  const skip = notRoot();
  if (skip) return skip;
  const socket = await connect(BROKER, { handoff });
  const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP);
  const pkt = Buffer.alloc(8 + DGRAM_BYTES, 0x64);
  pkt.writeUInt16BE(9, 0); // discard, as a source port
  pkt.writeUInt16BE(PEERS.udpSink, 2);
  pkt.writeUInt16BE(pkt.length, 4);
  pkt.writeUInt16BE(0, 6);
  const to: [string, number] = [HOST, 0];
  const res = await measureDgramSend(() => s.sendto(pkt, to));
  await s.close();
  await socket.disconnect();
  return res;
}

/** Raw IPPROTO_UDP receive: copies of every UDP datagram on this network namespace; counts those
 * from the source to this process's UDP socket (which asks for them and drops its own copies). */
async function rawRecv(handoff: boolean): Promise<DgramReport> {
  const skip = notRoot();
  if (skip) return skip;
  const socket = await connect(BROKER, { handoff });
  const raw = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP);
  await raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20);
  const udp = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
  await udp.bind([HOST, 0]);
  const port = (await udp.getsockname())![1] as number;
  const ours = (d: Buffer): boolean => {
    const ihl = (d[0]! & 0xf) * 4;
    return d.length >= ihl + 8 && d.readUInt16BE(ihl) === PEERS.udpSource && d.readUInt16BE(ihl + 2) === port;
  };
  const to: [string, number] = [HOST, PEERS.udpSource];
  const res = await measureDgramRecv(timedRecv(socket, raw, ours), (got) => udp.sendto(creditMsg(got), to));
  await raw.close();
  await udp.close();
  await socket.disconnect();
  return res;
}

const SCENARIOS = {
  'echo-native': echoNative,
  'echo-grpc': echoGrpc,
  'echo-broker': () => echoBroker(),
  'echo-handoff': () => echoBroker(true),
  'op-broker': opBroker,
  'send-native': sendNative,
  'send-broker': () => sendBroker(),
  'send-handoff': () => sendBroker(true),
  'send-grpc': sendGrpc,
  'recv-grpc': recvGrpc,
  'recv-native': recvNative,
  'recv-broker': () => recvBroker(),
  'recv-handoff': () => recvBroker(true),
  'dgram-send-native': dgramSendNative,
  'dgram-send-broker': () => dgramSendBroker(),
  'dgram-send-handoff': () => dgramSendBroker(true),
  'dgram-recv-native': dgramRecvNative,
  'dgram-recv-broker': () => dgramRecvBroker(),
  'dgram-recv-handoff': () => dgramRecvBroker(true),
  'raw-send-broker': () => rawSend(false),
  'raw-send-handoff': () => rawSend(true),
  'raw-recv-broker': () => rawRecv(false),
  'raw-recv-handoff': () => rawRecv(true),
} as const;

const name = process.argv[2] as keyof typeof SCENARIOS;
const run = SCENARIOS[name];
if (!run) throw new Error(`bench: unknown scenario ${String(name)}`);
report(await run());
// grpc-js and net keep timers and handles; the report is out, so leave now.
process.exit(0);
