/**
 * A small schema language for the hand-written binary codec. Each schema value is a Codec:
 * an encoder into a growable Writer, a decoder from a bounds-checked Reader, and a descriptor
 * (`desc`) that tests walk to generate arbitrary values.
 *
 * Wire rules (every message and record follows them):
 * - integers are big-endian; `uint` is a safe integer (< 2^53) in 8 bytes;
 * - variable-length fields carry a u32 length (bytes) or u16 count (arrays) before the data;
 * - every length and count is checked against the field's declared maximum AND against the
 *   bytes that remain before anything is allocated, so a hostile length cannot allocate;
 * - decoding consumes exactly the input; trailing bytes are a decode error.
 *
 * Invariant: for every codec c and value v accepted by c.encode, c.decode(c.encode(v)) deep-equals v.
 */
import { DecodeError } from '../core/errors.ts';

/** Bytes are passed around as Uint8Array (Buffer is a subclass). */
export type Bytes = Uint8Array;

/** Internal failure signal; never escapes `tryDecode`. */
class CodecFailure extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(reason);
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Growable output buffer. */
export class Writer {
  private buf: Uint8Array;
  private view: DataView;
  /** Bytes written so far. */
  length = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(Math.max(16, initial));
    this.view = new DataView(this.buf.buffer);
  }
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.length, v);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v);
    this.length += 4;
  }
  /** A safe integer in 8 bytes: high 21 bits then low 32 bits. */
  uint(v: number): void {
    this.ensure(8);
    this.view.setUint32(this.length, Math.floor(v / 0x1_0000_0000));
    this.view.setUint32(this.length + 4, v >>> 0);
    this.length += 8;
  }
  /**
   * A u32 byte length, then `s` in UTF-8 written in place (no intermediate copy). Throws a
   * RangeError when that is over `max` bytes.
   */
  utf8(s: string, max: number): void {
    // One byte per UTF-16 unit first (ASCII, the common case); the worst case, 3, only if short.
    this.ensure(4 + s.length);
    let res = utf8Encoder.encodeInto(s, this.buf.subarray(this.length + 4));
    if (res.read < s.length) {
      this.ensure(4 + 3 * s.length);
      res = utf8Encoder.encodeInto(s, this.buf.subarray(this.length + 4));
    }
    if (res.written > max) throw new RangeError(`string longer than ${max} bytes`);
    this.view.setUint32(this.length, res.written);
    this.length += 4 + res.written;
  }
  raw(b: Bytes): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** The written bytes (a copy-free view; do not keep the Writer after this). */
  finish(): Bytes {
    return this.buf.subarray(0, this.length);
  }
  /** A copy of the written bytes; the Writer may then be reset and reused. */
  copy(): Bytes {
    return this.buf.slice(0, this.length);
  }
  /** Bytes allocated. */
  get capacity(): number {
    return this.buf.length;
  }
  /** Empties the writer, keeping its buffer. */
  reset(): void {
    this.length = 0;
  }
}

/** Shared scratch writer for encodeWith: encoding is synchronous and never re-entrant. */
let scratch = new Writer(64 * 1024);
/** A scratch buffer grown past this by one large value is dropped after use. */
const scratchKeepMax = 4 << 20;

/** Bounds-checked input reader over untrusted bytes. */
export class Reader {
  offset = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Bytes) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  get remaining(): number {
    return this.buf.length - this.offset;
  }
  fail(reason: string): never {
    throw new CodecFailure(reason, this.offset);
  }
  private need(n: number, what: string): void {
    if (n > this.remaining) this.fail(`${what} needs ${n} bytes, ${this.remaining} left`);
  }
  u8(): number {
    this.need(1, 'u8');
    const v = this.view.getUint8(this.offset);
    this.offset += 1;
    return v;
  }
  u16(): number {
    this.need(2, 'u16');
    const v = this.view.getUint16(this.offset);
    this.offset += 2;
    return v;
  }
  u32(): number {
    this.need(4, 'u32');
    const v = this.view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }
  uint(): number {
    this.need(8, 'uint');
    const hi = this.view.getUint32(this.offset);
    const lo = this.view.getUint32(this.offset + 4);
    if (hi > 0x1f_ffff) this.fail('integer exceeds 2^53-1');
    this.offset += 8;
    return hi * 0x1_0000_0000 + lo;
  }
  /** A zero-copy view of the next n bytes (n already checked against its maximum). */
  take(n: number, what: string): Bytes {
    this.need(n, what);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
}

