// `sockbroker status`: the broker's sessions, like `ss` for sockets. A client of the broker: it
// uses the SDK only (client/admin.ts).
import { listSessions, type ListSessionsResponse, type SessionSummary } from '../client/admin.js';

function who(s: SessionSummary): string {
  if (s.kind === 'remote') return s.certSubject ? `cert:${s.certSubject}` : `token:${s.tokenName}`;
  return s.hostRoot ? 'root (host)' : `uid=${s.uid} gid=${s.gid}`;
}

function age(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.floor(seconds % 60)}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`;
}

/** The table `status` prints: one line per session, columns padded to their widest cell. */
export function statusTable(res: ListSessionsResponse): string {
  const head = ['SESSION', 'IDENTITY', 'PID', 'NETNS', 'RULE', 'AGE', 'STREAMS', 'SOCKETS', 'CAPTURES', 'RX', 'TX'];
  const rows = res.sessions.map((s) => [
    s.sessionPrefix,
    who(s),
    s.pid ? String(s.pid) : '-',
    s.hostNetwork ? 'host' : s.networkNamespace || '-',
    s.rule,
    age(s.ageSeconds),
    String(s.attachedStreams),
    s.sockets.length ? s.sockets.map((f) => `${f.name}:${f.count}`).join(',') : '0',
    String(s.captures),
    bytes(s.bytesIn),
    bytes(s.bytesOut),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const total = res.sessions.reduce((n, s) => n + s.sockets.reduce((m, f) => m + f.count, 0), 0);
  return [`broker pid ${res.brokerPid}, up ${age(res.uptimeSeconds)}: ${res.sessions.length} sessions, ${total} sockets`, line(head), ...rows.map(line)].join('\n') + '\n';
}

export async function status(opts: { broker?: string; json?: boolean }): Promise<void> {
  const res = await listSessions(opts.broker);
  process.stdout.write(opts.json ? `${JSON.stringify(res, null, 2)}\n` : statusTable(res));
}
