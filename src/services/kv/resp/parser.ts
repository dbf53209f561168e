/**
 * Incremental parser of Redis client requests (RESP arrays of bulk strings, and inline
 * commands), with explicit limits. Bytes arrive in any chunking; `next()` returns each complete
 * command as its arguments, `undefined` when more bytes are needed, and throws
 * `RespProtocolError` (and nothing else) on malformed or oversized input, after which the parser
 * is unusable and the connection should be closed.
 *
 * Invariants:
 * - memory held is bounded: the unconsumed bytes never exceed what the current element needs
 *   (a bulk of at most `bulkBytesMax` plus its CRLF, a line of at most `lineBytesMax`) plus the
 *   last chunk pushed;
 * - a bulk is never rescanned: the parser waits until all its bytes are there, joining the
 *   chunks once;
 * - a command's arguments total at most `commandBytesMax` bytes, and it has at most
 *   `argumentsMax` of them.
 */
import { BulwarkError } from '../../../core/errors.ts';

/** Malformed or oversized client input; `message` is Redis' text after `-ERR `. */
export class RespProtocolError extends BulwarkError {
  static override readonly name = 'RespProtocolError';
  constructor(reason: string) {
    super('resp_protocol', `Protocol error: ${reason}`);
  }
}

/** Limits of one connection's parser. */
export interface RespLimits {
  /** Longest bulk string (one argument). */
  readonly bulkBytesMax: number;
  /** Most arguments of one command. */
  readonly argumentsMax: number;
  /** Longest line: an inline command, or an array or bulk header. */
  readonly lineBytesMax: number;
  /** Most bytes of all arguments of one command together. */
  readonly commandBytesMax: number;
}

const cr = 13;
const lf = 10;
const decimal = /^-?[0-9]{1,19}$/;

/** Parses one connection's request stream. */
export class RespParser {
  /** Bytes not yet consumed start at `buf[pos]`; `parts` are chunks not yet joined onto `buf`. */
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** Unconsumed bytes needed before parsing can progress (0: try now). */
  private need = 0;
  /** Arguments the current array still announces (-1: between commands). */
  private expected = -1;
  private args: Buffer[] = [];
  private argsBytes = 0;
  /** Length of the bulk whose bytes come next (-1: its `$` header comes next). */
  private bulk = -1;
  private broken = false;

  constructor(private readonly limits: RespLimits) {}

  /** Bytes received but not yet returned as commands. */
  get bufferedBytes(): number {
    return this.buf.length - this.pos + this.partsBytes;
  }

  /** Adds received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.partsBytes += chunk.length;
  }

  /** The next complete command, or undefined until more bytes arrive. */
  next(): Buffer[] | undefined {
    if (this.broken) throw new RespProtocolError('connection already failed');
    try {
      return this.step();
    } catch (e) {
      this.broken = true;
      if (e instanceof RespProtocolError) throw e;
      // Anything else is a parser bug; report it as a protocol failure of this connection only.
      throw new RespProtocolError(`internal: ${String(e)}`);
    }
  }

  private step(): Buffer[] | undefined {
    for (;;) {
      if (this.bufferedBytes < Math.max(1, this.need)) return undefined;
      this.join();
      this.need = 0;
      if (this.expected < 0) {
        if (this.buf[this.pos] === 0x2a /* '*' */) {
          const line = this.line();
          if (line === undefined) return undefined;
          const n = this.integer(line.subarray(1), 'invalid multibulk length');
          if (n > this.limits.argumentsMax) throw new RespProtocolError('invalid multibulk length');
          if (n <= 0) continue; // Redis ignores empty and null arrays
          this.expected = n;
          this.args = [];
          this.argsBytes = 0;
          continue;
        }
        const line = this.line();
        if (line === undefined) return undefined;
        const args = inlineArguments(line);
        if (args.length === 0) continue;
        if (args.length > this.limits.argumentsMax) throw new RespProtocolError('too many arguments in inline request');
        return args;
      }
      if (this.bulk < 0) {
        const line = this.line();
        if (line === undefined) return undefined;
        if (line[0] !== 0x24 /* '$' */) throw new RespProtocolError(`expected '$', got '${line.length === 0 ? ' ' : String.fromCharCode(line[0]!)}'`);
        const n = this.integer(line.subarray(1), 'invalid bulk length');
        if (n < 0 || n > this.limits.bulkBytesMax) throw new RespProtocolError('invalid bulk length');
        if (this.argsBytes + n > this.limits.commandBytesMax) throw new RespProtocolError('command exceeds the request size limit');
        this.bulk = n;
      }
      if (this.buf.length - this.pos < this.bulk + 2) {
        this.need = this.bulk + 2;
        return undefined;
      }
      const end = this.pos + this.bulk;
      if (this.buf[end] !== cr || this.buf[end + 1] !== lf) throw new RespProtocolError('bulk string not followed by CRLF');
      this.args.push(Buffer.from(this.buf.subarray(this.pos, end)));
      this.argsBytes += this.bulk;
      this.pos = end + 2;
      this.bulk = -1;
      if (this.args.length === this.expected) {
        const args = this.args;
        this.expected = -1;
        this.args = [];
        return args;
      }
    }
  }

