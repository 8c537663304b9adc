// `sockbroker policy check FILE` and `sockbroker policy explain FILE --uid N`: the policy loader
// run offline. check: exit 1 with the loader's error (it names the place), else the warnings it
// gives and exit 0. explain: what one identity may do and which rule grants it.
import { readFileSync } from 'node:fs';
import { DEFAULT_LIMITS, defaultQuotas } from './limits.js';
import { loadPolicyFile, type PolicyConfig } from './policy-file.js';
import { explain, explanationText } from './policy-explain.js';
import { ownNamespaces, type Identity } from './identity.js';
import { cgroupFacts } from './cgroup.js';

const load = (file: string): PolicyConfig => loadPolicyFile(file, defaultQuotas(DEFAULT_LIMITS));

/** Warnings the loader gives for a policy that loads (globs over delegated cgroups, ...). */
const warningsOf = (config: PolicyConfig): string[] => config.warnings;

export function check(file: string): number {
  let config: PolicyConfig;
  try {
    config = load(file);
  } catch (err) {
    process.stderr.write(`sockbroker: ${(err as Error).message}\n`);
    return 1;
  }
  for (const w of warningsOf(config)) process.stderr.write(`warning: ${w}\n`);
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
  let config: PolicyConfig;
  try {
    config = load(file);
  } catch (err) {
    process.stderr.write(`sockbroker: ${(err as Error).message}\n`);
    return 1;
  }
  for (const w of warningsOf(config)) process.stderr.write(`warning: ${w}\n`);
  const id = hypotheticalIdentity(o);
  const facts = [id.cgroup !== undefined ? `cgroup=${id.cgroup}` : '', id.unit ? `unit=${id.unit}` : '', id.pod ? `pod=${id.pod}` : '', id.container ? `container=${id.container}` : ''].filter(Boolean);
  const who = `uid=${id.uid} gid=${id.gid}${id.groups.length ? ` groups=${id.groups.join(',')}` : ''}${facts.length ? ` ${facts.join(' ')}` : ''}, local, in the broker's namespaces`;
  process.stdout.write(explanationText(explain(config.policy, id), who, id.hostRoot));
  return 0;
}
