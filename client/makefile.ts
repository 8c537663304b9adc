// socket.makefile(): Python's file objects over a socket, built as Lib/socket.py builds them —
// a raw SocketIO (readinto → recv_into, write → send), wrapped in a BufferedReader,
// BufferedWriter or BufferedRWPair (buffering, default 8192 bytes), wrapped in a TextIOWrapper
// for text modes (encoding, errors, newline as io.TextIOWrapper takes them). Every method that
// does I/O returns a Promise. The close rule is Python's _io_refs: the socket's handle closes
// only when the socket and every file object made from it are closed.
import { OSError, ValueError, timeout as TimeoutExc, BlockingIOError } from './errors.js';
import { pyType, toBytes, toInt } from './pytypes.js';

/** What a file object needs from its socket (client/socket.ts's Socket). */
export interface FileSocket {
  fileno(): number;
  recvInto(buffer: Uint8Array, nbytes?: number, flags?: number): Promise<number>;
  send(data: Uint8Array, flags?: number): Promise<number>;
  sendall(data: Uint8Array, flags?: number): Promise<void>;
  _increfSocketIOs(): void;
  /** Reads of the file go through the socket's read-ahead from the start (optional: see client/socket.ts). */
  _preferBulk?(): void;
  _decrefSocketIOs(): Promise<void>;
}

/** makefile()'s keyword arguments. */
export interface MakefileOptions {
  encoding?: string | null;
  errors?: string | null;
  newline?: string | null;
}

/** Python's io.DEFAULT_BUFFER_SIZE. */
export const DEFAULT_BUFFER_SIZE = 8192;

/** Python's io.UnsupportedOperation (an OSError and a ValueError there; an OSError here). */
export class UnsupportedOperation extends OSError {}
/** Python's LookupError (an unknown encoding). */
export class LookupError extends Error {
  override get name(): string {
    return 'LookupError';
  }
}
/** Python's UnicodeDecodeError (a ValueError). */
export class UnicodeDecodeError extends ValueError {
  override get name(): string {
    return 'UnicodeDecodeError';
  }
}

const closedFile = (): ValueError => new ValueError('I/O operation on closed file.');

/** Python's SocketIO: the raw file object (buffering=0 in binary modes). */
export class SocketIO {
  #sock: FileSocket | null;
  readonly #reading: boolean;
  readonly #writing: boolean;
  #timeoutOccurred = false;
  readonly mode: string;

