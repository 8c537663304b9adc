// The in-process reactor never holds a process alive: once the session is closed, a program
// whose handed-off sockets are still open (and whose reactor has waited) exits by itself, as a
// Node program with idle sockets does; while a call waits, it stays alive.
import test from 'ava';
import { withDaemon, runAsNobody } from '../helpers/daemon.js';

test('a program with idle handed-off sockets exits once it disconnects; a waiting call keeps it alive', async (t) => {
  await withDaemon(async (d) => {
    const r = await runAsNobody(`
import { connect } from 'sockbroker';
const socket = await connect(process.env.SOCKBROKER_ADDRESS, { handoff: true });
const a = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
const b = await socket.socket(socket.AF_INET, socket.SOCK_DGRAM);
await a.bind(['127.0.0.1', 0]);
// A wait on the reactor (answered later), then one that times out: both leave it idle.
const got = a.recv(10);
setTimeout(async () => b.sendto(Buffer.from('late'), await a.getsockname()), 200);
console.log((await got).toString());
a.settimeout(0.1);
await a.recv(10).catch((e) => console.log(e.constructor.name));
console.log(a._handedOff, b._handedOff);
await socket.disconnect();
// No process.exit: the sockets stay open and nothing else is pending.
`, { SOCKBROKER_ADDRESS: d.address });
    t.is(r.code, 0, r.stderr);
    t.deepEqual(r.stdout.trim().split('\n'), ['late', 'timeout', 'true true']);
  });
});
