// sethostname through the broker: refused to nobody by default, allowed with the sethostname
// grant, and it changes the name gethostname reports inside the daemon's private UTS namespace
// only (the host's name is untouched).
import test from 'ava';
import { hostname } from 'node:os';
import { withDaemon, runAsNobody } from '../helpers/daemon.js';
import { PRELUDE, policyFile } from './helpers.js';

const SCRIPT = `${PRELUDE}
out.before = await socket.gethostname();
await probe('set', () => socket.sethostname('renamed-by-nobody'));
out.after = await socket.gethostname();
await probe('tooLong', () => socket.sethostname('x'.repeat(65)));
await done();
`;

async function run(address: string): Promise<any> {
  const r = await runAsNobody(SCRIPT, { SOCKBROKER_ADDRESS: address });
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('nobody is refused sethostname by default', async (t) => {
  await withDaemon(async (d) => {
    const out = await run(d.address);
    t.is(out.before, 'uts-test-box');
    t.like(out.set, { error: 'PermissionError', errno: 1 });
    t.regex(out.set.message, /sethostname needs a grant/);
    t.is(out.after, 'uts-test-box');
    t.true(await d.logged((l) => l.includes('"event":"policy.deny"') && l.includes('sethostname')));
  }, { hostname: 'uts-test-box' });
});

test('with the grant, sethostname changes the name in the daemon\'s UTS namespace only', async (t) => {
  const host = hostname();
  const policy = policyFile('rules:\n  - name: nobody-hostname\n    match: { uid: 65534 }\n    grant: { sethostname: true }\n');
  await withDaemon(async (d) => {
    const out = await run(d.address);
    t.is(out.before, 'uts-test-box');
    t.deepEqual(out.set, {});
    t.is(out.after, 'renamed-by-nobody');
    t.like(out.tooLong, { error: 'OSError', errno: 22 });
    t.true(await d.logged((l) => l.includes('"event":"policy.allow"') && l.includes('"by":"nobody-hostname"')));
  }, { hostname: 'uts-test-box', args: ['--config', policy] });
  t.is(hostname(), host, "the host's own name is untouched");
});
