// SessionService: open/resume, keep-alive stream, close, and the module info the SDK loads at
// connect (the broker host's constants, ABI sizes, has_ipv6 and limits).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { linux, abi } from '../native/constants.js';
import * as libc from '../native/libc.js';
import { winsock } from './winsock.js';
import { packetExtras } from './link-ops.js';
import type { SessionServiceServer, KeepAliveRequest, KeepAliveResponse, GetModuleInfoResponse } from '../proto/gen/sockbroker/v1/session.js';
import { toBrokerError, toServiceError, type BrokerError } from './errors.js';
import { isMalformed, malformedError, onStreamEnd, sessionOf, streamSession, type Malformed, type Peers } from './rpc.js';
import { decide, quotasFor, ruleOf, type Policy } from './policy.js';
import { countDenial } from './metrics.js';
import { describe } from './identity.js';
import type { NetnsRegistry } from './netns.js';
import { osErrorNamed, sessionError } from './errors.js';
import { status as Code } from '@grpc/grpc-js';
import { CallState } from './call-state.js';
import type { Sessions } from './sessions.js';
import type { Limits } from './limits.js';

function hostHasIpv6(): boolean {
  try {
    libc.close(libc.socket(linux.AF_INET6, linux.SOCK_DGRAM | linux.SOCK_CLOEXEC, 0));
    return true;
  } catch {
    return false;
  }
}

export function moduleInfo(limits: Limits): GetModuleInfoResponse {
  return {
    constants: { ...linux, ...winsock, ...packetExtras },
    abi: { ...abi },
    hasIpv6: hostHasIpv6(),
    limits: { ...limits } as unknown as Record<string, number>,
  };
}

export interface SessionServiceDeps {
  sessions: Sessions;
  peers: Peers;
  limits: Limits;
  log: Logger;
  netns: NetnsRegistry;
  /** The policy in force (it may be reloaded). */
  policy: () => Policy;
  /** Open streams' end functions: shutdown ends each with its reason. */
  live?: Set<(reason: BrokerError) => void>;
}

export function sessionService({ sessions, peers, limits, log, netns, policy, live }: SessionServiceDeps): SessionServiceServer {
  const info = moduleInfo(limits);
  return {
    openSession(call, callback) {
      try {
        const peer = peers.peerOf(call);
        const identity = peers.identityOf(call);
        const resumeId = call.request.resumeSessionId;
        let session;
        if (resumeId) {
          const was = call.request.brokerInstance;
          if (was && was !== sessions.instance) throw sessionError('session lost: the broker restarted (its sessions ended with it)', Code.NOT_FOUND, 'restarted');
          session = sessions.get(resumeId, identity);
          const received = call.request.receivedSeq ?? 0;
          if (session.calls && received < session.calls.droppedSeq) {
            // A result the client never received is gone: resuming would lose it silently.
            const why = `session lost: the broker's replay record overflowed (${session.calls.dropped} unacknowledged results dropped)`;
            void sessions.end(session, 'replay record overflowed');
            throw sessionError(why, Code.FAILED_PRECONDITION, 'overflow');
          }
          session.calls?.ack(received);
          log.info({ event: 'session.resume', session: session.id.slice(0, 8), ...describe(identity), received });
        } else {
          // A caller in another network namespace gets its sockets there, unless it asks for the
          // host's and a grant allows it.
          let ns = peer.kind === 'local' ? peer.netns : null;
          if (ns !== null && call.request.hostNetwork) {
            const d = decide(policy(), identity, { op: 'host-network' });
            if (!d.allowed) {
              countDenial(d.grant);
              log.warn({ event: 'policy.deny', ...describe(identity), action: { op: 'host-network' }, what: d.what, grant: d.grant, outcome: 'denied' });
              throw osErrorNamed('EPERM', 'setns', `Operation not permitted (sockbroker policy: ${d.what}; grant: ${d.grant})`);
            }
            log.info({ event: 'policy.allow', ...describe(identity), action: { op: 'host-network' }, by: d.by, outcome: 'allowed' });
            ns = null;
          }
          session = sessions.open(identity, quotasFor(policy(), identity), ns === null ? null : netns.retain(ns), ruleOf(policy(), identity));
          if (call.request.resumable) session.calls = new CallState(true, limits.maxReplayEntries, limits.maxReplayBytes);
          session.batchResponses = call.request.batchResponses === true;
        }
        callback(null, { sessionId: session.id, resumed: Boolean(resumeId), graceSeconds: sessions.opts.graceMs / 1000, brokerInstance: sessions.instance });
      } catch (err) {
        callback(toServiceError(toBrokerError(err)));
      }
    },

    keepAlive(stream: ServerDuplexStream<KeepAliveRequest, KeepAliveResponse>) {
      const session = streamSession(sessions, peers, stream);
      if (!session) return;
      sessions.attach(session);
      let attached = true;
      const detach = (): void => {
        if (!attached) return;
        attached = false;
        live?.delete(shutdown);
        sessions.detach(session);
      };
      // Shutdown ends the stream with its reason (else the client sees it cut after the drain's grace).
      const shutdown = (reason: BrokerError): void => {
        if (!attached) return;
        detach();
        stream.emit('error', toServiceError(reason));
      };
      live?.add(shutdown);
      stream.on('data', (req: KeepAliveRequest | Malformed) => {
        if (!attached) return;
        if (isMalformed(req)) {
          detach();
          stream.emit('error', malformedError('KeepAliveRequest', req));
          return;
        }
        stream.write({ nonce: req.nonce });
      });
      onStreamEnd(stream, detach);
    },

    closeSession(call, callback) {
      let session;
      try {
        session = sessionOf(sessions, peers, call);
      } catch (err) {
        callback(toServiceError(toBrokerError(err)));
        return;
      }
      sessions.end(session, 'closed by client').then((n) => callback(null, { closedSockets: n }));
    },

    getModuleInfo(call, callback) {
      // The limits a caller sees are its own quotas where they are tighter than the broker's.
      let limitsFor = info.limits;
      try {
        const q = quotasFor(policy(), peers.identityOf(call));
        limitsFor = { ...info.limits, maxSendBytes: Math.min(limits.maxSendBytes, q.bytesPerCall), maxSockets: q.socketsPerSession, maxSessionsPerIdentity: q.sessionsPerIdentity };
      } catch {
        // Unauthenticated: the broker-wide limits.
      }
      callback(null, { ...info, limits: limitsFor });
    },
  };
}