  /** Joins pending chunks onto the unconsumed bytes (once per element, not per chunk). */
  private join(): void {
    if (this.parts.length === 0) return;
    this.buf = Buffer.concat([this.buf.subarray(this.pos), ...this.parts]);
    this.pos = 0;
    this.parts = [];
    this.partsBytes = 0;
  }

  /** The next line without its line end, or undefined (setting `need`) when it is incomplete. */
  private line(): Buffer | undefined {
    const limit = this.limits.lineBytesMax;
    const at = this.buf.indexOf(lf, this.pos);
    if (at < 0 || at - this.pos > limit + 1) {
      const available = this.buf.length - this.pos;
      if (available > limit + 1) throw new RespProtocolError(this.expected < 0 && this.buf[this.pos] !== 0x2a ? 'too big inline request' : 'too big mbulk count string');
      this.need = available + 1;
      return undefined;
    }
    const inline = this.expected < 0 && this.buf[this.pos] !== 0x2a;
    let end = at;
    if (at > this.pos && this.buf[at - 1] === cr) end = at - 1;
    else if (!inline) throw new RespProtocolError('line not terminated by CRLF');
    const line = this.buf.subarray(this.pos, end);
    this.pos = at + 1;
    return line;
  }

  private integer(digits: Buffer, reason: string): number {
    const text = digits.toString('latin1');
    if (!decimal.test(text)) throw new RespProtocolError(reason);
    const n = Number(text);
    if (!Number.isSafeInteger(n)) throw new RespProtocolError(reason);
    return n;
  }
}

/**
 * Splits an inline command into arguments like Redis' sdssplitargs: spaces and tabs separate,
 * "double quotes" allow \n \r \t \b \a \\ \" and \xHH escapes, 'single quotes' allow \'.
 */
function inlineArguments(line: Buffer): Buffer[] {
  const args: Buffer[] = [];
  let i = 0;
  const n = line.length;
  const isSpace = (c: number | undefined): boolean => c === 0x20 || c === 0x09 || c === cr || c === lf || c === 0x0b || c === 0x0c;
  while (i < n) {
    while (i < n && isSpace(line[i])) i++;
    if (i >= n) break;
    const out: number[] = [];
    const quote = line[i] === 0x22 ? 0x22 : line[i] === 0x27 ? 0x27 : 0;
    if (quote === 0) {
      while (i < n && !isSpace(line[i])) out.push(line[i++]!);
    } else {
      i++;
      let closed = false;
      while (i < n) {
        const c = line[i]!;
        if (c === 0x5c /* \ */ && i + 1 < n) {
          const e = line[i + 1]!;
          if (quote === 0x22 && e === 0x78 /* x */ && i + 3 < n && isHex(line[i + 2]!) && isHex(line[i + 3]!)) {
            out.push(parseInt(String.fromCharCode(line[i + 2]!, line[i + 3]!), 16));
            i += 4;
            continue;
          }
          const escapes: Record<number, number> = quote === 0x22 ? { 0x6e: lf, 0x72: cr, 0x74: 9, 0x62: 8, 0x61: 7 } : {};
          if (quote === 0x22 || e === 0x27) {
            out.push(escapes[e] ?? e);
            i += 2;
            continue;
          }
        }
        if (c === quote) {
          i++;
          closed = true;
          // The closing quote must be followed by a space or the end.
          if (i < n && !isSpace(line[i])) throw new RespProtocolError('unbalanced quotes in request');
          break;
        }
        out.push(c);
        i++;
      }
      if (!closed) throw new RespProtocolError('unbalanced quotes in request');
    }
    args.push(Buffer.from(out));
  }
  return args;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}
