// A decoded kernel sockaddr as the contract's Address: one mapping for the daemon's sockets and
// the SDK's handed-off ones. The input is the shape native/sockaddr decodes, declared here
// structurally so that proto/ imports nothing.
import type { Address } from '../gen/sockbroker/v1/address.js';

export type DecodedSockaddr =
  | { family: 'inet'; host: string; port: number }
  | { family: 'inet6'; host: string; port: number; flowinfo: number; scopeId: number }
  | { family: 'unix'; path: Buffer }
  | { family: 'netlink'; pid: number; groups: number }
  | { family: 'other'; familyNumber: number; data: Buffer };

export function addressOf(sa: DecodedSockaddr): Address {
  switch (sa.family) {
    case 'inet':
      return { inet: { host: sa.host, port: sa.port } };
    case 'inet6':
      return { inet6: { host: sa.host, port: sa.port, flowinfo: sa.flowinfo, scopeId: sa.scopeId } };
    case 'unix':
      return { unix: { path: sa.path } };
    case 'netlink':
      return { netlink: { pid: sa.pid, groups: sa.groups } };
    default:
      return { raw: { family: sa.familyNumber, data: sa.data } };
  }
}
