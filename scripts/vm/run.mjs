#!/usr/bin/env node
// Runs one command inside a throwaway qemu VM (Debian kernel with CAN, TIPC and RDS modules,
// vcan0 up, the host's / mounted read-only under a tmpfs overlay) and reports its output, its
// exit code, the boot time and the total time. Software emulation only (TCG): the nested KVM on
// these machines cannot boot the Debian kernel. The VM has no network; the host's interfaces are
// never touched.
//
//   node scripts/vm/run.mjs [--timeout SECONDS] [--cwd DIR] [--env K=V]... [--console FILE] -- CMD ARGS...
//
// The command runs as root in the VM's chroot with cwd DIR (a host path: the VM sees the host's
// files), env PATH/HOME/LANG plus VM_IO=/run/vmio (the read-write share) and VM_OUT=/run/vmio/out
// (files written there come back in `files`). A hard timeout (boot + command) kills qemu and fails
// with the console tail; qemu also dies with this process (parent-death signal via setpriv).
// Exit code: the command's own; 124 on timeout; 125 when the VM ended without a result.
// Also importable: `runVm({ argv, cwd, timeoutS, env, files })` resolves to the whole result.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync, mkdirSync, readdirSync, createWriteStream, copyFileSync, accessSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, delimiter } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..');
const MARK_START = 'vm-init: running job';

