// Filter expressions compiled by libpcap itself (Debian's libpcap0.8, loaded by soname), so the
// broker's filters mean exactly what tcpdump's do. pcap_compile parses untrusted text: the input
// is capped, the call runs on the libuv threadpool (a pathological expression cannot stall the
// event loop), and calls are serialized (pcap_compile is not thread-safe in older libpcaps).
import { DataType, load, open } from 'ffi-rs';
import { decodeProgram, BPF_MAXINSNS, type Insn } from './bpf.js';

const { I32, I64, U32, U8Array, String: Str, Void } = DataType;
const LIB = 'libpcap';
const SONAME = 'libpcap.so.0.8';

/** Longest filter text accepted, in bytes. */
export const MAX_FILTER_BYTES = 4096;

/** LINKTYPE_* numbers (pcap and pcapng share them; on Linux the DLT_ values are the same). */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_LINUX_SLL2 = 276;

/** A filter libpcap refused: its message, as tcpdump prints it. */
export class FilterError extends Error {}

let opened: boolean | Error | undefined;

function ensureOpen(): void {
  if (opened === undefined) {
    try {
      open({ library: 'libc', path: '' });
      open({ library: LIB, path: SONAME });
      opened = true;
    } catch (err) {
      opened = new Error(`libpcap (${SONAME}) cannot be loaded: ${(err as Error).message}; install Debian's libpcap0.8 (scripts/setup.sh)`);
    }
  }
  if (opened !== true) throw opened;
}

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): unknown {
  return load({ library: LIB, funcName, retType, paramsType, paramsValue });
}

function readMemory(ptr: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  if (n > 0) load({ library: 'libc', funcName: 'memcpy', retType: I64, paramsType: [U8Array, I64, I64], paramsValue: [out, ptr, n] });
  return out;
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Compiles `expression` for packets of `linkType` cut at `snaplen` (optimized, netmask unknown),
 * as tcpdump would. Throws FilterError with libpcap's message for a bad expression or one too
 * long, and RangeError for a program over BPF_MAXINSNS instructions.
 */
export function compileFilter(expression: string, linkType: number, snaplen: number): Promise<Insn[]> {
  const text = Buffer.from(expression, 'utf8');
  if (text.length > MAX_FILTER_BYTES) return Promise.reject(new FilterError(`filter expression is ${text.length} bytes (at most ${MAX_FILTER_BYTES})`));
  if (text.includes(0)) return Promise.reject(new FilterError('filter expression contains a NUL byte'));
  const run = async (): Promise<Insn[]> => {
    ensureOpen();
    const p = Number(call('pcap_open_dead', I64, [I32, I32], [linkType, snaplen]));
    if (!p) throw new Error('pcap_open_dead failed');
    // struct bpf_program { u_int bf_len; struct bpf_insn *bf_insns; } on LP64.
    const prog = Buffer.alloc(16);
    try {
      const rc = (await load({
        library: LIB, funcName: 'pcap_compile', retType: I32, paramsType: [I64, U8Array, Str, I32, U32],
        paramsValue: [p, prog, expression, 1, 0xffffffff], runInNewThread: true,
      })) as unknown as number;
      if (rc !== 0) throw new FilterError(String(call('pcap_geterr', Str, [I64], [p])));
      try {
        const len = prog.readUInt32LE(0);
        if (len > BPF_MAXINSNS) throw new RangeError(`filter compiles to ${len} instructions (at most ${BPF_MAXINSNS})`);
        return decodeProgram(readMemory(Number(prog.readBigUInt64LE(8)), len * 8));
      } finally {
        call('pcap_freecode', Void, [U8Array], [prog]);
      }
    } finally {
      call('pcap_close', Void, [I64], [p]);
    }
  };
  const result = queue.then(run, run);
  queue = result.catch(() => undefined);
  return result;
}
