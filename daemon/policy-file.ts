// The policy file (YAML or JSON): validated against a JSON Schema (ajv) at start and on reload,
// then compiled — constant names to numbers, user and group names to ids. A bad file is an
// error naming the place (`rules[0].grant.ports[1]: ...`); the caller keeps the old policy.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { linux as C } from '../native/constants.js';
import { reachesDelegatedSubtree } from './cgroup.js';
import { emptyGrant, type Grant, type Match, type Policy, type Quotas, type Rule } from './policy.js';

const nameOrInt = { oneOf: [{ type: 'string', minLength: 1, maxLength: 64 }, { type: 'integer' }] };
const strings = { type: 'array', items: { type: 'string', minLength: 1, maxLength: 4096 }, maxItems: 1024 };
const ids = { oneOf: [nameOrInt, { type: 'array', items: nameOrInt, maxItems: 1024 }] };
const quota = { type: 'integer', minimum: 0, maximum: 1 << 30 };
// A path from the root, or a glob that may match one.
const cgroupGlob = { type: 'string', pattern: '^[/*?]', maxLength: 4096 };
const unitGlob = { type: 'string', pattern: '^[^/]+$', maxLength: 256 };
const podUid = { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' };
const containerId = { type: 'string', pattern: '^[0-9a-f]{64}$' };

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rules: {
      type: 'array',
      maxItems: 4096,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['match'],
        properties: {
          name: { type: 'string', maxLength: 128 },
          match: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              uid: ids, user: ids, gid: ids, group: ids,
              netns: { oneOf: [{ type: 'string' }, strings] },
              local: { type: 'boolean' },
              cert_subject: { oneOf: [{ type: 'string' }, strings] },
              token: { oneOf: [{ type: 'string' }, strings] },
              cgroup: { oneOf: [cgroupGlob, { type: 'array', items: cgroupGlob, minItems: 1, maxItems: 1024 }] },
              unit: { oneOf: [unitGlob, { type: 'array', items: unitGlob, minItems: 1, maxItems: 1024 }] },
              pod: { oneOf: [podUid, { type: 'array', items: podUid, minItems: 1, maxItems: 1024 }] },
              container: { oneOf: [containerId, { type: 'array', items: containerId, minItems: 1, maxItems: 1024 }] },
            },
          },
          grant: {
            type: 'object',
            additionalProperties: false,
            properties: {
              sockets: {
                type: 'array',
                maxItems: 1024,
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['family'],
                  properties: { family: nameOrInt, type: nameOrInt, protocol: nameOrInt },
                },
              },
              ports: { type: 'array', maxItems: 1024, items: { oneOf: [{ type: 'integer', minimum: 1, maximum: 65535 }, { type: 'string', pattern: '^[0-9]{1,5}-[0-9]{1,5}$' }] } },
              options: { type: 'array', maxItems: 1024, items: nameOrInt },
              interfaces: strings,
              promiscuous: { type: 'boolean' },
              sethostname: { type: 'boolean' },
              unix_paths: strings,
              unix_abstract: strings,
              netlink: { type: 'array', maxItems: 64, items: nameOrInt },
              host_network: { type: 'boolean' },
              share: { type: 'boolean' },
              capture: {
                type: 'object',
                additionalProperties: false,
                required: ['interfaces'],
                properties: {
                  interfaces: { ...strings, minItems: 1 },
                  filter: { type: 'string', maxLength: 4096 },
                  promiscuous: { type: 'boolean' },
                },
              },
              can_ids: { type: 'array', maxItems: 1024, items: { oneOf: [{ type: 'integer', minimum: 0 }, { type: 'string', pattern: '^(0x[0-9a-fA-F]+|[0-9]+)(-(0x[0-9a-fA-F]+|[0-9]+))?$' }] } },
              handoff: { type: 'array', maxItems: 64, items: nameOrInt },
            },
          },
          no_handoff: { type: 'boolean' },
          quotas: {
            type: 'object',
            additionalProperties: false,
            properties: {
              sockets_per_session: quota, sessions_per_identity: quota, bytes_per_call: quota, buffered_bytes: quota,
              captures_per_identity: quota, capture_ring_bytes: quota, capture_packets_per_second: quota, capture_bytes_per_second: quota,
            },
          },
        },
      },
    },
    tokens: {
      type: 'array',
      maxItems: 1024,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'sha256'],
        properties: { name: { type: 'string', minLength: 1, maxLength: 128 }, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
      },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['cert', 'key'],
      properties: { cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' } },
    },
  },
} as const;

const validate = new Ajv({ allErrors: false }).compile(SCHEMA);

/** A policy file, compiled. */
export interface PolicyConfig {
  policy: Policy;
  /** sha256(token) hex → token name. */
  tokens: Map<string, string>;
  tls?: { cert: string; key: string; ca?: string };
  /** Legal but risky choices, each naming its place (logged at load; `policy check` prints them). */
  warnings: string[];
}

