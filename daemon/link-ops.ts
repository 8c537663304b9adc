// The privileged families' special cases, hooked into SocketOps:
// - AF_PACKET sockets are created with protocol 0 and bound to a permitted interface before any
//   protocol is set, so nothing from other interfaces is ever read; every interface index in a
//   request (bind, sendto, PACKET_ADD_MEMBERSHIP, SO_BINDTODEVICE) is checked.
// - Raw IP sockets whose grant lists interfaces get SO_BINDTODEVICE, changeable only to another
//   permitted interface.
// - socket(AF_INET, SOCK_RAW, IPPROTO_IP), which Linux lacks (EPROTONOSUPPORT), is the Windows
//   sniffer socket: an AF_PACKET socket for IPv4 bound to the interface of the address given to
//   bind(); ioctl(SIO_RCVALL, RCVALL_ON) adds a promiscuous membership (reference counted by the
//   kernel, so other users of the interface are not disturbed) and every IP packet of the
//   interface, in and out, is delivered with (source_ip, 0) as the address. The packet socket
//   listens to all protocols (outgoing frames reach only such taps); a kernel filter keeps the
//   IPv4 ones (before RCVALL_ON only those received for the bound address). From bind on, the
//   socket has a TPACKET_V3 ring, read in batches by CaptureService.Sniff (daemon/sniff.ts), which
//   serves the SDK's recvfrom.
import * as libc from '../native/libc.js';
import { linux as C, os as O } from '../native/constants.js';
import { decodePacketMreq, encodePacketMreq, encodeSockaddrLl, ifIndexToName, ifNameIndex, ifNameToIndex, ipv4Addresses } from '../native/link.js';
import { argumentError, osErrorNamed } from './errors.js';
import { winsock } from './winsock.js';
import { attachFilter, PacketRing, type RingStats } from '../native/packet-ring.js';
import { encodeProgram, snifferProgram } from '../native/bpf.js';
import { globToRegExp, interfacesFor } from './policy.js';
import { resolveHost } from './addresses.js';
import type { Interfaces } from './link-addresses.js';
import type { SocketEntry, SocketInfo } from './handles.js';
import type { CallContext, SocketOps } from './socket-ops.js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';

const RCVALL = { OFF: winsock.RCVALL_OFF!, ON: winsock.RCVALL_ON!, MAX: winsock.RCVALL_MAX! };

/**
 * AF_PACKET constants Python's socket module lacks but a packet program needs (setsockopt
 * SOL_PACKET, PACKET_ADD_MEMBERSHIP with PACKET_MR_PROMISC, PACKET_STATISTICS, ETH_P_*): the
 * module info carries them beside the generated table.
 */
export const packetExtras: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(
    ['SOL_PACKET', 'PACKET_ADD_MEMBERSHIP', 'PACKET_DROP_MEMBERSHIP', 'PACKET_MR_PROMISC', 'PACKET_MR_MULTICAST', 'PACKET_MR_ALLMULTI',
      'PACKET_STATISTICS', 'PACKET_IGNORE_OUTGOING', 'PACKET_AUXDATA', 'ETH_P_IP', 'ETH_P_IPV6', 'ETH_P_ARP'].map((k) => [k, O[k]!]),
  ),
);

const TYPE_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
/**
 * A sniffer socket's ring: 32 blocks of 256 KiB (8 MiB: ~50k frames of a 64 B UDP datagram, 0.1 s
 * of a 250k packets/s flood on lo, where each is seen twice), a block handed over after at most
 * 2 ms when not full (so a lone packet waits ~2-4 ms).
 */
export const SNIFFER_RING = { blockSize: 256 << 10, blockCount: 32, retireMs: 2 };
/** Bytes kept of each packet (an IPv4 packet is at most 65535). */
const SNIFFER_SNAP = 65535;

/** A sniffer socket's receive state (link-ops.ts, daemon/sniff.ts). */
export interface SnifferState {
  ifindex: number;
  ifname: string;
  host: string;
  promisc: boolean;
  /** Set at bind. */
  ring?: PacketRing;
  /** Delivery counters kept across Sniff streams (daemon/capture.ts). */
  counters: { captured: number; capturedBytes: number; droppedByBroker: number };
  /** The ring's statistics as last reported by getsockopt(PACKET_STATISTICS), which resets them. */
  reported: RingStats;
  /** Ends the running Sniff stream (set while one runs). */
  stopSniff?: () => void;
}

/** State of a socket the broker emulates or confines. */
export interface LinkState {
  /** The Windows sniffer socket (AF_INET, SOCK_RAW, IPPROTO_IP) over AF_PACKET. */
  rcvall?: SnifferState;
  /** Interfaces this socket may use (glob patterns); null = unrestricted. */
  interfaces: string[] | null;
}

