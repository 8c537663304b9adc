// CaptureService.Sniff: how the SDK reads a Windows sniffer socket (link-ops.ts). The socket's
// TPACKET_V3 ring (set at bind, behind its kernel filter) is drained by the same Capture as a
// CaptureService capture: batches of many IP packets per message, hand-encoded, under BLOCK
// backpressure (a reader slower than the traffic fills the ring and the kernel drops, counted).
// The counters carry over between streams of one socket; one stream at a time.
import type { ServerWritableStream } from '@grpc/grpc-js';
import { CaptureBackpressure, type SniffRequest } from '../proto/gen/sockbroker/v1/capture.js';
import { Capture, type CaptureOptions } from './capture.js';
import { SNIFFER_RING, type SnifferState } from './link-ops.js';
import { osErrorNamed, toBrokerError, toServiceError, type BrokerError } from './errors.js';
import { sessionOf } from './rpc.js';
import { countBytesIn, trackCapture } from './metrics.js';
import type { Session } from './sessions.js';
import type { SocketEntry } from './handles.js';
import type { CaptureDeps } from './capture-service.js';

/** Small batches soon (an interactive recvfrom), up to 256 KiB under load; 2 MiB queued; data only. */
const SNIFF_OPTIONS: CaptureOptions = {
  batchMaxBytes: 256 << 10, latencyMs: 5, queueBytes: 2 << 20, backpressure: CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK,
  packetsPerSecond: 0, bytesPerSecond: 0, retireMs: SNIFFER_RING.retireMs, dataOnly: true,
};

export function sniff(deps: CaptureDeps, call: ServerWritableStream<SniffRequest, Buffer>): void {
  let session: Session, entry: SocketEntry, r: SnifferState;
  try {
    session = sessionOf(deps.sessions, deps.peers, call);
    entry = session.table.get(call.request.handle, 'recvfrom');
    const state = entry.link?.rcvall;
    if (!state) throw osErrorNamed('EOPNOTSUPP', 'recvfrom', 'Operation not supported (Sniff reads a socket(AF_INET, SOCK_RAW, IPPROTO_IP) only)');
    if (!state.ring) throw osErrorNamed('EINVAL', 'recvfrom', 'Invalid argument (bind the sniffer socket first)');
    if (state.stopSniff) throw osErrorNamed('EBUSY', 'recvfrom', 'Device or resource busy (the sniffer socket is already being read)');
    r = state;
  } catch (err) {
    call.emit('error', toServiceError(toBrokerError(err)));
    return;
  }
  // The session's received bytes (status RX, metrics) count the packets delivered, as recv did.
  let counted = r.counters.capturedBytes;
  const capture = new Capture([{ fd: entry.fd, ring: r.ring!, slot: 0, cooked: false }], SNIFF_OPTIONS, {
    write: (msg, done) => {
      countBytesIn(session, r.counters.capturedBytes - counted);
      counted = r.counters.capturedBytes;
      if (call.cancelled || call.destroyed) return done();
      call.write(msg, () => done());
    },
  }, deps.reactor, r.counters);
  deps.sessions.attach(session);
  const untrack = trackCapture(session, () => capture.stats());
  let ended = false;
  const end = (err?: BrokerError): void => {
    if (ended) return;
    ended = true;
    r.stopSniff = undefined;
    deps.live.delete(end);
    try {
      untrack(capture.stats());
    } catch {
      untrack({ ...r.counters, droppedByKernel: r.ring!.stats.drops });
    }
    void capture.stop(false);
    deps.sessions.detach(session);
    if (call.cancelled || call.destroyed) return;
    if (err) call.emit('error', toServiceError(err));
    else call.end();
  };
  // Close (and session end) stops the readers before the ring is unmapped and the fd closed.
  r.stopSniff = () => end();
  deps.live.add(end);
  call.on('cancelled', () => end());
  call.on('close', () => end());
  capture.start();
}
