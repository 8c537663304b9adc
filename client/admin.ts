// The operator's calls (AdminService): a snapshot of every session, for host root only. No
// session is opened: the call stands alone, on the SDK's broker addressing and error mapping.
import * as grpc from '@grpc/grpc-js';
import { AdminServiceClient, type ListSessionsResponse } from '../proto/gen/sockbroker/v1/admin.js';
import { brokerTarget } from './broker-address.js';
import { fromServiceError } from './errors.js';

export type { ListSessionsResponse, SessionSummary, FamilyCount } from '../proto/gen/sockbroker/v1/admin.js';

/** Every open session of the broker at `address` (default: as connect()); PermissionError unless host root. */
export async function listSessions(address?: string, timeoutMs = 10_000): Promise<ListSessionsResponse> {
  const client = new AdminServiceClient(brokerTarget(address), grpc.credentials.createInsecure());
  try {
    return await new Promise<ListSessionsResponse>((resolve, reject) => {
      client.listSessions({}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    });
  } finally {
    client.close();
  }
}
