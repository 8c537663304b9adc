// A broker run by an ordinary user (`npm start` without root) serves that user: its socket is
// 0600, and ordinary sockets, socketpairs and AF_UNIX messages work (it must not try to attach
// credentials it could not send).
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { publicTempDir, runAsNobody, worldCopy } from '../helpers/daemon.js';

test('a daemon run as nobody serves nobody', async (t) => {
  const dir = publicTempDir('sb-user-');
  chmodSync(dir, 0o777);
  const path = join(dir, 'sb.sock');
  const daemon = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, join(worldCopy(), 'dist', 'daemon', 'cli.js'), 'serve', '--listen', `unix:${path}`], {
    env: { PATH: process.env.PATH!, HOME: '/tmp' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    let log = '';
    await new Promise<void>((resolve, reject) => {
      daemon.stderr!.on('data', (d) => {
        log += d;
        if (log.includes('"event":"listening"')) resolve();
      });
      daemon.on('exit', (code) => reject(new Error(`daemon exited ${code}: ${log}`)));
    });
    t.is(statSync(path).mode & 0o777, 0o600, "a user's broker socket is 0600");
    const r = await runAsNobody(`
      import { connect } from 'sockbroker';
      const socket = await connect(process.env.SOCKBROKER_ADDRESS);
      const [a, b] = await socket.socketpair();
      await a.sendall(Buffer.from('hi'));
      const pair = (await b.recv(2)).toString();
      const srv = await socket.socket();
      await srv.bind(['127.0.0.1', 0]);
      await srv.listen();
      const c = await socket.socket();
      await c.connect(await srv.getsockname());
      const [conn] = await srv.accept();
      await c.sendall(Buffer.from('tcp'));
      const tcp = (await conn.recv(3)).toString();
      let raw;
      try { await socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); raw = 'ok'; } catch (e) { raw = e.constructor.name + ':' + e.errno; }
      await socket.disconnect();
      console.log(JSON.stringify({ pair, tcp, raw }));
    `, { SOCKBROKER_ADDRESS: `unix:${path}` }, 30_000);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(JSON.parse(r.stdout.trim()), { pair: 'hi', tcp: 'tcp', raw: 'PermissionError:1' });
  } finally {
    daemon.kill('SIGTERM');
    await once(daemon, 'exit');
  }
});
