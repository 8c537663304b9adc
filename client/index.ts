// sockbroker SDK: `const socket = await connect()` is the analog of `import socket`.
export { connect, POLL, type SocketModule, type AddrInfo, type ModuleConstants } from './module.js';
export { Socket } from './socket.js';
export type { AddressTuple } from './address.js';
export * from './errors.js';
