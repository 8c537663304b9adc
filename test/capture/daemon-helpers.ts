// Capture test fixtures: a CaptureService client over grpc-js (a session opened first, named in
// the metadata), a C UDP flood sender built with gcc, and tcpdump as the reference.
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionServiceClient } from '../../proto/gen/sockbroker/v1/session.js';
import { CaptureServiceClient, CaptureRequest, type CaptureResponse, type CaptureArmed, type CaptureStats, type CapturedPacket } from '../../proto/gen/sockbroker/v1/capture.js';

export interface CaptureRun {
  armed: Promise<CaptureArmed>;
  packets: CapturedPacket[];
  /** Counters of the last batch seen. */
  stats(): CaptureStats | undefined;
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
    }
  });
  const close = () => {
    call.cancel();
    client.close();
    sessions.close();
  };
  return {
    armed,
    packets,
    stats: () => last,
    ended,
    async until(cond, ms) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (cond()) return true;
        await new Promise((r) => setTimeout(r, 20));
      }
      return cond();
    },
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
