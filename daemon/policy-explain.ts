// `sockbroker policy explain`: what an identity may do under a compiled policy, each grant
// credited to the rule the broker would credit (the first matching rule that grants it, as
// decide() picks), and the quotas that apply with the rule that set each.
import { linux as C } from '../native/constants.js';
import { matches, type Grant, type Policy, type Quotas } from './policy.js';
import type { Identity } from './identity.js';

export interface Explanation {
  /** Rule names in file order, and whether each matches the identity. */
  rules: Array<{ name: string; matches: boolean }>;
  /** What the identity may do beyond the default, and the rule credited for it. */
  grants: Array<{ what: string; rule: string }>;
  /** Effective quotas and where each value comes from ('default' or a rule name). */
  quotas: Array<{ quota: keyof Quotas; value: number; from: string }>;
  /** Rules that keep every socket of this identity on the broker (no hand-off). */
  noHandoff: string[];
}

/** A constant's name by value, among names with one of the prefixes (first prefix wins). */
function nameOf(value: number, prefixes: string[], avoid: string[] = []): string {
  for (const p of prefixes) {
    const hit = Object.entries(C).find(([k, v]) => v === value && k.startsWith(p) && !avoid.includes(k));
    if (hit) return hit[0];
  }
  return String(value);
}

const family = (f: number | '*'): string => (f === '*' ? 'any family' : nameOf(f, ['AF_'], ['AF_LOCAL', 'AF_FILE', 'AF_ROUTE']));
const sockType = (t: number | '*'): string => (t === '*' ? 'any type' : nameOf(t, ['SOCK_'], ['SOCK_NONBLOCK', 'SOCK_CLOEXEC']));

function protocol(f: number | '*', p: number | '*'): string {
  if (p === '*') return 'any protocol';
  if (f === C.AF_NETLINK) return nameOf(p, ['NETLINK_']);
  if (f === C.AF_PACKET) return `ethertype 0x${p.toString(16).padStart(4, '0')}`;
  if (f === C.AF_CAN) return nameOf(p, ['CAN_']);
  return p === 0 ? '0' : nameOf(p, ['IPPROTO_']);
}

const LEVELS: Array<[string | undefined, string]> = [
  ['SOL_SOCKET', 'SO_'], ['IPPROTO_IP', 'IP_'], ['IPPROTO_IPV6', 'IPV6_'], ['IPPROTO_TCP', 'TCP_'], ['SOL_PACKET', 'PACKET_'], ['SOL_CAN_RAW', 'CAN_RAW_'],
];

function option(key: string): string {
  const [level, name] = key.split(':').map(Number) as [number, number];
  const prefix = LEVELS.find(([l]) => l !== undefined && C[l] === level)?.[1];
  return prefix ? nameOf(name, [prefix]) : `level ${level} option ${name}`;
}

const range = ([lo, hi]: [number, number], hex = false): string => {
  const f = (n: number): string => (hex ? `0x${n.toString(16)}` : String(n));
  return lo === hi ? f(lo) : `${f(lo)}-${f(hi)}`;
};

/** Each thing a grant allows, as one line of text. */
function grantItems(g: Grant): string[] {
  const out: string[] = [];
  for (const s of g.sockets) out.push(`socket ${family(s.family)} ${sockType(s.type)} ${protocol(s.family, s.protocol)}`);
  for (const p of g.ports) out.push(`bind port ${range(p)}`);
  for (const o of g.options) out.push(`setsockopt ${option(o)}`);
  if (g.interfaces.length) out.push(`interfaces ${g.interfaces.join(', ')} (for the families granted)`);
  if (g.promiscuous) out.push(`promiscuous mode${g.interfaces.length ? '' : ' on any interface'}`);
  if (g.sethostname) out.push('sethostname');
  for (const p of g.unixPaths) out.push(`AF_UNIX path ${p}`);
  for (const p of g.unixAbstract) out.push(`AF_UNIX abstract name @${p}`);
  for (const n of g.netlink) out.push(`socket AF_NETLINK ${nameOf(n, ['NETLINK_'])}`);
  if (g.hostNetwork) out.push("the host's network namespace");
  if (g.share) out.push('share sockets with processes of other uids');
  for (const c of g.canIds) out.push(`send CAN ids ${range(c, true)}`);
  for (const f of g.handoff ?? []) out.push(`hand-off of ${family(f)} sockets (unconfined)`);
  return out;
}

/** What `identity` may do under `policy`. Host root needs no rule: callers say so themselves. */
export function explain(policy: Policy, identity: Identity): Explanation {
  const rules = policy.rules.map((r) => ({ name: r.name, matches: matches(r.match, identity) }));
  const grants: Explanation['grants'] = [];
  const seen = new Set<string>();
  const quotas = (Object.keys(policy.quotas) as Array<keyof Quotas>).map((quota) => ({ quota, value: policy.quotas[quota], from: 'default' }));
  const noHandoff: string[] = [];
  policy.rules.forEach((r, i) => {
    if (!rules[i]!.matches) return;
    for (const what of grantItems(r.grant)) {
      if (seen.has(what)) continue;
      seen.add(what);
      grants.push({ what, rule: r.name });
    }
    // Later rules override earlier ones field by field (quotasFor).
    for (const q of quotas) {
      const v = r.quotas[q.quota];
      if (v !== undefined) Object.assign(q, { value: v, from: r.name });
    }
    if ((r as { noHandoff?: boolean }).noHandoff) noHandoff.push(r.name);
  });
  return { rules, grants, quotas, noHandoff };
}

const QUOTA_NAMES: Record<keyof Quotas, string> = {
  socketsPerSession: 'sockets_per_session',
  sessionsPerIdentity: 'sessions_per_identity',
  bytesPerCall: 'bytes_per_call',
  bufferedBytes: 'buffered_bytes',
  capturesPerIdentity: 'captures_per_identity',
  captureRingBytes: 'capture_ring_bytes',
  capturePacketsPerSecond: 'capture_packets_per_second',
  captureBytesPerSecond: 'capture_bytes_per_second',
};

export const DEFAULT_ALLOWANCE =
  'TCP and UDP over AF_INET/AF_INET6 in its own network namespace, binding ports >= 1024, the unprivileged socket options, AF_UNIX through socketpair()';

/** The text `policy explain` prints. */
export function explanationText(e: Explanation, who: string, hostRoot: boolean): string {
  const lines = [`identity: ${who}`];
  if (hostRoot) {
    lines.push('host root: may do everything, no rule needed (the quotas below still apply)');
  }
  lines.push('rules:');
  if (e.rules.length === 0) lines.push('  (none)');
  for (const r of e.rules) lines.push(`  ${r.matches ? 'matches ' : 'no match'}  ${r.name}`);
  lines.push(`default (every identity): ${DEFAULT_ALLOWANCE}`);
  lines.push('granted:');
  if (e.grants.length === 0) lines.push('  nothing beyond the default');
  const width = Math.max(0, ...e.grants.map((g) => g.what.length));
  for (const g of e.grants) lines.push(`  ${g.what.padEnd(width)}  <- ${g.rule}`);
  for (const r of e.noHandoff) lines.push(`  no hand-off: every socket stays on the broker  <- ${r}`);
  lines.push('quotas:');
  for (const q of e.quotas) lines.push(`  ${QUOTA_NAMES[q.quota]} = ${q.value}  (${q.from})`);
  return lines.join('\n') + '\n';
}
