// The errno a refused or impossible request raises is the one an unprivileged process with the
// caller's uid gets from the kernel in the caller's network namespace: python3 run as nobody is
// the reference, side by side with the SDK run as nobody. Where that process would succeed but
// the policy refuses, the SDK raises PermissionError naming the grant. In a private namespace
// whose sysctls widen what an unprivileged process may do (ip_unprivileged_port_start,
// ping_group_range), the default policy widens with them.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { withDaemon, runAsNobody } from '../helpers/daemon.js';

// Each case: python3 code (with `socket` imported) and the same in the SDK (`socket` the module).
const CASES: Record<string, [py: string, sdk: string]> = {
  family: ['socket.socket(9999, socket.SOCK_STREAM).close()', 'await (await socket.socket(9999, socket.SOCK_STREAM)).close()'],
  type: ['socket.socket(socket.AF_INET, 99).close()', 'await (await socket.socket(socket.AF_INET, 99)).close()'],
  streamUdp: ['socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP).close()', 'await (await socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP)).close()'],
  dgramTcp: ['socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_TCP).close()', 'await (await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_TCP)).close()'],
  protoBogus: ['socket.socket(socket.AF_INET, socket.SOCK_STREAM, 200).close()', 'await (await socket.socket(socket.AF_INET, socket.SOCK_STREAM, 200)).close()'],
  seqpacket: ['socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET).close()', 'await (await socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET)).close()'],
  raw: ['socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()', 'await (await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)).close()'],
  packet: ['socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()', 'await (await socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)).close()'],
  ping: ['socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()', 'await (await socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)).close()'],
  ping6: ['socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6).close()', 'await (await socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)).close()'],
  optUnknown: ['s = socket.socket()\ntry: s.setsockopt(socket.SOL_SOCKET, 9999, 1)\nfinally: s.close()', 'const s = await socket.socket(); try { await s.setsockopt(socket.SOL_SOCKET, 9999, 1); } finally { await s.close(); }'],
  optUnknownTcp: ['s = socket.socket()\ntry: s.setsockopt(socket.IPPROTO_TCP, 9999, 1)\nfinally: s.close()', 'const s = await socket.socket(); try { await s.setsockopt(socket.IPPROTO_TCP, 9999, 1); } finally { await s.close(); }'],
  levelBogus: ['s = socket.socket()\ntry: s.setsockopt(9999, 1, 1)\nfinally: s.close()', 'const s = await socket.socket(); try { await s.setsockopt(9999, 1, 1); } finally { await s.close(); }'],
  nodelayUdp: ['s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\nfinally: s.close()', 'const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM); try { await s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); } finally { await s.close(); }'],
  mark: ['s = socket.socket()\ntry: s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 7)\nfinally: s.close()', 'const s = await socket.socket(); try { await s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 7); } finally { await s.close(); }'],
  port: ["s = socket.socket()\ntry: s.bind(('127.0.0.1', 995))\nfinally: s.close()", "const s = await socket.socket(); try { await s.bind(['127.0.0.1', 995]); } finally { await s.close(); }"],
  port1000: ["s = socket.socket()\ntry: s.bind(('127.0.0.1', 1000))\nfinally: s.close()", "const s = await socket.socket(); try { await s.bind(['127.0.0.1', 1000]); } finally { await s.close(); }"],
  // Allowed by the kernel to nobody, refused by the default policy.
  unix: ['socket.socket(socket.AF_UNIX).close()', 'await (await socket.socket(socket.AF_UNIX)).close()'],
  netlink: ['socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()', 'await (await socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)).close()'],
  freebind: ['s = socket.socket()\ntry: s.setsockopt(socket.IPPROTO_IP, 15, 1)\nfinally: s.close()', 'const s = await socket.socket(); try { await s.setsockopt(socket.IPPROTO_IP, 15, 1); } finally { await s.close(); }'],
};

const PY = `
import json, socket, sys
out = {}
for name, code in json.loads(sys.argv[1]).items():
    try:
        exec(code, {'socket': socket})
        out[name] = 'ok'
    except OSError as e:
        out[name] = '%s:%s' % (type(e).__name__, e.errno)
print(json.dumps(out))
`;

