// Classic BPF programs as arrays of instructions: the struct sock_filter codec, the AND of two
// compiled programs (the first one's accept continues into the second; never text pasting),
// libpcap's rewrite of cooked (LINUX_SLL2) offsets for a SOCK_DGRAM packet socket, and the
// small hand-built programs the capture needs (direction, lo's duplicate copies).
import { linux, os } from './constants.js';

/** struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// Opcode fields (linux/bpf_common.h).
const LD = 0x00, LDX = 0x01, JMP = 0x05, RET = 0x06;
const W = 0x00, B = 0x10;
const ABS = 0x20, IND = 0x40, MSH = 0xa0;
const JA = 0x00, JEQ = 0x10, K = 0x00, RVAL_A = 0x10, RVAL_X = 0x08;
const cls = (code: number): number => code & 0x07;
const mode = (code: number): number => code & 0xe0;

export const BPF_MAXINSNS = os.BPF_MAXINSNS ?? 4096;
const SKF_AD_OFF = (os.SKF_AD_OFF ?? -0x1000) >>> 0;
const AD = (field: number): number => (SKF_AD_OFF + field) >>> 0;
const PKTTYPE = AD(os.SKF_AD_PKTTYPE ?? 4);
const IFINDEX = AD(os.SKF_AD_IFINDEX ?? 8);
const PROTOCOL = AD(os.SKF_AD_PROTOCOL ?? 0);
const PACKET_OUTGOING = linux.PACKET_OUTGOING ?? 4;

/** Length of the LINUX_SLL2 header the broker puts before cooked packets. */
export const SLL2_HDR_LEN = 20;

/** Encodes instructions as the sock_filter array a sock_fprog points to. */
export function encodeProgram(prog: readonly Insn[]): Buffer {
  const b = Buffer.alloc(prog.length * 8);
  prog.forEach((p, i) => {
    b.writeUInt16LE(p.code, i * 8);
    b.writeUInt8(p.jt, i * 8 + 2);
    b.writeUInt8(p.jf, i * 8 + 3);
    b.writeUInt32LE(p.k >>> 0, i * 8 + 4);
  });
  return b;
}

export function decodeProgram(b: Buffer): Insn[] {
  const out: Insn[] = [];
  for (let o = 0; o + 8 <= b.length; o += 8) out.push({ code: b.readUInt16LE(o), jt: b[o + 2]!, jf: b[o + 3]!, k: b.readUInt32LE(o + 4) });
  return out;
}

/** A program that accepts every packet, `snap` bytes of it. */
export const acceptAll = (snap: number): Insn[] => [{ code: RET | K, jt: 0, jf: 0, k: snap }];

/**
 * `a AND b`: a packet `a` accepts continues into `b`, which decides; one `a` rejects is rejected.
 * Every accepting `ret #k` of `a` becomes a jump to `b`'s first instruction (cBPF jumps only go
 * forward, so `b` cannot jump back into `a`, and `a`'s jumps keep their targets). Returning the
 * accumulator or X (never produced by libpcap) is refused: its value is unknown until run time.
 */
export function andPrograms(a: readonly Insn[], b: readonly Insn[]): Insn[] {
  const out = a.map((p, i): Insn => {
    if (cls(p.code) !== RET) return { ...p };
    if ((p.code & 0x18) === RVAL_A || (p.code & 0x18) === RVAL_X) throw new RangeError('filter returns a computed length');
    return p.k === 0 ? { ...p } : { code: JMP | JA, jt: 0, jf: 0, k: a.length - i - 1 };
  });
  return [...out, ...b.map((p) => ({ ...p }))];
}

/** Sets every accepting `ret #k` to `snap` (the kernel's snap length for the socket). */
export function withSnap(prog: readonly Insn[], snap: number): Insn[] {
  return prog.map((p) => (cls(p.code) === RET && (p.code & 0x18) === K && p.k !== 0 ? { ...p, k: snap } : { ...p }));
}

/**
 * libpcap's rewrite (pcap-linux.c fix_offset) of a program compiled for LINUX_SLL2 so it runs on
 * a SOCK_DGRAM packet socket, whose data starts at the network header: payload offsets lose the
 * header's 20 bytes, the protocol, ifindex and packet type fields become the kernel's ancillary
 * loads. Other header fields cannot be read in the kernel: null (the caller refuses the filter).
 */
export function fixCookedSll2(prog: readonly Insn[]): Insn[] | null {
  const out: Insn[] = [];
  for (const p of prog) {
    const c = cls(p.code);
    const m = mode(p.code);
    if ((c === LD || c === LDX) && (m === ABS || m === IND || m === MSH) && p.k < SKF_AD_OFF) {
      if (p.k >= SLL2_HDR_LEN) out.push({ ...p, k: p.k - SLL2_HDR_LEN });
      else if (m !== ABS) return null;
      else if (p.k === 0) out.push({ ...p, k: PROTOCOL });
      else if (p.k === 4) out.push({ ...p, k: IFINDEX });
      else if (p.k === 10) out.push({ ...p, k: PKTTYPE });
      else return null;
    } else {
      out.push({ ...p });
    }
  }
  return out;
}