const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function which(cmd) {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

/** Kernel and initramfs paths (builds the initramfs when its cache is stale). */
export function bedImages() {
  let out;
  try {
    out = execFileSync('bash', [join(HERE, 'build-initramfs.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`vm: build-initramfs.sh failed: ${(e.stderr || e.message || '').toString().trim()}`);
  }
  // SOCKBROKER_VM_BZIMAGE=1 boots the compressed kernel through the BIOS (slower) instead of the PVH ELF.
  const kernel = /^(?:KERNEL|BZIMAGE)=(.*)$/m.exec(process.env.SOCKBROKER_VM_BZIMAGE === '1' ? out.replace(/^KERNEL=.*$/m, '') : out)?.[1];
  const initrd = /^INITRD=(.*)$/m.exec(out)?.[1];
  if (!kernel || !initrd || !existsSync(kernel) || !existsSync(initrd)) throw new Error(`vm: no kernel/initramfs (${out.trim()})`);
  return { kernel, initrd };
}

function tailLines(text, n) {
  const lines = text.replace(/\r/g, '').split('\n');
  return lines.slice(-n).join('\n');
}

/**
 * Boots the VM, runs argv in it and resolves (never rejects once qemu started) with
 * { code, stdout, stderr, bootS, guestBootS, guestJobS, totalS, timedOut, error, consoleLog, consoleTail, files }.
 * code is null when the VM gave no result (timeout, crash); error then says why.
 */
export async function runVm({ argv, cwd = process.cwd(), timeoutS = 240, env = {}, files = {}, consoleLog, memMiB = 1024, smp = 2, keep = false }) {
  if (!argv?.length) throw new Error('vm: no command');
  const t0 = performance.now();
  const qemu = which('qemu-system-x86_64');
  if (!qemu) throw new Error('vm: qemu-system-x86_64 not found (run scripts/vm/setup.sh as root)');
  const { kernel, initrd } = bedImages();

  const io = mkdtempSync(join(tmpdir(), 'sockbroker-vm-'));
  mkdirSync(join(io, 'out'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(io, name), content);
  const job = [
    `cd ${quote(resolve(cwd))} || exit 127`,
    'export VM_OUT=/run/vmio/out',
    ...Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`),
    `exec ${argv.map(quote).join(' ')}`,
    '',
  ].join('\n');
  writeFileSync(join(io, 'job.sh'), job);
  const consolePath = join(io, 'console.log');
  const consoleFile = createWriteStream(consolePath);

  const qemuArgs = [
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-m', String(memMiB), '-smp', String(smp),
    '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', kernel, '-initrd', initrd,
    '-append', 'console=ttyS0 quiet loglevel=4 panic=-1',
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${io},mount_tag=vmio,security_model=none,multidevs=remap`,
  ];
  // setpriv --pdeathsig: qemu is killed if this process dies without cleaning up (ava timeout, kill -9).
  const setpriv = which('setpriv');
  const [cmd, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...qemuArgs]] : [qemu, qemuArgs];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);

  let consoleText = '';
  let bootS = null;
  const onData = (d) => {
    consoleFile.write(d);
    consoleText += d.toString('latin1');
    if (consoleText.length > 1 << 20) consoleText = consoleText.slice(-(1 << 19));
    if (bootS === null && consoleText.includes(MARK_START)) bootS = (performance.now() - t0) / 1000;
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);

  let timedOut = false;
  let lingered = false;
  const hard = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutS * 1000);
  // The result is written before poweroff; should qemu not exit after it, stop it.
  let exitSeen = null;
  const poll = setInterval(() => {
    if (exitSeen === null && existsSync(join(io, 'exit'))) exitSeen = performance.now();
    if (exitSeen !== null && performance.now() - exitSeen > 15000) {
      lingered = true;
      child.kill('SIGKILL');
    }
  }, 250);
  const qemuStatus = await new Promise((res) => {
    child.on('error', (e) => res({ error: e }));
    child.on('exit', (code, signal) => res({ code, signal }));
  });
  clearTimeout(hard);
  clearInterval(poll);
  process.off('exit', killOnExit);
  await new Promise((r) => consoleFile.end(r));
  const totalS = (performance.now() - t0) / 1000;

  const read = (name) => (existsSync(join(io, name)) ? readFileSync(join(io, name), 'utf8') : null);
  const exitText = read('exit');
  const code = exitText !== null && /^\d+\s*$/.test(exitText) ? Number(exitText) : null;
  const uptime = (name) => {
    const t = read(name);
    return t ? Number(t.split(/\s+/)[0]) : null;
  };
  const guestBootS = uptime('started');
  const ended = uptime('ended');
  const outFiles = {};
  for (const name of existsSync(join(io, 'out')) ? readdirSync(join(io, 'out')) : []) {
    try {
      outFiles[name] = readFileSync(join(io, 'out', name), 'utf8');
    } catch {}
  }
  let error = null;
  if (timedOut) error = `hard timeout: no result after ${timeoutS} s (boot ${bootS === null ? 'not finished' : bootS.toFixed(1) + ' s'})`;
  else if (qemuStatus.error) error = `qemu did not start: ${qemuStatus.error.message}`;
  else if (code === null) error = `the VM ended without a result (qemu exit ${qemuStatus.code ?? qemuStatus.signal})${read('init-error') ? ': ' + read('init-error').trim() : ''}`;
  const result = {
    code,
    stdout: read('stdout') ?? '',
    stderr: read('stderr') ?? '',
    bootS,
    guestBootS,
    guestJobS: guestBootS !== null && ended !== null ? ended - guestBootS : null,
    totalS,
    timedOut,
    lingered,
    error,
    consoleLog: null,
    consoleTail: tailLines(consoleText, 40),
    files: outFiles,
  };
  // The console log outlives the run's temp dir: the given path, or .vm/console-last.log.
  const keepConsole = consoleLog ?? join(REPO, '.vm', 'console-last.log');
  try {
    mkdirSync(dirname(keepConsole), { recursive: true });
    copyFileSync(consolePath, keepConsole);
    result.consoleLog = keepConsole;
  } catch {}
  if (!keep) rmSync(io, { recursive: true, force: true });
  return result;
}

function usage(msg) {
  if (msg) console.error(`run.mjs: ${msg}`);
  console.error('usage: node scripts/vm/run.mjs [--timeout SECONDS] [--cwd DIR] [--env K=V]... [--console FILE] -- CMD ARGS...');
  process.exit(2);
}

async function main(argv) {
  const opts = { timeoutS: 240, cwd: process.cwd(), env: {} };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '--timeout') opts.timeoutS = Number(val());
    else if (a === '--cwd') opts.cwd = val();
    else if (a === '--console') opts.consoleLog = resolve(val());
    else if (a === '--env') {
      const kv = val();
      const eq = kv.indexOf('=');
      if (eq <= 0) usage(`bad --env ${kv}`);
      opts.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === '-h' || a === '--help') usage();
    else usage(`unknown option ${a}`);
  }
  const cmd = argv.slice(i);
  if (!cmd.length) usage('no command');
  if (!(opts.timeoutS > 0)) usage('bad --timeout');
  let r;
  try {
    r = await runVm({ ...opts, argv: cmd });
  } catch (e) {
    console.error(e.message);
    process.exit(125);
  }
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const f = (x) => (x === null ? '?' : x.toFixed(1));
  if (r.error) {
    console.error(`vm: ${r.error}\nvm: console tail (${r.consoleLog ?? 'not kept'}):\n${r.consoleTail}`);
  }
  console.error(`vm: boot ${f(r.bootS)} s (guest ${f(r.guestBootS)} s), command ${f(r.guestJobS)} s guest, total ${f(r.totalS)} s wall, exit ${r.code ?? (r.timedOut ? 124 : 125)}`);
  process.exit(r.code ?? (r.timedOut ? 124 : 125));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main(process.argv.slice(2));
