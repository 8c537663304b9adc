// systemd integration: sockets passed by socket activation (LISTEN_FDS) and notifications to the
// service manager (READY=1, STOPPING=1, WATCHDOG=1), as sd_listen_fds(3) and sd_notify(3) define
// them. The watchdog pings come from a timer on the event loop, so a wedged loop stops them and
// systemd restarts the daemon.
import type { Logger } from 'pino';
import { linux as C } from '../native/constants.js';
import { getsockopt } from '../native/libc.js';
import { makeDaemonFd } from '../native/fd.js';
import { notifyAddress, sendNotify } from '../native/sd-notify.js';

/** sd_listen_fds(3)'s first fd. */
const LISTEN_FDS_START = 3;

/**
 * The fds systemd passed to this process (LISTEN_PID must be ours), each checked to be a
 * listening Unix stream socket and made close-on-exec; the variables are removed so no child
 * takes them for its own. Empty when not socket-activated.
 */
export function listenFds(env: NodeJS.ProcessEnv = process.env): number[] {
  const pid = env.LISTEN_PID;
  const count = Number(env.LISTEN_FDS);
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid === undefined || Number(pid) !== process.pid || !Number.isInteger(count) || count <= 0) return [];
  const fds = Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
  for (const fd of fds) {
    const int = (name: number): number => getsockopt(fd, C.SOL_SOCKET!, name, 4).readInt32LE(0);
    if (int(C.SO_DOMAIN!) !== C.AF_UNIX || int(C.SO_TYPE!) !== C.SOCK_STREAM || int(C.SO_ACCEPTCONN!) !== 1) {
      throw new Error(`socket activation: fd ${fd} is not a listening AF_UNIX stream socket (ListenStream=/PATH)`);
    }
    makeDaemonFd(fd);
  }
  return fds;
}

/** Notifications to the service manager; every method is a no-op without NOTIFY_SOCKET. */
export class Notifier {
  readonly #address: Buffer | null;
  readonly #log: Logger;
  #watchdog: NodeJS.Timeout | undefined;
  /** Notifications that could not be sent (the manager's queue full, the socket gone). */
  dropped = 0;

  constructor(log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.#log = log;
    const value = env.NOTIFY_SOCKET;
    this.#address = value ? notifyAddress(value) : null;
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    if (this.#address && Number.isInteger(usec) && usec > 0 && forUs) {
      // Half the interval, as sd_watchdog_enabled(3) advises.
      this.#watchdog = setInterval(() => this.#send('WATCHDOG=1'), Math.max(1, Math.floor(usec / 2000)));
      this.#watchdog.unref();
    }
  }

  #send(state: string): void {
    if (!this.#address) return;
    try {
      sendNotify(this.#address, state);
    } catch (err) {
      this.dropped++;
      this.#log.warn({ event: 'sd_notify.failed', state: state.split('\n')[0], err: String(err), dropped: this.dropped });
    }
  }

  /** Listening: the service is started. */
  ready(status: string): void {
    this.#send(`READY=1\nSTATUS=${status}`);
  }

  /** Draining: the service is stopping. */
  stopping(): void {
    this.#send('STOPPING=1\nSTATUS=draining');
  }

  close(): void {
    clearInterval(this.#watchdog);
  }
}
