// Where the SDK finds the broker: connect(address) > $SOCKBROKER_ADDRESS > the caller's own
// per-user broker if it is running > the system broker. Syntax: unix:PATH (as `serve --listen`).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const SYSTEM_SOCKET = '/run/sockbroker/sockbroker.sock';

function userSocket(uid: number, env: NodeJS.ProcessEnv): string {
  const dir = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'sockbroker') : `/tmp/sockbroker-${uid}`;
  return join(dir, 'sockbroker.sock');
}

/** The gRPC target for a broker address (unix:/PATH or tcp:HOST:PORT), checking its syntax. */
export function brokerTarget(address?: string, env = process.env): string {
  const text = address ?? env.SOCKBROKER_ADDRESS ?? defaultAddress(env);
  if (/^unix:\/.+/.test(text)) return text;
  const tcp = /^tcp:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  if (tcp) return `dns:${tcp[1]}:${tcp[2]}`.replace(/^dns:\[/, 'ipv6:[');
  throw new TypeError(`unsupported broker address ${JSON.stringify(text)}: expected unix:/PATH or tcp:HOST:PORT`);
}

function defaultAddress(env: NodeJS.ProcessEnv): string {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) {
    const own = userSocket(uid, env);
    if (existsSync(own)) return `unix:${own}`;
  }
  return `unix:${SYSTEM_SOCKET}`;
}
