// Argument checks shared by the op modules beyond socket-ops.ts (msg, handle and ioctl ops):
// the wire is never trusted, and each fault is the Python-shaped error CPython raises.
import { argumentError } from './errors.js';
import type { Timeout } from '../native/io-driver.js';

const INT_MIN = -0x80000000;
const INT_MAX = 0x7fffffff;

/** A C int field: TypeError for a non-integer, OverflowError outside int32. */
export function validateInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw argumentError('type', `${name} must be an integer`, name);
  if (value < INT_MIN) throw argumentError('overflow', `${name}: signed integer is less than minimum`, name);
  if (value > INT_MAX) throw argumentError('overflow', `${name}: signed integer is greater than maximum`, name);
  return value;
}

/** An unsigned 32-bit field. */
export function validateUint(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw argumentError('type', `${name} must be an integer`, name);
  if (value < 0 || value > 0xffffffff) throw argumentError('overflow', `${name}: unsigned integer out of range`, name);
  return value;
}

/** Seconds: undefined = blocking, 0 = non-blocking, > 0 = timeout; negative or NaN is refused. */
export function validateTimeout(value: number | undefined): Timeout {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw argumentError('value', 'Timeout value out of range', 'timeout');
  return value;
}

/** A size bounded by a broker limit (`what` names it in the message). */
export function validateBounded(value: unknown, max: number, name: string, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw argumentError('value', `negative ${name}`, name);
  if (value > max) throw argumentError('value', `${what}: ${name} ${value} is above the broker's limit of ${max}`, name);
  return value;
}
