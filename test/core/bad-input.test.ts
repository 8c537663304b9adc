// Bad input from any client — wrong types, huge sizes, unknown handles or sessions — gets a
// clear error; the daemon neither crashes, hangs, nor leaks an fd.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { SocketServiceClient, type CallResponse, type CallRequest } from '../../proto/gen/sockbroker/v1/socket.js';
import { SessionServiceClient } from '../../proto/gen/sockbroker/v1/session.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { connect, OSError, ValueError, OverflowError } from '../../client/index.js';
import { Transport } from '../../client/transport.js';
import { startDaemon, until, type Daemon } from '../helpers/daemon.js';

let d: Daemon;
test.before(async () => {
  d = await startDaemon();
});
test.after.always(async () => {
  await d.stop();
});

function unaryCall<T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<{ err: grpc.ServiceError | null; res: T | undefined }> {
  return new Promise((resolve) => fn((err, res) => resolve({ err, res })));
}

function reason(err: grpc.ServiceError): { reason: string; metadata: Record<string, string> } {
  const raw = err.metadata.get('grpc-status-details-bin')[0] as Buffer;
  const status = Status.decode(raw);
  const info = ErrorInfo.decode(status.details[0]!.value);
  return { reason: info.reason, metadata: info.metadata };
}

test.serial('calls without a session, with a malformed one, or an unknown one are refused', async (t) => {
  const client = new SocketServiceClient(d.address, grpc.credentials.createInsecure());
  const none = await unaryCall((cb) => client.getSockName({ handle: 3 }, new grpc.Metadata(), cb));
  t.is(none.err?.code, grpc.status.UNAUTHENTICATED);
  const md = new grpc.Metadata();
  md.set('sockbroker-session', 'x'.repeat(10_000));
  t.is((await unaryCall((cb) => client.getSockName({ handle: 3 }, md, cb))).err?.code, grpc.status.UNAUTHENTICATED);
  const md2 = new grpc.Metadata();
  md2.set('sockbroker-session', '0123456789abcdef0123456789abcdef');
  const unknown = await unaryCall((cb) => client.getSockName({ handle: 3 }, md2, cb));
  t.is(unknown.err?.code, grpc.status.NOT_FOUND);
  t.regex(unknown.err!.details, /session lost/);
  const sessions = new SessionServiceClient(d.address, grpc.credentials.createInsecure());
  const resume = await unaryCall((cb) => sessions.openSession({ resumeSessionId: 'deadbeef', hostNetwork: false }, cb));
  t.is(resume.err?.code, grpc.status.NOT_FOUND);
  client.close();
  sessions.close();
});

