// One daemon per test file and a client module connected to it, plus small socket recipes.
import type { TestFn } from 'ava';
import { connect, type Socket, type SocketModule } from '../../../client/index.js';
import { startDaemon, type Daemon } from '../../helpers/daemon.js';

export interface Fixture {
  /** The daemon of this file. */
  daemon(): Daemon;
  /** The module connected to it (shared by the file's tests: do not change its default timeout). */
  socket(): SocketModule;
  /** A fresh module of its own (for tests that change the default timeout); disconnected after. */
  fresh(): Promise<SocketModule>;
}

/** Whether this file's sockets are handed off (set by the test/socket-handoff/ wrappers). */
export const HANDOFF = (globalThis as { SOCKBROKER_TEST_HANDOFF?: boolean }).SOCKBROKER_TEST_HANDOFF === true;

/**
 * Starts one daemon before the file's tests and stops it (and every module) after them. The
 * modules hand sockets off when `handoff` (default: HANDOFF), so a conformance file runs in
 * either mode.
 */
export function useDaemon(test: TestFn, handoff = HANDOFF): Fixture {
  let d: Daemon | undefined;
  let mod: SocketModule | undefined;
  const extra: SocketModule[] = [];
  test.before(async () => {
    d = await startDaemon();
    mod = await connect(d.address, { handoff });
    // A hand-off run must really run in-process, or it would silently test the broker again.
    const probe = await mod.socket(mod.AF_INET, mod.SOCK_STREAM);
    const handed = probe._handedOff;
    await probe.close();
    if (handed !== handoff) throw new Error(`fixture: sockets are ${handed ? '' : 'not '}handed off (wanted handoff: ${handoff})`);
  });
  test.after.always(async () => {
    for (const m of [mod, ...extra]) await m?.disconnect();
    await d?.stop();
  });
  return {
    daemon: () => d!,
    socket: () => mod!,
    async fresh() {
      const m = await connect(d!.address, { handoff });
      extra.push(m);
      return m;
    },
  };
}

/** A TCP listener on loopback (port 0) of `family`, listening with `backlog`. */
export async function listener(socket: SocketModule, family = socket.AF_INET, backlog?: number): Promise<Socket> {
  const l = await socket.socket(family, socket.SOCK_STREAM);
  await l.bind([family === socket.AF_INET6 ? '::1' : '127.0.0.1', 0]);
  await l.listen(backlog);
  return l;
}

/** A connected TCP pair over loopback: [client, server side, listener]. */
export async function tcpPair(socket: SocketModule, family = socket.AF_INET): Promise<[Socket, Socket, Socket]> {
  const l = await listener(socket, family);
  const c = await socket.socket(family, socket.SOCK_STREAM);
  await c.connect((await l.getsockname())!);
  const [s] = await l.accept();
  return [c, s, l];
}

/** The port of a bound inet/inet6 socket. */
export async function portOf(s: Socket): Promise<number> {
  return ((await s.getsockname()) as [string, number])[1];
}

/** A loopback port with nothing listening (bound then closed: connecting is refused). */
export async function deadPort(socket: SocketModule, family = socket.AF_INET): Promise<number> {
  const s = await socket.socket(family, socket.SOCK_STREAM);
  await s.bind([family === socket.AF_INET6 ? '::1' : '127.0.0.1', 0]);
  const port = await portOf(s);
  await s.close();
  return port;
}

/** Resolves to 'pending' if `p` has not settled after `ms`, else to 'settled'. */
export async function stillPending(p: Promise<unknown>, ms: number): Promise<'pending' | 'settled'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    p.then(
      () => 'settled' as const,
      () => 'settled' as const,
    ),
    new Promise<'pending'>((res) => (timer = setTimeout(() => res('pending'), ms))),
  ]);
  clearTimeout(timer);
  return r;
}

/** Milliseconds `fn` took to settle, and its rejection (if any). */
export async function timed(fn: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const t0 = performance.now();
  let error: unknown;
  try {
    await fn();
  } catch (err) {
    error = err;
  }
  return { ms: performance.now() - t0, error };
}
