// sendmsg/recvmsg with typed ancillary data (filled in below).
import { status as Code } from '@grpc/grpc-js';
import type * as pb from '../proto/gen/sockbroker/v1/socket.js';
import { BrokerError } from './errors.js';
import type { CallContext, SocketOps } from './socket-ops.js';

export class MsgOps {
  constructor(readonly ops: SocketOps) {}

  sendMsg = async (_ctx: CallContext, _req: pb.SendMsgRequest): Promise<pb.SendMsgResponse> => {
    throw new BrokerError(Code.UNIMPLEMENTED, 'UNIMPLEMENTED', 'sendmsg is not implemented yet', { kind: 'os' });
  };

  recvMsg = async (_ctx: CallContext, _req: pb.RecvMsgRequest): Promise<pb.RecvMsgResponse> => {
    throw new BrokerError(Code.UNIMPLEMENTED, 'UNIMPLEMENTED', 'recvmsg is not implemented yet', { kind: 'os' });
  };
}
