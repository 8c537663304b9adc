// AF_NETLINK (NETLINK_ROUTE) for a root caller: bind with CPython's (pid, groups) tuple, then a
// link dump (RTM_GETLINK) and an address dump (RTM_GETADDR) sent and parsed here with the
// struct layouts a Python program would unpack; the interfaces match if_nameindex(). Also the
// address forms of AF_UNIX (str paths, bytes abstract names) on every call that returns one.
import test from 'ava';
import { join } from 'node:path';
import type { Socket, SocketModule } from '../../client/index.js';
import { useDaemon } from '../socket/helpers/fixture.js';
import { pyRaisesAll, pyValue, raisesLikePython } from '../socket/helpers/py.js';
import { publicTempDir, runAsNobody } from '../helpers/daemon.js';

const fx = useDaemon(test);

const RTM_GETLINK = 18;
const RTM_GETADDR = 22;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_DONE = 3;
const NLMSG_ERROR = 2;
const IFLA_IFNAME = 3;
const IFA_LOCAL = 2;
const IFA_ADDRESS = 1;
const align4 = (n: number) => (n + 3) & ~3;

/** struct nlmsghdr (len, type, flags, seq, pid) + body. */
function request(type: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(0, 12);
  return Buffer.concat([h, body]);
}

/** Receives a dump until NLMSG_DONE: each message's type and body. */
async function dump(s: Socket): Promise<Array<{ type: number; body: Buffer }>> {
  const out: Array<{ type: number; body: Buffer }> = [];
  for (;;) {
    const data = await s.recv(65536);
    for (let off = 0; off + 16 <= data.length;) {
      const len = data.readUInt32LE(off);
      const type = data.readUInt16LE(off + 4);
      if (type === NLMSG_DONE) return out;
      if (type === NLMSG_ERROR) throw new Error(`netlink error ${data.readInt32LE(off + 16)}`);
      out.push({ type, body: data.subarray(off + 16, off + len) });
      off += align4(len);
    }
  }
}

/** rtattrs (len u16, type u16, payload) from `off` of a message body. */
function attrs(body: Buffer, off: number): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  while (off + 4 <= body.length) {
    const len = body.readUInt16LE(off);
    if (len < 4) break;
    m.set(body.readUInt16LE(off + 2), body.subarray(off + 4, off + len));
    off += align4(len);
  }
  return m;
}

async function routeSocket(socket: SocketModule): Promise<Socket> {
  const s = await socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE);
  await s.bind([0, 0]);
  return s;
}

test('bind((0, 0)) gets a port id; getsockname and recvfrom give (pid, groups) pairs, as python3', async (t) => {
  const socket = fx.socket();
  const s = await routeSocket(socket);
  const name = (await s.getsockname()) as [number, number];
  t.is(name.length, 2);
  t.true(name[0] > 0);
  t.is(name[1], 0);
  await s.sendto(request(RTM_GETLINK, 1, Buffer.alloc(16)), [0, 0]);
  const [data, addr] = await s.recvfrom(65536);
  t.true(data.length > 16);
  t.deepEqual(addr, [0, 0]);
  const py = await pyValue<unknown>(
    "import struct\ns = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE); s.bind((0, 0))\n" +
      "s.sendto(struct.pack('=IHHII', 32, 18, 0x301, 1, 0) + bytes(16), (0, 0)); d, a = s.recvfrom(65536); result = list(a)",
  );
  t.deepEqual(addr, py);
  await s.close();
});

test('a link dump (RTM_GETLINK) lists the interfaces if_nameindex() lists', async (t) => {
  const socket = fx.socket();
  const s = await routeSocket(socket);
  // struct ifinfomsg: family, pad, type, index, flags, change (16 bytes).
  await s.sendall(request(RTM_GETLINK, 2, Buffer.alloc(16)));
  const links = (await dump(s)).map(({ body }) => {
    const index = body.readInt32LE(4);
    const name = attrs(body, 16).get(IFLA_IFNAME)!;
    return [index, name.subarray(0, name.indexOf(0)).toString()] as [number, string];
  });
  const ifs = await socket.ifNameindex();
  t.deepEqual(links.sort((a, b) => a[0] - b[0]), ifs.sort((a, b) => a[0] - b[0]));
  t.true(links.some(([, n]) => n === 'lo'));
  await s.close();
});

