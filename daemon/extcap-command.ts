// `sockbroker extcap`: Wireshark's extcap interface (doc/extcap.adoc in Wireshark), so Wireshark
// and tshark capture through a broker. An executable script in an extcap folder runs it, e.g.
//   #!/bin/sh
//   exec sockbroker extcap "$@"
// Listing (--extcap-interfaces, run at every Wireshark start) never contacts a broker, so it is
// instant whether or not one is up; a capture fails fast with a message when the broker is down.
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Command } from 'commander';
import { addRemoteOptions, connectOptions, type RemoteFlags } from './capture-command.js';

const IFACE = 'sockbroker';
/** libpcap through ffi-rs, loaded only to validate a filter (a machine without it skips the check). */
const PCAP_MODULE = '../native/pcap.js';
/** How long a capture may take to reach its broker and arm before giving up. */
const CONNECT_TIMEOUT_MS = 10_000;

interface ExtcapFlags extends RemoteFlags {
  extcapInterfaces?: boolean;
  extcapDlts?: boolean;
  extcapConfig?: boolean;
  extcapInterface?: string;
  extcapCaptureFilter?: string;
  capture?: boolean;
  fifo?: string;
  broker?: string;
  remoteInterface?: string;
  snaplen?: string;
  promiscuous?: boolean;
}

function config(): string {
  const broker = process.env.SOCKBROKER_ADDRESS ?? 'unix:/run/sockbroker/sockbroker.sock';
  const args = [
    `{call=--broker}{display=Broker address}{type=string}{default=${broker}}{tooltip=unix:/PATH or tcp:HOST:PORT}`,
    '{call=--remote-interface}{display=Interface on the broker host}{type=string}{default=any}{tooltip=an interface name, or any}',
    '{call=--snaplen}{display=Snapshot length}{type=unsigned}{default=262144}{range=1,262144}',
    '{call=--no-promiscuous}{display=No promiscuous mode}{type=boolflag}{default=false}',
    '{call=--tls-ca}{display=CA certificate (PEM), for TLS}{type=fileselect}{mustexist=true}{group=Remote}',
    '{call=--tls-cert}{display=Client certificate (PEM), for mTLS}{type=fileselect}{mustexist=true}{group=Remote}',
    '{call=--tls-key}{display=Client key (PEM), for mTLS}{type=fileselect}{mustexist=true}{group=Remote}',
    '{call=--tls-server-name}{display=Broker certificate name}{type=string}{group=Remote}',
    '{call=--token}{display=Bearer token}{type=password}{group=Remote}',
  ];
  return args.map((a, i) => `arg {number=${i}}${a}\n`).join('');
}

/** Checks a filter as libpcap compiles it for Ethernet, locally; true when libpcap is absent here (the broker checks again). */
async function filterValid(expression: string): Promise<boolean> {
  try {
    const { compileFilter } = (await import(PCAP_MODULE)) as { compileFilter(expr: string, linkType: number, snaplen: number): Promise<unknown> };
    return await compileFilter(expression, 1, 262144).then(() => true, (err: Error) => {
      if (/cannot be loaded/.test(err.message)) return true;
      process.stderr.write(`${err.message}\n`);
      return false;
    });
  } catch {
    return true;
  }
}

async function capture(f: ExtcapFlags): Promise<void> {
  const { runCapture } = await import('../client/index.js');
  const fifo = createWriteStream(f.fifo!);
  const stop = new AbortController();
  // Wireshark stops a capture with SIGTERM, or by closing the fifo (EPIPE on the next write).
  process.once('SIGTERM', () => stop.abort());
  process.once('SIGINT', () => stop.abort());
  fifo.on('error', () => stop.abort());
  const armTimer = setTimeout(() => {
    process.stderr.write(`sockbroker: no answer from the broker ${f.broker ?? ''} within ${CONNECT_TIMEOUT_MS / 1000} s\n`);
    process.exit(1);
  }, CONNECT_TIMEOUT_MS);
  await runCapture({
    brokers: [f.broker],
    connect: connectOptions(f),
    capture: {
      interfaces: f.remoteInterface && f.remoteInterface !== 'any' ? [f.remoteInterface] : [],
      filter: f.extcapCaptureFilter ?? '',
      promiscuous: f.promiscuous !== false,
      ...(f.snaplen ? { snaplen: Number(f.snaplen) } : {}),
    },
    format: 'pcapng',
    statisticsIntervalMs: 1000,
    write: (chunk) => {
      if (stop.signal.aborted || fifo.destroyed) return;
      if (!fifo.write(chunk)) return Promise.race([once(fifo, 'drain'), once(fifo, 'close')]).then(() => undefined);
    },
    signal: stop.signal,
    onArmed: () => clearTimeout(armTimer),
  });
  if (!fifo.destroyed) {
    fifo.end();
    await Promise.race([once(fifo, 'close'), once(fifo, 'error')]).catch(() => undefined);
  }
}

export function addExtcapCommand(program: Command): void {
  const cmd = program
    .command('extcap')
    .description('Wireshark extcap interface: put a script running `sockbroker extcap "$@"` in an extcap folder')
    .option('--extcap-interfaces', 'list the interfaces')
    .option('--extcap-version <version>', 'Wireshark\'s version (ignored)')
    .option('--extcap-dlts', 'list the link types of --extcap-interface')
    .option('--extcap-config', 'list the configuration arguments')
    .option('--extcap-interface <name>', 'the extcap interface')
    .option('--extcap-capture-filter <expr>', 'capture filter; without --capture: validate it (exit code)')
    .option('--capture', 'capture into --fifo')
    .option('--fifo <path>', 'where to write the pcapng stream')
    .option('--broker <address>', 'broker address (unix:/PATH or tcp:HOST:PORT)')
    .option('--remote-interface <name>', 'interface on the broker host (default any)')
    .option('--snaplen <bytes>', 'snapshot length')
    .option('--no-promiscuous', 'no promiscuous mode')
    .allowUnknownOption();
  addRemoteOptions(cmd).action(async (f: ExtcapFlags) => {
    if (f.extcapInterfaces) {
      process.stdout.write(`extcap {version=0.1.0}{display=sockbroker remote capture}{help=https://github.com/sockbroker/sockbroker}\ninterface {value=${IFACE}}{display=sockbroker: capture on a broker's host}\n`);
      return;
    }
    if (f.extcapInterface !== undefined && f.extcapInterface !== IFACE) throw new Error(`unknown extcap interface ${JSON.stringify(f.extcapInterface)} (this one offers ${IFACE})`);
    if (f.extcapDlts) {
      process.stdout.write('dlt {number=1}{name=EN10MB}{display=Ethernet (per interface in the pcapng stream)}\n');
      return;
    }
    if (f.extcapConfig) {
      process.stdout.write(config());
      return;
    }
    if (f.capture) {
      if (!f.fifo) throw new Error('--capture needs --fifo PATH');
      await capture(f);
      return;
    }
    if (f.extcapCaptureFilter !== undefined) {
      process.exitCode = (await filterValid(f.extcapCaptureFilter)) ? 0 : 1;
      return;
    }
    throw new Error('extcap: expected --extcap-interfaces, --extcap-dlts, --extcap-config, --capture or --extcap-capture-filter');
  });
}
