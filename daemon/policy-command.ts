// `sockbroker policy check FILE` and `sockbroker policy explain FILE --uid N`: the policy loader
// run offline. check: exit 1 with the loader's error (it names the place), else the warnings it
// gives and exit 0. explain: what one identity may do and which rule grants it.
import { readFileSync } from 'node:fs';
import { DEFAULT_LIMITS, defaultQuotas } from './limits.js';
import { loadPolicyFile, type PolicyConfig } from './policy-file.js';
import { explain, explanationText } from './policy-explain.js';
import { ownNamespaces, type Identity } from './identity.js';
import { cgroupFacts } from './cgroup.js';

/** The file loaded as the broker loads it, its warnings (globs over delegated cgroups, ...) on
 * stderr; null once its error (naming the place) is on stderr. */
function load(file: string): PolicyConfig | null {
  let config: PolicyConfig;
  try {
    config = loadPolicyFile(file, defaultQuotas(DEFAULT_LIMITS));
  } catch (err) {
    process.stderr.write(`sockbroker: ${(err as Error).message}\n`);
    return null;
  }
  for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`);
  return config;
}

export function check(file: string): number {
  const config = load(file);
  if (!config) return 1;
  const { rules } = config.policy;
  process.stdout.write(`${file}: OK (${rules.length} rule${rules.length === 1 ? '' : 's'}, ${config.tokens.size} token${config.tokens.size === 1 ? '' : 's'}${config.tls ? ', tls' : ''})\n`);
  return 0;
}

/** The primary gid of `uid` in /etc/passwd, else the uid itself. */
function primaryGid(uid: number): number {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[2] === String(uid) && /^\d+$/.test(f[3] ?? '')) return Number(f[3]);
    }
  } catch {
    // no passwd database
  }
  return uid;
}

export interface ExplainOptions {
  uid: number;
  gid?: number;
  groups?: number[];
  /** cgroup v2 path as the initial cgroup namespace sees it; the unit, pod and container follow from it. */
  cgroup?: string;
}

/** A local caller with these ids in the broker's own namespaces (what `explain` asks about). */
export function hypotheticalIdentity(o: ExplainOptions): Identity {
  const gid = o.gid ?? primaryGid(o.uid);
  const hostRoot = o.uid === 0;
  return {
    kind: 'local', uid: o.uid, gid, groups: o.groups ?? [], pid: 0,
    userNs: ownNamespaces.user, netNs: ownNamespaces.net, hostRoot,
    ...(o.cgroup !== undefined ? { cgroup: o.cgroup, ...cgroupFacts(o.cgroup) } : {}),
    key: `local/${o.uid}/${ownNamespaces.user}/${ownNamespaces.net}`,
  };
}

export function explainCommand(file: string, o: ExplainOptions): number {
  const config = load(file);
  if (!config) return 1;
  const id = hypotheticalIdentity(o);
  const facts = [id.cgroup !== undefined ? `cgroup=${id.cgroup}` : '', id.unit ? `unit=${id.unit}` : '', id.pod ? `pod=${id.pod}` : '', id.container ? `container=${id.container}` : ''].filter(Boolean);
  const who = `uid=${id.uid} gid=${id.gid}${id.groups.length ? ` groups=${id.groups.join(',')}` : ''}${facts.length ? ` ${facts.join(' ')}` : ''}, local, in the broker's namespaces`;
  process.stdout.write(explanationText(explain(config.policy, id), who, id.hostRoot));
  return 0;
}
