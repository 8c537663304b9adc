// Capture test fixtures: a CaptureService client over grpc-js (a session opened first, named in
// the metadata), a C UDP flood sender built with gcc, and tcpdump as the reference.
import * as grpc from '@grpc/grpc-js';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionServiceClient } from '../../proto/gen/sockbroker/v1/session.js';
import { CaptureServiceClient, CaptureRequest, type CaptureResponse, type CaptureArmed, type CaptureStats, type CapturedPacket } from '../../proto/gen/sockbroker/v1/capture.js';

export interface CaptureRun {
  armed: Promise<CaptureArmed>;
  packets: CapturedPacket[];
  /** Counters of the last batch seen. */
  stats(): CaptureStats | undefined;
  /** Watermark of the last batch, ms since the epoch (0 = none yet). */
  watermarkMs(): number;
  /** Resolves once every packet stamped before `ms` (epoch ms) has arrived: watermark past it, nothing pending. */
  complete(ms: number, timeoutMs?: number): Promise<boolean>;
  /** Resolves with the status the stream ended with. */
  ended: Promise<grpc.StatusObject | Error>;
  /** Resolves once `n` packets (or a predicate) arrived. */
  until(cond: () => boolean, ms: number): Promise<boolean>;
  pause(): void;
  resume(): void;
  cancel(): void;
  close(): void;
}

/** Opens a session on `address` and starts a capture. */
export async function startCapture(address: string, req: Partial<CaptureRequest>): Promise<CaptureRun> {
  const opts = { 'grpc.max_receive_message_length': 64 << 20, 'grpc-node.flow_control_window': 4 << 20 } as grpc.ChannelOptions;
  const sessions = new SessionServiceClient(address, grpc.credentials.createInsecure(), opts);
  const session = await new Promise<string>((resolve, reject) =>
    sessions.openSession({ resumeSessionId: '', hostNetwork: false }, (err, res) => (err ? reject(err) : resolve(res!.sessionId))));
  const client = new CaptureServiceClient(address, grpc.credentials.createInsecure(), opts);
  const md = new grpc.Metadata();
  md.set('sockbroker-session', session);
  const call = client.capture(CaptureRequest.fromPartial(req), md);
  const packets: CapturedPacket[] = [];
  let last: CaptureStats | undefined;
  let wm = 0;
  let armedResolve!: (a: CaptureArmed) => void;
  let armedReject!: (e: unknown) => void;
  const armed = new Promise<CaptureArmed>((res, rej) => ((armedResolve = res), (armedReject = rej)));
  armed.catch(() => undefined);
  const ended = new Promise<grpc.StatusObject | Error>((resolve) => {
    call.on('status', (s) => resolve(s));
    call.on('error', (e) => {
      armedReject(e);
      resolve(e);
    });
  });
  call.on('data', (m: CaptureResponse) => {
    if (m.armed) armedResolve(m.armed);
    if (m.batch) {
      packets.push(...m.batch.packets);
      last = m.batch.stats;
      wm = m.batch.watermarkSeconds * 1000 + m.batch.watermarkNanos / 1e6;
    }
  });
  const close = () => {
    call.cancel();
    client.close();
    sessions.close();
  };
  const until = async (cond: () => boolean, ms: number): Promise<boolean> => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (cond()) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return cond();
  };
  return {
    armed,
    packets,
    stats: () => last,
    watermarkMs: () => wm,
    complete: (ms, timeoutMs = 20_000) => until(() => wm >= ms && last?.pending === 0, timeoutMs),
    ended,
    until,
    pause: () => call.pause(),
    resume: () => call.resume(),
    cancel: () => call.cancel(),
    close,
  };
}

const FLOOD_C = String.raw`
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
/* flood HOST PORT COUNT RATE [SIZE]: COUNT UDP datagrams of SIZE bytes (>= 8) carrying a sequence
 * number, at RATE per second (0 = as fast as possible); prints how many were sent. */
int main(int argc, char **argv) {
  if (argc < 5) return 2;
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &to.sin_addr);
  long count = atol(argv[3]), rate = atol(argv[4]), size = argc > 5 ? atol(argv[5]) : 64;
  char buf[65536] = {0};
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long sent = 0;
  for (long i = 0; i < count; i++) {
    uint64_t seq = i;
    memcpy(buf, &seq, 8);
    if (sendto(s, buf, size, 0, (struct sockaddr *)&to, sizeof to) == size) sent++;
    if (rate > 0 && (i & 63) == 63) {
      for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (el * rate >= i) break;
        usleep(200);
      }
    }
  }
  printf("%ld\n", sent);
  return 0;
}
`;