const SDK = `
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
const out = {}, grants = {};
${Object.entries(CASES).map(([name, [, sdk]]) => `try { ${sdk}; out.${name} = 'ok'; } catch (e) { out.${name} = e.constructor.name + ':' + e.errno; grants.${name} = /grant: (\\w+)/.exec(e.message)?.[1] ?? null; }`).join('\n')}
await socket.disconnect();
console.log(JSON.stringify({ out, grants }));
`;

/** python3 as nobody (in namespace `ns` when given): each case's outcome. */
async function pythonAsNobody(ns?: string): Promise<Record<string, string>> {
  const cases = Object.fromEntries(Object.entries(CASES).map(([k, [py]]) => [k, py]));
  const argv = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/env', 'python3', '-c', PY, JSON.stringify(cases)];
  const proc = spawn(ns ? 'ip' : argv[0]!, ns ? ['netns', 'exec', ns, ...argv] : argv.slice(1), { env: { PATH: '/usr/local/bin:/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const [code] = (await once(proc, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`python3 as nobody exited ${code}: ${err}`);
  return JSON.parse(out);
}

async function sdkAsNobody(address: string, ns?: string): Promise<{ out: Record<string, string>; grants: Record<string, string | null> }> {
  const r = await runAsNobody(SDK, { SOCKBROKER_ADDRESS: address }, 60_000, ns);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

// What python3 run as nobody raised in the host's namespace on this kernel (asserted too, so a
// kernel or python change shows here rather than as a silent agreement).
const KERNEL = {
  family: 'OSError:97', type: 'OSError:22', streamUdp: 'OSError:93', dgramTcp: 'OSError:93', protoBogus: 'OSError:93',
  seqpacket: 'OSError:94', raw: 'PermissionError:1', packet: 'PermissionError:1', ping: 'PermissionError:13',
  ping6: 'PermissionError:13', optUnknown: 'OSError:92', optUnknownTcp: 'OSError:92', levelBogus: 'OSError:92',
  nodelayUdp: 'OSError:92', mark: 'PermissionError:1', port: 'PermissionError:13', port1000: 'PermissionError:13',
  unix: 'ok', netlink: 'ok', freebind: 'ok',
};

// Where nobody itself would succeed (AF_UNIX through socket(), netlink, IP_FREEBIND = 15) the
// broker's default refuses: PermissionError (EPERM), naming the grant.
const POLICY_ONLY = { unix: 'PermissionError:1', netlink: 'PermissionError:1', freebind: 'PermissionError:1' };

test('nobody gets the errno python3 run as nobody gets; a refusal the kernel would not make names the grant', async (t) => {
  const py = await pythonAsNobody();
  t.deepEqual(py, KERNEL);
  await withDaemon(async (d) => {
    const { out, grants } = await sdkAsNobody(d.address);
    t.deepEqual(out, { ...py, ...POLICY_ONLY });
    // The kernel's own refusals (raw, AF_PACKET, SO_MARK, low ports) are also the policy's: each
    // names its grant, as do the refusals only the policy makes.
    t.deepEqual(
      Object.fromEntries(Object.entries(grants).filter(([, g]) => g !== null)),
      { raw: 'sockets', packet: 'sockets', ping: 'sockets', ping6: 'sockets', mark: 'options', port: 'ports', port1000: 'ports', unix: 'unix_paths', netlink: 'sockets', freebind: 'options' },
    );
  });
});

test("in a namespace whose sysctls widen what nobody may do, the default policy widens with them", async (t) => {
  const ns = `sb-errno-${randomBytes(3).toString('hex')}`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_unprivileged_port_start=1000');
    ip('netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ping_group_range=65534 65534');
    const py = await pythonAsNobody(ns);
    t.deepEqual(py, { ...KERNEL, ping: 'ok', ping6: 'ok', port1000: 'ok' });
    await withDaemon(async (d) => {
      const { out } = await sdkAsNobody(d.address, ns);
      t.deepEqual(out, { ...py, ...POLICY_ONLY });
      // The host's namespace keeps its own sysctls: the widening is per namespace.
      t.deepEqual((await sdkAsNobody(d.address)).out, { ...KERNEL, ...POLICY_ONLY });
    });
  } finally {
    ip('netns', 'del', ns);
  }
});