test('an address dump (RTM_GETADDR) lists 127.0.0.1 on lo, as python3 parses it', async (t) => {
  const socket = fx.socket();
  const s = await routeSocket(socket);
  // struct ifaddrmsg: family, prefixlen, flags, scope, index (8 bytes).
  const body = Buffer.alloc(8);
  body[0] = socket.AF_INET;
  await s.sendmsg([request(RTM_GETADDR, 3, body)]);
  const addrs = (await dump(s)).map(({ body: b }) => {
    const a = attrs(b, 8);
    const ip = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS)!;
    return [b.readUInt32LE(4), [...ip].join('.'), b[1]] as [number, string, number];
  });
  const py = await pyValue<Array<[number, string, number]>>(
    "import struct\ns = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE); s.bind((0, 0))\n" +
      "s.send(struct.pack('=IHHII', 24, 22, 0x301, 3, 0) + struct.pack('=BBBBI', socket.AF_INET, 0, 0, 0, 0))\nout = []\ndone = False\n" +
      'while not done:\n    d = s.recv(65536); off = 0\n    while off + 16 <= len(d):\n' +
      "        ln, ty = struct.unpack_from('=IH', d, off)\n        if ty == 3: done = True; break\n" +
      "        fam, plen, fl, sc, idx = struct.unpack_from('=BBBBI', d, off + 16); a = off + 24; at = {}\n" +
      "        while a + 4 <= off + ln:\n            al, aty = struct.unpack_from('=HH', d, a); at[aty] = d[a + 4:a + al]; a += (al + 3) & ~3\n" +
      "        ip = at.get(2, at.get(1)); out.append([idx, socket.inet_ntoa(ip), plen]); off += (ln + 3) & ~3\n" +
      'result = out',
  );
  t.deepEqual(addrs, py);
  t.true(addrs.some(([, ip, plen]) => ip === '127.0.0.1' && plen === 8));
  await s.close();
});

test('AF_NETLINK address errors as python3; nobody gets no netlink socket without a grant', async (t) => {
  const socket = fx.socket();
  const s = await routeSocket(socket);
  const py = await pyRaisesAll({
    notTuple: 's = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind(5)',
    triple: 's = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0, 0))',
  });
  const fresh = await socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0);
  await raisesLikePython(t, () => fresh.bind(5 as never), TypeError, py.notTuple);
  await raisesLikePython(t, () => fresh.bind([0, 0, 0] as never), TypeError, py.triple);
  await fresh.close();
  await s.close();
  const r = await runAsNobody(`
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS);
try { await socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); console.log('created'); }
catch (e) { console.log(e.constructor.name + ':' + e.errno); }
await socket.disconnect();
`, { SOCKBROKER_ADDRESS: fx.daemon().address });
  t.is(r.stdout.trim(), 'PermissionError:1', r.stderr);
});

test('AF_UNIX addresses: paths are str and abstract names bytes from accept, getpeername, getsockname, recvfrom and recvmsg, as python3', async (t) => {
  const socket = fx.socket();
  const dir = publicTempDir('sb-nl-');
  const tag = `${process.pid}-${Date.now()}`;
  const code = (d: string) =>
    `p = ${JSON.stringify(join(d, 'py-l'))}; l = socket.socket(socket.AF_UNIX); l.bind(p); l.listen()\n` +
    'c = socket.socket(socket.AF_UNIX); c.connect(p); a, addr = l.accept()\n' +
    `g = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); g.bind(b'\\0py-g-${tag}'); h = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); h.bind(${JSON.stringify(join(d, 'py-h'))})\n` +
    "h.sendto(b'1', g.getsockname()); d1, f1 = g.recvfrom(10); g.sendto(b'2', h.getsockname()); d2, anc, fl, f2 = h.recvmsg(10)\n" +
    'enc = lambda v: ["bytes", v.hex()] if isinstance(v, bytes) else ["str", v]\n' +
    'result = [enc(addr), enc(c.getpeername()), enc(l.getsockname()), enc(f1), enc(f2), enc(g.getsockname())]';
  const py = await pyValue<Array<[string, string]>>(code(dir));
  const enc = (v: unknown) => (Buffer.isBuffer(v) ? ['bytes', v.toString('hex')] : ['str', v]);
  const l = await socket.socket(socket.AF_UNIX);
  await l.bind(join(dir, 'sb-l'));
  await l.listen();
  const c = await socket.socket(socket.AF_UNIX);
  await c.connect(join(dir, 'sb-l'));
  const [a, addr] = await l.accept();
  const g = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
  await g.bind(Buffer.from(`\0sb-g-${tag}`));
  const h = await socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);
  await h.bind(join(dir, 'sb-h'));
  await h.sendto(Buffer.from('1'), (await g.getsockname())!);
  const [, f1] = await g.recvfrom(10);
  await g.sendto(Buffer.from('2'), (await h.getsockname())!);
  const [, , , f2] = await h.recvmsg(10);
  const got = [enc(addr), enc(await c.getpeername()), enc(await l.getsockname()), enc(f1), enc(f2), enc(await g.getsockname())];
  // Same kinds and shapes; names differ only by the sb-/py- prefix.
  const norm = (x: unknown[][]) => JSON.stringify(x).replace(/sb-|py-/g, '').replace(new RegExp(Buffer.from('sb-').toString('hex') + '|' + Buffer.from('py-').toString('hex'), 'g'), '');
  t.is(norm(got), norm(py));
  t.deepEqual(py.map(([k]) => k), ['str', 'str', 'str', 'str', 'bytes', 'bytes']);
  for (const s of [a, c, l, g, h]) await s.close();
});
