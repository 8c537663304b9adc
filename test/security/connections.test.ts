// Connections per identity are capped (64 by default): one more is closed at once and logged,
// and a slot freed by a closing connection can be used again; other identities are unaffected.
import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { withDaemon, runAsNobody, until } from '../helpers/daemon.js';
import { connect } from '../../client/index.js';

function open(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path, () => resolve(s));
    s.on('error', reject);
  });
}

test('the 65th connection of one identity is refused; nobody still gets in', async (t) => {
  await withDaemon(async (d) => {
    const path = d.address.slice('unix:'.length);
    const conns: net.Socket[] = [];
    for (let i = 0; i < 64; i++) conns.push(await open(path));
    const extra = await open(path);
    await once(extra, 'close');
    t.true(await until(() => d.logs.some((l) => l.includes('"event":"connection.refused"') && l.includes('more than 64 connections')), 3000));
    t.true(conns.every((c) => !c.destroyed), 'the first 64 stay open');
    // Another identity is counted on its own.
    const r = await runAsNobody(`
      import { connect } from 'sockbroker';
      const socket = await connect(process.env.SOCKBROKER_ADDRESS);
      const [a, b] = await socket.socketpair();
      await a.sendall(Buffer.from('ok'));
      console.log((await b.recv(2)).toString());
      await socket.disconnect();
    `, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.stdout.trim(), 'ok', r.stderr);
    // Free one slot (the daemon has closed its end once its fd count drops): a new connection
    // of the first identity is admitted again, shown by a call answered on it.
    const before = d.fdCount();
    conns.pop()!.destroy();
    t.true(await until(() => d.fdCount() < before, 10_000), 'the daemon closed the freed connection');
    const again = await connect(d.address);
    const [a, b] = await again.socketpair();
    await a.sendall(Buffer.from('ok'));
    t.is((await b.recv(2)).toString(), 'ok', 'a freed slot is usable');
    await again.disconnect();
    for (const c of conns) c.destroy();
  });
});
