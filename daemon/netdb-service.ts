// NetdbService: host-dependent module functions answered from the broker host's view.
import { getaddrinfo, GaiError } from '../native/netdb.js';
import type { NetdbServiceServer, GetAddrInfoRequest, GetAddrInfoResponse } from '../proto/gen/sockbroker/v1/netdb.js';
import { argumentError, gaiError, osError, toBrokerError, toServiceError } from './errors.js';
import { fromSockaddr } from './addresses.js';
import { identityOf, type PeerTable } from './rpc.js';

const MAX_NAME = 1024;

function validateName(value: string | undefined, field: string): string | null {
  if (value === undefined) return null;
  if (value.length > MAX_NAME) throw argumentError('value', `${field} too long (at most ${MAX_NAME} characters)`, field);
  if (value.includes('\0')) throw argumentError('value', 'embedded null character', field);
  return value;
}

const int32 = (v: number): boolean => Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;

export async function getAddrInfo(req: GetAddrInfoRequest): Promise<GetAddrInfoResponse> {
  const host = validateName(req.host, 'host');
  const port = validateName(req.port, 'port');
  for (const f of ['family', 'type', 'protocol', 'flags'] as const) {
    if (!int32(req[f])) throw argumentError('overflow', `${f} out of range`, f);
  }
  try {
    const results = await getaddrinfo(host, port, req);
    return {
      results: results.map((r) => ({
        family: r.family,
        type: r.type,
        protocol: r.protocol,
        canonname: r.canonname,
        address: fromSockaddr(r.addr, r.family),
      })),
    };
  } catch (err) {
    if (err instanceof GaiError) throw err.errno ? osError(err.errno, 'getaddrinfo') : gaiError(err.code, err.message);
    throw err;
  }
}

export function netdbService(peers: PeerTable): NetdbServiceServer {
  return {
    getAddrInfo(call, callback) {
      try {
        identityOf(peers, call);
      } catch (err) {
        callback(toServiceError(toBrokerError(err)));
        return;
      }
      getAddrInfo(call.request).then(
        (res) => callback(null, res),
        (err) => callback(toServiceError(toBrokerError(err))),
      );
    },
  };
}
