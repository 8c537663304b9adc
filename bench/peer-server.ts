// The TCP peers the bench talks to, in their own process: plain Node `net` servers on
// 127.0.0.1 (echo, sink, source; see protocol.ts). Reports its ports and pid, then serves until
// killed.
import net from 'node:net';
import dgram from 'node:dgram';
import { CHUNK_BYTES, DGRAM_COUNT_QUERY, report, type PeerPorts } from './protocol.js';

function listen(handler: (sock: net.Socket) => void): Promise<number> {
  const server = net.createServer({ noDelay: true }, (sock) => {
    sock.on('error', () => sock.destroy());
    handler(sock);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function echo(sock: net.Socket): void {
  sock.on('data', (d) => sock.write(d));
}

/** Reads 8-byte length headers (which may straddle data events) and the bodies after them. */
function sink(sock: net.Socket): void {
  let header = Buffer.alloc(0);
  let remaining = -1; // -1: reading a header
  sock.on('data', (d: Buffer) => {
    let off = 0;
    while (off < d.length) {
      if (remaining < 0) {
        const take = Math.min(8 - header.length, d.length - off);
        header = Buffer.concat([header, d.subarray(off, off + take)]);
        off += take;
        if (header.length < 8) return;
        remaining = Number(header.readBigUInt64BE());
        header = Buffer.alloc(0);
      }
      const take = Math.min(remaining, d.length - off);
      remaining -= take;
      off += take;
      if (remaining === 0) {
        remaining = -1;
        sock.write(Buffer.of(1));
      }
    }
  });
}

const SOURCE_CHUNK = Buffer.alloc(CHUNK_BYTES, 0x5a);

/** Writes the requested bytes, one chunk at a time as the socket drains. */
function source(sock: net.Socket): void {
  let header = Buffer.alloc(0);
  let sending = false;
  const queue: number[] = [];
  const pump = async (): Promise<void> => {
    if (sending) return;
    sending = true;
    while (queue.length > 0) {
      let n = queue.shift()!;
      while (n > 0 && !sock.destroyed) {
        const chunk = n >= SOURCE_CHUNK.length ? SOURCE_CHUNK : SOURCE_CHUNK.subarray(0, n);
        n -= chunk.length;
        if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
      }
    }
    sending = false;
  };
  sock.on('data', (d: Buffer) => {
    header = Buffer.concat([header, d]);
    while (header.length >= 8) {
      queue.push(Number(header.readBigUInt64BE()));
      header = header.subarray(8);
    }
    void pump();
  });
}

async function udp(handler: (sock: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo) => void): Promise<number> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, from) => handler(sock, msg, from));
  sock.on('error', () => undefined); // an ICMP error for a client that left
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  sock.setRecvBufferSize(4 << 20);
  return sock.address().port;
}

/** Counts datagrams; answers a DGRAM_COUNT_QUERY with the count so far (8 bytes, big-endian). */
let udpSinkCount = 0;
function udpSink(sock: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): void {
  if (msg.equals(DGRAM_COUNT_QUERY)) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(udpSinkCount));
    sock.send(b, from.port, from.address);
  } else udpSinkCount++;
}

/**
 * Credit-based datagram source: a client sends `C <got> <window> <size>` and is sent datagrams
 * of <size> bytes until it has <window> beyond the <got> it received. A repeated <got> (the
 * client timed out) means the rest were lost: they are sent again.
 */
const udpSourceState = new Map<string, { sent: number; lastGot: number }>();
function udpSource(sock: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): void {
  const [tag, got, window, size] = msg.toString('latin1').split(' ');
  if (tag !== 'C') return;
  const key = `${from.address}:${from.port}`;
  const st = udpSourceState.get(key) ?? { sent: 0, lastGot: -1 };
  udpSourceState.set(key, st);
  const g = Number(got);
  if (g <= st.lastGot) st.sent = g; // the client timed out: the rest were lost
  st.lastGot = g;
  const payload = Buffer.alloc(Number(size), 0x64);
  for (; st.sent < g + Number(window); st.sent++) sock.send(payload, from.port, from.address);
}

const ports: PeerPorts = {
  echo: await listen(echo),
  sink: await listen(sink),
  source: await listen(source),
  udpSink: await udp(udpSink),
  udpSource: await udp(udpSource),
};
report({ ready: true, pid: process.pid, ports });
