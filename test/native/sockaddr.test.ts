import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { linux as L } from '../../native/constants.js';
import { bind, getpeername, getsockname, inetPton, listen, socket, socketpair } from '../../native/libc.js';
import { decodeSockaddr, encodeSockaddr, type Sockaddr } from '../../native/sockaddr.js';
import { checkNoFdLeaks, fdTracker } from './helpers/fds.js';

checkNoFdLeaks(test);

const hex = (b: Buffer) => b.toString('hex');

test('inet encodes byte by byte: family host order, port big-endian, zero padding', (t) => {
  const b = encodeSockaddr({ family: 'inet', host: '127.0.0.1', port: 0x1234 });
  t.is(hex(b), '0200' + '1234' + '7f000001' + '0000000000000000');
});

test('inet6 encodes byte by byte: flowinfo big-endian, scope id host order', (t) => {
  const b = encodeSockaddr({ family: 'inet6', host: '2001:db8::1', port: 443, flowinfo: 0xabcde, scopeId: 0x01020304 });
  t.is(hex(b), '0a00' + '01bb' + '000abcde' + '20010db8000000000000000000000001' + '04030201');
});

test('unix filesystem path gets a trailing NUL; abstract and unnamed do not', (t) => {
  t.is(hex(encodeSockaddr({ family: 'unix', path: Buffer.from('/a') })), '0100' + '2f61' + '00');
  t.is(hex(encodeSockaddr({ family: 'unix', path: Buffer.from('\0ab') })), '0100' + '006162');
  t.is(hex(encodeSockaddr({ family: 'unix', path: Buffer.alloc(0) })), '0100');
});

test('other family passes the bytes after sa_family through', (t) => {
  const b = encodeSockaddr({ family: 'other', familyNumber: L.AF_PACKET, data: Buffer.from('0003', 'hex') });
  t.is(hex(b), '1100' + '0003');
  t.deepEqual(decodeSockaddr(b), { family: 'other', familyNumber: 17, data: Buffer.from('0003', 'hex') });
});

test('decodes kernel-shaped bytes', (t) => {
  t.deepEqual(decodeSockaddr(Buffer.from('0200123405060708' + '0000000000000000', 'hex')),
    { family: 'inet', host: '5.6.7.8', port: 0x1234 });
  t.deepEqual(
    decodeSockaddr(Buffer.from('0a00' + '0050' + '00000001' + '00000000000000000000ffff01020304' + '02000000', 'hex')),
    { family: 'inet6', host: '::ffff:1.2.3.4', port: 80, flowinfo: 1, scopeId: 2 },
  );
});

test('unix decode: 0 or 2 bytes is unnamed, a path stops at its first NUL, an abstract name keeps every byte', (t) => {
  const unnamed = { family: 'unix', path: Buffer.alloc(0) };
  t.deepEqual(decodeSockaddr(Buffer.alloc(0)), unnamed);
  t.deepEqual(decodeSockaddr(Buffer.from('0100', 'hex')), unnamed);
  t.deepEqual(decodeSockaddr(Buffer.from('0100' + '2f6100' + '7a7a', 'hex')), { family: 'unix', path: Buffer.from('/a') });
  t.deepEqual(decodeSockaddr(Buffer.from('0100' + '2f61', 'hex')), { family: 'unix', path: Buffer.from('/a') });
  t.deepEqual(decodeSockaddr(Buffer.from('0100' + '00610062', 'hex')), { family: 'unix', path: Buffer.from('\0a\0b') });
});

test('decode copies: the result does not share memory with the input', (t) => {
  const raw = Buffer.from('0100' + '2f61', 'hex');
  const sa = decodeSockaddr(raw);
  raw[2] = 0x78;
  t.deepEqual(sa, { family: 'unix', path: Buffer.from('/a') });
});

