// Item 8 of the seed surface: every constant the seed (test/netdb/fixtures/seed-socket.txt, a
// copy of the Python 3.4 socket docs) names is exported on the module object, with the broker
// host's value (python3's where it has the name), or is deliberately absent for a stated reason.
// Names come from the text itself: every `.. data::` entry, every UPPER_CASE name with an
// underscore, and every `PREFIX_*` family.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type SocketModule } from '../../client/index.js';
import { ROOT, startDaemon, type Daemon, python } from '../helpers/daemon.js';

const SEED = readFileSync(join(ROOT, 'test', 'netdb', 'fixtures', 'seed-socket.txt'), 'utf8');

/** Names the seed mentions that are not constants of Linux's socket module, and why. */
const NOT_ON_LINUX: Record<string, string> = {
  AF_LINK: 'the seed: "Availability: BSD, OSX" (link-level sockaddr_dl); CPython on Linux lacks it',
  PF_SYSTEM: "macOS kernel control sockets (the seed's SYSPROTO_CONTROL address form); CPython on Linux lacks it",
  SYSPROTO_CONTROL: 'macOS kernel control protocol of PF_SYSTEM; CPython on Linux lacks it',
};
const NOT_CONSTANTS: Record<string, string> = {
  SC_IOV_MAX: 'an os.sysconf() name the seed cites for sendmsg/recvmsg_into, not a socket constant',
  TIME_WAIT: 'a TCP state named in the prose about SO_REUSEADDR',
  CMSG_LEN: 'a function (checked below)',
  CMSG_SPACE: 'a function (checked below)',
};
const WINSOCK: Record<string, number> = {
  SIO_RCVALL: 0x98000001, SIO_KEEPALIVE_VALS: 0x98000004, SIO_LOOPBACK_FAST_PATH: 0x98000010,
  RCVALL_OFF: 0, RCVALL_ON: 1, RCVALL_SOCKETLEVELONLY: 2, RCVALL_MAX: 3,
};

function seedNames(): string[] {
  const names = new Set<string>();
  for (const m of SEED.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b(?!_?\\?\*)/g)) names.add(m[0]);
  // `.. data::` entries and their continuation lines.
  for (const m of SEED.matchAll(/^\.\. data:: (.+)\n((?: {10}\S.*\n)*)/gm)) {
    for (const n of [m[1]!, ...m[2]!.split('\n')].map((s) => s.trim()).filter(Boolean)) if (!n.includes('*')) names.add(n);
  }
  return [...names].sort();
}

function seedFamilies(): string[] {
  const fams = new Set<string>();
  for (const m of SEED.matchAll(/\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_)\\?\*/g)) fams.add(m[1]!);
  return [...fams].sort();
}

let daemon: Daemon;
let socket: SocketModule;
let mod: Record<string, unknown>;
let py: Record<string, number>;

test.before(async () => {
  daemon = await startDaemon();
  socket = await connect(daemon.address);
  mod = socket as unknown as Record<string, unknown>;
  py = JSON.parse(python('import json, socket; print(json.dumps({n: getattr(socket, n) for n in dir(socket) if n.isupper() and type(getattr(socket, n)) is int}))'));
});

test.after.always(async () => {
  await socket?.disconnect();
  await daemon?.stop();
});

test('the seed names what we expect to find (the extraction works)', (t) => {
  const names = seedNames();
  for (const n of ['AF_UNIX', 'SOCK_RDM', 'SOMAXCONN', 'has_ipv6', 'SO_REUSEADDR', 'SIO_RCVALL', 'RCVALL_ON', 'AF_LINK', 'PF_CAN', 'SOL_RDS', 'TIPC_ADDR_NAMESEQ', 'SocketType']) {
    t.true(names.includes(n), n);
  }
  const fams = seedFamilies();
  for (const f of ['SO_', 'SOL_', 'SCM_', 'IPPROTO_', 'IPPORT_', 'INADDR_', 'IP_', 'IPV6_', 'EAI_', 'AI_', 'NI_', 'TCP_', 'MSG_', 'CAN_', 'CAN_BCM_', 'SOL_CAN_', 'RDS_', 'TIPC_', 'SIO_', 'RCVALL_']) {
    t.true(fams.includes(f), f);
  }
});

test('every constant the seed names is exported (python3 value where python3 has it), or absent for a stated reason', (t) => {
  const missing: string[] = [];
  for (const n of seedNames()) {
    if (n in NOT_CONSTANTS) continue;
    if (n in NOT_ON_LINUX) {
      t.false(n in mod, `${n} should be absent: ${NOT_ON_LINUX[n]}`);
      t.false(n in py, `python3 on Linux lacks ${n} too`);
      continue;
    }
    if (n === 'has_ipv6') {
      t.is(typeof mod.has_ipv6, 'boolean');
      continue;
    }
    if (n === 'SocketType') {
      t.is(typeof mod.SocketType, 'function');
      continue;
    }
    if (typeof mod[n] !== 'number') {
      missing.push(n);
      continue;
    }
    if (n in py) t.is(mod[n], py[n], n);
    if (n in WINSOCK) t.is(mod[n], WINSOCK[n], n);
  }
  t.deepEqual(missing, []);
  t.is(typeof socket.CMSG_LEN, 'function');
  t.is(typeof socket.CMSG_SPACE, 'function');
});

test('every PREFIX_* family of the seed is exported, with every name python3 has and its value', (t) => {
  for (const prefix of seedFamilies()) {
    if (prefix === 'CMSG_') {
      t.is(typeof socket.CMSG_LEN, 'function');
      continue;
    }
    const ours = Object.keys(mod).filter((k) => k.startsWith(prefix) && typeof mod[k] === 'number');
    t.true(ours.length > 0, `no ${prefix}* constant exported`);
    for (const [n, v] of Object.entries(py)) if (n.startsWith(prefix)) t.is(mod[n], v, n);
  }
});

test('SIO_* and RCVALL_* take the Winsock values (a documented exception: Linux has none)', (t) => {
  for (const [n, v] of Object.entries(WINSOCK)) t.is(mod[n], v, n);
  t.deepEqual(Object.keys(mod).filter((k) => /^(SIO|RCVALL)_/.test(k)).sort(), Object.keys(WINSOCK).sort());
});
