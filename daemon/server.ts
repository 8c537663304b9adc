// The daemon: a grpc-js server fed by our own listeners, so each caller's identity is read from
// its connection before grpc-js sees it — SO_PEERCRED and namespaces for Unix-socket callers,
// the verified client certificate for TLS callers. The connection's remoteAddress is set to a
// per-connection tag, which call.getPeer() returns in every handler of that connection.
import net from 'node:net';
import tls from 'node:tls';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { getNofileLimit, setNofileLimit } from '../native/libc.js';
import { SessionServiceService } from '../proto/gen/sockbroker/v1/session.js';
import { SocketServiceService, type SocketServiceServer } from '../proto/gen/sockbroker/v1/socket.js';
import { NetdbServiceService } from '../proto/gen/sockbroker/v1/netdb.js';
import { AdminServiceService } from '../proto/gen/sockbroker/v1/admin.js';
import { adminService } from './admin-service.js';
import { Reactor } from '../native/reactor.js';
import { captureService, captureServiceDefinition } from './capture-service.js';
import { Sessions } from './sessions.js';
import { SocketOps, type Broker } from './socket-ops.js';
import { MsgOps } from './msg-ops.js';
import { HandleOps } from './handle-ops.js';
import { IoctlOps } from './ioctl-ops.js';
import { callStream, tolerantStreams, unary, Peers, type Peer } from './rpc.js';
import { dataStream } from './data-stream.js';
import { decodeDataRequest, encodeDataResponse } from '../proto/codec/data.js';
import { decodeCallRequest, encodeCallResponse } from '../proto/codec/call.js';
import { sessionService } from './session-service.js';
import { Handoff } from './handoff.js';
import { netdbService } from './netdb-service.js';
import { identifyLocal, remoteIdentity, describe } from './identity.js';
import { DEFAULT_LIMITS, defaultQuotas, type Limits } from './limits.js';
import { BrokerError, sessionError } from './errors.js';
import { NetnsRegistry } from './netns.js';
import { defaultPolicy } from './policy.js';
import { compilePolicy, PolicyError, type PolicyConfig } from './policy-file.js';
import { countQuota, createRegistry, serveMetrics, type MetricsServer } from './metrics.js';
import { joinInitialCgroupNamespace } from './cgroup.js';
import { getsockname } from '../native/libc.js';
import { decodeSockaddr } from '../native/sockaddr.js';
import { status as Code } from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { loadSync } from '@grpc/proto-loader';

/** Where to listen: a Unix socket path, or TCP (TLS unless plaintext is explicitly allowed on loopback). */
export type Listen = { kind: 'unix'; path: string; mode: number } | { kind: 'tcp'; host: string; port: number };

/** What the broker serves on: addresses, and listening Unix sockets passed by systemd socket activation (the socket unit owns their paths). */
export type ListenOn = Listen | { kind: 'fd'; fd: number };

export interface ServeOptions {
  listen: ListenOn[];
  /** Seconds a session outlives its last stream. */
  graceSeconds: number;
  /** Policy file (YAML/JSON); unset = the embedded deny-by-default policy. */
  configPath?: string;
  /** Allow TCP without TLS (only on loopback addresses; for tests). */
  insecureLoopback?: boolean;
  limits?: Partial<Limits>;
  /** Most connections one identity may hold at once. */
  maxConnectionsPerIdentity?: number;
  /** Where to serve Prometheus metrics (GET /metrics); unset = nowhere. */
  metrics?: Listen;
  log: Logger;
}

export interface RunningServer {
  /** Bound addresses, e.g. unix:/run/... and tcp:127.0.0.1:PORT. */
  addresses: string[];
  /** The metrics endpoint's address, when serving one. */
  metricsAddress?: string;
  sessions: Sessions;
  reactor: Reactor;
  /** Re-reads the policy file; a bad file keeps the old policy (and says why). */
  reload(): boolean;
  /** Drains: stops accepting, fails pending calls, closes every socket, stops the reactor. */
  shutdown(): Promise<void>;
}