export class PolicyError extends Error {}

/** 'rules/0/grant/ports/1' → 'rules[0].grant.ports[1]' */
function place(pointer: string): string {
  return pointer.replace(/^\//, '').split('/').map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i ? `.${p}` : p)).join('') || '(top level)';
}

function readIds(file: string): Map<string, number> {
  const map = new Map<string, number>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id && /^\d+$/.test(id)) map.set(name, Number(id));
    }
  } catch {
    // No such database: names cannot be used, numbers still can.
  }
  return map;
}

function constant(v: string | number, where: string, prefix?: string): number {
  if (typeof v === 'number') return v;
  if (v === '*') return NaN;
  const value = C[v];
  if (value === undefined || (prefix && !v.startsWith(prefix))) throw new PolicyError(`${where}: unknown constant ${JSON.stringify(v)}`);
  return value;
}

const OPTION_LEVELS: Array<[string, string]> = [
  ['SO_', 'SOL_SOCKET'], ['IPV6_', 'IPPROTO_IPV6'], ['IP_', 'IPPROTO_IP'], ['TCP_', 'IPPROTO_TCP'],
  ['PACKET_', 'SOL_PACKET'], ['CAN_RAW_', 'SOL_CAN_RAW'],
];

function optionKey(v: string | number, where: string): string {
  if (typeof v === 'number') throw new PolicyError(`${where}: name options (SO_MARK, IP_TRANSPARENT, ...): the level is read from the prefix`);
  const level = OPTION_LEVELS.find(([p]) => v.startsWith(p));
  if (!level) throw new PolicyError(`${where}: unknown option ${JSON.stringify(v)}`);
  return `${constant(level[1], where)}:${constant(v, where)}`;
}

function range(v: string | number, where: string, max: number): [number, number] {
  const parse = (s: string): number => Number(s.startsWith('0x') ? parseInt(s, 16) : s);
  const [lo, hi] = typeof v === 'number' ? [v, v] : v.includes('-') ? v.split('-').map(parse) as [number, number] : [parse(v), parse(v)];
  if (!(lo <= hi) || hi > max) throw new PolicyError(`${where}: bad range ${JSON.stringify(v)}`);
  return [lo, hi];
}

const list = <T>(v: T | T[] | undefined): T[] | undefined => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

function compileMatch(m: any, where: string, users: Map<string, number>, groups: Map<string, number>): Match {
  const resolve = (names: Array<string | number> | undefined, db: Map<string, number>, what: string) =>
    names?.map((n, i) => {
      if (typeof n === 'number') return n;
      const id = db.get(n);
      if (id === undefined) throw new PolicyError(`${where}.${what}[${i}]: no such ${what} ${JSON.stringify(n)}`);
      return id;
    });
  const uids = [...(resolve(list(m.uid), new Map(), 'uid') ?? []), ...(resolve(list(m.user), users, 'user') ?? [])];
  const gids = [...(resolve(list(m.gid), new Map(), 'gid') ?? []), ...(resolve(list(m.group), groups, 'group') ?? [])];
  return {
    ...(uids.length ? { uids } : {}),
    ...(gids.length ? { gids } : {}),
    ...(m.netns !== undefined ? { netns: list(m.netns) } : {}),
    ...(m.local !== undefined ? { local: m.local } : {}),
    ...(m.cert_subject !== undefined ? { subjects: list(m.cert_subject) } : {}),
    ...(m.token !== undefined ? { tokens: list(m.token) } : {}),
    ...(m.cgroup !== undefined ? { cgroups: list(m.cgroup) } : {}),
    ...(m.unit !== undefined ? { units: list(m.unit) } : {}),
    ...(m.pod !== undefined ? { pods: list(m.pod) } : {}),
    ...(m.container !== undefined ? { containers: list(m.container) } : {}),
  };
}

/** Warnings for a compiled match: cgroup globs that reach into subtrees users can create cgroups in. */
function matchWarnings(m: Match, where: string): string[] {
  return (m.cgroups ?? []).flatMap((g, i) => reachesDelegatedSubtree(g)
    ? [`${where}.cgroup[${i}]: ${JSON.stringify(g)} can match cgroups inside a user@UID.service subtree, which that user can create (anchor it, e.g. /system.slice/NAME.service or /kubepods.slice/...)`]
    : []);
}

