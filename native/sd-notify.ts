// The systemd notification protocol's transport: one datagram to $NOTIFY_SOCKET, an AF_UNIX
// path or an abstract name ('@' stands for the leading NUL). Node has no Unix datagram sockets,
// so the socket is made here through libc; the datagram comes from this (the main) process,
// as NotifyAccess=main requires. Non-blocking: a full receive queue drops the message (EAGAIN)
// rather than stalling the event loop.
import { linux as C } from './constants.js';
import { close, sendto, socket } from './libc.js';
import { encodeSockaddr } from './sockaddr.js';

/** The sockaddr_un for a NOTIFY_SOCKET value; throws on anything but an absolute path or '@name'. */
export function notifyAddress(value: string): Buffer {
  if (value.startsWith('@')) return encodeSockaddr({ family: 'unix', path: Buffer.concat([Buffer.of(0), Buffer.from(value.slice(1))]) });
  if (value.startsWith('/')) return encodeSockaddr({ family: 'unix', path: Buffer.from(value) });
  throw new Error(`NOTIFY_SOCKET ${JSON.stringify(value)} is neither an absolute path nor an abstract '@' name`);
}

/** Sends `state` (e.g. 'READY=1\nSTATUS=listening') to the socket at `address`; throws errno errors. */
export function sendNotify(address: Buffer, state: string): void {
  const fd = socket(C.AF_UNIX!, C.SOCK_DGRAM! | C.SOCK_CLOEXEC! | C.SOCK_NONBLOCK!, 0);
  try {
    sendto(fd, Buffer.from(state), C.MSG_NOSIGNAL!, address);
  } finally {
    close(fd);
  }
}
