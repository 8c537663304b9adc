import test from 'ava';
import { ErrnoError, errnoException, errnoName, strerror } from '../../native/errno.js';

test('errnoException builds an ErrnoError with name, syscall and strerror', (t) => {
  const e = errnoException(111, 'connect');
  t.true(e instanceof ErrnoError);
  t.true(e instanceof Error);
  t.like(e, { errno: 111, code: 'ECONNREFUSED', syscall: 'connect', strerror: 'Connection refused', name: 'ErrnoError' });
  t.is(e.message, 'connect ECONNREFUSED: Connection refused');
});

test('canonical names for shared numbers', (t) => {
  t.is(errnoName(11), 'EAGAIN');
  t.is(errnoName(35), 'EDEADLK');
  t.is(errnoName(95), 'EOPNOTSUPP');
  t.is(strerror(11), 'Resource temporarily unavailable');
});

test('unknown numbers', (t) => {
  t.is(errnoName(4242), 'UNKNOWN');
  t.is(strerror(4242), 'Unknown error 4242');
  t.is(errnoException(4242, 'x').message, 'x UNKNOWN: Unknown error 4242');
});
