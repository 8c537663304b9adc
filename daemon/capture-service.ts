// CaptureService: validates a capture request, asks the policy (the capture grant, its guard and
// quotas), compiles the caller's filter, the guard and the broker's own terms each alone with
// libpcap (off the event loop) and ANDs the compiled programs, arms one AF_PACKET socket per
// interface without leaking a packet, streams batches, and releases everything when the stream
// ends, the client goes away, the session ends or the broker shuts down. Audit lines: capture.start
// and capture.end (identity, interfaces, effective filters, final counters).
//
// Arming: socket(AF_PACKET, type, 0) receives nothing (protocol 0 registers no hook); the ring is
// set up, the combined filter attached and locked (SO_LOCK_FILTER), promiscuous membership added,
// and only then bind() with ETH_P_ALL registers the socket: no packet outside the filter is ever
// queued, also under a flood during arming.
import { isIP } from 'node:net';
import { status as Code, type ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import * as libc from '../native/libc.js';
import { linux, os } from '../native/constants.js';
import { ifNameToIndex, encodeSockaddrLl, encodePacketMreq } from '../native/link.js';
import { andPrograms, checkProgram, directionProgram, encodeProgram, fixCookedSll2, withSnap, SLL2_HDR_LEN, acceptAll, type Insn } from '../native/bpf.js';
import { compileFilter, FilterError, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, MAX_FILTER_BYTES } from '../native/pcap.js';
import { attachLockedFilter, hardwareType, PacketRing, ringGeometry } from '../native/packet-ring.js';
import {
  CaptureBackpressure, CaptureDirection, CaptureServiceService, CaptureResponse, type CaptureRequest, type SniffRequest,
} from '../proto/gen/sockbroker/v1/capture.js';
import { argumentError, BrokerError, osErrorNamed, toBrokerError, toServiceError } from './errors.js';
import { describe } from './identity.js';
import { CAPTURE_QUOTA_DEFAULTS, decideCapture, type Policy } from './policy.js';
import { sessionOf, type Peers, type Peer } from './rpc.js';
import type { Reactor } from '../native/reactor.js';
import type { NetnsRegistry } from './netns.js';
import type { Session, Sessions } from './sessions.js';
import { Capture, releaseSockets, type CaptureSocket } from './capture.js';
import { countDenial, countQuota, trackCapture, type CaptureCounts } from './metrics.js';
import { sniff } from './sniff.js';

const TYPE_FLAGS = linux.SOCK_NONBLOCK! | linux.SOCK_CLOEXEC!;
const MAX_INTERFACES = 16;
const DEFAULT_SNAPLEN = 262144;
const MIN_SNAPLEN = 64;
const DEFAULT_RING = 2 << 20;
const MIN_RING = 256 << 10;

export interface CaptureDeps {
  sessions: Sessions;
  peers: Peers;
  reactor: Reactor;
  netns: NetnsRegistry;
  log: Logger;
  policy: () => Policy;
  /** Open streams' end functions: shutdown ends each with its reason. */
  live: Set<(reason: BrokerError) => void>;
}

/** The service definition with the responses passed through as already-encoded Buffers. */
export const captureServiceDefinition = {
  ...CaptureServiceService,
  capture: { ...CaptureServiceService.capture, responseSerialize: (b: Buffer): Buffer => b },
  sniff: { ...CaptureServiceService.sniff, responseSerialize: (b: Buffer): Buffer => b },
};

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

interface Iface {
  name: string;
  index: number;
  linkType: number;
  cooked: boolean;
  fd: number;
  ring?: PacketRing;
}

/** Running captures per identity key (the captures_per_identity quota). */
const running = new Map<string, number>();

function validate(req: CaptureRequest) {
  const names = req.interfaces.length ? [...req.interfaces] : ['any'];
  if (names.length > MAX_INTERFACES) throw argumentError('value', `at most ${MAX_INTERFACES} interfaces per capture`, 'interfaces');
  for (const n of names) {
    const b = Buffer.from(n, 'utf8');
    if (!b.length || b.length > 15 || b.includes(0) || n.includes('/')) throw argumentError('value', `bad interface name ${JSON.stringify(n)}`, 'interfaces');
  }
  if (new Set(names).size !== names.length) throw argumentError('value', 'an interface is named twice', 'interfaces');
  if (names.includes('any') && names.length > 1) throw argumentError('value', '"any" captures every interface: name it alone', 'interfaces');
  if (Buffer.byteLength(req.filter, 'utf8') > MAX_FILTER_BYTES) throw argumentError('value', `filter is longer than ${MAX_FILTER_BYTES} bytes`, 'filter');
  const direction = req.direction === CaptureDirection.CAPTURE_DIRECTION_IN ? 'in' : req.direction === CaptureDirection.CAPTURE_DIRECTION_OUT ? 'out' : 'both';
  if (![0, 1, 2, 3].includes(req.direction)) throw argumentError('value', 'unknown direction', 'direction');
  if (![0, 1, 2, 3].includes(req.backpressure)) throw argumentError('value', 'unknown backpressure policy', 'backpressure');
  const snaplen = req.snaplen === 0 ? DEFAULT_SNAPLEN : clamp(req.snaplen, MIN_SNAPLEN, DEFAULT_SNAPLEN);
  const batchMaxBytes = req.batchMaxBytes === 0 ? 256 << 10 : clamp(req.batchMaxBytes, 4 << 10, 1 << 20);
  const latencyMs = req.batchMaxLatencyMs === 0 ? 100 : clamp(req.batchMaxLatencyMs, 1, 1000);
  const queueBytes = req.queueBytes === 0 ? Math.max(4 << 20, batchMaxBytes) : clamp(req.queueBytes, batchMaxBytes, 64 << 20);
  const backpressure = req.backpressure === 0 ? CaptureBackpressure.CAPTURE_BACKPRESSURE_BLOCK : req.backpressure;
  return { names, direction: direction as 'in' | 'out' | 'both', snaplen, batchMaxBytes, latencyMs, queueBytes, backpressure };
}

/** The caller's own TCP connection as a pcap expression of numeric addresses we validated. */
function ownConnectionFilter(peer: Peer): string | null {
  if (peer.kind !== 'remote' || !peer.tcp) return null;
  const strip = (a: string): string => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);
  const l = strip(peer.tcp.localAddress), r = strip(peer.tcp.remoteAddress);
  const lp = peer.tcp.localPort, rp = peer.tcp.remotePort;
  if (!isIP(l) || !isIP(r) || !Number.isInteger(lp) || !Number.isInteger(rp)) return null;
  return `not (tcp and ((src host ${l} and src port ${lp} and dst host ${r} and dst port ${rp}) or (src host ${r} and src port ${rp} and dst host ${l} and dst port ${lp})))`;
}

