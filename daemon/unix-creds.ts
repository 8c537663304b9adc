// The credentials an AF_UNIX message carries. Without an explicit SCM_CREDENTIALS item the kernel
// attaches the sending thread's own — the root daemon's pid and uid 0 — which a receiver with
// SO_PASSCRED (journald, a D-Bus peer) would trust. For every caller but host root the daemon
// therefore sends the caller's own ids with each message on an AF_UNIX socket.
import { existsSync } from 'node:fs';
import { linux as C } from '../native/constants.js';
import { encodeCmsgs } from '../native/msg.js';
import type { SocketEntry } from './handles.js';
import { DAEMON_IS_ROOT, type Identity } from './identity.js';

/** struct ucred for `id`: its pid (the daemon's when the session's opener has exited), uid, gid. */
export function ucredOf(id: Identity): Buffer {
  const data = Buffer.alloc(12);
  // The kernel looks the pid up: the opener of the session may have exited since.
  data.writeInt32LE(id.kind === 'local' && existsSync(`/proc/${id.pid}`) ? id.pid : process.pid, 0);
  data.writeUInt32LE(id.uid >>> 0, 4);
  data.writeUInt32LE(id.gid >>> 0, 8);
  return data;
}

// A daemon run by an ordinary user serves only that user (its socket is 0600): the kernel's own
// credentials are already the caller's uid, and it could not send another pid anyway.

/** The control bytes a send on `entry` must carry for `id`, or null when none are needed. */
export function callerCredentials(id: Identity, entry: SocketEntry): Buffer | null {
  if (!DAEMON_IS_ROOT || id.hostRoot || entry.info.family !== C.AF_UNIX) return null;
  return encodeCmsgs([{ level: C.SOL_SOCKET, type: C.SCM_CREDENTIALS, data: ucredOf(id) }]);
}
