// sockbroker SDK: `const socket = await connect()` is the analog of `import socket`.
export { connect, POLL, type SocketModule, type AddrInfo, type ModuleConstants, type BrokerSession } from './module.js';
export type { ReconnectingEvent, ResumedEvent } from './transport.js';
export { Socket } from './socket.js';
export { ntohs, htons, ntohl, htonl, inetAton, inetNtoa, inetPton, inetNtop, CMSG_LEN, CMSG_SPACE, type PyInt } from './pure.js';
export type { HostTriple } from './netdb.js';
export type { AddressTuple } from './address.js';
export type { TransportOptions as ConnectOptions } from './transport.js';
export * from './errors.js';
export { PcapWriter, PcapngWriter, LINKTYPE, linkTypeName, type PacketRecord, type PcapngInterface, type PcapngStatistics } from './pcap.js';
export { CaptureMerge, type MergeOptions, type Timestamped } from './capture-merge.js';
export { Capture, type CaptureOptions, type CaptureBatch, type CapturedPacket, type CaptureInterface, type CaptureStats } from './capture.js';
export { runCapture, type CaptureRunOptions, type CaptureTotals, type SourceInfo } from './capture-run.js';