/**
 * The broker's own first stage: direction selection and, as libpcap does in user space, dropping
 * the outgoing copy of each packet on the loopback device (`loIndex`; 0 = none), so both happen in
 * the kernel and never reach the counters. `direction`: 'both' | 'in' | 'out'.
 */
export function directionProgram(direction: 'both' | 'in' | 'out', loIndex: number, snap: number): Insn[] {
  const accept: Insn = { code: RET | K, jt: 0, jf: 0, k: snap };
  const reject: Insn = { code: RET | K, jt: 0, jf: 0, k: 0 };
  const ldType: Insn = { code: LD | B | ABS, jt: 0, jf: 0, k: PKTTYPE };
  if (direction === 'in') {
    // pkttype == OUTGOING → reject.
    return [ldType, { code: JMP | JEQ | K, jt: 0, jf: 1, k: PACKET_OUTGOING }, reject, accept];
  }
  // Outgoing on lo is the duplicate of an incoming copy: reject it (libpcap does the same, so
  // `-Q out` on lo sees nothing, as with tcpdump).
  const dropLoOut: Insn[] = loIndex > 0
    ? [{ code: LD | W | ABS, jt: 0, jf: 0, k: IFINDEX }, { code: JMP | JEQ | K, jt: 0, jf: 1, k: loIndex }, reject]
    : [];
  if (direction === 'out') {
    // pkttype != OUTGOING → reject; then lo's copies.
    return [ldType, { code: JMP | JEQ | K, jt: 1, jf: 0, k: PACKET_OUTGOING }, reject, ...dropLoOut, accept];
  }
  if (loIndex <= 0) return [accept];
  // pkttype == OUTGOING && ifindex == lo → reject.
  return [ldType, { code: JMP | JEQ | K, jt: 0, jf: 3, k: PACKET_OUTGOING }, ...dropLoOut, accept];
}

/** Checks what the kernel's checker would: size, jump targets in range, a return at the end. */
export function checkProgram(prog: readonly Insn[]): void {
  if (prog.length === 0 || prog.length > BPF_MAXINSNS) throw new RangeError(`filter program has ${prog.length} instructions (at most ${BPF_MAXINSNS})`);
  prog.forEach((p, i) => {
    if (cls(p.code) !== JMP) return;
    const far = (p.code & 0xf0) === JA ? p.k : Math.max(p.jt, p.jf);
    if (i + 1 + far >= prog.length) throw new RangeError(`filter jump at ${i} leaves the program`);
  });
  if (cls(prog[prog.length - 1]!.code) !== RET) throw new RangeError('filter program does not end in a return');
}

/**
 * The Windows sniffer socket's filter on a SOCK_DGRAM packet socket (data starts at the IP
 * header): IPv4 packets of at least 20 bytes whose version is 4; with `host` (an IPv4 address as
 * a u32, before SIO_RCVALL) only those received for that address (pkttype HOST, destination
 * `host`), as Windows delivers on a raw socket without RCVALL.
 */
export function snifferProgram(host: number | null, snap: number): Insn[] {
  const H = 0x08, LEN = 0x80, ALU = 0x04, AND = 0x50, JGE = 0x30;
  const ETH_P_IP = os.ETH_P_IP ?? 0x0800;
  const PACKET_HOST = linux.PACKET_HOST ?? 0;
  const REJECT = -1; // jf placeholder: the final `ret #0`
  const prog: Insn[] = [
    { code: LD | H | ABS, jt: 0, jf: 0, k: PROTOCOL },
    { code: JMP | JEQ | K, jt: 0, jf: REJECT, k: ETH_P_IP },
    { code: LD | W | LEN, jt: 0, jf: 0, k: 0 },
    { code: JMP | JGE | K, jt: 0, jf: REJECT, k: 20 },
    { code: LD | B | ABS, jt: 0, jf: 0, k: 0 },
    { code: ALU | AND | K, jt: 0, jf: 0, k: 0xf0 },
    { code: JMP | JEQ | K, jt: 0, jf: REJECT, k: 0x40 },
  ];
  if (host !== null) {
    prog.push(
      { code: LD | B | ABS, jt: 0, jf: 0, k: PKTTYPE },
      { code: JMP | JEQ | K, jt: 0, jf: REJECT, k: PACKET_HOST },
      { code: LD | W | ABS, jt: 0, jf: 0, k: 16 },
      { code: JMP | JEQ | K, jt: 0, jf: REJECT, k: host >>> 0 },
    );
  }
  prog.push({ code: RET | K, jt: 0, jf: 0, k: snap }, { code: RET | K, jt: 0, jf: 0, k: 0 });
  const last = prog.length - 1;
  return prog.map((p, i) => (p.jf === REJECT ? { ...p, jf: last - i - 1 } : p));
}
