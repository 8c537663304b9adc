// Credentials and namespaces of the calling thread, through raw syscalls: glibc's setresuid,
// setgroups and friends change every thread of the process, while the daemon must change only
// its main thread, for one synchronous syscall made on a caller's behalf, and change it back.
import { DataType, load, open } from 'ffi-rs';
import { os } from './constants.js';
import { errnoException } from './errno.js';
import { getsockopt } from './libc.js';

open({ library: 'libc', path: '' });

const { I32, I64, U8Array, String: Str } = DataType;

interface Result {
  value: number;
  errnoCode: number;
}

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): Result {
  return load({ library: 'libc', funcName, retType, paramsType, paramsValue, errno: true }) as unknown as Result;
}

function check(r: Result, name: string): number {
  if (r.value === -1) throw errnoException(r.errnoCode, name);
  return r.value;
}

/** syscall(nr, a, b, c) with integer arguments. */
function sys(nr: number, name: string, a: number, b: number, c: number): number {
  return check(call('syscall', I64, [I64, I64, I64, I64], [nr, a, b, c]), name);
}

/** This thread's effective uid/gid (-1 leaves a field unchanged), via raw setres*id. */
export function setThreadEuid(uid: number): void {
  sys(os.SYS_setresuid, 'setresuid', -1, uid, -1);
}

export function setThreadEgid(gid: number): void {
  sys(os.SYS_setresgid, 'setresgid', -1, gid, -1);
}

/** This thread's supplementary groups. */
export function setThreadGroups(groups: number[]): void {
  const list = Buffer.alloc(Math.max(4, groups.length * 4));
  groups.forEach((g, i) => list.writeUInt32LE(g, i * 4));
  check(call('syscall', I64, [I64, I64, U8Array], [os.SYS_setgroups, groups.length, list]), 'setgroups');
}

/** This thread's supplementary groups now. */
export function getThreadGroups(): number[] {
  const list = Buffer.alloc(4 * 1024);
  const n = check(call('getgroups', I32, [I32, U8Array], [1024, list]), 'getgroups');
  return Array.from({ length: n }, (_, i) => list.readUInt32LE(i * 4));
}

/** setns(fd, nstype) for this thread. */
export function setns(fd: number, nstype: number): void {
  check(call('setns', I32, [I32, I32], [fd, nstype]), 'setns');
}

/** open(path, O_RDONLY | O_CLOEXEC): for namespace files. */
export function openReadOnly(path: string): number {
  return check(call('open', I32, [Str, I32], [path, os.O_RDONLY | os.O_CLOEXEC]), 'open');
}

/** The supplementary groups of a Unix socket's peer (SO_PEERGROUPS). */
export function peerGroups(fd: number): number[] {
  const buf = getsockopt(fd, os.SOL_SOCKET, os.SO_PEERGROUPS, 4 * 1024);
  return Array.from({ length: buf.length / 4 }, (_, i) => buf.readUInt32LE(i * 4));
}

/** A pidfd for a Unix socket's peer process (SO_PEERPIDFD), or -1 where the kernel has none. */
export function peerPidfd(fd: number): number {
  try {
    return getsockopt(fd, os.SOL_SOCKET, os.SO_PEERPIDFD, 4).readInt32LE(0);
  } catch {
    return -1;
  }
}

const EPERM = 1;

/**
 * True while the process a pidfd refers to is alive (pidfd_send_signal with signal 0): ESRCH
 * once it has exited; EPERM (another uid, and no CAP_KILL — the unit does not grant it) still
 * means it lives.
 */
export function pidfdAlive(pidfd: number): boolean {
  const r = call('syscall', I64, [I64, I64, I64, I64, I64], [os.SYS_pidfd_send_signal, pidfd, 0, 0, 0]);
  return r.value === 0 || r.errnoCode === EPERM;
}
