// `sockbroker extcap` with Debian's tshark: an executable script in a temporary personal extcap
// folder ($HOME/.config/wireshark/extcap) is listed by `tshark -D`, and `tshark -i sockbroker`
// captures packets the test sends through a broker in a private namespace. Filter validation
// answers by exit code; a capture fails fast when the broker is down; listing never needs it.
import test from 'ava';
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createTestNet, type TestNet } from '../helpers/netns.js';
import { DIST, startDaemon, type Daemon } from '../helpers/daemon.js';

let net: TestNet;
let d: Daemon;
const home = mkdtempSync(join(tmpdir(), 'sb-extcap-home-'));
const CLI = join(DIST, 'daemon', 'cli.js');

test.before(async () => {
  net = createTestNet();
  d = await startDaemon({ netns: net.a });
  const dir = join(home, '.config', 'wireshark', 'extcap');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'sockbroker'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' extcap "$@"\n`);
  chmodSync(join(dir, 'sockbroker'), 0o755);
});
test.after.always(async () => {
  await d?.stop();
  net?.destroy();
  rmSync(home, { recursive: true, force: true });
});

const extcap = (...args: string[]) => spawnSync(process.execPath, [CLI, 'extcap', ...args], { encoding: 'utf8', timeout: 30_000 });

test('tshark lists the extcap interface and its configuration (no broker needed)', (t) => {
  const list = execFileSync('tshark', ['-D'], { env: { ...process.env, HOME: home }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  t.regex(list, /\d+\. sockbroker \(sockbroker: capture on a broker's host\)/);
  const prefs = execFileSync('tshark', ['-G', 'currentprefs'], { env: { ...process.env, HOME: home }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  for (const p of ['broker', 'remoteinterface', 'tlsca', 'tlscert', 'tlskey', 'token']) t.regex(prefs, new RegExp(`^#extcap\\.sockbroker\\.${p}:`, 'm'));
  const dlts = extcap('--extcap-dlts', '--extcap-interface', 'sockbroker');
  t.is(dlts.status, 0);
  t.regex(dlts.stdout, /^dlt \{number=1\}/);
});

test('a capture filter is validated by exit code without --capture', (t) => {
  t.is(extcap('--extcap-interface', 'sockbroker', '--extcap-capture-filter', 'udp port 53 and not host 192.0.2.1').status, 0);
  const bad = extcap('--extcap-interface', 'sockbroker', '--extcap-capture-filter', 'udp port');
  t.not(bad.status, 0);
  t.regex(bad.stderr, /syntax error/);
});

test('a capture fails fast when the broker is down', (t) => {
  const start = Date.now();
  const r = extcap('--capture', '--extcap-interface', 'sockbroker', '--fifo', join(home, 'fifo'), '--broker', `unix:${join(home, 'nobroker.sock')}`);
  t.not(r.status, 0);
  t.regex(r.stderr, /broker unavailable/);
  t.true(Date.now() - start < 20_000);
});

test('tshark -i sockbroker captures the packets the test sends', async (t) => {
  const dport = 4444;
  // The sender runs until tshark has what it asked for (no guess of when the capture is armed).
  const sender = spawn('ip', ['netns', 'exec', net.a, 'python3', '-c', `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3000):
    s.sendto(b'extcap-%d' % i, ('198.51.100.2', ${dport})); time.sleep(0.02)
`], { stdio: 'ignore' });
  try {
    const tshark = spawn('ip', ['netns', 'exec', net.a, 'tshark', '-i', 'sockbroker',
      '-o', `extcap.sockbroker.broker:${d.address}`, '-o', 'extcap.sockbroker.remoteinterface:a0',
      '-f', `udp dst port ${dport}`, '-c', '5', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'udp.payload'],
    { env: { ...process.env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    tshark.stdout!.on('data', (x) => (stdout += x));
    tshark.stderr!.on('data', (x) => (stderr += x));
    const [code] = await once(tshark, 'close');
    t.is(code, 0, stderr);
    const rows = stdout.trim().split('\n').map((l) => l.split('\t'));
    t.is(rows.length, 5);
    for (const [iface, payload] of rows) {
      t.is(iface, 'a0');
      t.regex(Buffer.from(payload!.replace(/:/g, ''), 'hex').toString(), /^extcap-\d+$/);
    }
    const seq = rows.map(([, p]) => Number(/\d+$/.exec(Buffer.from(p!.replace(/:/g, ''), 'hex').toString())![0]));
    t.deepEqual(seq, seq.map((_, i) => seq[0]! + i), 'consecutive packets, none lost');
  } finally {
    sender.kill();
  }
});
