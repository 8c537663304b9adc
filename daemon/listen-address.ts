// Broker addresses: `unix:PATH`. The same syntax is parsed by the SDK's connect().
import { join } from 'node:path';

export interface ListenAddress {
  path: string;
}

/** The system broker's socket (a daemon run by root). */
export const SYSTEM_SOCKET = '/run/sockbroker/sockbroker.sock';

/** Default for this process: root → SYSTEM_SOCKET; others → $XDG_RUNTIME_DIR or /tmp/sockbroker-UID. */
export function defaultListenAddress(uid = process.getuid?.() ?? 0, env = process.env): string {
  if (uid === 0) return `unix:${SYSTEM_SOCKET}`;
  const dir = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'sockbroker') : `/tmp/sockbroker-${uid}`;
  return `unix:${join(dir, 'sockbroker.sock')}`;
}

export function parseListenAddress(text: string): ListenAddress {
  const m = /^unix:(.+)$/.exec(text);
  if (!m) throw new Error(`unsupported broker address ${JSON.stringify(text)}: expected unix:PATH`);
  return { path: m[1]! };
}