/** Descriptor of a codec, for generic tooling (arbitraries, docs). */
export type Desc =
  | { readonly t: 'u8' | 'u16' | 'u32' | 'bool' }
  | { readonly t: 'uint'; readonly max: number }
  | { readonly t: 'bytes'; readonly max: number }
  | { readonly t: 'fixed'; readonly len: number }
  | { readonly t: 'str'; readonly max: number }
  | { readonly t: 'array'; readonly item: Codec<unknown>; readonly max: number }
  | { readonly t: 'struct'; readonly fields: Readonly<Record<string, Codec<unknown>>> }
  | { readonly t: 'optional'; readonly inner: Codec<unknown> };

/** Encoder, decoder and descriptor of one wire type. */
export interface Codec<T> {
  readonly desc: Desc;
  encode(w: Writer, v: T): void;
  decode(r: Reader): T;
}

/** The TypeScript type a codec encodes. */
export type Infer<C> = C extends Codec<infer T> ? T : never;

function checkInt(v: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${what} out of range: ${v}`);
}

/** Unsigned 8-bit integer. */
export const u8: Codec<number> = {
  desc: { t: 'u8' },
  encode: (w, v) => {
    checkInt(v, 0, 0xff, 'u8');
    w.u8(v);
  },
  decode: (r) => r.u8(),
};
/** Unsigned 16-bit integer. */
export const u16: Codec<number> = {
  desc: { t: 'u16' },
  encode: (w, v) => {
    checkInt(v, 0, 0xffff, 'u16');
    w.u16(v);
  },
  decode: (r) => r.u16(),
};
/** Unsigned 32-bit integer. */
export const u32: Codec<number> = {
  desc: { t: 'u32' },
  encode: (w, v) => {
    checkInt(v, 0, 0xffff_ffff, 'u32');
    w.u32(v);
  },
  decode: (r) => r.u32(),
};
/** Safe non-negative integer (< 2^53) in 8 bytes, optionally with a smaller maximum. */
export function uintMax(max: number): Codec<number> {
  return {
    desc: { t: 'uint', max },
    encode: (w, v) => {
      checkInt(v, 0, max, 'uint');
      w.uint(v);
    },
    decode: (r) => {
      const v = r.uint();
      if (v > max) r.fail(`integer ${v} exceeds ${max}`);
      return v;
    },
  };
}
/** Safe non-negative integer (< 2^53) in 8 bytes. */
export const uint: Codec<number> = uintMax(Number.MAX_SAFE_INTEGER);
/** Boolean as one byte, 0 or 1 (anything else is a decode error). */
export const bool: Codec<boolean> = {
  desc: { t: 'bool' },
  encode: (w, v) => {
    w.u8(v ? 1 : 0);
  },
  decode: (r) => {
    const b = r.u8();
    if (b > 1) r.fail(`bool byte ${b}`);
    return b === 1;
  },
};
/** Variable-length bytes with a u32 length, at most `max`. Decodes as a zero-copy view. */
export function bytes(max: number): Codec<Bytes> {
  return {
    desc: { t: 'bytes', max },
    encode: (w, v) => {
      if (v.length > max) throw new RangeError(`bytes longer than ${max}: ${v.length}`);
      w.u32(v.length);
      w.raw(v);
    },
    decode: (r) => {
      const n = r.u32();
      if (n > max) r.fail(`length ${n} exceeds limit ${max}`);
      return r.take(n, 'bytes');
    },
  };
}
/** Exactly `len` bytes (digests, MACs, signatures). */
export function fixed(len: number): Codec<Bytes> {
  return {
    desc: { t: 'fixed', len },
    encode: (w, v) => {
      if (v.length !== len) throw new RangeError(`expected ${len} bytes, got ${v.length}`);
      w.raw(v);
    },
    decode: (r) => r.take(len, `fixed(${len})`),
  };
}
/** UTF-8 string with a u32 byte length, at most `max` bytes; invalid UTF-8 is a decode error. */
export function str(max: number): Codec<string> {
  return {
    desc: { t: 'str', max },
    encode: (w, v) => w.utf8(v, max),
    decode: (r) => {
      const n = r.u32();
      if (n > max) r.fail(`string length ${n} exceeds limit ${max}`);
      const b = r.take(n, 'string');
      try {
        return utf8Decoder.decode(b);
      } catch {
        // TextDecoder throws TypeError on invalid UTF-8; report it as a decode failure.
        return r.fail('invalid utf-8');
      }
    },
  };
}
/** Array with a u16 count, at most `max` items (max <= 65535). */
export function array<T>(item: Codec<T>, max: number): Codec<T[]> {
  if (max > 0xffff) throw new RangeError('array max exceeds u16');
  return {
    desc: { t: 'array', item, max },
    encode: (w, v) => {
      if (v.length > max) throw new RangeError(`array longer than ${max}: ${v.length}`);
      w.u16(v.length);
      for (const x of v) item.encode(w, x);
    },
    decode: (r) => {
      const n = r.u16();
      if (n > max) r.fail(`count ${n} exceeds limit ${max}`);
      // Every item takes at least one byte, so a count larger than the rest is hostile.
      if (n > r.remaining) r.fail(`count ${n} exceeds remaining ${r.remaining} bytes`);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(item.decode(r));
      return out;
    },
  };
}
/** Present flag byte, then the value when present. */
export function optional<T>(inner: Codec<T>): Codec<T | undefined> {
  return {
    desc: { t: 'optional', inner },
    encode: (w, v) => {
      if (v === undefined) w.u8(0);
      else {
        w.u8(1);
        inner.encode(w, v);
      }
    },
    decode: (r) => {
      const flag = r.u8();
      if (flag === 0) return undefined;
      if (flag !== 1) r.fail(`optional flag ${flag}`);
      return inner.decode(r);
    },
  };
}
/** Fields in declaration order. */
export function struct<F extends Record<string, Codec<unknown>>>(fields: F): Codec<{ [K in keyof F]: Infer<F[K]> }> {
  const entries = Object.entries(fields);
  return {
    desc: { t: 'struct', fields },
    encode: (w, v) => {
      const o = v as Record<string, unknown>;
      for (const [k, c] of entries) c.encode(w, o[k]);
    },
    decode: (r) => {
      const o: Record<string, unknown> = {};
      for (const [k, c] of entries) o[k] = c.decode(r);
      return o as { [K in keyof F]: Infer<F[K]> };
    },
  };
}

/** Encodes `v` with `c` into fresh bytes. Throws RangeError when `v` breaks a limit (a bug). */
export function encodeWith<T>(c: Codec<T>, v: T): Bytes {
  scratch.reset();
  try {
    c.encode(scratch, v);
  } catch (e) {
    scratch.reset();
    throw e;
  }
  const out = scratch.copy();
  if (scratch.capacity > scratchKeepMax) scratch = new Writer(64 * 1024);
  return out;
}

/** Writer of `withEncoded`, apart from `scratch` so `use` may call encodeWith. */
let viewScratch = new Writer(64 * 1024);
let viewBusy = false;

/**
 * Encodes `v` with `c` and hands `use` a view of the bytes, valid only during the call. For
 * bytes that are only hashed or MACed, this saves the copy (and the allocation) `encodeWith`
 * makes. `use` must not keep the view; calling withEncoded inside `use` throws.
 */
export function withEncoded<T, R>(c: Codec<T>, v: T, use: (b: Bytes) => R): R {
  if (viewBusy) throw new Error('withEncoded is not re-entrant');
  viewBusy = true;
  const w = viewScratch;
  w.reset();
  try {
    c.encode(w, v);
    return use(w.finish());
  } finally {
    w.reset();
    if (w.capacity > scratchKeepMax) viewScratch = new Writer(64 * 1024);
    viewBusy = false;
  }
}

/** Result of decoding untrusted bytes: the value, or a typed rejection. */
export type DecodeResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: DecodeError };

/** Decodes untrusted bytes; never throws. Trailing bytes are rejected. */
export function tryDecodeWith<T>(c: Codec<T>, b: Bytes): DecodeResult<T> {
  const r = new Reader(b);
  try {
    const value = c.decode(r);
    if (r.remaining !== 0) return { ok: false, error: new DecodeError(`${r.remaining} trailing bytes`, r.offset) };
    return { ok: true, value };
  } catch (e) {
    if (e instanceof CodecFailure) return { ok: false, error: new DecodeError(e.reason, e.offset) };
    // Anything else escaping a decoder is a codec bug; it must still not escape to the caller.
    return { ok: false, error: new DecodeError(`internal: ${String(e)}`, r.offset) };
  }
}