test.serial('unknown handles, huge sizes, bad numbers and bad envelopes get clear errors', async (t) => {
  const baseline = d.fdCount();
  const tr = await Transport.open(d.address);
  const e1 = await t.throwsAsync(tr.call('recv', { handle: 12345, bufsize: 1, flags: 0, wantAddress: false }), { instanceOf: OSError });
  t.is(e1?.errno, 9);
  const { handle } = await tr.call('create', { family: 2, type: 2, protocol: 0 });
  await t.throwsAsync(tr.call('recv', { handle, bufsize: 1 << 30, flags: 0, wantAddress: false }), { instanceOf: ValueError, message: /limit of 4194304 bytes/ });
  await t.throwsAsync(tr.call('recv', { handle, bufsize: 1, flags: 0, wantAddress: false, timeout: -1 }), { instanceOf: ValueError, message: 'Timeout value out of range' });
  await t.throwsAsync(tr.call('recv', { handle, bufsize: 1, flags: 0, wantAddress: false, timeout: Number.NaN }), { instanceOf: ValueError });
  await t.throwsAsync(tr.call('bind', { handle, address: { inet: { host: '127.0.0.1', port: 70000 } } }), { instanceOf: OverflowError, message: 'bind(): port must be 0-65535.' });
  await t.throwsAsync(tr.call('bind', { handle, address: { unix: { path: Buffer.from('/tmp/x') } } }), { instanceOf: TypeError });
  await t.throwsAsync(tr.call('bind', { handle, address: { inet: { host: 'a'.repeat(5000), port: 1 } } }), { instanceOf: ValueError });
  await t.throwsAsync(tr.call('getSockOpt', { handle, level: 1, name: 2, buflen: 100_000 }), { instanceOf: OSError, message: 'getsockopt buflen out of range' });
  await t.throwsAsync(tr.call('setSockOpt', { handle, level: 1, name: 2, bytesValue: Buffer.alloc(5000) }), { instanceOf: ValueError });
  await t.throwsAsync(tr.call('setSockOpt', { handle, level: 1, name: 2 }), { instanceOf: TypeError });
  await t.throwsAsync(tr.call('poll', { entries: Array.from({ length: 5000 }, () => ({ handle, events: 1 })) }), { instanceOf: ValueError });
  await t.throwsAsync(tr.call('create', { family: 12345, type: 1, protocol: 0 }), { instanceOf: OSError });
  await t.throwsAsync(tr.call('listen', { handle: -5 }), { instanceOf: OSError });
  // A send above the per-call limit is refused before any syscall.
  const big = await t.throwsAsync(tr.call('send', { handle, data: Buffer.alloc((4 << 20) + 1), flags: 0, address: { inet: { host: '127.0.0.1', port: 9 } } }), { instanceOf: OSError });
  t.is(big?.errno, 90);
  t.regex(big!.message, /quota: at most 4194304 bytes per call/);
  await tr.call('close', { handle });
  await tr.close();
  // Raw envelopes: empty and duplicate call ids.
  const client = new SocketServiceClient(d.address, grpc.credentials.createInsecure());
  const sessions = new SessionServiceClient(d.address, grpc.credentials.createInsecure(), { channelOverride: client.getChannel() });
  const open = await unaryCall<{ sessionId: string }>((cb) => sessions.openSession({ resumeSessionId: '', hostNetwork: false }, cb));
  const md = new grpc.Metadata();
  md.set('sockbroker-session', open.res!.sessionId);
  const stream = client.call(md);
  const replies: CallResponse[] = [];
  stream.on('data', (r: CallResponse) => replies.push(r));
  const ended = new Promise<grpc.ServiceError | null>((resolve) => {
    stream.on('error', resolve);
    stream.on('status', () => resolve(null));
  });
  stream.write({ callId: 1 } as CallRequest);
  stream.write({ callId: 2, poll: { entries: [], timeout: 30 } } as CallRequest);
  stream.write({ callId: 2, poll: { entries: [], timeout: 30 } } as CallRequest);
  // Awaited, not slept: the empty call's and the duplicate's refusals, then the cancel's reply.
  t.true(await until(() => replies.length >= 2, 10_000), 'the empty call and the duplicate were answered');
  stream.write({ callId: 2, cancel: {} } as CallRequest);
  t.true(await until(() => replies.length >= 3, 10_000), 'the cancelled call was answered');
  stream.end();
  const endErr = await ended;
  t.is(endErr, null, String(endErr));
  t.log(JSON.stringify(replies.map((r) => ({ id: r.callId, code: r.error?.code, msg: r.error?.message }))));
  const byId = (id: number) => replies.filter((r) => r.callId === id);
  t.is(byId(1)[0]?.error?.code, grpc.status.INVALID_ARGUMENT);
  t.true(byId(2).some((r) => r.error?.message.includes('already pending')));
  t.true(byId(2).some((r) => r.error?.code === grpc.status.CANCELLED), 'the original call 2 was still pending and got cancelled');
  client.close();
  sessions.close();
  // Still serving, and no fd leaked.
  const socket = await connect(d.address);
  const [a, b] = await socket.socketpair();
  await a.sendall(Buffer.from('ok'));
  t.is((await b.recv(2)).toString(), 'ok');
  await socket.disconnect();
  t.true(await until(() => d.fdCount() <= baseline, 10_000), `fd count ${d.fdCount()} back to ${baseline}`);
  t.is(d.proc.exitCode, null, 'the daemon is still running');
});