  constructor(sock: FileSocket, mode: string) {
    this.#sock = sock;
    this.#reading = mode.includes('r');
    this.#writing = mode.includes('w');
    this.mode = mode + 'b';
    sock._increfSocketIOs();
    if (this.#reading) sock._preferBulk?.();
  }

  get closed(): boolean {
    return this.#sock === null;
  }

  /** The socket's handle, as Python's SocketIO.name is its fileno(). */
  get name(): number {
    return this.fileno();
  }

  #live(): FileSocket {
    if (!this.#sock) throw closedFile();
    return this.#sock;
  }

  fileno(): number {
    return this.#live().fileno();
  }

  readable(): boolean {
    this.#live();
    return this.#reading;
  }

  writable(): boolean {
    this.#live();
    return this.#writing;
  }

  seekable(): boolean {
    this.#live();
    return false;
  }

  /** Receives into b: the count, 0 at end of stream, null when a non-blocking socket has nothing. */
  async readinto(b: Uint8Array): Promise<number | null> {
    const sock = this.#live();
    if (!this.#reading) throw new UnsupportedOperation('File not open for reading');
    if (this.#timeoutOccurred) throw new OSError('cannot read from timed out object');
    try {
      return await sock.recvInto(b);
    } catch (err) {
      if (err instanceof TimeoutExc) this.#timeoutOccurred = true;
      else if (err instanceof BlockingIOError) return null;
      throw err;
    }
  }

  /** Up to n bytes (n < 0: until end of stream). */
  async read(n = -1): Promise<Buffer | null> {
    if (n < 0) return this.readall();
    const b = Buffer.alloc(n);
    const got = await this.readinto(b);
    return got === null ? null : b.subarray(0, got);
  }

  async readall(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const b = Buffer.alloc(DEFAULT_BUFFER_SIZE);
      const got = await this.readinto(b);
      if (!got) break;
      parts.push(b.subarray(0, got));
    }
    return Buffer.concat(parts);
  }

  /**
   * io.RawIOBase's readline, as every raw file has it: one byte per read() until b'\n', end of
   * stream or `limit` bytes. A non-blocking socket with nothing to read raises OSError, as IOBase
   * does when read() returns None.
   */
  async readline(limit = -1): Promise<Buffer> {
    const parts: Buffer[] = [];
    while (limit < 0 || parts.length < limit) {
      const b = await this.read(1);
      if (b === null) throw new OSError("read() should have returned a bytes object, not 'NoneType'");
      if (b.length === 0) break;
      parts.push(b);
      if (b[0] === 0x0a) break;
    }
    return Buffer.concat(parts);
  }

  /** IOBase.readlines: every line, or lines until their total length exceeds `hint` (> 0). */
  async readlines(hint = -1): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    let total = 0;
    for await (const line of this) {
      lines.push(line);
      total += line.length;
      if (hint > 0 && total > hint) break;
    }
    return lines;
  }

  /** Line iteration (`for line in f`), ending at end of stream. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return;
      yield line;
    }
  }

  /** Sends b: the count sent, null when a non-blocking socket cannot take any. */
  async write(b: Uint8Array): Promise<number | null> {
    const sock = this.#live();
    if (!this.#writing) throw new UnsupportedOperation('File not open for writing');
    try {
      return await sock.send(toBytes(b));
    } catch (err) {
      if (err instanceof BlockingIOError) return null;
      throw err;
    }
  }

  /** @internal Sends all of b (the buffered writer's flush). */
  async _writeAll(b: Buffer): Promise<void> {
    const sock = this.#live();
    if (!this.#writing) throw new UnsupportedOperation('File not open for writing');
    await sock.sendall(b);
  }

  async flush(): Promise<void> {
    this.#live();
  }

  async close(): Promise<void> {
    const sock = this.#sock;
    if (!sock) return;
    this.#sock = null;
    await sock._decrefSocketIOs();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Python's io.BufferedReader over a SocketIO. */
export class BufferedReader {
  #buf: Buffer = Buffer.alloc(0);
  constructor(readonly raw: SocketIO, readonly bufferSize = DEFAULT_BUFFER_SIZE) {}

  get closed(): boolean {
    return this.raw.closed;
  }

  get mode(): string {
    return this.raw.mode;
  }

  get name(): number {
    return this.raw.name;
  }

  fileno(): number {
    return this.raw.fileno();
  }

  readable(): boolean {
    return this.raw.readable();
  }

  writable(): boolean {
    this.raw.fileno();
    return false;
  }

  seekable(): boolean {
    return this.raw.seekable();
  }

  #check(): void {
    if (this.raw.closed) throw closedFile();
    if (!this.raw.readable()) throw new UnsupportedOperation('File not open for reading');
  }

  /** One raw read of up to max(n, bufferSize) bytes appended to the buffer: false at end of stream. */
  async #fill(n = 0): Promise<boolean> {
    const chunk = await this.raw.read(Math.max(n, this.bufferSize));
    if (!chunk || chunk.length === 0) return false;
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    return true;
  }

  #take(n: number): Buffer {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return Buffer.from(out);
  }

  /** n bytes, fewer only at end of stream; n < 0 reads to the end of the stream. */
  async read(n: number | null = -1): Promise<Buffer> {
    this.#check();
    const size = n === null ? -1 : toInt(n);
    if (size < -1) throw new ValueError('read length must be non-negative or -1');
    if (size < 0) {
      while (await this.#fill());
      return this.#take(this.#buf.length);
    }
    while (this.#buf.length < size && (await this.#fill(size - this.#buf.length)));
    return this.#take(size);
  }

  /** At most n bytes with at most one raw read (n < 0: what one read gives). */
  async read1(n = -1): Promise<Buffer> {
    this.#check();
    if (this.#buf.length === 0) await this.#fill(n < 0 ? 0 : n);
    return this.#take(n < 0 ? this.#buf.length : n);
  }

  /** Reads into b (as read(len(b))): the count. */
  async readinto(b: Uint8Array): Promise<number> {
    const data = await this.read(b.length);
    b.set(data);
    return data.length;
  }

  /** The buffered bytes without consuming them (one raw read if there are none). */
  async peek(_n = 0): Promise<Buffer> {
    this.#check();
    if (this.#buf.length === 0) await this.#fill();
    return Buffer.from(this.#buf);
  }

  /** A line ending in b'\n' (or the rest at end of stream), at most `limit` bytes when limit >= 0. */
  async readline(limit = -1): Promise<Buffer> {
    this.#check();
    let from = 0;
    for (;;) {
      const nl = this.#buf.indexOf(0x0a, from);
      if (nl >= 0 && (limit < 0 || nl < limit)) return this.#take(nl + 1);
      if (limit >= 0 && this.#buf.length >= limit) return this.#take(limit);
      from = this.#buf.length;
      if (!(await this.#fill())) return this.#take(this.#buf.length);
    }
  }

  async readlines(hint = -1): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    let total = 0;
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return lines;
      lines.push(line);
      total += line.length;
      if (hint > 0 && total > hint) return lines;
    }
  }

  async flush(): Promise<void> {
    if (this.raw.closed) throw closedFile();
  }

  async close(): Promise<void> {
    await this.raw.close();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return;
      yield line;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Python's io.BufferedWriter over a SocketIO. */
export class BufferedWriter {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  constructor(readonly raw: SocketIO, readonly bufferSize = DEFAULT_BUFFER_SIZE) {}

  get closed(): boolean {
    return this.raw.closed;
  }

  get mode(): string {
    return this.raw.mode;
  }

  get name(): number {
    return this.raw.name;
  }

  fileno(): number {
    return this.raw.fileno();
  }

  readable(): boolean {
    this.raw.fileno();
    return false;
  }

  writable(): boolean {
    return this.raw.writable();
  }

  seekable(): boolean {
    return this.raw.seekable();
  }

  /** Buffers b (sending when the buffer is full): the count, always len(b). */
  async write(b: Uint8Array): Promise<number> {
    if (this.raw.closed) throw new ValueError('write to closed file');
    if (!this.raw.writable()) throw new UnsupportedOperation('File not open for writing');
    const data = Buffer.from(toBytes(b));
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    if (this.#pendingBytes >= this.bufferSize) await this.flush();
    return data.length;
  }

  async flush(): Promise<void> {
    if (this.raw.closed) throw new ValueError('flush of closed file');
    if (this.#pendingBytes === 0) return;
    const data = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.raw._writeAll(data);
  }

  async close(): Promise<void> {
    if (this.raw.closed) return;
    try {
      await this.flush();
    } finally {
      await this.raw.close();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Python's io.BufferedRWPair(raw, raw): one reader and one writer on the same SocketIO. */
export class BufferedRWPair {
  readonly reader: BufferedReader;
  readonly writer: BufferedWriter;
  constructor(readonly raw: SocketIO, bufferSize = DEFAULT_BUFFER_SIZE) {
    this.reader = new BufferedReader(raw, bufferSize);
    this.writer = new BufferedWriter(raw, bufferSize);
  }

  get closed(): boolean {
    return this.raw.closed;
  }

  get mode(): string {
    return this.raw.mode;
  }

  get name(): number {
    return this.raw.name;
  }

  fileno(): number {
    return this.raw.fileno();
  }

  readable(): boolean {
    return this.reader.readable();
  }

  writable(): boolean {
    return this.writer.writable();
  }

  seekable(): boolean {
    return false;
  }

  read(n: number | null = -1): Promise<Buffer> {
    return this.reader.read(n);
  }

  read1(n = -1): Promise<Buffer> {
    return this.reader.read1(n);
  }

  readinto(b: Uint8Array): Promise<number> {
    return this.reader.readinto(b);
  }

  peek(n = 0): Promise<Buffer> {
    return this.reader.peek(n);
  }

  readline(limit = -1): Promise<Buffer> {
    return this.reader.readline(limit);
  }

  readlines(hint = -1): Promise<Buffer[]> {
    return this.reader.readlines(hint);
  }

  write(b: Uint8Array): Promise<number> {
    return this.writer.write(b);
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  async close(): Promise<void> {
    try {
      await this.writer.close();
    } finally {
      await this.reader.close();
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    return this.reader[Symbol.asyncIterator]();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

type Buffered = BufferedReader | BufferedWriter | BufferedRWPair;

/** A text codec: bytes → str (streaming) and str → bytes, Python's codec names. */
interface Codec {
  name: string;
  decoder(): (b: Buffer, final: boolean) => string;
  encode(s: string): Buffer;
}

function codec(encoding: string, errors: string): Codec {
  const key = encoding.toLowerCase().replace(/_/g, '-');
  const strict = errors === 'strict';
  if (!['strict', 'replace', 'ignore'].includes(errors)) throw new LookupError(`unknown error handler name '${errors}'`);
  const single = (name: string, max: number): Codec => ({
    name,
    decoder: () => (b) => {
      let out = '';
      for (let i = 0; i < b.length; i++) {
        const c = b[i]!;
        if (c > max) {
          if (strict) throw new UnicodeDecodeError(`'${name}' codec can't decode byte 0x${c.toString(16)} in position ${i}: ordinal not in range(${max + 1})`);
          if (errors === 'replace') out += '\ufffd';
        } else out += String.fromCharCode(c);
      }
      return out;
    },
    encode: (s) => {
      const bytes: number[] = [];
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > max) {
          if (strict) throw new ValueError(`'${name}' codec can't encode character '\\u${c.toString(16).padStart(4, '0')}' in position ${i}: ordinal not in range(${max + 1})`);
          if (errors === 'replace') bytes.push(0x3f);
        } else bytes.push(c);
      }
      return Buffer.from(bytes);
    },
  });
  if (['ascii', 'us-ascii', '646'].includes(key)) return single('ascii', 0x7f);
  if (['latin-1', 'latin1', 'iso-8859-1', 'iso8859-1', 'l1'].includes(key)) return single('latin-1', 0xff);
  const web: Record<string, { label: string; node: BufferEncoding }> = {
    'utf-8': { label: 'utf-8', node: 'utf8' },
    utf8: { label: 'utf-8', node: 'utf8' },
    'utf-16-le': { label: 'utf-16le', node: 'utf16le' },
    'utf-16le': { label: 'utf-16le', node: 'utf16le' },
  };
  const w = web[key];
  if (!w) throw new LookupError(`unknown encoding: ${encoding}`);
  return {
    name: w.label,
    decoder: () => {
      const d = new TextDecoder(w.label, { fatal: strict });
      return (b, final) => {
        try {
          const s = d.decode(b, { stream: !final });
          return errors === 'ignore' ? s.replace(/\ufffd/g, '') : s;
        } catch {
          throw new UnicodeDecodeError(`'${w.label}' codec can't decode bytes: invalid data`);
        }
      };
    },
    encode: (s) => {
      if (strict && w.node === 'utf8' && /[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ''))) {
        throw new ValueError(`'utf-8' codec can't encode characters: surrogates not allowed`);
      }
      return Buffer.from(s, w.node);
    },
  };
}

/** Python's io.TextIOWrapper over a buffered socket file: encoding, errors and newline as io's. */
export class TextIOWrapper {
  readonly #codec: Codec;
  readonly #decode: (b: Buffer, final: boolean) => string;
  #text = '';
  #eof = false;
  readonly #newline: string | null;
  mode = 'r';

  constructor(readonly buffer: Buffered, encoding: string | null = null, readonly errors: string = 'strict', newline: string | null = null) {
    if (newline !== null && !['', '\n', '\r', '\r\n'].includes(newline)) throw new ValueError(`illegal newline value: ${newline}`);
    this.#newline = newline;
    this.#codec = codec(encoding ?? 'utf-8', errors);
    this.#decode = this.#codec.decoder();
  }

  get encoding(): string {
    return this.#codec.name;
  }

  get newlines(): null {
    return null;
  }

  get closed(): boolean {
    return this.buffer.closed;
  }

  get name(): number {
    return this.buffer.name;
  }

  fileno(): number {
    return this.buffer.fileno();
  }

  readable(): boolean {
    return this.buffer.readable();
  }

  writable(): boolean {
    return this.buffer.writable();
  }

  seekable(): boolean {
    return false;
  }

  #reader(): BufferedReader | BufferedRWPair {
    if (this.buffer.closed) throw closedFile();
    if (this.buffer instanceof BufferedWriter) throw new UnsupportedOperation('not readable');
    return this.buffer;
  }

  /** Decoded text not yet translated: a trailing '\r' waits to learn whether '\n' follows. */
  #held = '';

  /** Decodes one more chunk into the text buffer (newlines translated when newline is None): false at end. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = await this.#reader().read1(DEFAULT_BUFFER_SIZE);
    const final = chunk.length === 0;
    const s = this.#decode(chunk, final);
    if (final) this.#eof = true;
    if (this.#newline !== null) {
      this.#text += s;
    } else {
      let t = this.#held + s;
      this.#held = '';
      if (!final && t.endsWith('\r')) {
        this.#held = '\r';
        t = t.slice(0, -1);
      }
      this.#text += t.replace(/\r\n?/g, '\n');
    }
    return !final;
  }

  /** Up to n characters (n < 0: to the end of the stream). */
  async read(n: number | null = -1): Promise<string> {
    this.#reader();
    const size = n === null ? -1 : toInt(n);
    while ((size < 0 || this.#text.length < size) && (await this.#fill()));
    const k = size < 0 ? this.#text.length : Math.min(size, this.#text.length);
    const out = this.#text.slice(0, k);
    this.#text = this.#text.slice(k);
    return out;
  }

  /** Where the first line ends in the text buffer (index after its terminator), or -1. */
  #lineEnd(): number {
    const t = this.#text;
    const nl = this.#newline;
    if (nl === null || nl === '\n') {
      const i = t.indexOf('\n');
      return i < 0 ? -1 : i + 1;
    }
    if (nl === '') {
      // Universal recognition, untranslated: \r\n, \r or \n ends a line (a final \r waits for more).
      const m = /\r\n|\r(?!$)|\n/.exec(t);
      if (m) return m.index + m[0].length;
      return this.#eof && t.endsWith('\r') ? t.length : -1;
    }
    const i = t.indexOf(nl);
    return i < 0 ? -1 : i + nl.length;
  }

  /** A line with its terminator (the rest at end of stream), at most `size` characters when size >= 0. */
  async readline(size = -1): Promise<string> {
    this.#reader();
    for (;;) {
      const end = this.#lineEnd();
      if (end >= 0 && (size < 0 || end <= size)) return this.#cut(end);
      if (size >= 0 && this.#text.length >= size) return this.#cut(size);
      if (!(await this.#fill())) {
        const last = this.#lineEnd();
        return this.#cut(last >= 0 ? last : this.#text.length);
      }
    }
  }

  #cut(k: number): string {
    const out = this.#text.slice(0, k);
    this.#text = this.#text.slice(k);
    return out;
  }

  async readlines(hint = -1): Promise<string[]> {
    const lines: string[] = [];
    let total = 0;
    for (;;) {
      const line = await this.readline();
      if (line === '') return lines;
      lines.push(line);
      total += line.length;
      if (hint > 0 && total > hint) return lines;
    }
  }

  /** Encodes s ('\n' becomes the newline argument's terminator when it is '\r' or '\r\n'): len(s). */
  async write(s: string): Promise<number> {
    if (this.buffer.closed) throw new ValueError('I/O operation on closed file.');
    if (typeof s !== 'string') throw new TypeError(`write() argument must be str, not ${pyType(s)}`);
    if (this.buffer instanceof BufferedReader) throw new UnsupportedOperation('not writable');
    const text = this.#newline === '\r' || this.#newline === '\r\n' ? s.replace(/\n/g, this.#newline) : s;
    await this.buffer.write(this.#codec.encode(text));
    return s.length;
  }

  async flush(): Promise<void> {
    await this.buffer.flush();
  }

  async close(): Promise<void> {
    if (this.buffer.closed) return;
    try {
      if (!(this.buffer instanceof BufferedReader)) await this.buffer.flush();
    } finally {
      await this.buffer.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    for (;;) {
      const line = await this.readline();
      if (line === '') return;
      yield line;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** What makefile() returns, by mode and buffering. */
export type SocketFile = SocketIO | BufferedReader | BufferedWriter | BufferedRWPair | TextIOWrapper;

/** Lib/socket.py's makefile(), over `sock`. */
export function makefile(sock: FileSocket, mode = 'r', buffering: number | null = null, opts: MakefileOptions = {}): SocketFile {
  if (typeof mode !== 'string') throw new TypeError(`makefile() argument 1 must be str, not ${pyType(mode)}`);
  if (![...mode].every((c) => c === 'r' || c === 'w' || c === 'b')) {
    throw new ValueError(`invalid mode '${mode}' (only r, w, b allowed)`);
  }
  const writing = mode.includes('w');
  const reading = mode.includes('r') || !writing;
  const binary = mode.includes('b');
  let size = buffering === null ? -1 : toInt(buffering);
  if (size < 0) size = DEFAULT_BUFFER_SIZE;
  if (size === 0 && !binary) throw new ValueError('unbuffered streams must be binary');
  // Text-layer arguments are checked before the raw file takes a reference on the socket.
  if (!binary) {
    const nl = opts.newline ?? null;
    if (nl !== null && !['', '\n', '\r', '\r\n'].includes(nl)) throw new ValueError(`illegal newline value: ${nl}`);
    codec(opts.encoding ?? 'utf-8', opts.errors ?? 'strict');
  }
  const raw = new SocketIO(sock, (reading ? 'r' : '') + (writing ? 'w' : ''));
  if (size === 0) return raw;
  const buffer = reading && writing ? new BufferedRWPair(raw, size) : reading ? new BufferedReader(raw, size) : new BufferedWriter(raw, size);
  if (binary) return buffer;
  const text = new TextIOWrapper(buffer, opts.encoding ?? null, opts.errors ?? 'strict', opts.newline ?? null);
  text.mode = mode;
  return text;
}