test('round trip: decode(encode(sa)) is sa', (t) => {
  const cases: Sockaddr[] = [
    { family: 'inet', host: '0.0.0.0', port: 0 },
    { family: 'inet', host: '255.255.255.255', port: 65535 },
    { family: 'inet6', host: '::', port: 0, flowinfo: 0, scopeId: 0 },
    { family: 'inet6', host: 'fe80::1:2', port: 65535, flowinfo: 0xfffff, scopeId: 0xffffffff },
    { family: 'unix', path: Buffer.alloc(0) },
    { family: 'unix', path: Buffer.from('/tmp/x.sock') },
    { family: 'unix', path: Buffer.alloc(107, 0x61) },
    { family: 'unix', path: Buffer.concat([Buffer.from([0]), Buffer.alloc(107, 0x62)]) },
    { family: 'other', familyNumber: 38, data: Buffer.from('000000000000000000000000', 'hex') },
  ];
  for (const sa of cases) t.deepEqual(decodeSockaddr(encodeSockaddr(sa)), sa);
});

test('round trip: encode(decode(bytes)) is bytes', (t) => {
  for (const h of ['0200abcd0a000001' + '0000000000000000', '0100' + '0078', '0100' + '2f7800', '0100']) {
    t.is(hex(encodeSockaddr(decodeSockaddr(Buffer.from(h, 'hex')))), h);
  }
});

