// The seed's sniffer example through the broker, as a bench client: a raw IPPROTO_IP socket bound
// to 127.0.0.1 with SIO_RCVALL, recvfrom in a loop, counting the flood's unique sequence numbers
// (IP header 20 B + UDP 8 B, then the 64-bit sequence). Ends 1 s after the last packet (or at
// BENCH_DEADLINE_MS); reports {frames, unique, seconds, stats} as one JSON line (stats: the
// socket's counters, client/sniff.ts).
import { connect } from '../client/index.js';

const port = Number(process.env.BENCH_PORT);
const sent = Number(process.env.BENCH_SENT);
const socket = await connect(process.env.BENCH_BROKER);
const s = await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IP);
await s.bind(['127.0.0.1', 0]);
await s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1);
await s.ioctl(socket.SIO_RCVALL, socket.RCVALL_ON);
process.stdout.write(`${JSON.stringify({ armed: true })}\n`);
const seen = new Uint8Array(sent);
let frames = 0;
let unique = 0;
let first = 0;
let last = 0;
const deadline = Date.now() + Number(process.env.BENCH_DEADLINE_MS ?? 30_000);
s.settimeout(1);
while (Date.now() < deadline) {
  let pkt: Buffer;
  try {
    [pkt] = await s.recvfrom(65565);
  } catch (err) {
    if (err instanceof socket.timeout && frames > 0) break;
    if (err instanceof socket.timeout) continue;
    throw err;
  }
  if (pkt[9] !== 17 || pkt.length < 36 || pkt.readUInt16BE(22) !== port) continue;
  frames++;
  last = performance.now();
  if (frames === 1) first = last;
  const seq = Number(pkt.readBigUInt64LE(28));
  if (seq < sent && !seen[seq]) {
    seen[seq] = 1;
    unique++;
  }
}
const stats = s.sniffStats;
await s.close();
await socket.disconnect();
process.stdout.write(`${JSON.stringify({ frames, unique, seconds: (last - first) / 1000, stats })}\n`);
