// ioctl with the Winsock control codes: SIO_KEEPALIVE_VALS shows as TCP keepalive options,
// SIO_LOOPBACK_FAST_PATH is an accepted no-op, an unknown code is Windows CPython's ValueError.
import test from 'ava';
import { OverflowError, ValueError } from '../../client/index.js';
import { useDaemon } from '../socket/helpers/fixture.js';

const fx = useDaemon(test);

test('SIO_KEEPALIVE_VALS sets SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL (ms rounded up to s)', async (t) => {
  const socket = fx.socket();
  const s = await socket.socket();
  t.is(socket.SIO_KEEPALIVE_VALS, 0x98000004);
  t.is(await s.ioctl(socket.SIO_KEEPALIVE_VALS, [1, 10_000, 3_000]), undefined);
  const read = async () => [
    await s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    await s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    await s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
  ];
  t.deepEqual(await read(), [1, 10, 3]);
  await s.ioctl(socket.SIO_KEEPALIVE_VALS, [0, 1500, 1]);
  t.deepEqual(await read(), [0, 2, 1]);
  await s.close();
});

test('SIO_LOOPBACK_FAST_PATH is accepted; unknown codes and bad options raise as CPython on Windows', async (t) => {
  const socket = fx.socket();
  const s = await socket.socket();
  t.is(await s.ioctl(socket.SIO_LOOPBACK_FAST_PATH, true), undefined);
  await t.throwsAsync(s.ioctl(0x12345, 1), { instanceOf: ValueError, message: 'invalid ioctl command 74565' });
  await t.throwsAsync(s.ioctl(-1, 1), { instanceOf: OverflowError });
  await t.throwsAsync(s.ioctl(socket.SIO_KEEPALIVE_VALS, [1, 2] as never), { instanceOf: TypeError });
  await s.close();
});
