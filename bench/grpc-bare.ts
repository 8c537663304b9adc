// The bare gRPC service shared by the floor server and its client: raw Buffer messages.
import * as grpc from '@grpc/grpc-js';

const raw = {
  requestStream: true,
  responseStream: true,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
} as const;

export const BARE_SERVICE: grpc.ServiceDefinition = {
  echo: { path: '/bench.Bare/Echo', originalName: 'Echo', ...raw },
  sink: { path: '/bench.Bare/Sink', originalName: 'Sink', ...raw },
  source: { path: '/bench.Bare/Source', originalName: 'Source', ...raw },
};

/** Channel options as the SDK's transport uses them, so the floor is measured like for like. */
export const CLIENT_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc-node.flow_control_window': 4 << 20,
};
