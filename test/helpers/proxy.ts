// A proxy the test controls between a client and the daemon (unix or TCP on each side): it can
// cut every connection at once, cut them after N more bytes towards the client (inside a frame),
// stop forwarding without closing (a silent dead peer), refuse new connections for a while, and
// switch to another daemon (a restart behind the same address).
import net from 'node:net';
import { once } from 'node:events';

export type End = { path: string } | { host: string; port: number };

export interface Proxy {
  /** The address a client connects to (unix:PATH or tcp:127.0.0.1:PORT). */
  address: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Closes every open connection (both sides, at once). */
  cut(): void;
  /** Cuts every connection once `bytes` more bytes went from the daemon to the client. */
  cutAfter(bytes: number): Promise<void>;
  /** Stops forwarding on the open connections without closing them (new ones work). */
  blackhole(): void;
  /** While on, new connections are closed as soon as accepted. */
  refuse(on: boolean): void;
  /** New connections go to `target`. */
  retarget(target: End): void;
  close(): Promise<void>;
}

export async function startProxy(target: End, listen: End): Promise<Proxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  const holed = new Set<net.Socket>();
  let refusing = false;
  let to = target;
  let cutAt: { left: number; done: () => void } | null = null;
  const cutAll = (): void => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  const server = net.createServer((client) => {
    proxy.accepted++;
    if (refusing) return void client.destroy();
    const up = 'path' in to ? net.connect(to.path) : net.connect(to.port, to.host);
    const pair: [net.Socket, net.Socket] = [client, up];
    pairs.add(pair);
    const drop = (): void => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    client.on('data', (d: Buffer) => up.write(d));
    up.on('data', (d: Buffer) => {
      if (cutAt && d.length >= cutAt.left) {
        client.write(d.subarray(0, cutAt.left));
        const done = cutAt.done;
        cutAt = null;
        // The partial write reaches the client's socket, then the connection dies under it.
        client.end(() => cutAll());
        setImmediate(cutAll);
        done();
        return;
      }
      if (cutAt) cutAt.left -= d.length;
      client.write(d);
    });
  });
  if ('path' in listen) server.listen(listen.path);
  else server.listen(listen.port, listen.host);
  await once(server, 'listening');
  const addr = server.address();
  const proxy: Proxy = {
    address: 'path' in listen ? `unix:${listen.path}` : `tcp:127.0.0.1:${(addr as net.AddressInfo).port}`,
    accepted: 0,
    cut: cutAll,
    cutAfter: (bytes) => new Promise<void>((done) => (cutAt = { left: bytes, done })),
    blackhole() {
      for (const [a, b] of pairs) {
        a.pause();
        b.pause();
        a.removeAllListeners('data');
        b.removeAllListeners('data');
        holed.add(a).add(b);
      }
      pairs.clear();
    },
    refuse(on) {
      refusing = on;
    },
    retarget(t) {
      to = t;
    },
    async close() {
      cutAll();
      for (const s of holed) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  return proxy;
}
