// socket.ioctl(control, option) with the Winsock control codes Python's socket module takes
// (SIO_* carry the Windows values, a documented exception: Linux has none). One switch on the
// control code; each case maps the Windows meaning onto Linux socket options:
//   SIO_KEEPALIVE_VALS (onoff, keepalivetime ms, keepaliveinterval ms) → SO_KEEPALIVE,
//     TCP_KEEPIDLE and TCP_KEEPINTVL in whole seconds (rounded up, at least 1);
//   SIO_LOOPBACK_FAST_PATH → accepted and ignored (Linux loopback has no slow path to skip);
//   SIO_RCVALL → the sniffer socket's promiscuous membership (link-ops.ts);
//   anything else → ValueError('invalid ioctl command N'), as CPython on Windows.
import { linux as C } from '../native/constants.js';
import * as libc from '../native/libc.js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';
import { argumentError } from './errors.js';
import type { SocketEntry } from './handles.js';
import type { CallContext, SocketOps } from './socket-ops.js';
import { validateUint } from './op-args.js';
import { winsock } from './winsock.js';

function int(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/** Milliseconds to the whole seconds Linux takes (rounded up; TCP_KEEPIDLE/INTVL refuse 0). */
function msToSeconds(ms: number): number {
  return Math.min(32767, Math.max(1, Math.ceil(ms / 1000)));
}

export class IoctlOps {
  constructor(readonly ops: SocketOps) {}

  ioctl = async (ctx: CallContext, req: pb.IoctlRequest): Promise<pb.IoctlResponse> => {
    const entry = this.ops.entry(ctx, req.handle, 'ioctl');
    const control = validateUint(req.control, 'control');
    switch (control) {
      case winsock.SIO_KEEPALIVE_VALS:
        this.#keepalive(ctx, entry, req.keepalive);
        return {};
      case winsock.SIO_LOOPBACK_FAST_PATH:
        if (req.value === undefined) throw argumentError('type', 'ioctl(): SIO_LOOPBACK_FAST_PATH takes an int option', 'option');
        validateUint(req.value, 'option');
        return {};
      case winsock.SIO_RCVALL:
        return this.rcvall(ctx, entry, req);
      default:
        throw unknownControl(control);
    }
  };

  /** SIO_RCVALL on the sniffer socket (raw IPPROTO_IP over AF_PACKET; see link-ops.ts). */
  async rcvall(ctx: CallContext, entry: SocketEntry, req: pb.IoctlRequest): Promise<pb.IoctlResponse> {
    if (req.value === undefined) throw argumentError('type', 'ioctl(): SIO_RCVALL takes an int option (RCVALL_*)', 'option');
    this.ops.link.rcvall(ctx, entry, validateUint(req.value, 'option'));
    return {};
  }

  #keepalive(ctx: CallContext, entry: SocketEntry, v: pb.KeepaliveValues | undefined): void {
    if (!v) throw argumentError('type', 'ioctl(): SIO_KEEPALIVE_VALS takes a (onoff, keepalivetime, keepaliveinterval) tuple', 'option');
    const onoff = validateUint(v.onoff, 'onoff');
    const idle = msToSeconds(validateUint(v.keepalivetime, 'keepalivetime'));
    const intvl = msToSeconds(validateUint(v.keepaliveinterval, 'keepaliveinterval'));
    const opts: Array<[number, number, number]> = [
      [C.SOL_SOCKET, C.SO_KEEPALIVE, onoff ? 1 : 0],
      [C.IPPROTO_TCP, C.TCP_KEEPIDLE, idle],
      [C.IPPROTO_TCP, C.TCP_KEEPINTVL, intvl],
    ];
    for (const [level, name, value] of opts) this.ops.enforce(ctx, { op: 'setsockopt', level, name, value }, 'ioctl');
    this.ops.live(entry, 'ioctl');
    for (const [level, name, value] of opts) libc.setsockopt(entry.fd, level, name, int(value));
  }
}

function unknownControl(control: number) {
  return argumentError('value', `invalid ioctl command ${control}`, 'control');
}