let floodBin: string | undefined;

/** The flood sender, compiled once per test process. */
export function flood(): string {
  if (!floodBin) {
    const dir = mkdtempSync(join(tmpdir(), 'sb-flood-'));
    writeFileSync(join(dir, 'flood.c'), FLOOD_C);
    execFileSync('gcc', ['-O2', '-o', join(dir, 'flood'), join(dir, 'flood.c')]);
    floodBin = join(dir, 'flood');
  }
  return floodBin;
}

/** A packet as tests compare them: timestamp and bytes. */
export interface SimplePacket {
  sec: number;
  nsec: number;
  data: Buffer;
  /** Length on the wire. */
  len: number;
}

/** Writes a nanosecond pcap file. */
export function writePcap(path: string, linkType: number, packets: SimplePacket[]): void {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b23c4d, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(linkType, 20);
  const parts: Buffer[] = [head];
  for (const p of packets) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(p.sec, 0);
    h.writeUInt32LE(p.nsec, 4);
    h.writeUInt32LE(p.data.length, 8);
    h.writeUInt32LE(p.len, 12);
    parts.push(h, p.data);
  }
  writeFileSync(path, Buffer.concat(parts));
}

/** Reads a pcap file (µs or ns) written by tcpdump. */
export function readPcap(path: string): SimplePacket[] {
  const b = readFileSync(path);
  const magic = b.readUInt32LE(0);
  const ns = magic === 0xa1b23c4d;
  const out: SimplePacket[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const caplen = b.readUInt32LE(o + 8);
    const frac = b.readUInt32LE(o + 4);
    out.push({ sec: b.readUInt32LE(o), nsec: ns ? frac : frac * 1000, len: b.readUInt32LE(o + 12), data: Buffer.from(b.subarray(o + 16, o + 16 + caplen)) });
    o += 16 + caplen;
  }
  return out;
}

/** A capture's packets as SimplePackets. */
export function simple(packets: CapturedPacket[]): SimplePacket[] {
  return packets.map((p) => ({ sec: p.timestampSeconds, nsec: p.timestampNanos, data: Buffer.from(p.data), len: p.originalLength }));
}

/** A script run as nobody in `netns`, driven line by line: it prints JSON lines, reads lines. */
export interface Interactive {
  proc: import('node:child_process').ChildProcess;
  step(): Promise<any>;
  say(line?: string): void;
  cleanup(): void;
}

export function nobodyInteractive(netns: string, address: string, source: string, worldCopy: string): Interactive {
  const file = join(worldCopy, `capd-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, source);
  chmodSync(file, 0o644);
  const proc = spawn('ip', ['netns', 'exec', netns, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, file], {
    cwd: worldCopy,
    env: { PATH: process.env.PATH!, HOME: '/tmp', SOCKBROKER_ADDRESS: address },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  return {
    proc,
    step: async () => {
      const r = await lines.next();
      if (r.done) throw new Error('script ended');
      return JSON.parse(r.value);
    },
    say: (line = 'go') => proc.stdin!.write(line + '\n'),
    cleanup: () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(file, { force: true });
    },
  };
}

/** The prelude of an interactive capture script. */
export const SCRIPT_PRELUDE = `
import { startCapture, simple } from './dist/test/capture/daemon-helpers.js';
import { fromServiceError } from './dist/client/errors.js';
import { createInterface } from 'node:readline';
const address = process.env.SOCKBROKER_ADDRESS;
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await input.next()).value;
const say = (o) => console.log(JSON.stringify(o));
const refusal = async (req) => {
  const c = await startCapture(address, req);
  try { await c.armed; c.close(); return { armed: true }; }
  catch (e) { const x = fromServiceError(e); c.close(); return { error: x.constructor.name, errno: x.errno, message: x.message }; }
};
`;
