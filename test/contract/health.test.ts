// grpc.health.v1 and server reflection answer, so grpcurl and generic tooling work against the
// broker without a session.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { withDaemon } from '../helpers/daemon.js';

const require = createRequire(import.meta.url);

test('health reports SERVING and reflection lists the sockbroker services', async (t) => {
  await withDaemon(async (d) => {
    const health = grpc.loadPackageDefinition(loadSync(healthProto)) as any;
    const hc = new health.grpc.health.v1.Health(d.address, grpc.credentials.createInsecure());
    const status = await new Promise<any>((resolve, reject) => hc.Check({ service: 'sockbroker.v1.SocketService' }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
    t.is(status.status, 1); // SERVING
    hc.close();

    const reflDir = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1');
    const refl = grpc.loadPackageDefinition(loadSync(join(reflDir, 'reflection.proto'))) as any;
    const rc = new refl.grpc.reflection.v1.ServerReflection(d.address, grpc.credentials.createInsecure());
    const call = rc.ServerReflectionInfo();
    const reply = await new Promise<any>((resolve, reject) => {
      call.on('data', resolve);
      call.on('error', reject);
      call.write({ listServices: '' });
    });
    call.end();
    rc.close();
    const names = reply.listServicesResponse.service.map((s: { name: string }) => s.name);
    for (const name of ['sockbroker.v1.SessionService', 'sockbroker.v1.SocketService', 'sockbroker.v1.NetdbService']) t.true(names.includes(name), name);
  });
});
