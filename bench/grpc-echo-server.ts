// The bare gRPC floor: a grpc-js server in its own process on a Unix socket, with bidi streams
// of raw Buffers (identity serializers, no protobuf). Echo writes every message back; Sink
// answers one byte once the byte count announced by its first 8-byte message has arrived.
import * as grpc from '@grpc/grpc-js';
import { once } from 'node:events';
import { arg, report, CHUNK_BYTES } from './protocol.js';
import { BARE_SERVICE } from './grpc-bare.js';

const server = new grpc.Server({
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
});
server.addService(BARE_SERVICE, {
  echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(m));
    call.on('end', () => call.end());
  },
  sink: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    let remaining = -1;
    call.on('data', (m: Buffer) => {
      if (remaining < 0) {
        remaining = Number(m.readBigUInt64BE());
        return;
      }
      remaining -= m.length;
      if (remaining <= 0) {
        remaining = -1;
        call.write(Buffer.of(1));
      }
    });
    call.on('end', () => call.end());
  },
  // Each 8-byte length N received is answered with N bytes in 1 MiB messages, as fast as the
  // stream takes them (the grpc-js floor of the broker's recv).
  source: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a);
    call.on('data', async (m: Buffer) => {
      for (let left = Number(m.readBigUInt64BE()); left > 0; left -= chunk.length) {
        if (!call.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(call, 'drain');
      }
    });
    call.on('end', () => call.end());
  },
});
const path = arg('BENCH_GRPC_PATH');
await new Promise<void>((resolve, reject) =>
  server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
);
report({ ready: true, pid: process.pid });
