// Policy loading for hand-off: a `handoff` grant makes a family's sockets unconfined, so it is
// refused next to a confinement of the same family (interfaces, can_ids, promiscuous), with an
// error naming the place; the decision itself follows the default, the grant and `no_handoff`.
import test from 'ava';
import { compilePolicy, PolicyError } from '../../daemon/policy-file.js';
import { CAPTURE_QUOTA_DEFAULTS, handoffDecision } from '../../daemon/policy.js';
import type { Identity } from '../../daemon/identity.js';

const QUOTAS = { socketsPerSession: 10, sessionsPerIdentity: 10, bytesPerCall: 1024, bufferedBytes: 1024, ...CAPTURE_QUOTA_DEFAULTS };
const rule = (grant: string, extra = '') => `rules:\n  - name: r\n    match: { uid: 65534 }\n${extra}    grant: ${grant}\n`;
const nobody: Identity = { kind: 'local', uid: 65534, gid: 65534, groups: [], pid: 1, userNs: 'user:[1]', netNs: 'net:[1]', hostRoot: false, key: 'k' };
const AF_INET = 2, AF_PACKET = 17, AF_CAN = 29, SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3;

test('handoff next to interfaces, can_ids or promiscuous for the same family is refused, naming the place', (t) => {
  const bad = (text: string) => t.throws(() => compilePolicy(text, 'p.yaml', QUOTAS), { instanceOf: PolicyError })!.message;
  t.regex(bad(rule('{ sockets: [{ family: AF_PACKET }], interfaces: [eth0], handoff: [AF_PACKET] }')), /^p\.yaml: rules\[0\]\.grant\.handoff\[0\]: handoff of AF_PACKET next to interfaces/);
  t.regex(bad(rule('{ sockets: [{ family: "*" }], interfaces: [veth*], handoff: [AF_INET, AF_INET6] }')), /rules\[0\]\.grant\.handoff\[0\]: handoff of AF_INET next to interfaces/);
  t.regex(bad(rule('{ sockets: [{ family: AF_CAN }], can_ids: ["0x100-0x1ff"], handoff: [AF_CAN] }')), /rules\[0\]\.grant\.handoff\[0\]: handoff of AF_CAN next to can_ids/);
  t.regex(bad(rule('{ sockets: [{ family: AF_INET, type: SOCK_RAW }, { family: AF_PACKET }], promiscuous: true, handoff: [AF_INET, AF_PACKET] }')), /rules\[0\]\.grant\.handoff\[1\]: handoff of AF_PACKET next to promiscuous/);
  t.regex(bad(rule('{ handoff: [SOCK_RAW] }')), /rules\[0\]\.grant\.handoff\[0\]: unknown constant "SOCK_RAW"/);
  t.regex(bad(rule('{ handoff: true }')), /rules\[0\]\.grant\.handoff: must be array/);
  // Other families' confinements do not clash.
  t.notThrows(() => compilePolicy(rule('{ sockets: [{ family: AF_INET, type: SOCK_RAW }, { family: AF_PACKET }], interfaces: [eth0], handoff: [AF_CAN] }'), 'p.yaml', QUOTAS));
  t.notThrows(() => compilePolicy(rule('{ sockets: [{ family: AF_PACKET }], promiscuous: true, handoff: [AF_INET] }'), 'p.yaml', QUOTAS));
});

test('hand-off decision: TCP/UDP in the own netns by default, confined kinds only with the grant, no_handoff forbids', (t) => {
  const policy = (text: string) => compilePolicy(text, 'p.yaml', QUOTAS).policy;
  const none = policy('rules: []\n');
  const tcp = { family: AF_INET, type: SOCK_STREAM, protocol: 0 };
  const udp = { family: AF_INET, type: SOCK_DGRAM, protocol: 17 };
  const raw = { family: AF_INET, type: SOCK_RAW, protocol: 1 };
  t.like(handoffDecision(none, nobody, tcp, true), { allowed: true, by: 'default' });
  t.like(handoffDecision(none, nobody, udp, true), { allowed: true, by: 'default' });
  t.like(handoffDecision(none, nobody, tcp, false), { allowed: false }, "the host's namespace is confinement");
  t.like(handoffDecision(none, nobody, raw, true), { allowed: false });
  const granted = policy(rule('{ sockets: [{ family: AF_INET, type: SOCK_RAW }], handoff: [AF_INET] }'));
  t.like(handoffDecision(granted, nobody, raw, true), { allowed: true, by: 'r' });
  t.like(handoffDecision(granted, nobody, { family: AF_PACKET, type: SOCK_RAW, protocol: 0 }, true), { allowed: false });
  const forbidden = policy(rule('{}', '    no_handoff: true\n'));
  t.like(handoffDecision(forbidden, nobody, tcp, true), { allowed: false });
  t.like(handoffDecision(forbidden, { ...nobody, uid: 1000 }, tcp, true), { allowed: true }, 'the rule matches uid 65534 only');
  t.is(AF_CAN, 29);
});
