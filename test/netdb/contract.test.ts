// NetdbService's registry stays in sync (every RPC has a daemon handler and an SDK method), and
// the daemon checks every field itself: a client that skips the SDK gets Python's exceptions
// (INVALID_ARGUMENT), never a crash or a hang.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { NetdbServiceClient, NetdbServiceService } from '../../proto/gen/sockbroker/v1/netdb.js';
import { netdbService } from '../../daemon/netdb-service.js';
import { connect, OverflowError, ValueError, OSError } from '../../client/index.js';
import { fromServiceError } from '../../client/errors.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';

// RPC → the SDK method that calls it.
const SDK_METHOD: Record<string, string> = {
  getAddrInfo: 'getaddrinfo', getNameInfo: 'getnameinfo', getHostByName: 'gethostbyname', getHostByNameEx: 'gethostbynameEx',
  getHostByAddr: 'gethostbyaddr', getHostName: 'gethostname', getFqdn: 'getfqdn', getServByName: 'getservbyname',
  getServByPort: 'getservbyport', getProtoByName: 'getprotobyname', ifNameIndex: 'ifNameindex', ifNameToIndex: 'ifNametoindex',
  ifIndexToName: 'ifIndextoname', setHostName: 'sethostname',
};

let daemon: Daemon;
test.before(async () => {
  daemon = await startDaemon();
});
test.after.always(async () => {
  await daemon?.stop();
});

test('every NetdbService RPC has a daemon handler and an SDK method', async (t) => {
  const rpcs = Object.keys(NetdbServiceService).sort();
  const handlers = Object.keys(netdbService({} as Parameters<typeof netdbService>[0], {} as Parameters<typeof netdbService>[1])).sort();
  t.deepEqual(handlers, rpcs);
  t.deepEqual(Object.keys(SDK_METHOD).sort(), rpcs);
  const socket = await connect(daemon.address);
  try {
    for (const rpc of rpcs) t.is(typeof (socket as unknown as Record<string, unknown>)[SDK_METHOD[rpc]!], 'function', rpc);
  } finally {
    await socket.disconnect();
  }
});

/** The gRPC code of the last failed raw call. */
let lastCode = 0;

/** One raw unary call; resolves to the rebuilt exception (or null if it succeeded). */
function raw(client: NetdbServiceClient, method: string, req: object): Promise<Error | null> {
  return new Promise((resolve) => {
    (client as unknown as Record<string, Function>)[method]!.call(client, req, (err: grpc.ServiceError | null) => {
      if (err) lastCode = err.code;
      resolve(err ? fromServiceError(err) : null);
    });
  });
}

test('the daemon refuses bad fields itself: NULs, lengths, ranges (INVALID_ARGUMENT, Python exceptions)', async (t) => {
  const client = new NetdbServiceClient(daemon.address, grpc.credentials.createInsecure());
  try {
    const long = 'x'.repeat(5000);
    const cases: Array<[string, object, new (...a: never[]) => Error, RegExp]> = [
      ['getHostByName', { hostname: 'a\0b' }, ValueError, /embedded null character/],
      ['getHostByAddr', { ipAddress: long }, ValueError, /too long/],
      ['getHostByNameEx', { hostname: long }, ValueError, /too long/],
      ['getFqdn', { name: 'a\0' }, ValueError, /embedded null character/],
      ['getServByName', { serviceName: 'http\0' }, ValueError, /embedded null character/],
      ['getServByName', { serviceName: 'http', protocolName: long }, ValueError, /too long/],
      ['getServByPort', { port: 70000 }, OverflowError, /^getservbyport: port must be 0-65535\.$/],
      ['getProtoByName', { protocolName: long }, ValueError, /too long/],
      ['getNameInfo', { host: '::1', port: 80, flowinfo: 0x100000, flags: 0 }, OverflowError, /^getnameinfo\(\): flowinfo must be 0-1048575\.$/],
      ['getNameInfo', { host: 'a\0', port: 80, flags: 0 }, ValueError, /embedded null character/],
      ['ifNameToIndex', { name: Buffer.from('l\0o') }, ValueError, /embedded null byte/],
      ['ifNameToIndex', { name: Buffer.alloc(5000, 0x61) }, ValueError, /too long/],
      ['getAddrInfo', { host: long, family: 0, type: 0, protocol: 0, flags: 0 }, ValueError, /too long/],
    ];
    for (const [method, req, cls, msg] of cases) {
      const e = await raw(client, method, req);
      t.true(e instanceof cls, `${method}: ${String(e)}`);
      t.regex(e?.message ?? '', msg, method);
      t.is(lastCode, grpc.status.INVALID_ARGUMENT, method);
    }
    // Absent answers are OSErrors, not crashes.
    t.true((await raw(client, 'ifNameToIndex', { name: Buffer.alloc(0) })) instanceof OSError);
    t.true((await raw(client, 'ifIndexToName', { index: 0 })) instanceof OSError);
    t.is(await raw(client, 'getHostName', {}), null);
  } finally {
    client.close();
  }
});
