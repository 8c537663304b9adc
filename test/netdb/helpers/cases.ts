// Many calls compared with python3 in one python3 process: each case names a socket module
// function and its arguments in a tagged JSON form both sides decode the same way; results and
// exceptions come back in one shape (class name and str(e) for exceptions).
import { execFileSync } from 'node:child_process';

/** A Python value as JSON: str, int (decimal text, any size), bytes (hex), float, None, bool, tuple, list. */
export type Arg = { s: string } | { i: string } | { b: string } | { f: number } | { n: null } | { t: boolean } | { tup: Arg[] } | { l: Arg[] };

export interface Case {
  /** The Python function name in the socket module. */
  fn: string;
  args: Arg[];
}

/** What a call gave: a value (tagged like Arg) or an exception. */
export type Outcome = { value: unknown } | { raised: { cls: string; message: string } };

export const S = (s: string): Arg => ({ s });
export const I = (i: number | bigint): Arg => ({ i: String(i) });
export const B = (b: Uint8Array): Arg => ({ b: Buffer.from(b).toString('hex') });
export const F = (f: number): Arg => ({ f });
export const N: Arg = { n: null };
export const T = (t: boolean): Arg => ({ t });
export const TUP = (...a: Arg[]): Arg => ({ tup: a });

const RUNNER = `
import json, socket, sys
def dec(a):
    k, v = next(iter(a.items()))
    if k == 's': return v
    if k == 'i': return int(v)
    if k == 'b': return bytes.fromhex(v)
    if k == 'f': return float(v)
    if k == 'n': return None
    if k == 't': return bool(v)
    if k == 'tup': return tuple(dec(x) for x in v)
    if k == 'l': return [dec(x) for x in v]
def enc(v):
    if isinstance(v, (bytes, bytearray)): return {'b': bytes(v).hex()}
    if isinstance(v, str): return {'s': v}
    if isinstance(v, bool): return {'t': v}
    if isinstance(v, int): return {'i': str(int(v))}
    if isinstance(v, (list, tuple)): return {'l': [enc(x) for x in v]}
    if v is None: return {'n': None}
    return {'repr': repr(v)}
out = []
for c in json.loads(sys.stdin.read()):
    try:
        out.append({'value': enc(getattr(socket, c['fn'])(*[dec(a) for a in c['args']]))})
    except Exception as e:
        out.append({'raised': {'cls': type(e).__name__, 'message': str(e)}})
print(json.dumps(out))
`;

/** Runs every case in one python3 (optionally through `run`, e.g. in the daemon's namespaces). */
export function pythonOutcomes(cases: Case[], run?: (args: string[], input: string) => string): Outcome[] {
  const input = JSON.stringify(cases);
  const out = run ? run(['-c', RUNNER], input) : execFileSync('python3', ['-c', RUNNER], { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(out) as Outcome[]).map(as34);
}

/** python3's later wording of a bytes-like argument error, as 3.4 (the seed) raises it. */
function as34(o: Outcome): Outcome {
  if (!('raised' in o)) return o;
  const m = /^a bytes-like object is required, not '(\w+)'$/.exec(o.raised.message);
  return m ? { raised: { ...o.raised, message: `'${m[1]}' does not support the buffer interface` } } : o;
}

/** The JS value of a tagged argument (ints beyond 2**53 as bigint). */
export function decode(a: Arg): unknown {
  if ('s' in a) return a.s;
  if ('i' in a) {
    const n = BigInt(a.i);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if ('b' in a) return Buffer.from(a.b, 'hex');
  if ('f' in a) return a.f;
  if ('n' in a) return null;
  if ('t' in a) return a.t;
  if ('tup' in a) return a.tup.map(decode);
  return a.l.map(decode);
}

/** A JS result in the tagged form. */
export function encode(v: unknown): unknown {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { b: Buffer.from(v).toString('hex') };
  if (typeof v === 'string') return { s: v };
  if (typeof v === 'boolean') return { t: v };
  if (typeof v === 'number' || typeof v === 'bigint') return { i: String(v) };
  if (Array.isArray(v)) return { l: v.map(encode) };
  if (v === null || v === undefined) return { n: null };
  return { repr: String(v) };
}

/** Runs a case with the SDK function `f` (sync or async) and returns its outcome. */
export async function sdkOutcome(f: (...args: unknown[]) => unknown, args: Arg[]): Promise<Outcome> {
  try {
    return { value: encode(await f(...args.map(decode))) };
  } catch (err) {
    const e = err as Error;
    return { raised: { cls: e.name, message: e.message } };
  }
}

/** Python name → SDK name (DESIGN.md "Names in the SDK"). */
export function sdkName(fn: string): string {
  return fn.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
