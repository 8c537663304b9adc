// python3 as the living reference: run snippets of Python socket code and get back the values
// they compute or the exception they raise, in a shape the SDK's results can be compared with.
import { spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';

/** An exception as both sides report it: class name, errno (null if none) and str(e). */
export interface Raised {
  cls: string;
  errno: number | null;
  message: string;
}

// Each case runs in a fresh namespace with `socket` imported. Python >= 3.10 made socket.timeout
// an alias of TimeoutError; the seed (3.4) names it socket.timeout, and so does the SDK (a
// subclass of OSError only, as in 3.4): reported here as 'timeout'.
const RUNNER = `
import json, socket, sys
def run(code):
    g = {'socket': socket}
    try:
        exec(code, g)
    except BaseException as e:
        cls = 'timeout' if isinstance(e, socket.timeout) else type(e).__name__
        return {'raised': {'cls': cls, 'errno': getattr(e, 'errno', None), 'message': str(e)}}
    return {'value': g.get('result')}
print(json.dumps({k: run(v) for k, v in json.loads(sys.stdin.read()).items()}))
`;

type Outcome = { raised?: Raised; value?: unknown };

// Asynchronous on purpose: a test worker must keep its event loop free (its broker sessions and
// gRPC streams live there), so python3 never runs through execFileSync.
function runPython(cases: Record<string, string>): Promise<Record<string, Outcome>> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', RUNNER], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`python3 exited with ${code}: ${err}`));
      else resolve(JSON.parse(out) as Record<string, Outcome>);
    });
    child.stdin.end(JSON.stringify(cases));
  });
}

/** Runs each snippet in python3 and returns the exception it raised (null if none), by key. */
export async function pyRaisesAll<K extends string>(cases: Record<K, string>): Promise<Record<K, Raised | null>> {
  const res = await runPython(cases);
  return Object.fromEntries(Object.keys(cases).map((k) => [k, res[k]!.raised ?? null])) as Record<K, Raised | null>;
}

/** The exception one python3 snippet raises (null if none). */
export async function pyRaises(code: string): Promise<Raised | null> {
  return (await pyRaisesAll({ x: code })).x;
}

/** Runs a python3 snippet that assigns `result` (JSON-serialisable) and returns it. */
export async function pyValue<T = unknown>(code: string): Promise<T> {
  const res = (await runPython({ x: code })).x!;
  if (res.raised) throw new Error(`python3 raised ${res.raised.cls}: ${res.raised.message}`);
  return res.value as T;
}

/** The exception an SDK call raises, in the same shape (null if it did not raise). */
export async function sdkRaises(fn: () => unknown): Promise<Raised | null> {
  try {
    await fn();
  } catch (err) {
    const e = err as Error & { errno?: number | null };
    return { cls: e.name, errno: e.errno ?? null, message: e.message };
  }
  return null;
}

/**
 * Asserts that `fn` raises an instance of `cls` and that it matches what python3 raised for the
 * same call (`expected`, from pyRaises), which must itself be an exception of `cls.name`.
 */
export async function raisesLikePython(
  t: ExecutionContext,
  fn: () => unknown,
  cls: abstract new (...args: never[]) => Error,
  expected: Raised | null,
): Promise<void> {
  t.truthy(expected, 'python3 raised nothing');
  t.is(expected?.cls, cls.name, 'python3 raised another class');
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  t.true(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  const e = caught as Error & { errno?: number | null };
  t.deepEqual({ cls: e?.name, errno: e?.errno ?? null, message: e?.message }, expected!);
}

/**
 * Where Python 3.4's message differs from python3's (the seed wins): checks that python3 said
 * `later` and returns its exception with 3.4's `message`, for raisesLikePython.
 */
export function as34(t: ExecutionContext, expected: Raised | null, later: string, message: string): Raised | null {
  t.is(expected?.message, later, "python3's own (post-3.4) message");
  return expected && { ...expected, message };
}

/** python3's "a bytes-like object is required, not 'T'" as 3.4 words it: "'T' does not support the buffer interface". */
export function buffer34(t: ExecutionContext, expected: Raised | null): Raised | null {
  const type = /^a bytes-like object is required, not '(\w+)'$/.exec(expected?.message ?? '')?.[1];
  return as34(t, expected, `a bytes-like object is required, not '${type}'`, `'${type}' does not support the buffer interface`);
}

/** python3's "'T' object cannot be interpreted as an integer" for a C int ("i") argument, as 3.4 words it. */
export function int34(t: ExecutionContext, expected: Raised | null): Raised | null {
  const type = /^'(\w+)' object cannot be interpreted as an integer$/.exec(expected?.message ?? '')?.[1];
  const message = type === 'float' ? 'integer argument expected, got float' : `an integer is required (got type ${type})`;
  return as34(t, expected, `'${type}' object cannot be interpreted as an integer`, message);
}
