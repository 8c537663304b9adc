// The seed's four echo examples, transliterated to the SDK, run against a live daemon whose
// /etc/hosts the test controls (the examples' 'daring.cwi.nl' resolves to loopback).
import test from 'ava';
import { connect, type SocketModule, type Socket, OSError } from '../../client/index.js';
import { withDaemon } from '../helpers/daemon.js';

const HOSTS = '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.0.0.1 daring.cwi.nl\n::1 daring.cwi.nl\n';

// Example 1: echo server, IPv4. Serves one client; returns what it printed.
async function echoServerV4(socket: SocketModule, port: number, ready: () => void): Promise<string[]> {
  const out: string[] = [];
  const HOST = ''; // Symbolic name meaning all available interfaces
  const PORT = port;
  const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
  await s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);
  await s.bind([HOST, PORT]);
  await s.listen(1);
  ready();
  const [conn, addr] = await s.accept();
  out.push(`Connected by ${JSON.stringify(addr)}`);
  for (;;) {
    const data = await conn.recv(1024);
    if (data.length === 0) break;
    await conn.sendall(data);
  }
  await conn.close();
  await s.close();
  return out;
}

// Example 2: echo client, IPv4.
async function echoClientV4(socket: SocketModule, port: number): Promise<Buffer> {
  const HOST = 'daring.cwi.nl'; // The remote host
  const PORT = port;
  const s = await socket.socket(socket.AF_INET, socket.SOCK_STREAM);
  await s.connect([HOST, PORT]);
  await s.sendall(Buffer.from('Hello, world'));
  const data = await s.recv(1024);
  await s.close();
  return data;
}

// Example 3: echo server, IPv4 or IPv6, first family getaddrinfo offers.
async function echoServerAny(socket: SocketModule, port: number, ready: () => void): Promise<number> {
  const HOST = null; // Symbolic name meaning all available interfaces
  const PORT = port;
  let s: Socket | null = null;
  for (const [af, socktype, proto, , sa] of await socket.getaddrinfo(HOST, PORT, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)) {
    try {
      s = await socket.socket(af, socktype, proto);
    } catch (msg) {
      if (!(msg instanceof OSError)) throw msg;
      s = null;
      continue;
    }
    try {
      await s.bind(sa);
      await s.listen(1);
    } catch (msg) {
      if (!(msg instanceof OSError)) throw msg;
      await s.close();
      s = null;
      continue;
    }
    break;
  }
  if (s === null) throw new Error('could not open socket');
  ready();
  const [conn] = await s.accept();
  for (;;) {
    const data = await conn.recv(1024);
    if (data.length === 0) break;
    await conn.send(data);
  }
  await conn.close();
  await s.close();
  return s.family;
}

// Example 4: echo client trying every address of the name.
async function echoClientAny(socket: SocketModule, port: number): Promise<Buffer> {
  const HOST = 'daring.cwi.nl';
  const PORT = port;
  let s: Socket | null = null;
  for (const [af, socktype, proto, , sa] of await socket.getaddrinfo(HOST, PORT, socket.AF_UNSPEC, socket.SOCK_STREAM)) {
    try {
      s = await socket.socket(af, socktype, proto);
    } catch (msg) {
      if (!(msg instanceof OSError)) throw msg;
      s = null;
      continue;
    }
    try {
      await s.connect(sa);
    } catch (msg) {
      if (!(msg instanceof OSError)) throw msg;
      await s.close();
      s = null;
      continue;
    }
    break;
  }
  if (s === null) throw new Error('could not open socket');
  await s.sendall(Buffer.from('Hello, world'));
  const data = await s.recv(1024);
  await s.close();
  return data;
}

async function freePort(socket: SocketModule, family: number): Promise<number> {
  const s = await socket.socket(family, socket.SOCK_STREAM);
  await s.bind([family === socket.AF_INET ? '127.0.0.1' : '::1', 0]);
  const [, port] = (await s.getsockname()) as [string, number];
  await s.close();
  return port;
}

test('seed examples 1+2: IPv4 echo server and client', async (t) => {
  await withDaemon(async (d) => {
    const server = await connect(d.address);
    const client = await connect(d.address);
    const port = await freePort(server, server.AF_INET);
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    const served = echoServerV4(server, port, ready);
    await listening;
    t.deepEqual(await echoClientV4(client, port), Buffer.from('Hello, world'));
    const printed = await served;
    t.regex(printed[0]!, /^Connected by \["127\.0\.0\.1",\d+\]$/);
    await server.disconnect();
    await client.disconnect();
  }, { hosts: HOSTS });
});

test('seed examples 3+4: IPv4/IPv6 echo server and client through getaddrinfo', async (t) => {
  await withDaemon(async (d) => {
    const server = await connect(d.address);
    const client = await connect(d.address);
    const port = await freePort(server, server.AF_INET6);
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    const served = echoServerAny(server, port, ready);
    await listening;
    t.deepEqual(await echoClientAny(client, port), Buffer.from('Hello, world'));
    const family = await served;
    t.true(family === server.AF_INET6 || family === server.AF_INET);
    await server.disconnect();
    await client.disconnect();
  }, { hosts: HOSTS });
});
