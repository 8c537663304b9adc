// `sockbroker ping HOST`: ping through the broker with a raw ICMP socket, as an unprivileged
// user — the everyday proof that the privilege separation works. Echo requests are built byte
// by byte (RFC 792), checksum included; replies are matched by identifier and sequence.
import type { SocketModule } from './module.js';

/** The Internet checksum (RFC 1071) of `b`. */
export function inetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An ICMP echo request (type 8) with identifier, sequence and payload. */
export function echoRequest(id: number, seq: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b.writeUInt8(8, 0);
  b.writeUInt16BE(id & 0xffff, 4);
  b.writeUInt16BE(seq & 0xffff, 6);
  payload.copy(b, 8);
  b.writeUInt16BE(inetChecksum(b), 2);
  return b;
}

export interface PingReply {
  seq: number;
  from: string;
  ttl: number;
  bytes: number;
  ms: number;
}

/**
 * Sends `count` echo requests to `host` (a name or an IPv4 address, resolved by the broker) and
 * resolves to the replies; a request unanswered within `timeout` seconds is skipped.
 */
export async function ping(socket: SocketModule, host: string, opts: { count?: number; timeout?: number; interval?: number; onReply?: (r: PingReply) => void } = {}): Promise<{ target: string; sent: number; replies: PingReply[] }> {
  const count = opts.count ?? 4;
  const target = await socket.gethostbyname(host);
  const id = process.pid & 0xffff;
  const replies: PingReply[] = [];
  const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP);
  try {
    for (let seq = 1; seq <= count; seq++) {
      const start = performance.now();
      await s.sendto(echoRequest(id, seq, Buffer.from('sockbroker ping ' + seq)), [target, 0]);
      const deadline = start + (opts.timeout ?? 2) * 1000;
      for (;;) {
        const left = (deadline - performance.now()) / 1000;
        if (left <= 0) break;
        s.settimeout(left);
        let packet: Buffer;
        let from: string;
        try {
          const [data, addr] = await s.recvfrom(65535);
          packet = data;
          from = (addr as [string, number])[0];
        } catch (err) {
          if (err instanceof socket.timeout) break;
          throw err;
        }
        // A raw ICMP socket returns the IP header first.
        const ihl = (packet[0]! & 0x0f) * 4;
        const icmp = packet.subarray(ihl);
        if (icmp[0] === 0 && icmp.readUInt16BE(4) === id && icmp.readUInt16BE(6) === seq) {
          const r = { seq, from, ttl: packet[8]!, bytes: icmp.length, ms: performance.now() - start };
          replies.push(r);
          opts.onReply?.(r);
          break;
        }
      }
      if (seq < count) await new Promise((r) => setTimeout(r, (opts.interval ?? 1) * 1000));
    }
  } finally {
    await s.close();
  }
  return { target, sent: count, replies };
}
