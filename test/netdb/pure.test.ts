// The SDK's pure functions (client/pure.ts) against python3, exhaustively: thousands of generated
// inputs (glibc's inet_aton forms, inet_pton/inet_ntop text and bytes, integer boundaries of the
// byte-order and CMSG functions, wrong types) run through one python3 process and compared one by
// one, for the named exports and for the module object bound to the broker host's ABI.
import test from 'ava';
import * as sdk from '../../client/index.js';
import { connect } from '../../client/index.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { B, F, I, N, S, T, TUP, pythonOutcomes, sdkName, sdkOutcome, type Arg, type Case } from './helpers/cases.js';

// A deterministic generator (xorshift32), so a failure reproduces.
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function randomText(r: (n: number) => number, alphabet: string, maxLen: number): string {
  let s = '';
  for (let k = r(maxLen + 1); k > 0; k--) s += alphabet[r(alphabet.length)];
  return s;
}

const AF_INET = 2;
const AF_INET6 = 10;

function atonCases(): Case[] {
  const fixed = [
    '127.0.0.1', '0x7f.1', '010.0.0.1', '4294967295', '4294967296', '1.2.3.4 junk', '1.2.3.4junk', '1.2.3.4\t', '1.2.3.4\n', '1.2.3.4\v', '1.2.3.4\r',
    ' 1.2.3.4', '', '.', '1.', '1..2', '0x', '0x.1', '0xg', '0X1F.0', '08', '09.1', '07.1', '0377.0377.0377.0377', '0400.0.0.0', '255.255.255.255',
    '256.0.0.0', '1.16777215', '1.16777216', '1.2.65535', '1.2.65536', '1.2.3.255', '1.2.3.256', '1.2.3.4.5', '0xffffffff', '0x100000000',
    '037777777777', '040000000000', '99999999999999999999999', '0x0000000000000000001', '1.2.3.4\u00a0', 'é', '١.٢.٣.٤', '+1.2.3.4', '-1', '1 2', '1.2.3.04',
  ];
  const r = rng(1);
  const gen: string[] = [];
  for (let k = 0; k < 3000; k++) gen.push(randomText(r, '0123456789..xX0af \t', 14));
  for (let k = 0; k < 500; k++) gen.push([r(300), r(300), r(70000), r(2 ** 26)].slice(0, 1 + r(4)).map((v) => (r(3) === 0 ? `0x${v.toString(16)}` : r(3) === 0 ? `0${v.toString(8)}` : String(v))).join('.'));
  return [...fixed, ...gen].map((s) => ({ fn: 'inet_aton', args: [S(s)] }));
}

function ptonCases(): Case[] {
  const fixed6 = [
    '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1::8', '1:2:3:4:5:6:7:8:9', ':::', '1:::2', '1::2::3', ':1', '1:', '::ffff:1.2.3.4',
    '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::ffff:1.2.3', '::ffff:1.2.3.04', '::ffff:256.1.1.1', '12345::', 'fFfF::', 'g::', '::%lo', 'fe80::1%1',
    '', ' ::1', '::1 ', '0:0:0:0:0:0:0:0', '00000::', '::0.0.0.0', '1.2.3.4', '::1.2.3.4:5', 'a.2.3.4', '::a.2.3.4', '1:2:3:4:5:6:7:8.1.2.3',
  ];
  const fixed4 = ['1.2.3.4', '1.2.3', '01.2.3.4', '0.0.0.0', '255.255.255.255', '256.1.1.1', '1.2.3.4.', '1.2.3.4 ', '1..2.3', '0x1.2.3.4', '', '1.2.3.4.5', '00.1.1.1', '1.2.3.0'];
  const r = rng(2);
  const cases: Case[] = [];
  for (const s of fixed6) cases.push({ fn: 'inet_pton', args: [I(AF_INET6), S(s)] }, { fn: 'inet_pton', args: [I(AF_INET), S(s)] });
  for (const s of fixed4) cases.push({ fn: 'inet_pton', args: [I(AF_INET), S(s)] }, { fn: 'inet_pton', args: [I(AF_INET6), S(s)] });
  for (let k = 0; k < 3000; k++) cases.push({ fn: 'inet_pton', args: [I(AF_INET6), S(randomText(r, '0123456789abcdefABCDEF:::::..g', 24))] });
  for (let k = 0; k < 1000; k++) cases.push({ fn: 'inet_pton', args: [I(AF_INET), S(randomText(r, '0123456789....', 16))] });
  // Text glibc writes, read back (round trips through every compression shape).
  for (let k = 0; k < 300; k++) {
    const words = Array.from({ length: 8 }, () => (r(2) === 0 ? 0 : r(4) === 0 ? 0xffff : r(0x10000)));
    cases.push({ fn: 'inet_pton', args: [I(AF_INET6), S(words.map((w) => w.toString(16)).join(':'))] });
  }
  return cases;
}

