// `sockbroker capture`: tcpdump's flags over the SDK's capture (a client of the broker like any
// program: it imports client/ only). Also the connect options (TLS, token) shared with extcap.
import { readFileSync, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { ConnectOptions } from '../client/index.js';

export interface RemoteFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  token?: string;
  tokenFile?: string;
}

/** Adds the flags that reach a remote broker (as the SDK's connect options). */
export function addRemoteOptions(cmd: Command): Command {
  return cmd
    .option('--tls-ca <file>', 'CA certificate (PEM) that signed the broker\'s certificate: use TLS')
    .option('--tls-cert <file>', 'client certificate (PEM) for mTLS')
    .option('--tls-key <file>', 'client key (PEM) for mTLS')
    .option('--tls-server-name <name>', 'name to expect in the broker\'s certificate')
    .option('--token <token>', 'bearer token for a remote broker (default: $SOCKBROKER_TOKEN)')
    .option('--token-file <file>', 'read the bearer token from a file');
}

/** The SDK connect options for the remote flags. */
export function connectOptions(f: RemoteFlags): ConnectOptions {
  const o: ConnectOptions = {};
  if (f.tlsCa || f.tlsCert || f.tlsKey) {
    o.tls = {
      ...(f.tlsCa ? { ca: readFileSync(f.tlsCa) } : {}),
      ...(f.tlsCert ? { cert: readFileSync(f.tlsCert) } : {}),
      ...(f.tlsKey ? { key: readFileSync(f.tlsKey) } : {}),
      ...(f.tlsServerName ? { serverName: f.tlsServerName } : {}),
    };
  }
  const token = f.tokenFile ? readFileSync(f.tokenFile, 'utf8').trim() : f.token ?? process.env.SOCKBROKER_TOKEN;
  if (token) o.token = token;
  return o;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

interface CaptureFlags extends RemoteFlags {
  interface?: string[];
  write?: string;
  count?: number;
  snapshotLength?: number;
  promiscuous: boolean;
  direction?: 'in' | 'out' | 'inout';
  format?: 'pcap' | 'pcapng';
  broker?: string[];
  bufferSize?: number;
  backpressure?: 'block' | 'drop-oldest' | 'drop-newest';
}

/** A Writable as an awaitable write (waits for 'drain' when its buffer is full). */
function sink(stream: NodeJS.WritableStream | WriteStream): (chunk: Buffer) => Promise<void> | void {
  return (chunk) => {
    if (!stream.write(chunk)) return once(stream, 'drain').then(() => undefined);
  };
}

const summary = (t: { captured: number; received: number; droppedByKernel: number; droppedByBroker: number }) =>
  `${t.captured} packets captured\n${t.received} packets received by filter\n${t.droppedByKernel} packets dropped by kernel\n${t.droppedByBroker} packets dropped by broker\n`;

export function addCaptureCommand(program: Command): void {
  const cmd = program
    .command('capture')
    .description('capture packets on one or more brokers\' hosts, as tcpdump does (needs the capture grant)')
    .argument('[expression...]', 'pcap-filter(7) expression')
    .option('-i, --interface <name>', 'interface on the broker host; repeatable (default: any)', collect)
    .requiredOption('-w, --write <file>', 'write packets to FILE (- = stdout, flushed every batch)')
    .option('-c, --count <n>', 'exit after N packets', positive)
    .option('-s, --snapshot-length <bytes>', 'bytes kept of each packet (default 262144)', positive)
    .option('-p, --no-promiscuous', 'do not put the interface into promiscuous mode')
    .addOption(new Option('-Q, --direction <dir>', 'capture only packets in this direction').choices(['in', 'out', 'inout']))
    .addOption(new Option('--format <format>', 'file format (default: pcapng for several interfaces or brokers)').choices(['pcap', 'pcapng']))
    .option('--broker <address>', 'broker address (unix:/PATH or tcp:HOST:PORT); repeatable: merged in timestamp order', collect)
    .option('-B, --buffer-size <KiB>', 'kernel ring size per interface, KiB (as tcpdump)', positive)
    .addOption(new Option('--backpressure <policy>', 'when this client falls behind (default block: the kernel drops)').choices(['block', 'drop-oldest', 'drop-newest']));
  addRemoteOptions(cmd).action(async (expression: string[], f: CaptureFlags) => {
    const { runCapture, linkTypeName } = await import('../client/index.js');
    const toStdout = f.write === '-';
    const file = f.write && !toStdout ? createWriteStream(f.write) : undefined;
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const tty = process.stderr.isTTY;
    let last = { captured: 0, received: 0, droppedByKernel: 0, droppedByBroker: 0 };
    let shown = 0;
    const onUsr1 = () => process.stderr.write(summary(last));
    process.on('SIGUSR1', onUsr1);
    const several = (f.broker?.length ?? 0) > 1;
    try {
      const totals = await runCapture({
        brokers: f.broker ?? [],
        connect: connectOptions(f),
        capture: {
          interfaces: f.interface ?? [],
          filter: expression.join(' '),
          promiscuous: f.promiscuous,
          ...(f.snapshotLength ? { snaplen: f.snapshotLength } : {}),
          ...(f.direction ? { direction: f.direction } : {}),
          ...(f.bufferSize ? { bufferBytes: f.bufferSize * 1024 } : {}),
          ...(f.backpressure ? { backpressure: f.backpressure } : {}),
        },
        ...(f.format ? { format: f.format } : {}),
        ...(f.count ? { count: f.count } : {}),
        write: sink(file ?? process.stdout),
        signal: stop.signal,
        onArmed: (sources) => {
          for (const s of sources) {
            process.stderr.write(`listening on ${s.interface}${several ? ` (broker ${s.broker})` : ''}, link-type ${linkTypeName(s.linkType)}, snapshot length ${s.snaplen} bytes\n`);
          }
        },
        onProgress: (t) => {
          last = t;
          const now = Date.now();
          if (tty && now - shown >= 500) {
            shown = now;
            process.stderr.write(`\r\x1b[K${t.captured} captured, ${t.received} received, ${t.droppedByKernel} dropped by kernel, ${t.droppedByBroker} dropped by broker`);
          }
        },
      });
      if (file) {
        file.end();
        await once(file, 'close');
      }
      if (tty) process.stderr.write('\r\x1b[K');
      process.stderr.write(summary(totals));
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGUSR1', onUsr1);
    }
  });
}
