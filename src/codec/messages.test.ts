import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  authRowCodec,
  batchCodec,
  batchRequestCodec,
  encodeBatch,
  encodeMessage,
  messageSchemas,
  MsgKind,
  orderCheckpointCodec,
  peekKind,
  proposedRequestCodec,
  signedViewChangeCodec,
  tryDecodeMessage,
  viewChangeBodyCodec,
  type Message,
  type MsgKindName,
} from './messages.ts';
import {
  array,
  bool,
  bytes,
  encodeWith,
  fixed,
  optional,
  str,
  struct,
  tryDecodeWith,
  u16,
  u32,
  u8,
  uint,
  uintMax,
  withEncoded,
  Writer,
  type Codec,
  type DecodeResult,
} from './schema.ts';
import { frameBytesMax } from './limits.ts';
import { DecodeError } from '../core/errors.ts';

// ---------------------------------------------------------------------------------------------
// Generic arbitraries, built from each codec's descriptor.

interface ArbOptions {
  /** Longest bytes/str field generated when its limit is larger. */
  readonly bytesCap: number;
  /** Most array items generated when the limit is larger. */
  readonly itemsCap: number;
}
const fast: ArbOptions = { bytesCap: 64, itemsCap: 4 };

const utf8 = new TextEncoder();

/** Values `c` accepts. Limits at or below the caps are also hit exactly. */
function arbOf(c: Codec<unknown>, o: ArbOptions = fast): fc.Arbitrary<unknown> {
  const d = c.desc;
  switch (d.t) {
    case 'u8':
      return fc.integer({ min: 0, max: 0xff });
    case 'u16':
      return fc.integer({ min: 0, max: 0xffff });
    case 'u32':
      return fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 0xffff_ffff));
    case 'bool':
      return fc.boolean();
    case 'uint': {
      const edges = [0, 1, 0xffff_ffff, 0x1_0000_0000, d.max].filter((x) => x <= d.max);
      return fc.oneof(fc.nat({ max: d.max }), fc.nat({ max: Math.min(d.max, 1000) }), fc.constantFrom(...edges));
    }
    case 'bytes': {
      const upTo = fc.uint8Array({ maxLength: Math.min(d.max, o.bytesCap) });
      return d.max <= o.bytesCap ? fc.oneof(upTo, fc.uint8Array({ minLength: d.max, maxLength: d.max })) : upTo;
    }
    case 'fixed':
      return fc.uint8Array({ minLength: d.len, maxLength: d.len });
    case 'str': {
      const max = d.max;
      const upTo = fc.string({ unit: 'binary', maxLength: Math.min(max, o.bytesCap) }).filter((s) => utf8.encode(s).length <= max);
      return max <= o.bytesCap ? fc.oneof(upTo, fc.string({ unit: 'binary-ascii', minLength: max, maxLength: max })) : upTo;
    }
    case 'array': {
      const item = arbOf(d.item, o);
      const upTo = fc.array(item, { maxLength: Math.min(d.max, o.itemsCap) });
      return d.max <= o.itemsCap ? fc.oneof(upTo, fc.array(item, { minLength: d.max, maxLength: d.max })) : upTo;
    }
    case 'optional':
      return fc.option(arbOf(d.inner, o), { nil: undefined });
    case 'struct': {
      const fields: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, f] of Object.entries(d.fields)) fields[k] = arbOf(f, o);
      return fc.record(fields);
    }
  }
}

const kinds = Object.keys(messageSchemas) as MsgKindName[];

function arbMessageOf(kind: MsgKindName): fc.Arbitrary<Message> {
  return arbOf(messageSchemas[kind] as Codec<unknown>).map((v) => ({ ...(v as object), kind }) as Message);
}
const arbMessage: fc.Arbitrary<Message> = fc.constantFrom(...kinds).chain(arbMessageOf);

/** Replaces every byte view (Uint8Array, Buffer, subarrays) by a tagged hex string, recursively. */
function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = normalize(x);
    return out;
  }
  return v;
}