function compileGrant(g: any = {}, where: string): Grant {
  const out = emptyGrant();
  out.sockets = (g.sockets ?? []).map((s: any, i: number) => {
    const w = `${where}.sockets[${i}]`;
    const f = constant(s.family, `${w}.family`);
    const t = s.type === undefined ? NaN : constant(s.type, `${w}.type`);
    const p = s.protocol === undefined ? NaN : constant(s.protocol, `${w}.protocol`);
    return { family: Number.isNaN(f) ? '*' : f, type: Number.isNaN(t) ? '*' : t, protocol: Number.isNaN(p) ? '*' : p };
  });
  out.ports = (g.ports ?? []).map((p: any, i: number) => range(p, `${where}.ports[${i}]`, 65535));
  out.options = new Set((g.options ?? []).map((o: any, i: number) => optionKey(o, `${where}.options[${i}]`)));
  out.interfaces = g.interfaces ?? [];
  out.promiscuous = g.promiscuous ?? false;
  out.sethostname = g.sethostname ?? false;
  out.unixPaths = g.unix_paths ?? [];
  out.unixAbstract = g.unix_abstract ?? [];
  out.netlink = (g.netlink ?? []).map((n: any, i: number) => constant(n, `${where}.netlink[${i}]`));
  out.hostNetwork = g.host_network ?? false;
  out.share = g.share ?? false;
  out.canIds = (g.can_ids ?? []).map((c: any, i: number) => range(c, `${where}.can_ids[${i}]`, 0x1fffffff));
  out.handoff = (g.handoff ?? []).map((f: any, i: number) => {
    const family = constant(f, `${where}.handoff[${i}]`, typeof f === 'string' ? 'AF_' : undefined);
    checkHandoff(out, family, `${where}.handoff[${i}]`, typeof f === 'string' ? f : `family ${f}`);
    return family;
  });
  if (g.capture) out.capture = { interfaces: g.capture.interfaces, filter: g.capture.filter ?? '', promiscuous: g.capture.promiscuous ?? false };
  return out;
}

/**
 * A handed-off socket is unconfined (the kernel checks almost nothing on it after creation and
 * its holder may pass it on), so `handoff` contradicts a confinement of the same family.
 */
function checkHandoff(g: Grant, family: number, where: string, name: string): void {
  const granted = g.sockets.some((s) => s.family === '*' || s.family === family);
  const clash =
    g.interfaces.length > 0 && granted ? 'interfaces' :
      g.canIds.length > 0 && family === C.AF_CAN ? 'can_ids' :
        g.promiscuous && family === C.AF_PACKET ? 'promiscuous' : null;
  if (clash) {
    throw new PolicyError(`${where}: handoff of ${name} next to ${clash} for the same family: a handed-off socket is unconfined (its holder may use any ${clash === 'can_ids' ? 'CAN id' : 'interface'} and pass it on)`);
  }
}

function compileQuotas(q: any = {}): Partial<Quotas> {
  const out: Partial<Quotas> = {};
  if (q.sockets_per_session !== undefined) out.socketsPerSession = q.sockets_per_session;
  if (q.sessions_per_identity !== undefined) out.sessionsPerIdentity = q.sessions_per_identity;
  if (q.bytes_per_call !== undefined) out.bytesPerCall = q.bytes_per_call;
  if (q.buffered_bytes !== undefined) out.bufferedBytes = q.buffered_bytes;
  if (q.captures_per_identity !== undefined) out.capturesPerIdentity = q.captures_per_identity;
  if (q.capture_ring_bytes !== undefined) out.captureRingBytes = q.capture_ring_bytes;
  if (q.capture_packets_per_second !== undefined) out.capturePacketsPerSecond = q.capture_packets_per_second;
  if (q.capture_bytes_per_second !== undefined) out.captureBytesPerSecond = q.capture_bytes_per_second;
  return out;
}

/** Parses, validates and compiles policy text; `name` is used in error messages. */
export function compilePolicy(text: string, name: string, defaults: Quotas): PolicyConfig {
  let doc: any;
  try {
    doc = name.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new PolicyError(`${name}: ${(err as Error).message}`);
  }
  doc ??= {};
  if (!validate(doc)) {
    const e = validate.errors![0]!;
    const extra = e.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : '';
    throw new PolicyError(`${name}: ${place(e.instancePath)}: ${e.message}${extra}`);
  }
  const users = readIds('/etc/passwd');
  const groups = readIds('/etc/group');
  const d = doc as any;
  const warnings: string[] = [];
  const rules: Rule[] = (d.rules ?? []).map((r: any, i: number) => ({
    name: r.name ?? `rules[${i}]`,
    match: compileMatch(r.match, `${name}: rules[${i}].match`, users, groups),
    grant: compileGrant(r.grant, `${name}: rules[${i}].grant`),
    quotas: compileQuotas(r.quotas),
    ...(r.no_handoff ? { noHandoff: true } : {}),
  }));
  rules.forEach((r, i) => warnings.push(...matchWarnings(r.match, `${name}: rules[${i}].match`)));
  return {
    warnings,
    policy: { rules, quotas: defaults },
    tokens: new Map((d.tokens ?? []).map((t: any) => [t.sha256, t.name])),
    ...(d.tls ? { tls: d.tls } : {}),
  };
}

export function loadPolicyFile(path: string, defaults: Quotas): PolicyConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PolicyError(`${path}: ${(err as Error).message}`);
  }
  return compilePolicy(text, path, defaults);
}

/** The sha256 hex a config lists for a bearer token. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
