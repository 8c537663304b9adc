// The sysctls of a caller's network namespace that widen what an unprivileged process may do.
// /proc/sys/net answers for the network namespace of the thread that opens the file, so the
// files are opened and read synchronously with this thread switched into the caller's namespace
// (NetnsRegistry.run, which holds the namespace by fd): no pid to race with.
import { readFileSync } from 'node:fs';
import type { NetnsRegistry } from './netns.js';
import type { NetSysctls } from './policy.js';

function read(name: string): string {
  return readFileSync(`/proc/sys/net/ipv4/${name}`, 'latin1').trim();
}

/** The namespace's ip_unprivileged_port_start and ping_group_range (`id` null: the daemon's own). */
export function netSysctls(netns: NetnsRegistry, id: string | null): NetSysctls {
  return netns.run(id, () => {
    const [lo, hi] = read('ping_group_range').split(/\s+/).map(Number);
    return { unprivilegedPortStart: Number(read('ip_unprivileged_port_start')), pingGroupRange: [lo ?? 1, hi ?? 0] };
  });
}
