// The daemon: a grpc-js server fed by our own net.Server on a Unix socket, so the caller's
// identity is read from each accepted connection (SO_PEERCRED) before grpc-js sees it. The
// connection's remoteAddress is set to a per-connection tag, which call.getPeer() returns in
// every handler of that connection.
import net from 'node:net';
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { getNofileLimit, setNofileLimit } from '../native/libc.js';
import { SessionServiceService } from '../proto/gen/sockbroker/v1/session.js';
import { SocketServiceService, type SocketServiceServer } from '../proto/gen/sockbroker/v1/socket.js';
import { NetdbServiceService } from '../proto/gen/sockbroker/v1/netdb.js';
import { Reactor } from './reactor.js';
import { Sessions } from './sessions.js';
import { SocketOps } from './socket-ops.js';
import { callStream, unary, type PeerTable } from './rpc.js';
import { sessionService } from './session-service.js';
import { netdbService } from './netdb-service.js';
import { identify, describe } from './identity.js';
import { DEFAULT_LIMITS, type Limits } from './limits.js';

export interface ServeOptions {
  /** Unix socket path to listen on. */
  path: string;
  /** Seconds a session outlives its last stream. */
  graceSeconds: number;
  /** Socket file mode (0o666 for a system daemon, 0o600 for a per-user one). */
  mode: number;
  limits?: Partial<Limits>;
  log: Logger;
}

export interface RunningServer {
  path: string;
  sessions: Sessions;
  reactor: Reactor;
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

function prepareSocketPath(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  unlinkSync(path); // a stale socket of a previous run; a live daemon is caught by the probe in serve()
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

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const { log } = opts;
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const nofile = raiseFdLimit(log);
  if (await inUse(opts.path)) throw new Error(`another broker is listening on ${opts.path}`);

  const reactor = new Reactor();
  let ops!: SocketOps;
  const sessions = new Sessions({
    graceMs: opts.graceSeconds * 1000,
    maxSockets: limits.maxSockets,
    maxSessionsPerIdentity: limits.maxSessionsPerIdentity,
    log,
    closeEntry: (table, entry) => ops.closeEntry(table, entry),
  });
  ops = new SocketOps({ reactor, sessions, limits, log });
  const peers: PeerTable = new Map();

  const server = new grpc.Server({
    'grpc.max_concurrent_streams': 256,
    'grpc.max_receive_message_length': limits.maxMessageBytes,
    'grpc.max_send_message_length': limits.maxMessageBytes,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
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
  };
  // Typed by the generated SocketServiceServer below; the handler table is keyed by op name.
  const u = (op: keyof typeof handlers): any => unary(sessions, peers, log, op, handlers[op] as any);
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
    call: callStream(sessions, peers, log, limits.maxPendingCalls, handlers),
  };
  server.addService(SessionServiceService, sessionService(sessions, peers, limits, log) as any);
  server.addService(SocketServiceService, socketService as any);
  server.addService(NetdbServiceService, netdbService(peers) as any);

  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let nextConn = 0;
  const netServer = net.createServer((sock) => {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let identity;
    try {
      if (fd === undefined || fd < 0) throw new Error('no fd');
      identity = identify(fd);
    } catch (err) {
      log.warn({ event: 'connection.refused', err: String(err) });
      sock.destroy();
      return;
    }
    const tag = `conn-${++nextConn}`;
    Object.defineProperty(sock, 'remoteAddress', { value: tag });
    peers.set(tag, identity);
    sock.on('close', () => peers.delete(tag));
    log.debug({ event: 'connection', tag, ...describe(identity) });
    injector.injectConnection(sock);
  });
  prepareSocketPath(opts.path);
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen(opts.path, () => resolve());
  });
  chmodSync(opts.path, opts.mode);
  log.info({ event: 'listening', path: opts.path, mode: opts.mode.toString(8), nofile, graceSeconds: opts.graceSeconds });

  let stopping: Promise<void> | undefined;
  return {
    path: opts.path,
    sessions,
    reactor,
    shutdown() {
      stopping ??= (async () => {
        netServer.close();
        await sessions.endAll('broker shutting down');
        injector.drain(1000);
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
        injector.destroy();
        await reactor.stop();
        try {
          unlinkSync(opts.path);
        } catch {
          // already gone
        }
        log.info({ event: 'stopped' });
      })();
      return stopping;
    },
  };
}