test('encode rejects bad values with TypeError or RangeError', (t) => {
  const e = (sa: unknown) => () => encodeSockaddr(sa as Sockaddr);
  t.throws(e({ family: 'inet', host: 'localhost', port: 1 }), { instanceOf: TypeError, message: /not a valid IPv4 address: "localhost"/ });
  t.throws(e({ family: 'inet', host: '::1', port: 1 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet', host: '1.2.3.4\u0000', port: 1 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet', host: 7, port: 1 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet6', host: '1.2.3.4', port: 1, flowinfo: 0, scopeId: 0 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet6', host: 'fe80::1%lo', port: 1, flowinfo: 0, scopeId: 0 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet', host: '1.2.3.4', port: 65536 }), { instanceOf: RangeError, message: 'port must be 0-65535, got 65536' });
  t.throws(e({ family: 'inet', host: '1.2.3.4', port: -1 }), { instanceOf: RangeError });
  t.throws(e({ family: 'inet', host: '1.2.3.4', port: 1.5 }), { instanceOf: TypeError });
  t.throws(e({ family: 'inet6', host: '::', port: 1, flowinfo: 0x100000, scopeId: 0 }),
    { instanceOf: RangeError, message: 'flowinfo must be 0-1048575, got 1048576' });
  t.throws(e({ family: 'inet6', host: '::', port: 1, flowinfo: 0, scopeId: 2 ** 32 }), { instanceOf: RangeError });
  t.throws(e({ family: 'unix', path: Buffer.alloc(108, 0x61) }), { instanceOf: RangeError, message: /AF_UNIX path too long/ });
  t.throws(e({ family: 'unix', path: Buffer.alloc(109) }), { instanceOf: RangeError, message: /AF_UNIX path too long/ });
  t.throws(e({ family: 'unix', path: '/tmp/x' }), { instanceOf: TypeError });
  t.throws(e({ family: 'other', familyNumber: 65536, data: Buffer.alloc(0) }), { instanceOf: RangeError });
  t.throws(e({ family: 'bogus' }), { instanceOf: TypeError, message: 'unknown sockaddr family: bogus' });
});

test('IPv4 text is accepted exactly when glibc inet_pton accepts it, with the same bytes', (t) => {
  const texts = [
    '1.2.3.4', '0.0.0.0', '255.255.255.255', '10.0.0.255', '01.2.3.4', '1.2.3.04', '00.0.0.0', '1.2.3',
    '1.2.3.4.5', '256.1.1.1', '1.2.3.260', '1..2.3', '.1.2.3', '1.2.3.4.', ' 1.2.3.4', '1.2.3.4\n', '0x1.2.3.4',
    '1e1.2.3.4', '+1.2.3.4', '\uff11.2.3.4', '1.2.3.4%x', '', '199.299.1.1', '1.2.3.1000', '1.2.3.-1',
  ];
  let seed = 1;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  for (let i = 0; i < 2000; i++) {
    texts.push(Array.from({ length: 4 }, () => '0'.repeat(rnd(10) === 0 ? 1 : 0) + String(rnd(300))).join('.'));
  }
  const differ = texts.filter((host) => {
    const want = inetPton(L.AF_INET, host);
    let got: Buffer | null;
    try {
      got = encodeSockaddr({ family: 'inet', host, port: 0 }).subarray(4, 8);
    } catch {
      got = null;
    }
    return String(got?.toString('hex')) !== String(want?.toString('hex'));
  });
  t.deepEqual(differ, []);
});

test('decode rejects truncated addresses', (t) => {
  t.throws(() => decodeSockaddr(Buffer.from('02', 'hex')), { instanceOf: RangeError });
  t.throws(() => decodeSockaddr(Buffer.from('0200123405060708', 'hex')), { instanceOf: RangeError });
  t.throws(() => decodeSockaddr(Buffer.alloc(24, 0).fill(0x0a, 0, 1)), { instanceOf: RangeError });
});

test('kernel: getsockname of a TCP socket bound to 127.0.0.1', (t) => {
  const fds = fdTracker(t);
  const fd = fds.add(socket(L.AF_INET, L.SOCK_STREAM | L.SOCK_CLOEXEC, 0));
  bind(fd, encodeSockaddr({ family: 'inet', host: '127.0.0.1', port: 0 }));
  const raw = getsockname(fd);
  t.is(raw.length, 16);
  const sa = decodeSockaddr(raw);
  if (sa.family !== 'inet') return t.fail();
  t.is(sa.host, '127.0.0.1');
  t.true(sa.port > 0);
  t.is(hex(encodeSockaddr(sa)), hex(raw));
});

test('kernel: IPv6 socket bound to ::1', (t) => {
  const fds = fdTracker(t);
  const fd = fds.add(socket(L.AF_INET6, L.SOCK_DGRAM | L.SOCK_CLOEXEC, 0));
  bind(fd, encodeSockaddr({ family: 'inet6', host: '::1', port: 0, flowinfo: 0, scopeId: 0 }));
  const raw = getsockname(fd);
  t.is(raw.length, 28);
  const sa = decodeSockaddr(raw);
  if (sa.family !== 'inet6') return t.fail();
  t.like(sa, { host: '::1', flowinfo: 0, scopeId: 0 });
  t.true(sa.port > 0);
  t.is(hex(encodeSockaddr(sa)), hex(raw));
});

test('kernel: a unix socketpair is unnamed on both ends', (t) => {
  const fds = fdTracker(t);
  const [a, b] = fds.add(socketpair(L.AF_UNIX, L.SOCK_STREAM | L.SOCK_CLOEXEC, 0));
  t.is(hex(getsockname(a)), '0100');
  t.deepEqual(decodeSockaddr(getsockname(a)), { family: 'unix', path: Buffer.alloc(0) });
  t.deepEqual(decodeSockaddr(getpeername(b)), { family: 'unix', path: Buffer.alloc(0) });
});

test('kernel: an abstract unix name comes back with every byte', (t) => {
  const fds = fdTracker(t);
  const fd = fds.add(socket(L.AF_UNIX, L.SOCK_DGRAM | L.SOCK_CLOEXEC, 0));
  const path = Buffer.from(`\0sockbroker-test-${process.pid}-\0-${Math.random()}`);
  bind(fd, encodeSockaddr({ family: 'unix', path }));
  const raw = getsockname(fd);
  t.is(raw.length, 2 + path.length);
  t.deepEqual(decodeSockaddr(raw), { family: 'unix', path });
});

test('kernel: autobind on an empty path yields an abstract name', (t) => {
  const fds = fdTracker(t);
  const fd = fds.add(socket(L.AF_UNIX, L.SOCK_DGRAM | L.SOCK_CLOEXEC, 0));
  bind(fd, encodeSockaddr({ family: 'unix', path: Buffer.alloc(0) }));
  const sa = decodeSockaddr(getsockname(fd));
  if (sa.family !== 'unix') return t.fail();
  t.is(sa.path[0], 0);
  t.is(sa.path.length, 6); // NUL + 5 hex digits
});

test('kernel: a filesystem unix path decodes without its NUL', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sockbroker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fds = fdTracker(t);
  const fd = fds.add(socket(L.AF_UNIX, L.SOCK_STREAM | L.SOCK_CLOEXEC, 0));
  const path = Buffer.from(join(dir, 's.sock'));
  bind(fd, encodeSockaddr({ family: 'unix', path }));
  listen(fd, 1);
  const raw = getsockname(fd);
  t.is(raw.length, 2 + path.length + 1);
  t.deepEqual(decodeSockaddr(raw), { family: 'unix', path });
});
