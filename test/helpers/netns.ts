// Private network namespaces with veth pairs for tests that touch interfaces, promiscuous mode
// or raw traffic: never the host's own. Two hosts: A (198.51.100.1 and 2001:db8::1 on a0) and B
// (198.51.100.2 and 2001:db8::2 on b0), plus a second pair p0 <-> p1 with both ends in A for link-level tests.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestFn } from 'ava';

export interface TestNet {
  a: string;
  b: string;
  /** MAC addresses by interface name. */
  mac: Record<string, string>;
  ip(...args: string[]): string;
  /** Runs a command in a namespace and returns its stdout. */
  exec(ns: string, cmd: string, ...args: string[]): string;
  /** The promiscuity count `ip -d link` shows for an interface of A. */
  promiscuity(ifname: string): number;
  destroy(): void;
}

/** A test file's TestNet: made before its tests, destroyed after them (usable from test.before on). */
export function useTestNet(test: TestFn): TestNet {
  const net = {} as TestNet;
  test.before(() => {
    Object.assign(net, createTestNet());
  });
  test.after.always(() => net.destroy?.());
  return net;
}

export function createTestNet(): TestNet {
  const tag = randomBytes(3).toString('hex');
  const a = `sb-a-${tag}`;
  const b = `sb-b-${tag}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  ip('netns', 'add', a);
  ip('netns', 'add', b);
  ip('-n', a, 'link', 'add', 'a0', 'type', 'veth', 'peer', 'name', 'b0', 'netns', b);
  ip('-n', a, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1');
  ip('-n', a, 'addr', 'add', '198.51.100.1/24', 'dev', 'a0');
  ip('-n', b, 'addr', 'add', '198.51.100.2/24', 'dev', 'b0');
  ip('-n', a, 'addr', 'add', '2001:db8::1/64', 'dev', 'a0', 'nodad');
  ip('-n', b, 'addr', 'add', '2001:db8::2/64', 'dev', 'b0', 'nodad');
  for (const [ns, dev] of [[a, 'lo'], [a, 'a0'], [a, 'p0'], [a, 'p1'], [b, 'lo'], [b, 'b0']] as const) ip('-n', ns, 'link', 'set', dev, 'up');
  const mac: Record<string, string> = {};
  for (const [ns, dev] of [[a, 'a0'], [a, 'p0'], [a, 'p1'], [b, 'b0']] as const) {
    mac[dev] = /link\/ether ([0-9a-f:]+)/.exec(ip('-n', ns, 'link', 'show', dev))![1]!;
  }
  return {
    a,
    b,
    mac,
    ip,
    exec: (ns, cmd, ...args) => execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' }),
    promiscuity: (ifname) => Number(/promiscuity (\d+)/.exec(ip('-n', a, '-d', 'link', 'show', ifname))![1]),
    destroy() {
      for (const ns of [a, b]) {
        try {
          ip('netns', 'del', ns);
        } catch {
          // already gone
        }
      }
    },
  };
}