export function isSnifferSocket(info: SocketInfo): boolean {
  return info.family === C.AF_INET && info.type === C.SOCK_RAW && info.protocol === 0;
}

export class LinkOps {
  constructor(readonly ops: SocketOps) {}

  /** Interface lookups in the session's network namespace. */
  ifs(ctx: CallContext): Interfaces {
    const netns = this.ops.broker.netns;
    const ns = ctx.session.netns;
    return {
      index: (name) => netns.run(ns, () => ifNameToIndex(name)),
      name: (index) => netns.run(ns, () => ifIndexToName(index)),
    };
  }

  #permitted(ctx: CallContext, entry: SocketEntry | SocketInfo, ifname: string, syscall: string): void {
    const family = 'info' in entry ? entry.info.family : entry.family;
    this.ops.enforce(ctx, { op: 'interface', family, ifname }, syscall);
  }

  /** The first existing interface matching the patterns (so a confined socket starts confined). */
  #firstInterface(ctx: CallContext, patterns: string[]): [number, string] {
    const all = this.ops.broker.netns.run(ctx.session.netns, () => ifNameIndex());
    for (const p of patterns) {
      const re = globToRegExp(p);
      const hit = all.find(([, name]) => re.test(name));
      if (hit) return hit;
    }
    throw osErrorNamed('ENODEV', 'socket', `No such device (no interface matches the grant: ${patterns.join(', ')})`);
  }

  /** Creates a socket that needs link handling; null when `info` is an ordinary one. */
  create(ctx: CallContext, info: SocketInfo): SocketEntry | null {
    const policy = this.ops.broker.policy;
    const identity = ctx.session.identity;
    if (isSnifferSocket(info)) {
      const fd = this.ops.asCaller(ctx, () => libc.socket(C.AF_PACKET, C.SOCK_DGRAM | TYPE_FLAGS, 0));
      const entry = this.ops.register(ctx, fd, info);
      const r: SnifferState = {
        ifindex: 0, ifname: '', host: '', promisc: false,
        counters: { captured: 0, capturedBytes: 0, droppedByBroker: 0 }, reported: { packets: 0, drops: 0, freezes: 0 },
      };
      entry.link = { rcvall: r, interfaces: interfacesFor(policy, identity, C.AF_INET) };
      // Close: the Sniff stream's readers stop before the ring is unmapped and the fd closed.
      entry.onClose = () => {
        r.stopSniff?.();
        r.ring?.unmap();
      };
      return entry;
    }
    if (info.family === C.AF_PACKET) {
      const interfaces = interfacesFor(policy, identity, C.AF_PACKET);
      if (interfaces === null) {
        const fd = this.ops.asCaller(ctx, () => libc.socket(info.family, info.type | TYPE_FLAGS, info.protocol));
        return Object.assign(this.ops.register(ctx, fd, info), { link: { interfaces } });
      }
      // Protocol 0 receives nothing; binding to a permitted interface sets the protocol.
      const [ifindex] = this.#firstInterface(ctx, interfaces);
      const fd = this.ops.asCaller(ctx, () => libc.socket(info.family, info.type | TYPE_FLAGS, 0));
      const entry = Object.assign(this.ops.register(ctx, fd, info), { link: { interfaces } });
      libc.bind(fd, encodeSockaddrLl({ protocol: ntohs(info.protocol), ifindex, hatype: 0, pkttype: 0, addr: Buffer.alloc(0) }));
      return entry;
    }
    if ((info.family === C.AF_INET || info.family === C.AF_INET6) && info.type === C.SOCK_RAW) {
      const interfaces = interfacesFor(policy, identity, info.family);
      if (interfaces === null) return null;
      const [, ifname] = this.#firstInterface(ctx, interfaces);
      const fd = this.ops.asCaller(ctx, () => libc.socket(info.family, info.type | TYPE_FLAGS, info.protocol));
      const entry = Object.assign(this.ops.register(ctx, fd, info), { link: { interfaces } });
      libc.setsockopt(fd, C.SOL_SOCKET, C.SO_BINDTODEVICE, Buffer.from(`${ifname}\0`));
      return entry;
    }
    return null;
  }

  /** bind() of a sniffer socket: (host, 0) picks the interface that has that address. */
  async bind(ctx: CallContext, entry: SocketEntry, req: pb.BindRequest): Promise<pb.BindResponse | null> {
    const r = entry.link?.rcvall;
    if (!r) return null;
    const inet = req.address?.inet;
    if (!inet) throw argumentError('type', 'bind(): AF_INET address must be tuple, not NoneType', 'address');
    const { host } = await resolveHost(inet.host, C.AF_INET);
    const owner = this.ops.broker.netns.run(ctx.session.netns, () => ipv4Addresses()).find(([, a]) => a === host);
    if (!owner) throw osErrorNamed('EADDRNOTAVAIL', 'bind');
    this.#permitted(ctx, entry, owner[0], 'bind');
    const ifindex = this.ifs(ctx).index(owner[0]);
    this.ops.live(entry, 'bind');
    // The ring and the filter before the socket is hooked up: nothing else is ever queued.
    r.ring ??= new PacketRing(entry.fd, SNIFFER_RING);
    Object.assign(r, { ifindex, ifname: owner[0], host });
    this.#snifferFilter(entry);
    // ETH_P_ALL, not ETH_P_IP: the kernel hands outgoing frames only to "all protocols" taps.
    libc.bind(entry.fd, encodeSockaddrLl({ protocol: O.ETH_P_ALL, ifindex, hatype: 0, pkttype: 0, addr: Buffer.alloc(0) }));
    return { local: { inet: { host, port: 0 } } };
  }

  /** The sniffer's kernel filter for its state: every IPv4 packet with RCVALL_ON, else those for its host. */
  #snifferFilter(entry: SocketEntry): void {
    const r = entry.link!.rcvall!;
    const host = r.promisc ? null : r.host.split('.').reduce((a, b) => a * 256 + Number(b), 0);
    attachFilter(entry.fd, encodeProgram(snifferProgram(host, SNIFFER_SNAP)));
  }

  /**
   * getsockopt(SOL_PACKET, PACKET_STATISTICS) on a sniffer socket: the kernel's counters since the
   * last such call, as the kernel reports them (its own reset on read serves the Sniff stream's totals).
   */
  snifferStats(entry: SocketEntry): Buffer | null {
    const r = entry.link?.rcvall;
    if (!r?.ring) return null;
    const st = r.ring.readStats();
    const out = Buffer.alloc(12);
    out.writeUInt32LE((st.packets - r.reported.packets) >>> 0, 0);
    out.writeUInt32LE((st.drops - r.reported.drops) >>> 0, 4);
    out.writeUInt32LE((st.freezes - r.reported.freezes) >>> 0, 8);
    r.reported = { ...st };
    return out;
  }

  /** Checks the interface of an AF_PACKET/AF_CAN address given to bind/connect/sendto ('*' = all). */
  checkAddress(ctx: CallContext, entry: SocketEntry, sa: Buffer, syscall: string): void {
    if (entry.info.family !== C.AF_PACKET && entry.info.family !== C.AF_CAN) return;
    const ifindex = sa.readInt32LE(4);
    this.#permitted(ctx, entry, ifindex === 0 ? '*' : this.ifs(ctx).name(ifindex), syscall);
  }

  /** setsockopt on a link socket: true when handled (checked and done) here. */
  setsockopt(ctx: CallContext, entry: SocketEntry, level: number, name: number, value: Buffer): boolean {
    if (entry.link?.rcvall) {
      if (level === C.IPPROTO_IP && name === C.IP_HDRINCL) return true; // received packets always carry the header
      throw osErrorNamed('ENOPROTOOPT', 'setsockopt', 'Protocol not available (the sniffer socket takes IP_HDRINCL and SIO_RCVALL only)');
    }
    if (level === C.SOL_SOCKET && name === C.SO_BINDTODEVICE && entry.link?.interfaces) {
      const ifname = value.toString('utf8').replace(/\0.*$/s, '');
      if (!entry.link.interfaces.some((p) => globToRegExp(p).test(ifname)) || ifname === '') {
        this.ops.enforce(ctx, { op: 'interface', family: 0, ifname: ifname || '(none)' }, 'setsockopt');
      }
      this.ops.audit(ctx, 'policy.allow', { action: { op: 'interface', ifname }, by: 'grant interfaces', outcome: 'allowed' });
      libc.setsockopt(entry.fd, level, name, value);
      return true;
    }
    if (entry.info.family === C.AF_PACKET && level === O.SOL_PACKET) {
      if (name === O.PACKET_ADD_MEMBERSHIP || name === O.PACKET_DROP_MEMBERSHIP) {
        const mreq = decodePacketMreq(value);
        const ifname = this.ifs(ctx).name(mreq.ifindex);
        this.#permitted(ctx, entry, ifname, 'setsockopt');
        if (name === O.PACKET_ADD_MEMBERSHIP && mreq.type === O.PACKET_MR_PROMISC) {
          this.ops.enforce(ctx, { op: 'promiscuous', ifname }, 'setsockopt');
        }
      } else if (name !== O.PACKET_IGNORE_OUTGOING && name !== O.PACKET_AUXDATA) {
        this.ops.enforce(ctx, { op: 'setsockopt', level, name, value }, 'setsockopt');
      }
      libc.setsockopt(entry.fd, level, name, value);
      return true;
    }
    if (entry.info.family === C.AF_CAN && level === C.SOL_CAN_RAW) {
      // Filters, error mask, loopback, own messages, FD frames: they shape what this socket of
      // the caller's own receives and sends, nothing beyond it.
      libc.setsockopt(entry.fd, level, name, value);
      return true;
    }
    if ((entry.info.family === C.AF_INET || entry.info.family === C.AF_INET6) && entry.info.type === C.SOCK_RAW && level === C.IPPROTO_IP && name === C.IP_HDRINCL) {
      libc.setsockopt(entry.fd, level, name, value); // the socket itself was granted
      return true;
    }
    return false;
  }

  /**
   * The CAN ids a send on a CAN socket would transmit must be granted: every frame of a CAN_RAW
   * write (16-byte can_frame or 72-byte canfd_frame), and the frames of a CAN_BCM TX_SETUP or
   * TX_SEND (bcm_msg_head as Python programs pack it: "@3I4l2I", frames 8-byte aligned after it).
   */
  checkCanSend(ctx: CallContext, entry: SocketEntry, data: Buffer, syscall: string): void {
    if (entry.info.family !== C.AF_CAN || ctx.session.identity.hostRoot) return;
    const ids = new Set<number>();
    if (entry.info.protocol === C.CAN_RAW) {
      const size = data.length >= CANFD_MTU ? CANFD_MTU : CAN_MTU;
      for (let off = 0; off + 4 <= data.length; off += size) ids.add(canId(data.readUInt32LE(off)));
    } else if (entry.info.protocol === C.CAN_BCM && data.length >= BCM_HEAD) {
      const opcode = data.readUInt32LE(0);
      if (opcode === C.CAN_BCM_TX_SETUP || opcode === C.CAN_BCM_TX_SEND) {
        const flags = data.readUInt32LE(4);
        const size = flags & C.CAN_BCM_CAN_FD_FRAME ? CANFD_MTU : CAN_MTU;
        const nframes = Math.min(data.readUInt32LE(52), Math.floor((data.length - BCM_HEAD) / size));
        ids.add(canId(data.readUInt32LE(48)));
        for (let i = 0; i < nframes; i++) ids.add(canId(data.readUInt32LE(BCM_HEAD + i * size)));
      }
    }
    for (const canIdValue of ids) this.ops.enforce(ctx, { op: 'can-send', canId: canIdValue }, syscall);
  }

  /** ioctl(SIO_RCVALL, mode) on a sniffer socket. */
  rcvall(ctx: CallContext, entry: SocketEntry, mode: number): void {
    const r = entry.link?.rcvall;
    if (!r) throw osErrorNamed('EINVAL', 'ioctl', 'Invalid argument (SIO_RCVALL needs a socket(AF_INET, SOCK_RAW, IPPROTO_IP))');
    if (!r.ifindex) throw osErrorNamed('EINVAL', 'ioctl', 'Invalid argument (bind the socket to an address first)');
    if (!Number.isInteger(mode) || mode < RCVALL.OFF || mode > RCVALL.MAX) throw argumentError('value', `invalid RCVALL value ${mode}`, 'mode');
    const want = mode === RCVALL.ON || mode === RCVALL.MAX;
    if (want === r.promisc) return;
    if (want) this.ops.enforce(ctx, { op: 'promiscuous', ifname: r.ifname }, 'ioctl');
    this.ops.live(entry, 'ioctl');
    libc.setsockopt(entry.fd, O.SOL_PACKET, want ? O.PACKET_ADD_MEMBERSHIP : O.PACKET_DROP_MEMBERSHIP, encodePacketMreq(r.ifindex, O.PACKET_MR_PROMISC));
    r.promisc = want;
    this.#snifferFilter(entry);
    this.ops.audit(ctx, 'rcvall', { handle: entry.handle, ifname: r.ifname, mode, outcome: 'done' });
  }
}

const CAN_MTU = 16;
const CANFD_MTU = 72;
/** sizeof(struct bcm_msg_head) on LP64: 3 u32, padding, 2 timevals, can_id, nframes. */
const BCM_HEAD = 56;

/** A CAN id without its EFF/RTR/ERR flags (29 bits for extended frames, 11 otherwise). */
function canId(raw: number): number {
  return raw & C.CAN_EFF_FLAG ? raw & C.CAN_EFF_MASK : raw & C.CAN_SFF_MASK;
}

function ntohs(v: number): number {
  return ((v & 0xff) << 8) | ((v >> 8) & 0xff);
}