function assertSameValue(actual: unknown, expected: unknown, what: string): void {
  assert.deepStrictEqual(normalize(actual), normalize(expected), what);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** A rejection must be a DecodeError with a code, a message and an offset inside the input. */
function assertTypedRejection(res: DecodeResult<unknown>, input: Uint8Array): asserts res is { ok: false; error: DecodeError } {
  assert.equal(res.ok, false);
  assert.ok(res.error instanceof DecodeError, 'rejection is a DecodeError');
  assert.equal(res.error.code, 'decode_failed');
  assert.ok(res.error.message.length > 'cannot decode: '.length, 'rejection has a message');
  assert.ok(res.error.offset >= 0 && res.error.offset <= input.length, `offset ${res.error.offset} within ${input.length}`);
  // A decoder that threw something other than its own failure signal is a codec bug.
  assert.doesNotMatch(res.error.message, /internal:/);
}

/** Decodes untrusted bytes: never throws; ok results re-encode to exactly the input (canonical). */
function checkDecodeTotal(b: Uint8Array): DecodeResult<Message> {
  let res: DecodeResult<Message>;
  try {
    res = tryDecodeMessage(b);
  } catch (e) {
    assert.fail(`tryDecodeMessage threw ${String(e)} on ${hex(b).slice(0, 200)}`);
  }
  if (res.ok) {
    assert.equal(res.value.kind, peekKind(b));
    assert.equal(hex(encodeMessage(res.value)), hex(b), 'an accepted frame re-encodes to the same bytes');
  } else {
    assertTypedRejection(res, b);
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Locating length and count fields inside a valid encoding (for targeted mutations).

interface FieldAt {
  readonly offset: number;
  readonly t: 'bytes' | 'str' | 'array';
  /** The field's declared maximum (bytes for bytes/str, items for arrays). */
  readonly max: number;
}

/** Offsets of every u32 length (bytes, str) and u16 count (array) in the encoding of `v`, from `start`. */
function fieldsOf(c: Codec<unknown>, v: unknown, start: number, out: FieldAt[]): number {
  const d = c.desc;
  switch (d.t) {
    case 'bytes':
    case 'str':
      out.push({ offset: start, t: d.t, max: d.max });
      return start + encodeWith(c, v).length;
    case 'array': {
      out.push({ offset: start, t: 'array', max: d.max });
      let at = start + 2;
      for (const x of v as unknown[]) at = fieldsOf(d.item, x, at, out);
      return at;
    }
    case 'optional':
      return v === undefined ? start + 1 : fieldsOf(d.inner, v, start + 1, out);
    case 'struct': {
      let at = start;
      for (const [k, f] of Object.entries(d.fields)) at = fieldsOf(f, (v as Record<string, unknown>)[k], at, out);
      return at;
    }
    case 'u8':
    case 'u16':
    case 'u32':
    case 'bool':
    case 'uint':
    case 'fixed':
      return start + encodeWith(c, v).length;
  }
}

function messageFields(m: Message): FieldAt[] {
  const out: FieldAt[] = [];
  const end = fieldsOf(messageSchemas[m.kind], m, 1, out);
  assert.equal(end, encodeMessage(m).length, 'field walker covers the whole frame');
  return out;
}

// ---------------------------------------------------------------------------------------------
// (a) Round trips.

void test('(a) every message kind round-trips: tryDecodeMessage(encodeMessage(m)) deep-equals m', () => {
  for (const kind of kinds) {
    fc.assert(
      fc.property(arbMessageOf(kind), (m) => {
        const b = encodeMessage(m);
        assert.equal(b[0], MsgKind[kind]);
        assert.equal(peekKind(b), kind);
        const res = tryDecodeMessage(b);
        if (!res.ok) assert.fail(`${kind} did not decode: ${res.error.message}`);
        assertSameValue(res.value, m, kind);
        // Same result from a copy at an unaligned offset of a larger buffer (Reader honours byteOffset).
        const big = new Uint8Array(b.length + 7);
        big.set(b, 3);
        const res2 = tryDecodeMessage(big.subarray(3, 3 + b.length));
        if (!res2.ok) assert.fail(`${kind} did not decode at offset 3: ${res2.error.message}`);
        assertSameValue(res2.value, m, `${kind} at offset 3`);
        // Canonical: re-encoding the decoded value gives the same bytes.
        assert.equal(hex(encodeMessage(res.value)), hex(b));
      }),
      { seed: 1234, numRuns: 60 },
    );
  }
});

void test('(a) the standalone codecs round-trip (batch, order checkpoint, view change body, signed view change...)', () => {
  const codecs: Record<string, Codec<unknown>> = {
    batchCodec,
    batchRequestCodec,
    authRowCodec,
    proposedRequestCodec,
    orderCheckpointCodec,
    viewChangeBodyCodec,
    signedViewChangeCodec,
  };
  for (const [name, c] of Object.entries(codecs)) {
    fc.assert(
      fc.property(arbOf(c), (v) => {
        const b = encodeWith(c, v);
        const res = tryDecodeWith(c, b);
        if (!res.ok) assert.fail(`${name} did not decode: ${res.error.message}`);
        assertSameValue(res.value, v, name);
      }),
      { seed: 1235, numRuns: 100 },
    );
  }
});

void test('(a) encodeBatch gives the batchCodec bytes (the canonical bytes a batch digest covers)', () => {
  fc.assert(
    fc.property(arbOf(batchCodec as Codec<unknown>), (v) => {
      const b = v as Parameters<typeof encodeBatch>[0];
      assert.equal(hex(encodeBatch(b)), hex(encodeWith(batchCodec, b)));
    }),
    { seed: 1236, numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------------------
// (b) Random bytes.

void test('(b) random bytes (up to 2 KiB) never make tryDecodeMessage throw; rejections are DecodeErrors', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => {
      checkDecodeTotal(b);
    }),
    { seed: 1234, numRuns: 500 },
  );
});

void test('(b) random bodies after every valid tag never make tryDecodeMessage throw', () => {
  const tags = Object.values(MsgKind);
  fc.assert(
    fc.property(fc.constantFrom(...tags), fc.uint8Array({ maxLength: 2048 }), (tag, body) => {
      const b = new Uint8Array(body.length + 1);
      b[0] = tag;
      b.set(body, 1);
      checkDecodeTotal(b);
    }),
    { seed: 1237, numRuns: 1000 },
  );
});

// ---------------------------------------------------------------------------------------------
// (c) Mutations of valid encodings.

type Mutation =
  | { readonly t: 'flip'; readonly at: number; readonly bit: number }
  | { readonly t: 'truncate'; readonly len: number }
  | { readonly t: 'extend'; readonly extra: Uint8Array }
  | { readonly t: 'length'; readonly pick: number; readonly value: number };

const arbMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ t: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ t: fc.constant('truncate' as const), len: fc.nat() }),
  fc.record({ t: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({
    t: fc.constant('length' as const),
    pick: fc.nat(),
    value: fc.oneof(fc.constantFrom(0xffff_ffff, 0x8000_0000, 0x7fff_ffff, 0x0400_0001, 0x0300_0000, 0x1_0000 - 1), fc.integer({ min: 0, max: 0xffff_ffff })),
  }),
);

function mutate(m: Message, b: Uint8Array, mu: Mutation): Uint8Array {
  const out = new Uint8Array(b);
  switch (mu.t) {
    case 'flip':
      out[mu.at % out.length]! ^= 1 << mu.bit;
      return out;
    case 'truncate':
      return out.subarray(0, mu.len % out.length);
    case 'extend': {
      const ext = new Uint8Array(b.length + mu.extra.length);
      ext.set(b);
      ext.set(mu.extra, b.length);
      return ext;
    }
    case 'length': {
      const fields = messageFields(m);
      if (fields.length === 0) return out;
      const f = fields[mu.pick % fields.length]!;
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      if (f.t === 'array') dv.setUint16(f.offset, mu.value & 0xffff);
      else dv.setUint32(f.offset, mu.value);
      return out;
    }
  }
}

void test('(c) mutated valid encodings (bit flip, truncation, extension, hostile length/count) never throw; ok results are canonical', () => {
  fc.assert(
    fc.property(arbMessage, arbMutation, (m, mu) => {
      const b = encodeMessage(m);
      const mutated = mutate(m, b, mu);
      const res = checkDecodeTotal(mutated);
      // Truncation and extension of a valid frame can never give a valid frame.
      if (mu.t === 'extend' || mu.t === 'truncate') assert.equal(res.ok, false, `${mu.t} accepted`);
    }),
    { seed: 1234, numRuns: 1000 },
  );
});

void test('(c) every length and count field set to 0xFFFFFFFF / 0xFFFF is rejected with a typed error', () => {
  fc.assert(
    fc.property(arbMessage, (m) => {
      const b = encodeMessage(m);
      messageFields(m).forEach((f) => {
        const out = new Uint8Array(b);
        const dv = new DataView(out.buffer);
        if (f.t === 'array') dv.setUint16(f.offset, 0xffff);
        else dv.setUint32(f.offset, 0xffff_ffff);
        const res = checkDecodeTotal(out);
        assertTypedRejection(res, out);
        assert.match(res.error.message, /exceeds/);
      });
    }),
    { seed: 1238, numRuns: 200 },
  );
});

// ---------------------------------------------------------------------------------------------
// (d) Hostile lengths are rejected before allocation.

void test('(d) a bytes/str length of 4 GB ([tag, ...fields, ff ff ff ff]) is rejected against the field limit', () => {
  for (const kind of kinds) {
    fc.assert(
      fc.property(arbMessageOf(kind), (m) => {
        const b = encodeMessage(m);
        for (const f of messageFields(m)) {
          if (f.t === 'array') continue;
          // The frame ends right after the hostile length: nothing of the 4 GB follows.
          const frame = new Uint8Array(f.offset + 4);
          frame.set(b.subarray(0, f.offset));
          frame.set([0xff, 0xff, 0xff, 0xff], f.offset);
          const res = tryDecodeMessage(frame);
          assertTypedRejection(res, frame);
          assert.match(res.error.message, /length 4294967295 exceeds limit \d+/);
          assert.equal(res.error.offset, f.offset + 4, 'error names the byte after the length field');
        }
      }),
      { seed: 1239, numRuns: 20 },
    );
  }
});

void test('(d) a length within the field limit but beyond the frame is rejected against the remaining bytes', () => {
  // checkpointData.data allows 48 MiB; claim 40 MiB and send 3 bytes.
  const head = encodeMessage({ kind: 'checkpointData', seq: 9, part: 1, data: new Uint8Array(0) }).subarray(0, 17);
  const frame = new Uint8Array([...head, 0x02, 0x80, 0x00, 0x00, 1, 2, 3]);
  const res = tryDecodeMessage(frame);
  assertTypedRejection(res, frame);
  assert.match(res.error.message, /needs 41943040 bytes, 3 left/);
});

void test('(d) an array count above the remaining bytes is rejected before any item is decoded', () => {
  // batches of a catchUp: limit 512, claim 500 with 2 bytes left.
  const frame = new Uint8Array([MsgKind.catchUp, 0, 0x01, 0xf4, 0, 0]);
  const res = tryDecodeMessage(frame);
  assertTypedRejection(res, frame);
  assert.match(res.error.message, /count 500 exceeds remaining 2 bytes/);
});

// ---------------------------------------------------------------------------------------------
// (e) Unknown tags, empty and oversized frames; (f) trailing bytes.

void test('(e) every unknown tag is rejected, with or without a body; the empty frame is rejected', () => {
  const known = new Set<number>(Object.values(MsgKind));
  for (let tag = 0; tag <= 0xff; tag++) {
    if (known.has(tag)) continue;
    for (const frame of [new Uint8Array([tag]), new Uint8Array([tag, 0, 0, 0, 0, 0, 0, 0, 1])]) {
      const res = tryDecodeMessage(frame);
      assertTypedRejection(res, frame);
      assert.match(res.error.message, new RegExp(`unknown message tag ${tag}\\b`));
      assert.equal(peekKind(frame), undefined);
    }
  }
  const empty = new Uint8Array(0);
  const res = tryDecodeMessage(empty);
  assertTypedRejection(res, empty);
  assert.match(res.error.message, /empty frame/);
  assert.equal(peekKind(empty), undefined);
});

void test('(e) a frame longer than frameBytesMax is rejected before decoding', () => {
  const frame = new Uint8Array(frameBytesMax + 1);
  frame[0] = MsgKind.lastExec;
  const res = tryDecodeMessage(frame);
  assertTypedRejection(res, frame);
  assert.match(res.error.message, new RegExp(`exceeds ${frameBytesMax}`));
});

void test('(f) a valid frame followed by 1..16 trailing bytes is rejected as trailing bytes', () => {
  fc.assert(
    fc.property(arbMessage, fc.uint8Array({ minLength: 1, maxLength: 16 }), (m, extra) => {
      const b = encodeMessage(m);
      const frame = new Uint8Array(b.length + extra.length);
      frame.set(b);
      frame.set(extra, b.length);
      const res = tryDecodeMessage(frame);
      assertTypedRejection(res, frame);
      assert.match(res.error.message, new RegExp(`${extra.length} trailing bytes`));
      assert.equal(res.error.offset, b.length);
    }),
    { seed: 1240, numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------------
// (g) Schema-level rules.

function decodeHex<T>(c: Codec<T>, h: string): DecodeResult<T> {
  return tryDecodeWith(c, Buffer.from(h.replace(/\s+/g, ''), 'hex'));
}
function rejects<T>(c: Codec<T>, h: string, pattern: RegExp): void {
  const input = Buffer.from(h.replace(/\s+/g, ''), 'hex');
  const res = tryDecodeWith(c, input);
  assertTypedRejection(res, input);
  assert.match(res.error.message, pattern);
}
function accepts<T>(c: Codec<T>, h: string, expected: T): void {
  const res = decodeHex(c, h);
  if (!res.ok) assert.fail(`${h} rejected: ${res.error.message}`);
  assertSameValue(res.value, expected, h);
}

void test('(g) uint decodes up to 2^53-1 and rejects anything larger; uintMax rejects above its max', () => {
  accepts(uint, '001fffff ffffffff', Number.MAX_SAFE_INTEGER);
  accepts(uint, '00000001 00000000', 0x1_0000_0000);
  accepts(uint, '00000000 00000000', 0);
  rejects(uint, '00200000 00000000', /exceeds 2\^53-1/);
  rejects(uint, 'ffffffff ffffffff', /exceeds 2\^53-1/);
  rejects(uint, '001fffff ffff', /uint needs 8 bytes, 6 left/);
  accepts(uintMax(1000), '00000000 000003e8', 1000);
  rejects(uintMax(1000), '00000000 000003e9', /integer 1001 exceeds 1000/);
});

void test('(g) uint round-trips every safe integer (property over [0, 2^53-1])', () => {
  fc.assert(
    fc.property(fc.oneof(fc.maxSafeNat(), fc.nat({ max: 0xffff_ffff })), (v) => {
      const res = tryDecodeWith(uint, encodeWith(uint, v));
      assert.deepEqual(res, { ok: true, value: v });
    }),
    { seed: 1241, numRuns: 300 },
  );
});

void test('(g) bool accepts only bytes 0 and 1', () => {
  accepts(bool, '00', false);
  accepts(bool, '01', true);
  for (let b = 2; b <= 0xff; b++) rejects(bool, b.toString(16).padStart(2, '0'), new RegExp(`bool byte ${b}`));
});

void test('(g) optional accepts only flags 0 and 1', () => {
  accepts(optional(u8), '00', undefined);
  accepts(optional(u8), '01 07', 7);
  rejects(optional(u8), '02 07', /optional flag 2/);
});

void test('(g) str rejects invalid UTF-8 (bad byte, overlong, surrogate, truncated sequence)', () => {
  const s = str(16);
  accepts(s, '00000002 c3a9', 'é');
  accepts(s, '00000004 f09f9880', '\u{1F600}');
  for (const bad of ['00000001 ff', '00000002 c080', '00000003 eda080', '00000002 e282', '00000001 80', '00000004 f4908080']) {
    rejects(s, bad, /invalid utf-8/);
  }
  rejects(s, '00000011' + '61'.repeat(17), /string length 17 exceeds limit 16/);
});

void test('(g) array rejects counts above its max and above the remaining bytes', () => {
  const a = array(u8, 3);
  accepts(a, '0003 010203', [1, 2, 3]);
  rejects(a, '0004 01020304', /count 4 exceeds limit 3/);
  const big = array(u8, 100);
  rejects(big, '0032 01020304', /count 50 exceeds remaining 4 bytes/);
  rejects(big, 'ffff', /count 65535 exceeds limit 100/);
  assert.throws(() => array(u8, 0x1_0000), RangeError);
});

void test('(g) bytes and fixed check lengths: above max rejected, short input rejected', () => {
  accepts(bytes(3), '00000003 aabbcc', new Uint8Array([0xaa, 0xbb, 0xcc]));
  rejects(bytes(3), '00000004 aabbccdd', /length 4 exceeds limit 3/);
  rejects(bytes(3), '00000002 aa', /bytes needs 2 bytes, 1 left/);
  accepts(fixed(2), 'aabb', new Uint8Array([0xaa, 0xbb]));
  rejects(fixed(2), 'aa', /fixed\(2\) needs 2 bytes, 1 left/);
});

void test('(g) encoding an out-of-range value throws RangeError (a programming error, not untrusted input)', () => {
  const cases: [string, () => unknown][] = [
    ['u8 256', () => encodeWith(u8, 256)],
    ['u8 -1', () => encodeWith(u8, -1)],
    ['u8 1.5', () => encodeWith(u8, 1.5)],
    ['u16 65536', () => encodeWith(u16, 0x1_0000)],
    ['u32 2^32', () => encodeWith(u32, 0x1_0000_0000)],
    ['uint 2^53', () => encodeWith(uint, 2 ** 53)],
    ['uint -1', () => encodeWith(uint, -1)],
    ['uint NaN', () => encodeWith(uint, Number.NaN)],
    ['uintMax(10) 11', () => encodeWith(uintMax(10), 11)],
    ['bytes(4) of 5', () => encodeWith(bytes(4), new Uint8Array(5))],
    ['fixed(4) of 3', () => encodeWith(fixed(4), new Uint8Array(3))],
    ['fixed(4) of 5', () => encodeWith(fixed(4), new Uint8Array(5))],
    ['str(3) of 4 chars', () => encodeWith(str(3), 'abcd')],
    ['str(3) of 4 UTF-8 bytes', () => encodeWith(str(3), 'éé')],
    ['array(u8, 2) of 3', () => encodeWith(array(u8, 2), [1, 2, 3])],
    ['message with a 17-byte digest', () => encodeMessage({ kind: 'prepare', view: 0, seq: 0, digest: new Uint8Array(17) })],
    ['message with a u8 sender of 256', () =>
      encodeMessage({
        kind: 'viewChange',
        signed: { body: { view: 1, sender: 256, lowWater: 0, checkpoints: [], prepared: [], prePrepared: [] }, signature: new Uint8Array(64) },
      })],
  ];
  for (const [what, f] of cases) assert.throws(f, RangeError, what);
});

// A schema with small limits, so generated values hit every limit exactly.
const small = struct({
  a: bytes(5),
  s: str(6),
  arr: array(u16, 3),
  o: optional(uintMax(1000)),
  f: fixed(3),
  b: bool,
  nested: array(struct({ k: str(2), v: optional(bytes(1)) }), 2),
});
const smallC: Codec<unknown> = small;

void test('(g) small-limit schema round-trips, values exactly at each limit included (property)', () => {
  let atLimit = 0;
  fc.assert(
    fc.property(arbOf(smallC, { bytesCap: 8, itemsCap: 4 }), (v) => {
      const val = v as { a: Uint8Array; s: string; arr: number[] };
      if (val.a.length === 5 && utf8.encode(val.s).length === 6 && val.arr.length === 3) atLimit++;
      const b = encodeWith(smallC, v);
      const res = tryDecodeWith(smallC, b);
      if (!res.ok) assert.fail(res.error.message);
      assertSameValue(res.value, v, 'small schema');
    }),
    { seed: 1242, numRuns: 400 },
  );
  assert.ok(atLimit > 0, 'some generated values sit exactly at every limit');
});

void test('(g) small-limit schema: one past any length or count limit is rejected on decode (property)', () => {
  fc.assert(
    fc.property(arbOf(smallC, { bytesCap: 8, itemsCap: 4 }), fc.nat(), (v, pick) => {
      const b = encodeWith(smallC, v);
      const fields: FieldAt[] = [];
      fieldsOf(smallC, v, 0, fields);
      const f = fields[pick % fields.length]!;
      const out = new Uint8Array(b);
      const dv = new DataView(out.buffer);
      // Set the length/count to the field's declared maximum plus one.
      if (f.t === 'array') dv.setUint16(f.offset, f.max + 1);
      else dv.setUint32(f.offset, f.max + 1);
      const res = tryDecodeWith(smallC, out);
      assertTypedRejection(res, out);
      assert.match(res.error.message, new RegExp(`${f.max + 1} exceeds limit ${f.max}`));
    }),
    { seed: 1243, numRuns: 300 },
  );
});

test('str writes UTF-8 in place, into a tight or a roomy buffer, exactly as TextEncoder does', () => {
  const c = str(1 << 20);
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.integer({ min: 16, max: 2048 }), (s, initial) => {
      const w = new Writer(initial);
      c.encode(w, s);
      const want = new TextEncoder().encode(s);
      const got = w.finish();
      assert.equal(new DataView(got.buffer, got.byteOffset).getUint32(0), want.length);
      assert.deepEqual(got.subarray(4), want);
    }),
  );
  // Over the limit in bytes though not in UTF-16 units: three bytes per unit.
  assert.throws(() => {
    str(5).encode(new Writer(16), '\u20ac\u20ac');
  }, RangeError);
});

test('withEncoded hands over the encoding, lets encodeWith run inside, and refuses to nest', () => {
  const c = struct({ a: u32, b: bytes(100) });
  const v = { a: 7, b: new Uint8Array([1, 2, 3]) };
  const direct = encodeWith(c, v);
  withEncoded(c, v, (view) => {
    assert.deepEqual(new Uint8Array(view), direct);
    assert.equal(encodeWith(c, { a: 1, b: new Uint8Array(0) }).length, 8);
    assert.deepEqual(new Uint8Array(view), direct);
    assert.throws(() => withEncoded(c, v, () => 0), /not re-entrant/);
  });
  assert.equal(withEncoded(c, v, (view) => view.length), direct.length);
});

test('encodeBatch gives the same bytes for the same batch object, and equal bytes for an equal one', () => {
  const b = { time: 5, seed: 9, requests: [{ client: 1, reqId: 2, op: new Uint8Array([4, 5]) }] };
  const e1 = encodeBatch(b);
  assert.equal(encodeBatch(b), e1);
  const copy = { ...b, requests: b.requests.map((r) => ({ ...r, op: r.op.slice() })) };
  assert.deepEqual(encodeBatch(copy), e1);
  assert.notEqual(encodeBatch(copy), e1);
});
