// One of the fan-in bench's client processes (bench/fanin.ts starts FANIN_CLIENTS of them and
// keeps them for every fan-in scenario). Commands arrive as JSON lines on stdin:
//   {"setup": "<scenario>"} opens FANIN_CONNS connections the scenario's way, warms each up,
//                           then reports {"ready": true};
//   {"go": <ms>}            runs a closed echo loop on every connection for <ms>, reports the
//                           round trips of each connection, their µs, this process's CPU µs and
//                           the wall µs measured, and closes the connections.
// stdin closing ends the process.
import net from 'node:net';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { connect, type Socket, type SocketModule } from '../client/index.js';
import { CLIENT_OPTIONS } from './grpc-bare.js';
import { arg, report, ECHO_BYTES, FANIN_CONNS, FANIN_WARMUP_MS, type FaninReport, type PeerPorts } from './protocol.js';
import { usSince } from './stats.js';

const PEERS = JSON.parse(arg('BENCH_PEERS')) as PeerPorts;
const BROKER = arg('BENCH_BROKER');
const GRPC_PATH = arg('BENCH_GRPC_PATH');
const HOST = '127.0.0.1';
const MSG = Buffer.alloc(ECHO_BYTES, 0x61);

/** One connection's round trip, and how the scenario closes them all. */
interface Conns {
  rts: Array<() => Promise<void>>;
  close(): Promise<void>;
}

async function native(): Promise<Conns> {
  const socks = await Promise.all(
    Array.from({ length: FANIN_CONNS }, async () => {
      const s = net.connect({ host: HOST, port: PEERS.echo, noDelay: true });
      await once(s, 'connect');
      return s;
    }),
  );
  const rts = socks.map((s) => {
    let got = 0;
    let done: (() => void) | undefined;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= ECHO_BYTES) {
        got -= ECHO_BYTES;
        done!();
      }
    });
    return () =>
      new Promise<void>((resolve) => {
        done = resolve;
        s.write(MSG);
      });
  });
  return { rts, close: async () => socks.forEach((s) => s.destroy()) };
}

async function bareGrpc(): Promise<Conns> {
  // One channel per process (a program's), one bidi stream per connection.
  const client = new grpc.Client(`unix:${GRPC_PATH}`, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
  const id = (b: Buffer): Buffer => b;
  const calls = Array.from({ length: FANIN_CONNS }, () => client.makeBidiStreamRequest('/bench.Bare/Echo', id, id));
  const rts = calls.map((call) => {
    let done: (() => void) | undefined;
    call.on('data', () => done!());
    return () =>
      new Promise<void>((resolve) => {
        done = resolve;
        call.write(MSG);
      });
  });
  return {
    rts,
    close: async () => {
      for (const c of calls) c.end();
      client.close();
    },
  };
}

async function broker(handoff: boolean): Promise<Conns> {
  // One session per process (a program's), one broker socket per connection.
  const socket: SocketModule = await connect(BROKER, { handoff });
  const socks: Socket[] = await Promise.all(
    Array.from({ length: FANIN_CONNS }, async () => {
      const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
      await s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1);
      await s.connect([HOST, PEERS.echo]);
      return s;
    }),
  );
  const rts = socks.map((s) => async () => {
    await s.sendall(MSG);
    for (let got = 0; got < ECHO_BYTES; ) {
      const d = await s.recv(ECHO_BYTES - got);
      if (d.length === 0) throw new Error('peer closed');
      got += d.length;
    }
  });
  return {
    rts,
    close: async () => {
      await Promise.all(socks.map((s) => s.close()));
      await socket.disconnect();
    },
  };
}

const SETUPS: Record<string, () => Promise<Conns>> = {
  'fanin-native': native,
  'fanin-grpc': bareGrpc,
  'fanin-broker': () => broker(false),
  'fanin-handoff': () => broker(true),
};

let conns: Conns | undefined;

async function setup(scenario: string): Promise<void> {
  const make = SETUPS[scenario];
  if (!make) throw new Error(`fan-in: unknown scenario ${scenario}`);
  conns = await make();
  const end = performance.now() + FANIN_WARMUP_MS;
  await Promise.all(
    conns.rts.map(async (rt) => {
      while (performance.now() < end) await rt();
    }),
  );
  report({ ready: true });
}

async function go(ms: number): Promise<void> {
  const c = conns!;
  conns = undefined;
  const samples: number[] = [];
  const counts = c.rts.map(() => 0);
  const u0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  const end = performance.now() + ms;
  // Every connection loops until the time is up; a round trip started before then counts.
  await Promise.all(
    c.rts.map(async (rt, i) => {
      while (performance.now() < end) {
        const t0 = process.hrtime.bigint();
        await rt();
        samples.push(Math.round(usSince(t0) * 10) / 10);
        counts[i]!++;
      }
    }),
  );
  const wallUs = usSince(w0);
  const u = process.cpuUsage(u0);
  await c.close();
  const r: FaninReport = { kind: 'fanin', counts, samples, wallUs, cpuUs: u.user + u.system };
  report(r);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const cmd = JSON.parse(line) as { setup?: string; go?: number };
  if (cmd.setup) await setup(cmd.setup);
  else if (cmd.go) await go(cmd.go);
}
// grpc-js and net keep timers and handles: stdin closed, so leave now.
process.exit(0);
