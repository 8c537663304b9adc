// The project's only OS-facing code: libc through ffi-rs, constants from the
// system headers, sockaddr codecs. The daemon imports from here.
export * from './errno.js';
export * from './constants.js';
export * from './libc.js';
export * from './sockaddr.js';
