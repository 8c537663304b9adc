#!/usr/bin/env node
// sockbroker CLI: `sockbroker serve` runs the daemon.
// SO_LINGER closes and getaddrinfo run on the libuv threadpool (and the reactor's fallback poller,
// SOCKBROKER_REACTOR=threadpool, keeps one epoll_wait there): give the pool room before anything uses it.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { Command, InvalidArgumentError } from 'commander';
import { createLogger } from './log.js';
import { defaultListenAddress, parseListenAddress } from './listen-address.js';
import { addCaptureCommand } from './capture-command.js';
import { addExtcapCommand } from './extcap-command.js';

const program = new Command();
program.name('sockbroker').description('Lends privileged Linux sockets to unprivileged programs over gRPC');

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of seconds >= 0');
  return n;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

program
  .command('serve')
  .description('run the broker daemon')
  .option('--listen <address>', 'unix:/PATH or tcp:HOST:PORT; repeatable (default: see README)', collect)
  .option('--config <file>', 'policy file (YAML or JSON); default: the embedded deny-by-default policy')
  .option('--grace-period <seconds>', 'how long a session outlives its last stream', seconds, 30)
  .option('--insecure-loopback', 'allow plain TCP (no TLS) on loopback addresses, for tests')
  .option('--log-level <level>', 'pino log level', process.env.SOCKBROKER_LOG_LEVEL ?? 'info')
  .option('--metrics <address>', 'serve Prometheus metrics at /metrics on unix:/PATH or tcp:HOST:PORT (off by default)')
  .action(async (opts: { listen?: string[]; config?: string; gracePeriod: number; insecureLoopback?: boolean; logLevel: string; metrics?: string }) => {
    const log = createLogger(opts.logLevel);
    const { serve } = await import('./server.js');
    const { listenFds, Notifier } = await import('./systemd.js');
    // Socket activation: the sockets systemd passed replace the default address (--listen adds to them).
    const inherited = listenFds().map((fd) => ({ kind: 'fd' as const, fd }));
    const fallback = inherited.length > 0 ? [] : [process.env.SOCKBROKER_ADDRESS ?? defaultListenAddress()];
    const listen = [...inherited, ...(opts.listen ?? fallback).map((a) => parseListenAddress(a))];
    const notifier = new Notifier(log);
    const server = await serve({
      listen,
      graceSeconds: opts.gracePeriod,
      log,
      ...(opts.config ? { configPath: opts.config } : {}),
      insecureLoopback: Boolean(opts.insecureLoopback),
      ...(opts.metrics ? { metrics: parseListenAddress(opts.metrics) } : {}),
    });
    notifier.ready(`listening on ${server.addresses.join(' ')}`);
    const stop = (signal: string): void => {
      log.info({ event: 'signal', signal });
      notifier.stopping();
      server.shutdown().then(() => {
        notifier.close();
        process.exit(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => server.reload());
  });

// The CLI is the composition root of both sides: `ping` is an SDK client, loaded only here.
program
  .command('ping')
  .description('ping HOST through the broker with raw ICMP (works for unprivileged users the policy grants raw ICMP)')
  .argument('<host>', 'host name or IPv4 address, resolved by the broker')
  .option('-c, --count <n>', 'echo requests to send', (v) => Number.parseInt(v, 10), 4)
  .option('-W, --timeout <seconds>', 'how long to wait for each reply', seconds, 2)
  .option('-i, --interval <seconds>', 'pause between requests', seconds, 1)
  .option('--broker <address>', 'broker address (unix:/PATH or tcp:HOST:PORT); default: as the SDK')
  .action(async (host: string, opts: { count: number; timeout: number; interval: number; broker?: string }) => {
    const { connect } = await import('../client/index.js');
    const { ping } = await import('../client/ping.js');
    const socket = await connect(opts.broker);
    try {
      const res = await ping(socket, host, {
        count: opts.count,
        timeout: opts.timeout,
        interval: opts.interval,
        onReply: (r) => process.stdout.write(`${r.bytes} bytes from ${r.from}: icmp_seq=${r.seq} ttl=${r.ttl} time=${r.ms.toFixed(2)} ms\n`),
      });
      const lost = res.sent - res.replies.length;
      process.stdout.write(`--- ${host} (${res.target}) ping statistics ---\n${res.sent} packets transmitted, ${res.replies.length} received, ${Math.round((lost / res.sent) * 100)}% packet loss\n`);
      process.exitCode = res.replies.length > 0 ? 0 : 1;
    } finally {
      await socket.disconnect();
    }
  });

program
  .command('status')
  .description("list the broker's sessions: identity, pid, age, sockets by family, bytes (host root only)")
  .option('--broker <address>', 'broker address (unix:/PATH or tcp:HOST:PORT); default: as the SDK')
  .option('--json', 'print the AdminService ListSessions response as JSON')
  .action(async (opts: { broker?: string; json?: boolean }) => {
    const { status } = await import('./status-command.js');
    await status(opts);
  });

const id = (value: string): number => {
  if (!/^\d{1,10}$/.test(value) || Number(value) > 0xffffffff) throw new InvalidArgumentError('must be a number (0 to 4294967295)');
  return Number(value);
};

const policy = program.command('policy').description('work with a policy file offline');
policy
  .command('check')
  .description('validate a policy file: exit 1 with the error naming the place, else print its warnings and exit 0')
  .argument('<file>', 'policy file (YAML, or JSON when named *.json)')
  .action(async (file: string) => {
    const { check } = await import('./policy-command.js');
    process.exitCode = check(file);
  });
policy
  .command('explain')
  .description('print what an identity may do under a policy file, which rule grants each thing, and its quotas')
  .argument('<file>', 'policy file (YAML, or JSON when named *.json)')
  .requiredOption('--uid <n>', 'the caller\'s uid', id)
  .option('--gid <n>', "the caller's primary gid (default: from /etc/passwd)", id)
  .option('--groups <n,...>', "the caller's supplementary gids", (v) => v.split(',').map(id))
  .option('--cgroup <path>', "the caller's cgroup v2 path (e.g. /system.slice/app.service); without it cgroup, unit, pod and container rules do not match")
  .action(async (file: string, opts: { uid: number; gid?: number; groups?: number[]; cgroup?: string }) => {
    const { explainCommand } = await import('./policy-command.js');
    process.exitCode = explainCommand(file, opts);
  });

addCaptureCommand(program);
addExtcapCommand(program);

program.parseAsync().catch((err: Error) => {
  process.stderr.write(`${/^sockbroker: /.test(err.message) ? '' : 'sockbroker: '}${err.message}\n`);
  process.exit(1);
});
