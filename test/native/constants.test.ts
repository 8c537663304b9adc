import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { abi, errnos, linux, os } from '../../native/constants.js';

const root = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/native/

function python(code: string): unknown {
  return JSON.parse(execFileSync('python3', ['-c', code], { encoding: 'utf8' }));
}

test('a sample matches python3 socket', (t) => {
  const names = ['AF_INET6', 'SOCK_NONBLOCK', 'SO_REUSEPORT', 'TCP_NODELAY', 'MSG_PEEK', 'IPV6_V6ONLY', 'INADDR_LOOPBACK'];
  const py = python(`import json, socket; print(json.dumps({n: getattr(socket, n) for n in ${JSON.stringify(names)}}))`);
  t.deepEqual(Object.fromEntries(names.map((n) => [n, linux[n]])), py);
  t.is(linux.INADDR_LOOPBACK, 2130706433);
});

test('every integer python3 socket exports is in linux with the same value', (t) => {
  const py = python(
    'import json, socket; print(json.dumps({n: getattr(socket, n) for n in dir(socket)'
    + ' if n.isupper() and type(getattr(socket, n)) is int}))',
  ) as Record<string, number>;
  const wrong = Object.entries(py).filter(([n, v]) => linux[n] !== v);
  t.deepEqual(wrong, []);
});

test('no non-integers or Windows-only names', (t) => {
  for (const [n, v] of Object.entries(linux)) t.true(Number.isInteger(v), n);
  for (const n of ['has_ipv6', 'SocketType', 'AddressFamily', 'CMSG_LEN', 'CAPI', 'SIO_RCVALL', 'RCVALL_ON']) {
    t.false(n in linux, n);
  }
  t.true(Object.isFrozen(linux));
});

test('os holds the daemon-internal constants', (t) => {
  t.like(os, {
    SOL_SOCKET: 1, SO_PEERCRED: 17, EPOLLIN: 1, EPOLLOUT: 4, EPOLLET: 2 ** 31,
    EPOLL_CTL_ADD: 1, EPOLL_CTL_DEL: 2, EPOLL_CTL_MOD: 3, RLIMIT_NOFILE: 7, POLLRDHUP: 0x2000,
  });
  for (const n of ['EPOLLERR', 'EPOLLHUP', 'EPOLLRDHUP', 'EPOLLONESHOT', 'EPOLL_CLOEXEC', 'EFD_NONBLOCK',
    'EFD_CLOEXEC', 'O_NONBLOCK', 'F_GETFL', 'F_SETFL', 'SO_PEERGROUPS', 'POLLIN', 'POLLPRI', 'POLLOUT',
    'POLLERR', 'POLLHUP', 'POLLNVAL']) {
    t.true(Number.isInteger(os[n]), n);
  }
});

test('errnos has ECONNREFUSED and canonical names first', (t) => {
  t.true(errnos.some(([n, name, text]) => n === 111 && name === 'ECONNREFUSED' && text === 'Connection refused'));
  const first = (n: number) => errnos.find((e) => e[0] === n)?.[1];
  t.is(first(11), 'EAGAIN');
  t.is(first(35), 'EDEADLK');
  t.is(first(95), 'EOPNOTSUPP');
  t.true(errnos.some(([n, name]) => n === 11 && name === 'EWOULDBLOCK'));
});

test('errnos agrees with python3 errno names, numbers and strerror', (t) => {
  const py = python(
    'import errno, json, os; print(json.dumps([[getattr(errno, n), n, os.strerror(getattr(errno, n))]'
    + ' for n in dir(errno) if n.startswith("E")]))',
  ) as Array<[number, string, string]>;
  const ours = new Map(errnos.map(([n, name, text]) => [name, [n, name, text]]));
  for (const e of py) t.deepEqual(ours.get(e[1]), e, e[1]);
});

test('abi sizes on this platform', (t) => {
  t.like(abi, {
    sizeof_sockaddr_in: 16, sizeof_sockaddr_in6: 28, sizeof_sockaddr_un: 110, sizeof_sockaddr_storage: 128,
    offsetof_sun_path: 2, sizeof_sun_path: 108, sizeof_int: 4, sizeof_socklen_t: 4, sizeof_ucred: 12,
    sizeof_linger: 8,
  });
  t.is(abi.sizeof_epoll_event, abi.offsetof_epoll_event_data + 8);
});

test('constants.ts is what the generator writes from these headers', (t) => {
  t.notThrows(() => execFileSync('python3', ['scripts/gen-constants.py', '--check'], { cwd: root, stdio: 'pipe' }));
});
