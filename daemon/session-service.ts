// SessionService: open/resume, keep-alive stream, close, and the module info the SDK loads at
// connect (the broker host's constants, ABI sizes, has_ipv6 and limits).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { linux, abi } from '../native/constants.js';
import * as libc from '../native/libc.js';
import { winsock } from './winsock.js';
import type { SessionServiceServer, KeepAliveRequest, KeepAliveResponse, GetModuleInfoResponse } from '../proto/gen/sockbroker/v1/session.js';
import { toBrokerError, toServiceError } from './errors.js';
import { identityOf, sessionOf, type PeerTable } from './rpc.js';
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
    constants: { ...linux, ...winsock },
    abi: { ...abi },
    hasIpv6: hostHasIpv6(),
    limits: { ...limits } as unknown as Record<string, number>,
  };
}

export function sessionService(sessions: Sessions, peers: PeerTable, limits: Limits, log: Logger): SessionServiceServer {
  const info = moduleInfo(limits);
  return {
    openSession(call, callback) {
      try {
        const identity = identityOf(peers, call);
        const resumeId = call.request.resumeSessionId;
        const session = resumeId ? sessions.get(resumeId, identity) : sessions.open(identity);
        if (resumeId) log.info({ event: 'session.resume', session: session.id.slice(0, 8), pid: identity.pid });
        callback(null, { sessionId: session.id, resumed: Boolean(resumeId), graceSeconds: sessions.opts.graceMs / 1000 });
      } catch (err) {
        callback(toServiceError(toBrokerError(err)));
      }
    },

    keepAlive(stream: ServerDuplexStream<KeepAliveRequest, KeepAliveResponse>) {
      let session;
      try {
        session = sessionOf(sessions, peers, stream);
      } catch (err) {
        stream.emit('error', toServiceError(toBrokerError(err)));
        return;
      }
      sessions.attach(session);
      let attached = true;
      const detach = (): void => {
        if (!attached) return;
        attached = false;
        sessions.detach(session);
      };
      stream.on('data', (req: KeepAliveRequest) => stream.write({ nonce: req.nonce }));
      stream.on('end', () => {
        detach();
        stream.end();
      });
      stream.on('cancelled', detach);
      stream.on('error', detach);
      stream.on('close', detach);
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

    getModuleInfo(_call, callback) {
      callback(null, info);
    },
  };
}
