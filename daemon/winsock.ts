// The SIO_* and RCVALL_* constants of Python's socket module take the Winsock values (a
// documented exception: Linux has none of them). The daemon gives them meaning in ioctl():
// SIO_RCVALL on its raw IPPROTO_IP socket, SIO_KEEPALIVE_VALS as TCP keepalive options,
// SIO_LOOPBACK_FAST_PATH as an accepted no-op. They travel in the module info with the
// generated Linux table, which never holds them.

/** WSAIoctl codes and SIO_RCVALL values, as Python on Windows defines them. */
export const winsock: Readonly<Record<string, number>> = Object.freeze({
  SIO_RCVALL: 0x98000001,
  SIO_KEEPALIVE_VALS: 0x98000004,
  SIO_LOOPBACK_FAST_PATH: 0x98000010,
  RCVALL_OFF: 0,
  RCVALL_ON: 1,
  RCVALL_SOCKETLEVELONLY: 2,
  RCVALL_MAX: 3,
});
