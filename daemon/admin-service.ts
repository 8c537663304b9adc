// AdminService: the operator's view of the broker (`sockbroker status`). Host root only: any
// other identity is refused with PERMISSION_DENIED (EPERM). Every call is audit-logged.
import type { Logger } from 'pino';
import type { AdminServiceServer, FamilyCount, SessionSummary } from '../proto/gen/sockbroker/v1/admin.js';
import { osErrorNamed, toBrokerError, toServiceError } from './errors.js';
import { describe } from './identity.js';
import { capturesOf, familyName } from './metrics.js';
import type { Peers } from './rpc.js';
import type { Session, Sessions } from './sessions.js';

const started = Date.now();

function summary(s: Session, now: number): SessionSummary {
  const byFamily = new Map<number, number>();
  for (const e of s.table.entries()) byFamily.set(e.info.family, (byFamily.get(e.info.family) ?? 0) + 1);
  const sockets: FamilyCount[] = [...byFamily].sort(([a], [b]) => a - b).map(([family, count]) => ({ family, name: familyName(family), count }));
  const id = s.identity;
  return {
    sessionPrefix: s.id.slice(0, 8),
    kind: id.kind,
    uid: id.uid,
    gid: id.gid,
    pid: id.pid,
    userNamespace: id.userNs,
    networkNamespace: id.netNs,
    hostRoot: id.hostRoot,
    certSubject: id.subject ?? '',
    tokenName: id.token ?? '',
    rule: s.rule,
    ageSeconds: (now - s.openedAt) / 1000,
    attachedStreams: s.attached,
    hostNetwork: s.netns === null,
    sockets,
    bytesIn: s.bytesIn,
    bytesOut: s.bytesOut,
    captures: capturesOf(s),
  };
}

export function adminService(sessions: Sessions, peers: Peers, log: Logger): AdminServiceServer {
  return {
    listSessions(call, callback) {
      try {
        const identity = peers.identityOf(call);
        if (!identity.hostRoot) {
          log.warn({ event: 'admin.refused', rpc: 'ListSessions', ...describe(identity), outcome: 'denied' });
          throw osErrorNamed('EPERM', 'ListSessions', 'Operation not permitted (AdminService is for root on the broker host only)');
        }
        const now = Date.now();
        const list = [...sessions.all()].sort((a, b) => a.openedAt - b.openedAt).map((s) => summary(s, now));
        log.info({ event: 'admin.list_sessions', ...describe(identity), sessions: list.length, outcome: 'allowed' });
        callback(null, { sessions: list, brokerPid: process.pid, uptimeSeconds: (now - started) / 1000 });
      } catch (err) {
        callback(toServiceError(toBrokerError(err)));
      }
    },
  };
}
