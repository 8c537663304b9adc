// Runs the ava suites and ends with the plain summary line CI reads: `N passed, N failed`.
// Tests that run a client as `nobody` need the build in a world-readable place: a checkout may
// sit under a 0700 directory, so a copy of dist/ and node_modules/ goes to a temp dir first.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, chmodSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const world = mkdtempSync(join(tmpdir(), 'sockbroker-world-'));
for (const part of ['dist', 'node_modules', 'package.json', 'proto']) cpSync(part, join(world, part), { recursive: true });
// `import 'sockbroker'` from the copy resolves to the copy itself.
rmSync(join(world, 'node_modules', 'sockbroker'), { recursive: true, force: true });
symlinkSync('..', join(world, 'node_modules', 'sockbroker'));
const chmodR = (dir) => spawn('chmod', ['-R', 'a+rX', dir], { stdio: 'inherit' });
await new Promise((r) => chmodR(world).on('exit', r));
chmodSync(world, 0o755);

// ava's own reporter (its TAP reporter crashes on a timeout); each test is a ✔ or ✘ line.
const args = ['ava', '--verbose', ...process.argv.slice(2)];
// Hand-off stays off unless a test asks for it (connect(address, { handoff: true })), so every
// other test runs the streamed path.
const ava = spawn('npx', args, { env: { SOCKBROKER_HANDOFF: '0', ...process.env, SOCKBROKER_WORLD_COPY: world, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let tail = '';
ava.stdout.on('data', (d) => {
  process.stdout.write(d);
  tail += d.toString();
  let i;
  while ((i = tail.indexOf('\n')) >= 0) {
    const line = tail.slice(0, i);
    tail = tail.slice(i + 1);
    if (/^\s*✔(?! \[skip\])/.test(line)) passed++;
    else if (/^\s*✘/.test(line)) failed++;
  }
});
const code = await new Promise((r) => ava.on('exit', r));
rmSync(world, { recursive: true, force: true });
if (code !== 0 && failed === 0) failed = 1; // ava itself failed (e.g. a crash outside a test)
console.log(`${passed} passed, ${failed} failed`);
process.exit(code ?? 1);
