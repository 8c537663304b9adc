// The contract stays in sync: buf lint is clean, proto/gen is what `npm run gen` writes, every
// SocketService RPC has a Call-stream operation the daemon serves, every AdminService RPC a
// handler and an SDK function, and the client's exception table names only errnos this host has.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { SocketServiceService, CallRequest } from '../../proto/gen/sockbroker/v1/socket.js';
import { errnos } from '../../native/constants.js';
import { makeOSError, OSError } from '../../client/errors.js';
import { ROOT } from '../helpers/daemon.js';
import { AdminServiceService } from '../../proto/gen/sockbroker/v1/admin.js';
import { adminService } from '../../daemon/admin-service.js';
import * as adminClient from '../../client/admin.js';

const buf = join(ROOT, 'node_modules', '.bin', 'buf');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

test('buf lint (STANDARD) is clean', (t) => {
  t.notThrows(() => execFileSync(buf, ['lint'], { cwd: ROOT, stdio: 'pipe' }));
});

test('proto/gen is exactly what npm run gen writes', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'sb-gen-'));
  try {
    execFileSync(buf, ['generate', '-o', out], { cwd: ROOT, stdio: 'pipe' });
    const fresh = join(out, 'proto', 'gen');
    const committed = join(ROOT, 'proto', 'gen');
    const names = files(committed).map((f) => relative(committed, f)).sort();
    t.deepEqual(files(fresh).map((f) => relative(fresh, f)).sort(), names);
    for (const n of names) t.is(readFileSync(join(fresh, n), 'utf8'), readFileSync(join(committed, n), 'utf8'), n);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('every SocketService RPC has an operation on the Call stream', (t) => {
  const rpcs = Object.keys(SocketServiceService).filter((k) => k !== 'call' && k !== 'data');
  const ops = Object.keys(CallRequest.fromPartial({})).filter((k) => k !== 'callId' && k !== 'ackOnly' && k !== 'ackedSeq');
  const rename: Record<string, string> = { closeSocket: 'close' };
  for (const rpc of rpcs) t.true(ops.includes(rename[rpc] ?? rpc), `${rpc} has no Call envelope field`);
  // The transport's own fields (cancel, ack, ping, batch) have no RPC.
  t.is(rpcs.length, ops.filter((o) => o !== 'cancel' && o !== 'ack' && o !== 'ping' && o !== 'batch').length);
});

test('every AdminService RPC has a daemon handler and an SDK function', (t) => {
  const handlers = adminService(null as any, null as any, null as any) as unknown as Record<string, unknown>;
  for (const rpc of Object.keys(AdminServiceService)) {
    t.is(typeof handlers[rpc], 'function', `${rpc} has no handler`);
    t.is(typeof (adminClient as Record<string, unknown>)[rpc], 'function', `${rpc} has no SDK function in client/admin.ts`);
  }
});

test('the client rebuilds PEP 3151 subclasses for this host\'s errnos', (t) => {
  const byName = new Map(errnos.map(([n, name]) => [name, n]));
  for (const [name, cls] of [['ECONNREFUSED', 'ConnectionRefusedError'], ['EAGAIN', 'BlockingIOError'], ['EPIPE', 'BrokenPipeError'], ['EACCES', 'PermissionError'], ['ETIMEDOUT', 'TimeoutError'], ['EBADF', 'OSError']] as const) {
    const e = makeOSError(byName.get(name)!, 'x', name);
    t.is(e.constructor.name, cls);
    t.true(e instanceof OSError);
    t.is(e.code, name);
  }
});
