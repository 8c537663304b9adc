// Python-shaped argument checks for the SDK's API: the same exception classes and messages
// CPython's socket module raises for the same bad input.
import { OverflowError, ValueError } from './errors.js';

/** The Python type name of a JS value, as it appears in CPython's messages. */
export function pyType(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'tuple';
  return 'object';
}

/** An integer argument: TypeError for non-integers, exactly as PyNumber_Index words it. */
export function toInt(v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  throw new TypeError(`'${pyType(v)}' object cannot be interpreted as an integer`);
}

/**
 * A C int argument (PyArg "i": family, type, flags, level, optname, ...) with 3.4's messages
 * ("an integer is required (got type str)", "integer argument expected, got float"; later
 * versions say "'str' object cannot be interpreted as an integer"); OverflowError outside int32.
 */
export function toCInt(v: unknown): number {
  if (typeof v === 'number' && !Number.isInteger(v)) throw new TypeError('integer argument expected, got float');
  if (typeof v !== 'number' && typeof v !== 'boolean') throw new TypeError(`an integer is required (got type ${pyType(v)})`);
  const n = toInt(v);
  if (n > 0x7fffffff) throw new OverflowError('signed integer is greater than maximum');
  if (n < -0x80000000) throw new OverflowError('signed integer is less than minimum');
  return n;
}

/** 3.4's TypeError for a value that is not bytes-like (later: "a bytes-like object is required, not 'str'"). */
export function notBuffer(v: unknown): TypeError {
  return new TypeError(`'${pyType(v)}' does not support the buffer interface`);
}

/** A bytes-like argument (Buffer or any Uint8Array view), returned as a Buffer without copying. */
export function toBytes(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw notBuffer(v);
}

/** A writable buffer argument (argument 1 of recv_into / recvfrom_into, named by `fn`). */
export function toWritable(v: unknown, fn = 'recv_into'): Buffer {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError(`${fn}() argument 1 must be read-write bytes-like object, not ${pyType(v)}`);
}

/** Longest timeout CPython takes: its clock is int64 nanoseconds. */
const MAX_TIMEOUT_S = 9223372036.854775807;

/** A timeout: null = blocking, a number >= 0 in seconds (booleans count as 1/0, as in Python);
 * anything else is 3.4's TypeError "a float is required" (its PyFloat_AsDouble). */
export function toTimeout(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v !== 'number') throw new TypeError('a float is required');
  if (Number.isNaN(v)) throw new ValueError('Invalid value NaN (not a number)');
  if (!(Math.abs(v) <= MAX_TIMEOUT_S)) throw new OverflowError('timestamp out of range for platform time_t');
  if (v < 0) throw new ValueError('Timeout value out of range');
  return v === 0 ? 0 : v; // -0 is 0
}
