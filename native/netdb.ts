// getaddrinfo(3) through ffi-rs. The resolver may block on the network, so it runs on the
// libuv threadpool; the result list is read back with memcpy on the returned pointers.
import { load, open, DataType } from 'ffi-rs';

open({ library: 'libc', path: '' });

/** One getaddrinfo result; `addr` is the raw sockaddr. */
export interface AddrInfoResult {
  family: number;
  type: number;
  protocol: number;
  canonname: string;
  addr: Buffer;
}

/** A getaddrinfo failure: `code` is the EAI_* value (negative on glibc), as Python's gaierror.errno. */
export class GaiError extends Error {
  constructor(readonly code: number, readonly errno: number) {
    super(gaiStrerror(code));
    this.name = 'GaiError';
  }
}

const ADDRINFO_SIZE = 48; // struct addrinfo on LP64 glibc
const EAI_SYSTEM = -11;

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): any {
  return load({ library: 'libc', funcName, retType, paramsType, paramsValue });
}

/** Copies `n` bytes from a C pointer into a new Buffer. */
function readMemory(ptr: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  if (n > 0) call('memcpy', DataType.I64, [DataType.U8Array, DataType.I64, DataType.I64], [out, ptr, n]);
  return out;
}

function readCString(ptr: number): string {
  if (!ptr) return '';
  const len = Number(call('strlen', DataType.I64, [DataType.I64], [ptr]));
  return readMemory(ptr, len).toString('utf8');
}

/** gai_strerror(code): glibc's text for an EAI_* code. */
export function gaiStrerror(code: number): string {
  return readCString(Number(call('gai_strerror', DataType.I64, [DataType.I32], [code])));
}

/**
 * getaddrinfo(host, service, hints) as glibc answers it; null host/service = NULL.
 * Rejects with GaiError (EAI_SYSTEM carries the errno).
 */
export async function getaddrinfo(
  host: string | null,
  service: string | null,
  hints: { family: number; type: number; protocol: number; flags: number },
): Promise<AddrInfoResult[]> {
  const h = Buffer.alloc(ADDRINFO_SIZE);
  h.writeInt32LE(hints.flags, 0);
  h.writeInt32LE(hints.family, 4);
  h.writeInt32LE(hints.type, 8);
  h.writeInt32LE(hints.protocol, 12);
  const res = Buffer.alloc(8);
  // A null char* is passed as a 0 pointer, so both string arguments go as I64 or String.
  const types: DataType[] = [];
  const values: unknown[] = [];
  for (const s of [host, service]) {
    if (s === null) {
      types.push(DataType.I64);
      values.push(0);
    } else {
      types.push(DataType.String);
      values.push(s);
    }
  }
  const r = (await load({
    library: 'libc',
    funcName: 'getaddrinfo',
    retType: DataType.I32,
    paramsType: [...types, DataType.U8Array, DataType.U8Array],
    paramsValue: [...values, h, res],
    errno: true,
    runInNewThread: true,
  })) as unknown as { value: number; errnoCode: number };
  if (r.value !== 0) throw new GaiError(r.value, r.value === EAI_SYSTEM ? r.errnoCode : 0);
  const first = Number(res.readBigUInt64LE(0));
  const out: AddrInfoResult[] = [];
  try {
    for (let p = first; p; ) {
      const ai = readMemory(p, ADDRINFO_SIZE);
      out.push({
        family: ai.readInt32LE(4),
        type: ai.readInt32LE(8),
        protocol: ai.readInt32LE(12),
        addr: readMemory(Number(ai.readBigUInt64LE(24)), ai.readUInt32LE(16)),
        canonname: readCString(Number(ai.readBigUInt64LE(32))),
      });
      p = Number(ai.readBigUInt64LE(40));
    }
  } finally {
    call('freeaddrinfo', DataType.Void, [DataType.I64], [first]);
  }
  return out;
}