function ntopCases(): Case[] {
  const r = rng(3);
  const cases: Case[] = [];
  // Every pattern of zero / non-zero groups, with a few values for the non-zero ones.
  for (let mask = 0; mask < 256; mask++) {
    for (const v of [1, 0xffff, 0xabc]) {
      const b = Buffer.alloc(16);
      for (let k = 0; k < 8; k++) if (mask & (1 << k)) b.writeUInt16BE(k === 5 && v === 0xabc ? 0xffff : v, 2 * k);
      cases.push({ fn: 'inet_ntop', args: [I(AF_INET6), B(b)] });
    }
  }
  for (let k = 0; k < 500; k++) {
    const b = Buffer.alloc(16);
    for (let j = 0; j < 16; j++) b[j] = r(3) === 0 ? r(256) : 0;
    cases.push({ fn: 'inet_ntop', args: [I(AF_INET6), B(b)] });
  }
  // IPv4-mapped and -compatible forms, and their near misses.
  for (const head of ['00000000000000000000ffff', '000000000000000000000000', '00000000000000000001ffff', '0000000000000000ffff0000', '00000000000000000000fffe']) {
    for (const tail of ['01020304', '00000000', '00000001', '7f000001', 'ffffffff', '00010000']) {
      cases.push({ fn: 'inet_ntop', args: [I(AF_INET6), B(Buffer.from(head + tail, 'hex'))] });
    }
  }
  for (let k = 0; k < 200; k++) cases.push({ fn: 'inet_ntop', args: [I(AF_INET), B(Buffer.from([r(256), r(256), r(256), r(256)]))] });
  for (let k = 0; k < 200; k++) cases.push({ fn: 'inet_ntoa', args: [B(Buffer.from([r(256), r(256), r(256), r(256)]))] });
  return cases;
}

const BOUNDS: Array<number | bigint> = [
  -(2n ** 64n) - 1n, -(2n ** 64n), -(2n ** 63n) - 1n, -(2n ** 63n), -(2n ** 31n) - 1n, -(2n ** 31n), -65536, -1, 0, 1, 2, 255, 256, 0x1234, 0xffff, 0x10000,
  0x12345678, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 70n,
];

function intCases(): Case[] {
  const r = rng(4);
  const cases: Case[] = [];
  const ints: Array<number | bigint> = [...BOUNDS];
  for (let k = 0; k < 200; k++) ints.push(r(0x10000), r(2 ** 31) * 2 + r(2));
  for (const fn of ['ntohs', 'htons', 'ntohl', 'htonl']) {
    for (const v of ints) cases.push({ fn, args: [I(v)] });
    for (const a of [S('1'), F(1.5), N, T(true), T(false), B(Buffer.from('x')), TUP(I(1))]) cases.push({ fn, args: [a] });
  }
  const cmsg: Array<number | bigint> = [...BOUNDS];
  for (let d = -40; d <= 40; d++) cmsg.push(2 ** 31 - 1 + d, 2 ** 31 - 17 + d);
  for (let k = 0; k < 100; k++) cmsg.push(k);
  for (const fn of ['CMSG_LEN', 'CMSG_SPACE']) {
    for (const v of cmsg) cases.push({ fn, args: [I(v)] });
    for (const a of [S('1'), F(1.5), N, T(true)]) cases.push({ fn, args: [a] });
  }
  return cases;
}

