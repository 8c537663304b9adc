// Proves the VM test bed (scripts/vm): one VM boots under software emulation and, inside it,
// AF_CAN CAN_RAW frames packed like the seed's example (`=IB3x8s`) go round trip on vcan0,
// AF_TIPC and AF_RDS sockets can be created, and node runs (the daemon and the suites' runner
// need it there). The host kernel has none of these families: if this passes, they came from the
// VM. scripts/setup.sh installs qemu and the kernel, so a missing one fails the test, never skips.
import test from 'ava';
import { runInVm, describeVmRun } from '../helpers/vm.js';

const HARD_TIMEOUT_S = 240;

// Each step prints one `RESULT <json>` line; guest uptimes time the steps.
const SCRIPT = String.raw`
set -u
up() { cut -d' ' -f1 /proc/uptime; }
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
echo "RESULT {\"step\":\"start\",\"uptime\":$(up)}"
"$PY" - <<'PY'
import json, socket, struct, time
out = {'step': 'python'}
# The seed's CAN example: struct can_frame as "=IB3x8s".
can_frame_fmt = '=IB3x8s'
def build_can_frame(can_id, data):
    can_dlc = len(data)
    data = data.ljust(8, b'\x00')
    return struct.pack(can_frame_fmt, can_id, can_dlc, data)
def dissect_can_frame(frame):
    can_id, can_dlc, data = struct.unpack(can_frame_fmt, frame)
    return (can_id, can_dlc, data[:can_dlc])
tx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
tx.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_RECV_OWN_MSGS, 1)
tx.bind(('vcan0',))
rx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
rx.bind(('vcan0',))
tx.settimeout(5); rx.settimeout(5)
sent = build_can_frame(0x123, b'\xde\xad\xbe\xef')
t0 = time.monotonic()
tx.send(sent)
got_rx = rx.recv(16)
got_own = tx.recv(16)
out['can'] = {
    'sent': sent.hex(), 'rx': got_rx.hex(), 'own': got_own.hex(),
    'dissected': [dissect_can_frame(got_rx)[0], dissect_can_frame(got_rx)[1], dissect_can_frame(got_rx)[2].hex()],
    'addr': list(rx.getsockname()), 'ms': round((time.monotonic() - t0) * 1000, 2),
}
with open('/sys/class/net/vcan0/mtu') as f:
    out['vcan0_mtu'] = int(f.read())
for name, args in (('tipc', (socket.AF_TIPC, socket.SOCK_RDM)), ('rds', (socket.AF_RDS, socket.SOCK_SEQPACKET))):
    try:
        s = socket.socket(*args)
        out[name] = {'ok': True, 'family': int(s.family), 'type': int(s.type)}
        s.close()
    except OSError as e:
        out[name] = {'ok': False, 'error': str(e)}
print('RESULT ' + json.dumps(out))
PY
echo "RESULT {\"step\":\"python_done\",\"uptime\":$(up)}"
node -e '
const fs = require("node:fs");
const r = { step: "node", version: process.version, arch: process.arch, uid: process.getuid() };
fs.writeFileSync(process.env.VM_OUT + "/node.json", JSON.stringify(r));
console.log("RESULT " + JSON.stringify(r));
'
echo "RESULT {\"step\":\"node_done\",\"uptime\":$(up)}"
`;

test('VM bed: CAN_RAW round trip on vcan0, TIPC and RDS sockets, node, in one boot', async (t) => {
  t.timeout((HARD_TIMEOUT_S + 30) * 1000, 'the VM run outlived its own hard timeout');
  const r = await runInVm(SCRIPT, { timeoutS: HARD_TIMEOUT_S });
  t.log(describeVmRun(r));
  t.is(r.error, null);
  t.is(r.code, 0, r.stderr);

  const steps: Record<string, any> = {};
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('RESULT ')) {
      const o = JSON.parse(line.slice(7));
      steps[o.step] = o;
    }
  }
  const py = steps.python;
  t.truthy(py, 'python3 step gave no result');
  const frame = Buffer.alloc(16);
  frame.writeUInt32LE(0x123, 0);
  frame[4] = 4;
  Buffer.from('deadbeef', 'hex').copy(frame, 8);
  t.is(py.can.sent, frame.toString('hex'));
  t.is(py.can.rx, py.can.sent, 'a second CAN_RAW socket on vcan0 gets the frame as sent');
  t.is(py.can.own, py.can.sent, 'CAN_RAW_RECV_OWN_MSGS gives the sender its own frame');
  t.deepEqual(py.can.dissected, [0x123, 4, 'deadbeef']);
  t.is(py.can.addr[0], 'vcan0');
  t.is(py.vcan0_mtu, 72, 'vcan0 is CAN FD capable');
  t.deepEqual(py.tipc, { ok: true, family: 30, type: 4 }); // AF_TIPC, SOCK_RDM
  t.deepEqual(py.rds, { ok: true, family: 21, type: 5 }); // AF_RDS, SOCK_SEQPACKET
  t.regex(steps.node?.version ?? '', /^v\d+\./);
  t.is(steps.node?.uid, 0);
  t.deepEqual(JSON.parse(r.files['node.json'] ?? '{}'), steps.node, 'files in $VM_OUT come back');

  const s = (a: string, b: string) => (steps[b].uptime - steps[a].uptime).toFixed(1);
  t.log(`in the VM (guest seconds): python3 CAN/TIPC/RDS step ${s('start', 'python_done')} s, node -e ${s('python_done', 'node_done')} s`);
});
