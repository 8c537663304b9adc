// Compiled filters combined as programs: a tiny cBPF interpreter runs them on packets, so the AND
// of two programs is checked to accept exactly what both accept (libpcap compiles the parts).
import test from 'ava';
import { andPrograms, checkProgram, directionProgram, fixCookedSll2, withSnap, type Insn } from '../../native/bpf.js';
import { compileFilter, FilterError } from '../../native/pcap.js';

/** Runs a classic BPF program on an Ethernet frame (ancillary loads from `meta`). */
function run(prog: Insn[], pkt: Buffer, meta: { pkttype?: number; ifindex?: number; protocol?: number } = {}): number {
  let A = 0, X = 0;
  const M = new Array<number>(16).fill(0);
  const load = (k: number, size: number): number | null => {
    if (k >= 0xfffff000) {
      const f = k - 0xfffff000;
      return f === 4 ? meta.pkttype ?? 0 : f === 8 ? meta.ifindex ?? 0 : f === 0 ? meta.protocol ?? 0 : null;
    }
    if (k + size > pkt.length) return null;
    return size === 4 ? pkt.readUInt32BE(k) : size === 2 ? pkt.readUInt16BE(k) : pkt[k]!;
  };
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc]!;
    const cls = code & 7, size = [4, 2, 1][(code >> 3) & 3]!, mode = code & 0xe0, src = code & 8 ? X : k;
    switch (cls) {
      case 0: { // LD
        const v = mode === 0 ? k : mode === 0x20 ? load(k, size) : mode === 0x40 ? load((X + k) >>> 0, size) : mode === 0x60 ? M[k]! : mode === 0x80 ? pkt.length : null;
        if (v === null) return 0;
        A = v >>> 0;
        break;
      }
      case 1: { // LDX
        const v = mode === 0 ? k : mode === 0x60 ? M[k]! : mode === 0x80 ? pkt.length : mode === 0xa0 ? ((load(k, 1) ?? -1) & 0xf) * 4 : null;
        if (v === null || v < 0) return 0;
        X = v >>> 0;
        break;
      }
      case 2: M[k] = A; break;
      case 3: M[k] = X; break;
      case 4: { // ALU
        const op = code & 0xf0;
        A = op === 0 ? A + src : op === 0x10 ? A - src : op === 0x20 ? Math.imul(A, src) : op === 0x30 ? (src ? Math.floor(A / src) : 0)
          : op === 0x40 ? A | src : op === 0x50 ? A & src : op === 0x60 ? A << src : op === 0x70 ? A >>> src : op === 0x80 ? -A : op === 0x90 ? A % src : A ^ src;
        A >>>= 0;
        break;
      }
      case 5: { // JMP
        const op = code & 0xf0;
        if (op === 0) { pc += k; break; }
        const c = op === 0x10 ? A === src >>> 0 : op === 0x20 ? A > src >>> 0 : op === 0x30 ? A >= src >>> 0 : (A & src) !== 0;
        pc += c ? jt : jf;
        break;
      }
      case 6: return code & 0x10 ? A : k;
      case 7: if (code & 0x80) A = X; else X = A; break;
    }
  }
  return 0;
}

function udp(src: string, dst: string, sport: number, dport: number, len = 8): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45; ip.writeUInt16BE(20 + 8 + len, 2); ip[8] = 64; ip[9] = 17;
  src.split('.').forEach((o, i) => (ip[12 + i] = Number(o)));
  dst.split('.').forEach((o, i) => (ip[16 + i] = Number(o)));
  const u = Buffer.alloc(8 + len);
  u.writeUInt16BE(sport, 0); u.writeUInt16BE(dport, 2); u.writeUInt16BE(8 + len, 4);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, u]);
}

const SNAP = 262144;
const pkts = [udp('10.0.0.1', '10.0.0.2', 1000, 10), udp('10.0.0.1', '10.0.0.2', 10, 53), udp('10.0.0.3', '10.0.0.2', 2000, 53), udp('10.0.0.3', '10.0.0.4', 3000, 4000, 500)];

test('AND of compiled programs accepts exactly what both accept', async (t) => {
  const exprs = ['udp port 10', 'host 10.0.0.1', 'not port 53', 'len > 100', 'udp[2:2] = 53', 'ip[9] = 17 and dst host 10.0.0.2', 'tcp'];
  const progs = new Map<string, Insn[]>();
  for (const e of exprs) progs.set(e, await compileFilter(e, 1, SNAP));
  for (const a of exprs) {
    for (const b of exprs) {
      const both = andPrograms(progs.get(a)!, progs.get(b)!);
      checkProgram(both);
      for (const p of pkts) t.is(run(both, p) !== 0, run(progs.get(a)!, p) !== 0 && run(progs.get(b)!, p) !== 0, `${a} AND ${b}`);
    }
  }
});

test('a parenthesis break-out does not compile, and an OR inside the user part stays inside', async (t) => {
  await t.throwsAsync(compileFilter('udp port 10) or (udp port 10', 1, SNAP), { instanceOf: FilterError });
  const guard = await compileFilter('host 10.0.0.1', 1, SNAP);
  const user = await compileFilter('udp port 53 or udp port 4000', 1, SNAP);
  const both = andPrograms(guard, user);
  t.deepEqual(pkts.map((p) => run(both, p) !== 0), [false, true, false, false]);
});

test('direction and lo duplicate programs', (t) => {
  const p = pkts[0]!;
  const both = directionProgram('both', 1, SNAP);
  t.is(run(both, p, { pkttype: 4, ifindex: 1 }), 0, 'outgoing copy on lo dropped');
  t.is(run(both, p, { pkttype: 0, ifindex: 1 }), SNAP);
  t.is(run(both, p, { pkttype: 4, ifindex: 2 }), SNAP);
  t.is(run(directionProgram('in', 1, SNAP), p, { pkttype: 4, ifindex: 2 }), 0);
  t.is(run(directionProgram('in', 1, SNAP), p, { pkttype: 0, ifindex: 2 }), SNAP);
  t.is(run(directionProgram('out', 1, SNAP), p, { pkttype: 0, ifindex: 2 }), 0);
  t.is(run(directionProgram('out', 1, SNAP), p, { pkttype: 4, ifindex: 2 }), SNAP);
  t.is(run(directionProgram('out', 1, SNAP), p, { pkttype: 4, ifindex: 1 }), 0);
});

test('cooked (LINUX_SLL2) programs are rewritten for a SOCK_DGRAM socket', async (t) => {
  const prog = fixCookedSll2(await compileFilter('udp port 53', 276, SNAP))!;
  t.truthy(prog);
  const cooked = (p: Buffer) => p.subarray(14);
  t.deepEqual(pkts.map((p) => run(prog, cooked(p), { protocol: 0x0800 }) !== 0), [false, true, true, false]);
  t.is(fixCookedSll2([{ code: 0x28, jt: 0, jf: 0, k: 12 }, { code: 6, jt: 0, jf: 0, k: 1 }]), null, 'the link-layer address is not in the kernel');
  t.is(withSnap([{ code: 6, jt: 0, jf: 0, k: 65535 }], 100)[0]!.k, 100);
});
