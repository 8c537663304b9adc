// Install: `npm pack` in a fresh clone builds the package at pack time and ships only what runs
// (dist/ of daemon, client, native and the generated contract, the .proto files reflection
// reads, deploy/, docs/, README); `npm install -g --prefix TMP` of the tarball puts `sockbroker`
// on TMP/bin, `TMP/bin/sockbroker serve` runs, and the installed SDK connects to it.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, rmSync, statSync, symlinkSync, mkdirSync, writeFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createInterface } from 'node:readline';
import { ROOT, publicTempDir } from '../helpers/daemon.js';

const run = promisify(execFile);
const NPM_QUIET = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

test('npm pack of a fresh clone installs with npm install -g, and the installed broker and SDK work', async (t) => {
  t.timeout(600_000);
  const tmp = publicTempDir('sb-pack-');
  const src = join(tmp, 'src');
  const prefix = join(tmp, 'prefix');
  // The build toolchain only (the clone's own node_modules would be an identical `npm ci`).
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` };
  let daemon: ReturnType<typeof spawn> | undefined;
  try {
    await run('git', ['clone', '--quiet', '--no-hardlinks', ROOT, src]);
    symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(src, 'node_modules'));
    const { stdout: packed } = await run('npm', ['pack', '--pack-destination', tmp, '--json', ...NPM_QUIET], { cwd: src, env, maxBuffer: 64 << 20 });
    const [info] = JSON.parse(packed);
    const files: string[] = info.files.map((f: { path: string }) => f.path);
    for (const need of ['dist/daemon/cli.js', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/native/libc.js', 'dist/proto/gen/sockbroker/v1/socket.js', 'proto/sockbroker/v1/socket.proto', 'proto/google/rpc/status.proto', 'deploy/sockbroker.service', 'deploy/k8s/daemonset.yaml', 'README.md', 'package.json']) {
      t.true(files.includes(need), `ships ${need}`);
    }
    for (const f of files) {
      t.false(/^(dist\/)?(test|bench|scripts)\//.test(f), `no tests, benchmarks or scripts: ${f}`);
      t.false(f.endsWith('.ts') && !f.endsWith('.d.ts'), `no TypeScript sources: ${f}`);
    }

    await run('npm', ['install', '-g', '--prefix', prefix, join(tmp, info.filename), ...NPM_QUIET], { env, maxBuffer: 64 << 20 });
    const bin = join(prefix, 'bin', 'sockbroker');
    t.true((statSync(bin).mode & 0o111) !== 0, 'the bin is executable');
    t.true(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n'), 'with a node shebang');

    const sock = join(tmp, 'sb.sock');
    daemon = spawn(bin, ['serve', '--listen', `unix:${sock}`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const lines = createInterface({ input: daemon.stderr! });
    const logs: string[] = [];
    await new Promise<void>((resolve, reject) => {
      lines.on('line', (l) => {
        logs.push(l);
        if (l.includes('"event":"listening"')) resolve();
      });
      daemon!.once('exit', (code) => reject(new Error(`installed daemon exited ${code}:\n${logs.join('\n')}`)));
    });
    t.false(logs.some((l) => l.includes('reflection.unavailable')), 'the shipped .proto files serve reflection');

    // A program that depends on the installed package: `import 'sockbroker'` resolves to it.
    const app = join(tmp, 'app');
    mkdirSync(app);
    symlinkSync(join(prefix, 'lib', 'node_modules'), join(app, 'node_modules'));
    writeFileSync(join(app, 'client.mjs'), `
      import { connect } from 'sockbroker';
      const socket = await connect(${JSON.stringify(`unix:${sock}`)});
      const s = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
      await s.bind(['127.0.0.1', 0]);
      const [host] = await s.getsockname();
      await s.close();
      const name = await socket.gethostname();
      await socket.disconnect();
      console.log(JSON.stringify({ host, named: name.length > 0 }));
    `);
    const { stdout } = await run(process.execPath, [join(app, 'client.mjs')], { cwd: app, env: { ...env, SOCKBROKER_HANDOFF: '0' } });
    t.deepEqual(JSON.parse(stdout.trim()), { host: '127.0.0.1', named: true });
    t.true(readdirSync(join(prefix, 'lib', 'node_modules', 'sockbroker', 'node_modules')).includes('@grpc'), 'dependencies installed with it');

    daemon.kill('SIGTERM');
    const [code] = await once(daemon, 'exit');
    t.is(code, 0);
  } finally {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
});
