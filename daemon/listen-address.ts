// Broker addresses: `unix:PATH` or `tcp:HOST:PORT` (IPv6 hosts in brackets). The SDK's
// connect() takes the same syntax.
import { join } from 'node:path';
import type { Listen } from './server.js';

/** The system broker's socket (a daemon run by root). */
export const SYSTEM_SOCKET = '/run/sockbroker/sockbroker.sock';

/** Default for this process: root → SYSTEM_SOCKET; others → $XDG_RUNTIME_DIR or /tmp/sockbroker-UID. */
export function defaultListenAddress(uid = process.getuid?.() ?? 0, env = process.env): string {
  if (uid === 0) return `unix:${SYSTEM_SOCKET}`;
  const dir = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'sockbroker') : `/tmp/sockbroker-${uid}`;
  return `unix:${join(dir, 'sockbroker.sock')}`;
}

/**
 * Parses one --listen value. A root daemon's Unix socket is 0666 (every local user may connect;
 * the policy decides what each gets); a user's own daemon's is 0600.
 */
export function parseListenAddress(text: string, uid = process.getuid?.() ?? 0): Listen {
  const unix = /^unix:(\/.+)$/.exec(text);
  if (unix) return { kind: 'unix', path: unix[1]!, mode: uid === 0 ? 0o666 : 0o600 };
  const tcp = /^tcp:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (tcp && Number(tcp[3]) <= 65535) return { kind: 'tcp', host: tcp[1] ?? tcp[2]!, port: Number(tcp[3]) };
  throw new Error(`unsupported broker address ${JSON.stringify(text)}: expected unix:/PATH or tcp:HOST:PORT`);
}
