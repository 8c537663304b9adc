// A caller's cgroup v2 path, as the initial cgroup namespace sees it, and the identities derived
// from it: the systemd unit, the Kubernetes pod UID and container ID. /proc/PID/cgroup is
// relative to the reader's cgroup namespace, so a broker in its own (a DaemonSet pod's) joins
// the host init's at start. Derived identities come only from anchored, well-known layouts that
// only root can create; anything below a subtree delegated to a user (user@UID.service) can be
// made by that user, so policy globs that reach into one are warned about.
import { readFileSync, readlinkSync } from 'node:fs';
import { os } from '../native/constants.js';
import { openReadOnly, setns } from '../native/creds.js';
import { close } from '../native/libc.js';

/** What a cgroup path says about a caller; fields absent when the path does not say. */
export interface CgroupFacts {
  /** The systemd unit, from /system.slice/[…/]NAME.service. */
  unit?: string;
  /** Kubernetes pod UID (dashed), from /kubepods.slice/… or /kubepods/…. */
  pod?: string;
  /** Container ID (64 hex digits) inside that pod. */
  container?: string;
}

/** The cgroup v2 path in /proc/PID/cgroup text (the `0::` line); undefined when absent or ambiguous. */
export function parseProcCgroup(text: string): string | undefined {
  const v2 = text.split('\n').filter((l) => l.startsWith('0::'));
  if (v2.length !== 1) return undefined;
  const path = v2[0]!.slice(3);
  // Outside the reader's cgroup namespace the kernel prints '/..' paths: not an absolute path.
  return path.startsWith('/') && !/(^|\/)\.\.(\/|$)/.test(path) ? path : undefined;
}

const UNIT = /^\/system\.slice\/(?:[^/]+\.slice\/)*([^/]+\.service)(?:\/|$)/;
// kubelet's systemd cgroup driver: QoS slice, pod slice (UID with '_' for '-'), CRI scope.
const K8S_SYSTEMD = /^\/kubepods\.slice\/(?:kubepods-(besteffort|burstable)\.slice\/)?kubepods(?:-(besteffort|burstable))?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice(?:\/(?:cri-containerd|crio|docker)-([0-9a-f]{64})\.scope)?(?:\/|$)/;
// kubelet's cgroupfs driver.
const K8S_CGROUPFS = /^\/kubepods\/(?:(besteffort|burstable)\/)?pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\/([0-9a-f]{64}))?(?:\/|$)/;

/** The unit, pod and container a cgroup path names, from anchored layouts only. */
export function cgroupFacts(path: string): CgroupFacts {
  const unit = UNIT.exec(path);
  if (unit) return { unit: unit[1]! };
  const sd = K8S_SYSTEMD.exec(path);
  // The QoS class must agree between the slice and the pod slice names.
  if (sd && sd[1] === sd[2]) return { pod: sd[3]!.replaceAll('_', '-'), ...(sd[4] ? { container: sd[4] } : {}) };
  const fs = K8S_CGROUPFS.exec(path);
  if (fs) return { pod: fs[2]!, ...(fs[3] ? { container: fs[3] } : {}) };
  return {};
}

/** The cgroup v2 path of a process as this thread's cgroup namespace sees it, or undefined. */
export function readCgroup(pid: number): string | undefined {
  try {
    return parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'latin1'));
  } catch {
    return undefined;
  }
}

// The kernel's fixed inode number of the initial cgroup namespace (PROC_CGROUP_INIT_INO).
const INITIAL_CGROUP_NS = 'cgroup:[4026531835]';

/**
 * Moves the main thread into the cgroup namespace of (host) pid 1 when the daemon runs in
 * another (the initial one, with hostPID), so caller paths read as the initial namespace sees them. Returns false when it
 * cannot (then paths outside the daemon's namespace read as undefined: cgroup rules fail closed).
 */
export function joinInitialCgroupNamespace(): boolean {
  try {
    if (readlinkSync('/proc/self/ns/cgroup') === INITIAL_CGROUP_NS) return true;
  } catch {
    return false;
  }
  let fd = -1;
  try {
    fd = openReadOnly('/proc/1/ns/cgroup');
    setns(fd, os.CLONE_NEWCGROUP!);
    return readlinkSync('/proc/thread-self/ns/cgroup') === INITIAL_CGROUP_NS;
  } catch {
    return false;
  } finally {
    if (fd >= 0) close(fd);
  }
}

// The cgroup paths a user can create: anything below the user@UID.service systemd delegated to
// it, at /user.slice/…/user@UID.service/…. As an NFA over items: a character class, taken once
// or any number of times; a glob can reach such a path when its product with this has a path
// to acceptance.
interface Item {
  test: (c: string) => boolean;
  many: boolean;
}
const lit = (text: string): Item[] => [...text].map((ch) => ({ test: (c: string) => c === ch, many: false }));
const anyChar = (c: string): boolean => c.length === 1;
const digit = (c: string): boolean => c >= '0' && c <= '9';
const DELEGATED: Item[] = [
  ...lit('/user.slice'), { test: anyChar, many: true },
  ...lit('/user@'), { test: digit, many: false }, { test: digit, many: true },
  ...lit('.service/'), { test: anyChar, many: false }, { test: anyChar, many: true },
];
// One character of each class the NFA tells apart, standing for the glob's '?' and '*'.
const REPRESENTATIVES = [...new Set([...'/user.slice@service', '0', 'x'])];

/** NFA states reachable from `s` without reading (skipping items taken any number of times). */
function closure(s: number): number[] {
  const out = [s];
  while (s < DELEGATED.length && DELEGATED[s]!.many) out.push(++s);
  return out;
}

function step(s: number, c: string): number[] {
  const item = DELEGATED[s];
  if (!item || !item.test(c)) return [];
  return closure(item.many ? s : s + 1);
}

/**
 * Whether a cgroup glob (`*` any run of characters, `/` included; `?` one character) can match
 * a cgroup inside a subtree delegated to a user (`/user.slice/…/user@UID.service/…`), which that
 * user can create: a breadth-first search of the glob × NFA product for an accepting pair.
 */
export function reachesDelegatedSubtree(glob: string): boolean {
  const seen = new Set<string>();
  const todo: Array<[number, number]> = closure(0).map((s) => [0, s]);
  while (todo.length > 0) {
    const [i, s] = todo.pop()!;
    const k = `${i}:${s}`;
    if (seen.has(k)) continue;
    seen.add(k);
    if (i === glob.length) {
      if (s === DELEGATED.length) return true;
      continue;
    }
    const g = glob[i]!;
    if (g === '*') {
      todo.push([i + 1, s]);
      for (const r of REPRESENTATIVES) for (const t of step(s, r)) todo.push([i, t]);
    } else {
      for (const r of g === '?' ? REPRESENTATIVES : [g]) for (const t of step(s, r)) todo.push([i + 1, t]);
    }
  }
  return false;
}