function badArgCases(): Case[] {
  const cases: Case[] = [];
  for (const a of [B(Buffer.from('1.2.3.4')), I(1), N, S('1.2.3.4\0'), S('\ud800'), S('1.2.3.4\udc80'), S('é1.2.3.4')]) cases.push({ fn: 'inet_aton', args: [a] });
  for (const a of [S('abcd'), I(1), N, B(Buffer.from('abc')), B(Buffer.from('abcde')), B(Buffer.alloc(0))]) cases.push({ fn: 'inet_ntoa', args: [a] });
  for (const [af, s] of [[I(AF_INET), B(Buffer.from('1.2.3.4'))], [I(AF_INET), N], [I(AF_INET), S('1.2.3.4\0')], [I(AF_INET6), S('\ud800')], [S('x'), S('1')], [I(2n ** 40n), S('1')], [I(3), S('1.2.3.4')], [I(-1), S('::')], [T(true), S('1.2.3.4')], [I(2n ** 64n), S('1.2.3.4')]] as Array<[Arg, Arg]>) {
    cases.push({ fn: 'inet_pton', args: [af, s] });
  }
  for (const [af, b] of [[I(AF_INET), B(Buffer.from('abc'))], [I(AF_INET6), B(Buffer.from('abc'))], [I(3), B(Buffer.from('abcd'))], [I(AF_INET), S('abcd')], [I(2n ** 40n), B(Buffer.alloc(0))], [I(AF_INET), N], [S('2'), B(Buffer.alloc(4))], [I(AF_INET6), B(Buffer.alloc(4))], [I(AF_INET), B(Buffer.alloc(16))]] as Array<[Arg, Arg]>) {
    cases.push({ fn: 'inet_ntop', args: [af, b] });
  }
  return cases;
}

const ALL: Case[] = [...atonCases(), ...ptonCases(), ...ntopCases(), ...intCases(), ...badArgCases()];
const PY = pythonOutcomes(ALL);

let daemon: Daemon | undefined;
test.after.always(async () => {
  await daemon?.stop();
});

async function compare(t: import('ava').ExecutionContext, lookup: (name: string) => (...a: unknown[]) => unknown, filter: (c: Case) => boolean) {
  let n = 0;
  const diffs: unknown[] = [];
  for (let k = 0; k < ALL.length; k++) {
    const c = ALL[k]!;
    if (!filter(c)) continue;
    n++;
    const got = await sdkOutcome(lookup(sdkName(c.fn)), c.args);
    if (JSON.stringify(got) !== JSON.stringify(PY[k])) diffs.push({ case: c, python: PY[k], sdk: got });
  }
  if (diffs.length) console.log(JSON.stringify(diffs.slice(0, 30).map((d: any) => [d.case.fn, d.case.args, d.python, d.sdk])));
  t.deepEqual(diffs.slice(0, 20), [], `${diffs.length} of ${n} cases differ from python3`);
  t.true(n > 0);
  return n;
}

const named = (name: string) => (sdk as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;

test('inet_aton: every glibc form (hex, octal, 1-4 parts, trailing space and junk) as python3', async (t) => {
  const n = await compare(t, named, (c) => c.fn === 'inet_aton');
  t.true(n > 3000);
});

test('inet_pton: IPv4 and IPv6 text as glibc parses it, as python3', async (t) => {
  const n = await compare(t, named, (c) => c.fn === 'inet_pton');
  t.true(n > 4000);
});

test('inet_ntop / inet_ntoa: glibc formatting of IPv6 (zero runs, mapped/compatible IPv4) as python3', async (t) => {
  const n = await compare(t, named, (c) => c.fn === 'inet_ntop' || c.fn === 'inet_ntoa');
  t.true(n > 1000);
});

test('ntohs/htons/ntohl/htonl: values and OverflowError/TypeError at every boundary as python3', async (t) => {
  await compare(t, named, (c) => /^(nt|ht)o[hnls]{2}$/.test(c.fn));
});

test('CMSG_LEN/CMSG_SPACE: values and OverflowError at the socklen_t and ssize_t limits as python3', async (t) => {
  await compare(t, named, (c) => c.fn.startsWith('CMSG_'));
});

test('the module object carries the same functions, bound to the broker host ABI (socket.abi)', async (t) => {
  daemon = await startDaemon();
  const socket = await connect(daemon.address);
  try {
    t.is(typeof socket.abi.sizeof_cmsghdr, 'number');
    t.is(typeof socket.abi.cmsg_align, 'number');
    const mod = socket as unknown as Record<string, (...a: unknown[]) => unknown>;
    await compare(t, (name) => mod[name]!.bind(socket), () => true);
    t.is(socket.CMSG_LEN(0), socket.abi.sizeof_cmsghdr);
    t.is(socket.CMSG_SPACE(1), socket.abi.sizeof_cmsghdr + socket.abi.cmsg_align);
  } finally {
    await socket.disconnect();
  }
});
