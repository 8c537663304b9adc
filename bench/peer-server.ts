// The TCP peers the bench talks to, in their own process: plain Node `net` servers on
// 127.0.0.1 (echo, sink, source; see protocol.ts). Reports its ports and pid, then serves until
// killed.
import net from 'node:net';
import { CHUNK_BYTES, report, type PeerPorts } from './protocol.js';

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

const ports: PeerPorts = { echo: await listen(echo), sink: await listen(sink), source: await listen(source) };
report({ ready: true, pid: process.pid, ports });