/** One filter compiled alone for a socket of `linkType` (cooked: rewritten for SOCK_DGRAM). */
async function compileFor(expr: string, iface: Iface, snaplen: number, what: string): Promise<Insn[]> {
  let prog: Insn[];
  try {
    prog = await compileFilter(expr, iface.linkType, snaplen);
  } catch (err) {
    if (err instanceof FilterError || err instanceof RangeError) {
      throw what === 'filter'
        ? argumentError('value', `bad filter: ${err.message}`, 'filter')
        : new BrokerError(Code.FAILED_PRECONDITION, 'BAD_GUARD', `the policy's ${what} does not compile: ${err.message}`, { kind: 'os' });
    }
    throw err;
  }
  if (!iface.cooked) return prog;
  const fixed = fixCookedSll2(prog);
  if (!fixed) throw argumentError('value', `the ${what} reads LINUX_SLL2 header fields the kernel cannot filter on`, 'filter');
  return fixed;
}

export function captureService(deps: CaptureDeps) {
  const { log, reactor, netns } = deps;

  async function run(call: ServerWritableStream<CaptureRequest, Buffer>, stopped: { reason: string | null; wake: () => void }): Promise<void> {
    const session: Session = sessionOf(deps.sessions, deps.peers, call);
    const peer = deps.peers.peerOf(call);
    const identity = session.identity;
    const req = call.request;
    const v = validate(req);
    const wantPromisc = req.promiscuous && !v.names.includes('any');
    const audit = (event: string, fields: Record<string, unknown>): void =>
      log.info({ event, session: session.id.slice(0, 8), ...describe(identity), ...fields });

    const decision = decideCapture(deps.policy(), identity, v.names, wantPromisc);
    if (!decision.allowed) {
      countDenial('capture');
      audit('policy.deny', { action: { op: 'capture', interfaces: v.names, promiscuous: wantPromisc }, what: decision.what, grant: decision.grant, outcome: 'denied' });
      throw osErrorNamed('EPERM', 'capture', `Operation not permitted (sockbroker policy: ${decision.what}; grant: capture)`);
    }
    const q = { ...CAPTURE_QUOTA_DEFAULTS, ...Object.fromEntries(Object.entries(session.quotas).filter(([, x]) => x !== undefined)) } as typeof CAPTURE_QUOTA_DEFAULTS;
    const key = identity.key;
    if ((running.get(key) ?? 0) >= q.capturesPerIdentity) {
      countQuota('captures_per_identity');
      throw new BrokerError(Code.RESOURCE_EXHAUSTED, 'QUOTA', `too many captures for this identity (limit ${q.capturesPerIdentity})`, { kind: 'os' });
    }
    const perIface = Math.min(req.bufferBytes || DEFAULT_RING, Math.floor(q.captureRingBytes / v.names.length));
    if (perIface < MIN_RING) {
      countQuota('capture_ring_bytes');
      throw new BrokerError(Code.RESOURCE_EXHAUSTED, 'QUOTA', `the capture ring quota (${q.captureRingBytes} bytes) leaves less than ${MIN_RING} bytes per interface`, { kind: 'os' });
    }
    running.set(key, (running.get(key) ?? 0) + 1);
    // The capture stream holds its session attached, as the Call stream does.
    deps.sessions.attach(session);
    const ifaces: Iface[] = [];
    let capture: Capture | undefined;
    let untrack: ((final: CaptureCounts) => void) | undefined;
    const started = performance.now();
    try {
      // Sockets and interface facts, in the session's network namespace.
      const loIndex = netns.run(session.netns, () => {
        for (const name of v.names) {
          if (name === 'any') {
            ifaces.push({ name, index: 0, linkType: LINKTYPE_LINUX_SLL2, cooked: true, fd: libc.socket(linux.AF_PACKET!, linux.SOCK_DGRAM! | TYPE_FLAGS, 0) });
            continue;
          }
          const index = ifNameToIndex(name);
          if (!index) throw osErrorNamed('ENODEV', 'capture', `No such device (${JSON.stringify(name)})`);
          const fd = libc.socket(linux.AF_PACKET!, linux.SOCK_RAW! | TYPE_FLAGS, 0);
          const iface: Iface = { name, index, linkType: LINKTYPE_ETHERNET, cooked: false, fd };
          ifaces.push(iface);
          const hatype = hardwareType(fd, name);
          if (hatype !== os.ARPHRD_ETHER && hatype !== os.ARPHRD_LOOPBACK) {
            // No Ethernet header: capture cooked, as libpcap does.
            libc.close(fd);
            iface.fd = libc.socket(linux.AF_PACKET!, linux.SOCK_DGRAM! | TYPE_FLAGS, 0);
            iface.linkType = LINKTYPE_LINUX_SLL2;
            iface.cooked = true;
          }
        }
        return ifNameToIndex('lo');
      });
      const own = req.includeOwnConnection ? null : ownConnectionFilter(peer);
      const programs: Insn[][] = [];
      for (const iface of ifaces) {
        const kernelSnap = v.snaplen - (iface.cooked ? SLL2_HDR_LEN : 0);
        let prog = directionProgram(v.direction, iface.index === 0 || iface.index === loIndex ? loIndex : 0, kernelSnap);
        for (const [expr, what] of [[decision.guard, 'guard filter'], [req.filter, 'filter'], [own ?? '', 'own-connection filter']] as const) {
          if (expr.trim() === '') continue;
          prog = andPrograms(prog, await compileFor(expr, iface, v.snaplen, what));
          if (stopped.reason) throw new BrokerError(Code.CANCELLED, 'CANCELLED', 'capture cancelled', { kind: 'cancelled' });
        }
        prog = withSnap(prog.length ? prog : acceptAll(kernelSnap), kernelSnap);
        try {
          checkProgram(prog);
        } catch (err) {
          throw argumentError('value', `filter too large: ${(err as Error).message}`, 'filter');
        }
        programs.push(prog);
      }
      // Arm: ring, locked filter, promiscuity, and only then bind with a protocol.
      const retireMs = Math.max(1, Math.min(16, Math.floor(v.latencyMs / 2)));
      const geo = ringGeometry(perIface, retireMs);
      ifaces.forEach((iface, i) => {
        iface.ring = new PacketRing(iface.fd, geo);
        attachLockedFilter(iface.fd, encodeProgram(programs[i]!));
        if (wantPromisc) libc.setsockopt(iface.fd, os.SOL_PACKET!, os.PACKET_ADD_MEMBERSHIP!, encodePacketMreq(iface.index, os.PACKET_MR_PROMISC!));
        libc.bind(iface.fd, encodeSockaddrLl({ protocol: linux.ETH_P_ALL!, ifindex: iface.index, hatype: 0, pkttype: 0, addr: Buffer.alloc(0) }));
      });
      if (stopped.reason) return;
      const armed = {
        interfaces: ifaces.map((f) => ({ index: f.index, name: f.name, linkType: f.linkType })),
        snaplen: v.snaplen, filter: req.filter, guard: decision.guard, ownConnectionExcluded: own !== null,
        bufferBytes: geo.blockSize * geo.blockCount, batchMaxBytes: v.batchMaxBytes, batchMaxLatencyMs: v.latencyMs,
        queueBytes: v.queueBytes, backpressure: v.backpressure, promiscuous: wantPromisc,
        direction: v.direction === 'in' ? CaptureDirection.CAPTURE_DIRECTION_IN : v.direction === 'out' ? CaptureDirection.CAPTURE_DIRECTION_OUT : CaptureDirection.CAPTURE_DIRECTION_INOUT,
      };
      call.write(Buffer.from(CaptureResponse.encode({ armed }).finish()));
      audit('capture.start', { interfaces: v.names, filter: req.filter, guard: decision.guard, by: decision.by, ownConnectionExcluded: own !== null, promiscuous: wantPromisc, snaplen: v.snaplen, ringBytes: armed.bufferBytes * ifaces.length, outcome: 'allowed' });

      const socks: CaptureSocket[] = ifaces.map((f, slot) => ({ fd: f.fd, ring: f.ring!, slot, cooked: f.cooked }));
      capture = new Capture(socks, {
        batchMaxBytes: v.batchMaxBytes, latencyMs: v.latencyMs, queueBytes: v.queueBytes, backpressure: v.backpressure,
        packetsPerSecond: q.capturePacketsPerSecond, bytesPerSecond: q.captureBytesPerSecond, retireMs,
      }, {
        write: (msg, done) => {
          if (call.cancelled || call.destroyed) return done();
          call.write(msg, () => done());
        },
      }, reactor);
      capture.start();
      const tracked = capture;
      untrack = trackCapture(session, () => tracked.stats());
      await new Promise<void>((resolve) => {
        stopped.wake = resolve;
        if (stopped.reason) resolve();
      });
      const clientGone = call.cancelled || call.destroyed;
      if (!clientGone) {
        // A broker-side end: stop delivery (bind protocol 0 unhooks the socket), let the kernel
        // hand over its half-full blocks, and send everything with the final counters.
        for (const f of ifaces) libc.bind(f.fd, encodeSockaddrLl({ protocol: 0, ifindex: f.index, hatype: 0, pkttype: 0, addr: Buffer.alloc(0) }));
        await new Promise((r) => setTimeout(r, 2 * retireMs + 20));
      }
      await capture.stop(!clientGone);
    } finally {
      const final = capture?.stats();
      if (final) untrack?.(final);
      if (capture) await capture.stop(false);
      releaseSockets(reactor, ifaces);
      deps.sessions.detach(session);
      const n = (running.get(key) ?? 1) - 1;
      if (n > 0) running.set(key, n);
      else running.delete(key);
      if (capture) {
        audit('capture.end', { interfaces: v.names, filter: req.filter, guard: decision.guard, why: stopped.reason ?? 'error', seconds: Math.round(performance.now() - started) / 1000, ...final });
      }
    }
  }

  return {
    sniff: (call: ServerWritableStream<SniffRequest, Buffer>): void => sniff(deps, call),
    capture(call: ServerWritableStream<CaptureRequest, Buffer>): void {
      const stopped = { reason: null as string | null, wake: () => undefined as void };
      const stop = (why: string): void => {
        if (stopped.reason) return;
        stopped.reason = why;
        stopped.wake();
      };
      let session: Session | undefined;
      const onSessionEnd = (): void => stop('session ended');
      try {
        session = sessionOf(deps.sessions, deps.peers, call);
        session.onEnd.add(onSessionEnd);
      } catch {
        // run() reports it
      }
      let shutdownReason: BrokerError | undefined;
      const onShutdown = (reason: BrokerError): void => {
        shutdownReason = reason;
        stop('broker shutting down');
      };
      deps.live.add(onShutdown);
      call.on('cancelled', () => stop('client ended the capture'));
      call.on('close', () => stop('client went away'));
      run(call, stopped).then(
        () => {
          if (call.cancelled || call.destroyed) return;
          if (shutdownReason) call.emit('error', toServiceError(shutdownReason));
          else call.end();
        },
        (err) => {
          if (!(err instanceof BrokerError) && !(err as { errno?: unknown }).errno) log.error({ event: 'internal', op: 'capture', err: String((err as Error)?.stack ?? err) });
          if (!call.cancelled && !call.destroyed) call.emit('error', toServiceError(toBrokerError(err)));
        },
      ).finally(() => {
        deps.live.delete(onShutdown);
        session?.onEnd.delete(onSessionEnd);
      });
    },
  };
}