/** Raises RLIMIT_NOFILE to its hard limit; quotas are sized below it. */
function raiseFdLimit(log: Logger): number {
  const { soft, hard } = getNofileLimit();
  if (soft < hard) {
    try {
      setNofileLimit(hard, hard);
      return hard;
    } catch (err) {
      log.warn({ event: 'rlimit', err: String(err) });
    }
  }
  return soft;
}

async function inUse(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  return new Promise((resolve) => {
    const s = net.connect(path, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function prepareSocketPath(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await inUse(path)) throw new Error(`another broker is listening on ${path}`);
  unlinkSync(path); // a stale socket of a previous run
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The contract's .proto files (shipped beside dist/), for server reflection. */
function loadContract() {
  const root = fileURLToPath(new URL('../../proto/', import.meta.url));
  return loadSync(['sockbroker/v1/session.proto', 'sockbroker/v1/socket.proto', 'sockbroker/v1/netdb.proto', 'sockbroker/v1/admin.proto', 'sockbroker/v1/capture.proto'], { includeDirs: [root] });
}

function readPolicyText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new PolicyError(`${path}: ${(err as Error).message}`);
  }
}

/** How long the policy directory must be quiet after a change before the file is re-read. */
const RELOAD_DEBOUNCE_MS = 200;

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const { log } = opts;
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const defaults = defaultQuotas(limits);
  let policyText = opts.configPath ? readPolicyText(opts.configPath) : '';
  let config: PolicyConfig = opts.configPath
    ? compilePolicy(policyText, opts.configPath, defaults)
    : { policy: defaultPolicy(defaults), tokens: new Map(), warnings: [] };
  for (const warning of config.warnings) log.warn({ event: 'policy.warning', warning });
  // Callers' cgroup paths are read as the initial cgroup namespace sees them (a DaemonSet pod has its own).
  if (!joinInitialCgroupNamespace()) log.warn({ event: 'cgroup.namespace', why: 'cannot join the initial cgroup namespace: callers outside the broker\'s own have no cgroup (cgroup rules fail closed)' });
  for (const l of opts.listen) {
    if (l.kind === 'tcp' && !config.tls && (!opts.insecureLoopback || !isLoopback(l.host))) {
      throw new Error(`tcp:${l.host}:${l.port} needs TLS (a tls section in the config); plain TCP is allowed only on loopback with --insecure-loopback`);
    }
  }
  const nofile = raiseFdLimit(log);
  const maxConns = opts.maxConnectionsPerIdentity ?? 64;

  const reactor = new Reactor();
  const netns = new NetnsRegistry();
  const peers = new Peers();
  peers.tokens = config.tokens;
  let ops!: SocketOps;
  const sessions = new Sessions({
    graceMs: opts.graceSeconds * 1000,
    log,
    closeEntry: (table, entry) => ops.closeEntry(table, entry),
    releaseNetns: (id) => netns.release(id),
  });
  const broker: Broker = { reactor, sessions, limits, log, policy: config.policy, netns };
  ops = new SocketOps(broker);
  const handoff = new Handoff(ops);
  broker.handoff = handoff;
  const msgOps = new MsgOps(ops);
  const handleOps = new HandleOps(ops);
  handoff.share = handleOps.share;
  const ioctlOps = new IoctlOps(ops);
  const live = new Set<(reason: BrokerError) => void>();

  // The HTTP/2 receive windows stay at node:http2's 64 KiB (grpc-js has no option for them). Do
  // not raise them through node:http2: it stops reading a connection while a write of its own is
  // pending, so once both directions can have more in flight than the socket buffers hold (the
  // SDK's 4 MiB window one way, a raised window the other), a large sendall running beside a
  // read-ahead on one connection deadlocks both ends (test/bulk's makefile test stalls). It bought
  // nothing measurable either: the streamed bulk path is CPU-bound (copies and V8 GC), not window-bound.
  const server = new grpc.Server({
    'grpc.max_concurrent_streams': 256,
    'grpc.max_receive_message_length': limits.maxMessageBytes,
    'grpc.max_send_message_length': limits.maxMessageBytes,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // No channelz service is served: its per-message bookkeeping (a Date per message sent or received) buys nothing.
    'grpc.enable_channelz': 0,
  });
  const handlers = {
    create: ops.create,
    socketpair: ops.socketpair,
    bind: ops.bind,
    listen: ops.listen,
    accept: ops.accept,
    connect: ops.connect,
    send: ops.send,
    sendAll: ops.sendAll,
    recv: ops.recv,
    shutdown: ops.shutdown,
    close: ops.close,
    getSockOpt: ops.getSockOpt,
    setSockOpt: ops.setSockOpt,
    getSockName: ops.getSockName,
    getPeerName: ops.getPeerName,
    poll: ops.poll,
    sendMsg: msgOps.sendMsg,
    recvMsg: msgOps.recvMsg,
    dup: handleOps.dup,
    detach: handleOps.detach,
    fromFd: handleOps.fromFd,
    getInheritable: handleOps.getInheritable,
    setInheritable: handleOps.setInheritable,
    share: handleOps.share,
    fromShare: handleOps.fromShare,
    ioctl: ioctlOps.ioctl,
  };
  // Typed by the generated SocketServiceServer below; the handler table is keyed by op name.
  const u = (op: keyof typeof handlers): any => unary(sessions, peers, log, op, handlers[op] as any, live);
  const socketService: SocketServiceServer = {
    create: u('create'),
    socketpair: u('socketpair'),
    bind: u('bind'),
    listen: u('listen'),
    accept: u('accept'),
    connect: u('connect'),
    send: u('send'),
    sendAll: u('sendAll'),
    recv: u('recv'),
    shutdown: u('shutdown'),
    closeSocket: u('close'),
    getSockOpt: u('getSockOpt'),
    setSockOpt: u('setSockOpt'),
    getSockName: u('getSockName'),
    getPeerName: u('getPeerName'),
    poll: u('poll'),
    sendMsg: u('sendMsg'),
    recvMsg: u('recvMsg'),
    dup: u('dup'),
    detach: u('detach'),
    fromFd: u('fromFd'),
    getInheritable: u('getInheritable'),
    setInheritable: u('setInheritable'),
    share: u('share'),
    fromShare: u('fromShare'),
    ioctl: u('ioctl'),
    call: callStream(sessions, peers, log, limits.maxPendingCalls, handlers, live),
    data: dataStream({ sessions, peers, log, ops, window: limits.dataWindowBytes, live }) as any,
  };
  // The Data and Call streams' hot messages use the hand-written codecs (proto/codec/data.ts, call.ts).
  const socketDefinition = {
    ...SocketServiceService,
    data: { ...SocketServiceService.data, requestDeserialize: decodeDataRequest, responseSerialize: encodeDataResponse },
    call: { ...SocketServiceService.call, requestDeserialize: decodeCallRequest, responseSerialize: encodeCallResponse },
  };
  server.addService(tolerantStreams(SessionServiceService), sessionService({ sessions, peers, limits, log, netns, policy: () => broker.policy, live }) as any);
  server.addService(tolerantStreams(socketDefinition), socketService as any);
  server.addService(captureServiceDefinition, captureService({ sessions, peers, reactor, netns, log, policy: () => broker.policy, live }) as any);
  server.addService(NetdbServiceService, netdbService(peers, { policy: () => broker.policy, log, netns }) as any);
  server.addService(AdminServiceService, adminService(sessions, peers, log) as any);
  // Standard health and server reflection, so grpcurl and generic tooling work against it.
  const health = new HealthImplementation({ '': 'SERVING', 'sockbroker.v1.SessionService': 'SERVING', 'sockbroker.v1.SocketService': 'SERVING', 'sockbroker.v1.NetdbService': 'SERVING', 'sockbroker.v1.AdminService': 'SERVING', 'sockbroker.v1.CaptureService': 'SERVING' });
  health.addToServer(server);
  try {
    new ReflectionService(loadContract()).addToServer(server);
  } catch (err) {
    log.warn({ event: 'reflection.unavailable', err: (err as Error).message });
  }

  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const perIdentity = new Map<string, number>();
  let nextConn = 0;

  /** Hands an identified connection to grpc-js, or refuses it when its identity is at its cap. */
  const admit = (sock: net.Socket, peer: Peer, capKey: string): void => {
    const count = perIdentity.get(capKey) ?? 0;
    if (count >= maxConns) {
      countQuota('connections_per_identity');
      log.warn({ event: 'connection.refused', why: `more than ${maxConns} connections`, key: capKey });
      if (peer.kind === 'local' && peer.netns !== null) netns.release(peer.netns);
      sock.destroy();
      return;
    }
    perIdentity.set(capKey, count + 1);
    if (peer.kind === 'remote' && sock.remotePort !== undefined) {
      peer.tcp = { localAddress: sock.localAddress ?? '', localPort: sock.localPort ?? 0, remoteAddress: sock.remoteAddress ?? '', remotePort: sock.remotePort };
    }
    const tag = `conn-${++nextConn}`;
    // grpc-js's getPeer() is remoteAddress, plus ':' + remotePort when there is one.
    Object.defineProperty(sock, 'remoteAddress', { value: tag });
    Object.defineProperty(sock, 'remotePort', { value: undefined });
    peers.add(tag, peer);
    sock.once('close', () => {
      const p = peers.remove(tag);
      if (p?.kind === 'local' && p.netns !== null) netns.release(p.netns);
      const n = (perIdentity.get(capKey) ?? 1) - 1;
      if (n > 0) perIdentity.set(capKey, n);
      else perIdentity.delete(capKey);
    });
    injector.injectConnection(sock);
  };

  const onLocal = (sock: net.Socket): void => {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    try {
      if (fd === undefined || fd < 0) throw new Error('no fd');
      const { identity, netnsFd } = identifyLocal(fd);
      const ns = netnsFd >= 0 ? netns.acquire(identity.netNs, netnsFd) : null;
      log.debug({ event: 'connection', ...describe(identity) });
      admit(sock, { kind: 'local', identity, netns: ns }, identity.key);
    } catch (err) {
      log.warn({ event: 'connection.refused', err: String(err) });
      sock.destroy();
    }
  };

  const listeners: Array<net.Server> = [];
  const addresses: string[] = [];
  for (const l of opts.listen) {
    if (l.kind === 'fd') {
      const srv = net.createServer(onLocal);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ fd: l.fd }, () => resolve());
      });
      const sa = decodeSockaddr(getsockname(l.fd));
      listeners.push(srv);
      if (sa.family === 'unix' && sa.path.length > 0 && sa.path[0] !== 0) {
        const path = sa.path.toString();
        addresses.push(`unix:${path}`);
        // The hand-off side channel beside it, as reachable as the socket unit made the socket.
        handoff.listen(path, statSync(path).mode & 0o777);
      } else {
        addresses.push(`fd:${l.fd}`);
      }
      continue;
    }
    if (l.kind === 'unix') {
      await prepareSocketPath(l.path);
      const srv = net.createServer(onLocal);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(l.path, () => resolve());
      });
      chmodSync(l.path, l.mode);
      listeners.push(srv);
      addresses.push(`unix:${l.path}`);
      handoff.listen(l.path, l.mode);
      continue;
    }
    let srv: net.Server;
    if (config.tls) {
      const t = config.tls;
      srv = tls.createServer(
        {
          cert: readFileSync(t.cert),
          key: readFileSync(t.key),
          ...(t.ca ? { ca: readFileSync(t.ca), requestCert: true } : {}),
          // An unverified certificate is not refused here: such a caller may still present a token.
          rejectUnauthorized: false,
          ALPNProtocols: ['h2'],
          minVersion: 'TLSv1.2',
        },
        (sock) => {
          const cert = sock.authorized ? sock.getPeerCertificate() : null;
          const subject = cert?.subject ? Object.entries(cert.subject).map(([k, v]) => `${k}=${v}`).join(',') : undefined;
          const identity = subject ? remoteIdentity({ subject }) : null;
          log.debug({ event: 'connection.tls', subject, authorized: sock.authorized, from: sock.remoteAddress });
          admit(sock, { kind: 'remote', identity, address: sock.remoteAddress ?? '' }, identity?.key ?? `ip:${sock.remoteAddress}`);
        },
      );
      srv.on('tlsClientError', (err) => log.warn({ event: 'connection.tls_error', err: err.message }));
    } else {
      srv = net.createServer((sock) => admit(sock, { kind: 'remote', identity: null, address: sock.remoteAddress ?? '' }, `ip:${sock.remoteAddress}`));
    }
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(l.port, l.host, () => resolve());
    });
    const a = srv.address() as net.AddressInfo;
    listeners.push(srv);
    addresses.push(`tcp:${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`);
  }
  let metrics: MetricsServer | undefined;
  if (opts.metrics) metrics = await serveMetrics(opts.metrics, createRegistry(sessions));

  const reload = (): boolean => {
    if (!opts.configPath) return true;
    try {
      // Remembered before compiling, so a bad file is reported once, not on every later event.
      policyText = readPolicyText(opts.configPath);
      config = compilePolicy(policyText, opts.configPath, defaults);
    } catch (err) {
      log.error({ event: 'policy.reload_failed', err: (err as Error).message });
      return false;
    }
    broker.policy = config.policy;
    peers.tokens = config.tokens;
    for (const warning of config.warnings) log.warn({ event: 'policy.warning', warning });
    log.info({ event: 'policy.reloaded', path: opts.configPath, rules: config.policy.rules.length });
    return true;
  };

  // Reload on change. A Kubernetes ConfigMap volume updates by swapping its `..data` symlink, so
  // the directory is watched (never the file: its inode does not change), and a change is read
  // once the directory has been quiet for a moment.
  let watcher: FSWatcher | undefined;
  if (opts.configPath) {
    const path = opts.configPath;
    let timer: NodeJS.Timeout | undefined;
    const settled = (): void => {
      let text: string | undefined;
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        // Gone for now (mid-swap, or removed): reload reports it if it stays so.
      }
      if (text !== policyText) reload();
    };
    // Only events naming the file or the ConfigMap's `..data` link count (the directory may be
    // busy with others: a policy under /tmp); an event without a name may be either.
    const names = new Set([basename(path), '..data']);
    try {
      watcher = watch(dirname(path), (_event, name) => {
        if (name !== null && !names.has(name.toString())) return;
        clearTimeout(timer);
        timer = setTimeout(settled, RELOAD_DEBOUNCE_MS);
        timer.unref();
      });
      watcher.on('error', (err) => log.warn({ event: 'policy.watch_failed', err: err.message }));
    } catch (err) {
      log.warn({ event: 'policy.watch_failed', err: (err as Error).message, fallback: 'SIGHUP' });
    }
  }

  // Last: a supervisor or test reading this line sees the daemon's every fd (the watcher's too).
  log.info({ event: 'listening', addresses, ...(metrics ? { metrics: metrics.address } : {}), nofile, graceSeconds: opts.graceSeconds, policy: opts.configPath ?? 'default', rules: config.policy.rules.length });

  let stopping: Promise<void> | undefined;
  return {
    addresses,
    ...(metrics ? { metricsAddress: metrics.address } : {}),
    sessions,
    reactor,
    reload,
    shutdown() {
      stopping ??= (async () => {
        watcher?.close();
        for (const l of listeners) l.close();
        void metrics?.close();
        const reason = sessionError('broker shutting down', Code.UNAVAILABLE, 'shutdown');
        for (const abort of live) abort(reason);
        await sessions.endAll('broker shutting down');
        // tryShutdown closes each connection once its streams have ended (their statuses sent);
        // closing them before (injector.drain) made it return at once, and the exit cut the
        // streams: clients saw RST_STREAM without a status instead of "broker shutting down".
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        health.setStatus('', 'NOT_SERVING');
        injector.destroy();
        await handoff.stop();
        await reactor.stop();
        netns.closeAll();
        for (const l of opts.listen) {
          if (l.kind !== 'unix') continue;
          try {
            unlinkSync(l.path);
          } catch {
            // already gone
          }
        }
        log.info({ event: 'stopped' });
      })();
      return stopping;
    },
  };
}
