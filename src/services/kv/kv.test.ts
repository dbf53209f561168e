import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyKv, isReadOnly, outputsEqual, type KvOp, type KvOutput } from './model.ts';
import type { KvCommand, KvCommandOutput, KvExpiry, KvReply, KvRequest } from './model.ts';
import { decodeKvOp, decodeKvOutput, decodeKvReply, decodeKvRequest, encodeKvOp, encodeKvOutput, encodeKvReply, encodeKvRequest, keyBytesMax, valueBytesMax } from './ops.ts';
import { KvCheckpointError, KvStore, keyHash, replyBytesMax } from './store.ts';
import { Glob } from './glob.ts';
import { KvClient, KvError, type Invoker } from './client.ts';
import type { AppBatch } from '../../app/contract.ts';

const MAX = Number.MAX_SAFE_INTEGER;

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

// ---------------------------------------------------------------------------------------------
// applyKv: one row per operation and edge case.

interface Row {
  readonly name: string;
  readonly current: string | null;
  readonly op: KvOp;
  readonly next: string | null;
  readonly output: KvOutput;
}

const rows: readonly Row[] = [
  { name: 'get missing', current: null, op: { kind: 'get', key: 'k' }, next: null, output: { kind: 'get', value: null } },
  { name: 'get present', current: 'v', op: { kind: 'get', key: 'k' }, next: 'v', output: { kind: 'get', value: 'v' } },
  { name: 'get empty string is not missing', current: '', op: { kind: 'get', key: 'k' }, next: '', output: { kind: 'get', value: '' } },
  { name: 'put on missing', current: null, op: { kind: 'put', key: 'k', value: 'v' }, next: 'v', output: { kind: 'put' } },
  { name: 'put overwrites', current: 'old', op: { kind: 'put', key: 'k', value: 'new' }, next: 'new', output: { kind: 'put' } },
  { name: 'del present', current: 'v', op: { kind: 'del', key: 'k' }, next: null, output: { kind: 'del', existed: true } },
  { name: 'del missing', current: null, op: { kind: 'del', key: 'k' }, next: null, output: { kind: 'del', existed: false } },
  { name: 'cas expected null on missing swaps', current: null, op: { kind: 'cas', key: 'k', expected: null, next: 'n' }, next: 'n', output: { kind: 'cas', swapped: true } },
  { name: 'cas expected null on present fails', current: 'v', op: { kind: 'cas', key: 'k', expected: null, next: 'n' }, next: 'v', output: { kind: 'cas', swapped: false } },
  { name: 'cas matching swaps', current: 'v', op: { kind: 'cas', key: 'k', expected: 'v', next: 'n' }, next: 'n', output: { kind: 'cas', swapped: true } },
  { name: 'cas mismatch keeps', current: 'v', op: { kind: 'cas', key: 'k', expected: 'w', next: 'n' }, next: 'v', output: { kind: 'cas', swapped: false } },
  { name: 'cas expected value on missing fails', current: null, op: { kind: 'cas', key: 'k', expected: 'v', next: 'n' }, next: null, output: { kind: 'cas', swapped: false } },
  { name: 'cas expected "" is not null', current: null, op: { kind: 'cas', key: 'k', expected: '', next: 'n' }, next: null, output: { kind: 'cas', swapped: false } },
  { name: 'incr missing starts at 0', current: null, op: { kind: 'incr', key: 'k', delta: 5 }, next: '5', output: { kind: 'incr', value: 5 } },
  { name: 'incr missing by negative', current: null, op: { kind: 'incr', key: 'k', delta: -3 }, next: '-3', output: { kind: 'incr', value: -3 } },
  { name: 'incr present', current: '41', op: { kind: 'incr', key: 'k', delta: 1 }, next: '42', output: { kind: 'incr', value: 42 } },
  { name: 'incr negative value and delta', current: '-3', op: { kind: 'incr', key: 'k', delta: -4 }, next: '-7', output: { kind: 'incr', value: -7 } },
  { name: 'incr by zero', current: '7', op: { kind: 'incr', key: 'k', delta: 0 }, next: '7', output: { kind: 'incr', value: 7 } },
  { name: 'incr up to 2^53-1', current: String(MAX - 1), op: { kind: 'incr', key: 'k', delta: 1 }, next: String(MAX), output: { kind: 'incr', value: MAX } },
  { name: 'incr beyond 2^53-1 overflows', current: String(MAX), op: { kind: 'incr', key: 'k', delta: 1 }, next: String(MAX), output: { kind: 'error', code: 'overflow' } },
  { name: 'incr below -(2^53-1) overflows', current: String(-MAX), op: { kind: 'incr', key: 'k', delta: -1 }, next: String(-MAX), output: { kind: 'error', code: 'overflow' } },
  { name: 'incr max + max overflows', current: String(MAX), op: { kind: 'incr', key: 'k', delta: MAX }, next: String(MAX), output: { kind: 'error', code: 'overflow' } },
  { name: 'incr missing by max delta', current: null, op: { kind: 'incr', key: 'k', delta: MAX }, next: String(MAX), output: { kind: 'incr', value: MAX } },
  ...['abc', '1.5', ' 1', '1 ', '01', '+1', '1e3', '', '-', '0x10', '9999999999999999', '12345678901234567'].map(
    (current): Row => ({ name: `incr on non-integer ${JSON.stringify(current)}`, current, op: { kind: 'incr', key: 'k', delta: 1 }, next: current, output: { kind: 'error', code: 'not_integer' } }),
  ),
];

void test('applyKv table: get/put/del/cas/incr including missing keys, not_integer, overflow past 2^53-1', () => {
  for (const row of rows) {
    assert.deepStrictEqual(applyKv(row.current, row.op), { next: row.next, output: row.output }, row.name);
  }
});

void test('isReadOnly holds only for get', () => {
  assert.equal(isReadOnly({ kind: 'get', key: 'k' }), true);
  for (const op of [
    { kind: 'put', key: 'k', value: 'v' },
    { kind: 'del', key: 'k' },
    { kind: 'cas', key: 'k', expected: null, next: 'v' },
    { kind: 'incr', key: 'k', delta: 1 },
  ] as const) {
    assert.equal(isReadOnly(op), false, op.kind);
  }
});

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const arbKey = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', 'ключ', '鍵', '🔑', 'a\u0000b', 'é'.repeat(8)));
const arbValue = fc.oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.constantFrom('', '0', '-1', '42', String(MAX)));
const arbDelta = fc
  .oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger(), fc.constantFrom(MAX, -MAX, 1, -1))
  .map((d) => (d === 0 ? 0 : d)); // one zero: -0 has no encoding of its own

function arbOpOver(key: fc.Arbitrary<string>): fc.Arbitrary<KvOp> {
  return fc.oneof(
    fc.record({ kind: fc.constant('get' as const), key }),
    fc.record({ kind: fc.constant('put' as const), key, value: arbValue }),
    fc.record({ kind: fc.constant('del' as const), key }),
    fc.record({ kind: fc.constant('cas' as const), key, expected: fc.option(arbValue, { nil: null }), next: arbValue }),
    fc.record({ kind: fc.constant('incr' as const), key, delta: arbDelta }),
  );
}
const arbOp = arbOpOver(arbKey);

const arbOutput: fc.Arbitrary<KvOutput> = fc.oneof(
  fc.record({ kind: fc.constant('get' as const), value: fc.option(arbValue, { nil: null }) }),
  fc.constant({ kind: 'put' as const }),
  fc.record({ kind: fc.constant('del' as const), existed: fc.boolean() }),
  fc.record({ kind: fc.constant('cas' as const), swapped: fc.boolean() }),
  fc.record({ kind: fc.constant('incr' as const), value: arbDelta }),
  fc.record({ kind: fc.constant('error' as const), code: fc.constantFrom('not_integer' as const, 'overflow' as const, 'bad_request' as const) }),
);

// ---------------------------------------------------------------------------------------------
// Operation and output codecs.

void test('decodeKvOp(encodeKvOp(op)) deep-equals op (unicode keys, negative deltas, null/empty expected)', () => {
  fc.assert(
    fc.property(arbOp, (op) => {
      // fc.record builds null-prototype objects; compare against a plain copy.
      assert.deepStrictEqual(decodeKvOp(encodeKvOp(op)), { ...op });
    }),
    { seed: 1234, numRuns: 500 },
  );
});

void test('decodeKvOutput(encodeKvOutput(out)) deep-equals out for every output kind', () => {
  fc.assert(
    fc.property(arbOutput, (out) => {
      const back = decodeKvOutput(encodeKvOutput(out));
      assert.deepStrictEqual(back, { ...out });
      assert.ok(outputsEqual(back, out));
    }),
    { seed: 1235, numRuns: 500 },
  );
});

void test('encodeKvOp throws RangeError for a key over keyBytesMax (a caller bug, not a wire error)', () => {
  assert.throws(() => encodeKvOp({ kind: 'get', key: 'x'.repeat(keyBytesMax + 1) }), RangeError);
  assert.deepStrictEqual(decodeKvOp(encodeKvOp({ kind: 'get', key: 'x'.repeat(keyBytesMax) })), { kind: 'get', key: 'x'.repeat(keyBytesMax) });
});

void test('decodeKvOp never throws on random bytes; it returns undefined or an op that re-encodes to the same bytes', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.tuple(fc.integer({ min: 1, max: 5 }), fc.uint8Array({ maxLength: 64 })).map(([t, b]) => Uint8Array.of(t, ...b))), (b) => {
      let op: KvOp | undefined;
      try {
        op = decodeKvOp(b);
      } catch (e) {
        assert.fail(`decodeKvOp threw ${String(e)}`);
      }
      if (op !== undefined) assert.equal(hex(encodeKvOp(op)), hex(b), 'accepted op bytes are canonical');
    }),
    { seed: 1236, numRuns: 1000 },
  );
});

void test('decodeKvOutput never throws on random bytes; it returns undefined or an output that round-trips', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.tuple(fc.integer({ min: 1, max: 6 }), fc.uint8Array({ maxLength: 16 })).map(([t, b]) => Uint8Array.of(t, ...b))), (b) => {
      let out: KvOutput | undefined;
      try {
        out = decodeKvOutput(b);
      } catch (e) {
        assert.fail(`decodeKvOutput threw ${String(e)}`);
      }
      if (out !== undefined) {
        const again = decodeKvOutput(encodeKvOutput(out));
        assert.ok(again !== undefined && outputsEqual(again, out));
      }
    }),
    { seed: 1237, numRuns: 1000 },
  );
});

void test('decodeKvOp/decodeKvOutput return undefined for known garbage', () => {
  const garbageOps = [
    [],
    [0],
    [6],
    [0xff, 0, 0, 0, 0],
    [1], // get without key
    [1, 0, 0, 0, 1], // key length 1, no byte
    [1, 0, 0, 0, 1, 0xff], // invalid UTF-8 key
    [1, 0, 0, 0, 0, 0], // trailing byte
    [4, 0, 0, 0, 0, 2, 0, 0, 0, 0], // cas with optional flag 2
    [5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], // incr by negative zero
    [5, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1], // incr with bool byte 2
    [5, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0], // incr magnitude 2^53
    [1, 0xff, 0xff, 0xff, 0xff], // 4 GB key length
  ];
  for (const g of garbageOps) assert.equal(decodeKvOp(Uint8Array.from(g)), undefined, JSON.stringify(g));
  const garbageOutputs = [[], [0], [7], [2, 0], [3], [3, 2], [4, 1, 1], [6, 3], [6, 0xff], [1, 2], [1, 1, 0xff, 0xff, 0xff, 0xff], [5, 0]];
  for (const g of garbageOutputs) assert.equal(decodeKvOutput(Uint8Array.from(g)), undefined, JSON.stringify(g));
});

// ---------------------------------------------------------------------------------------------
// KvStore.

let seq = 0;
function batchOf(ops: readonly Uint8Array[]): AppBatch {
  seq++;
  return { seq, time: seq * 10, seed: seq, requests: ops.map((op, i) => ({ client: i % 3, reqId: seq * 100 + i, op })) };
}
function run(store: KvStore, ops: readonly KvOp[]): KvOutput[] {
  return store.execute(batchOf(ops.map(encodeKvOp))).map((r) => {
    const out = decodeKvOutput(r);
    assert.ok(out !== undefined, 'store replies decode');
    return out;
  });
}

const smallKey = fc.constantFrom('a', 'b', 'c', 'ä', '🔑', '');
// Requests as bytes: mostly valid ops over few keys (so they interact), some garbage.
const arbRequest = fc.oneof(
  { weight: 5, arbitrary: arbOpOver(smallKey).map((op) => ({ op, bytes: encodeKvOp(op) })) },
  {
    weight: 1,
    // Garbage to the five-op decoder; bytes that happen to be a valid extended command are left out
    // (the store would run them, and this model only knows the five ops).
    arbitrary: fc
      .uint8Array({ maxLength: 12 })
      .filter((bytes) => decodeKvOp(bytes) !== undefined || decodeKvRequest(bytes) === undefined)
      .map((bytes) => ({ op: decodeKvOp(bytes), bytes })),
  },
);

void test('KvStore.execute returns one reply per request, in order, matching applyKv on a model map', () => {
  fc.assert(
    fc.property(fc.array(fc.array(arbRequest, { maxLength: 8 }), { maxLength: 6 }), (batches) => {
      const store = new KvStore();
      const model = new Map<string, string>();
      for (const reqs of batches) {
        const replies = store.execute(batchOf(reqs.map((r) => r.bytes)));
        assert.equal(replies.length, reqs.length);
        reqs.forEach((r, i) => {
          const got = decodeKvOutput(replies[i]!);
          let expected: KvOutput;
          if (r.op === undefined) expected = { kind: 'error', code: 'bad_request' };
          else {
            const { next, output } = applyKv(model.get(r.op.key) ?? null, r.op);
            if (next === null) model.delete(r.op.key);
            else model.set(r.op.key, next);
            expected = output;
          }
          assert.deepStrictEqual(got, expected);
        });
      }
      assert.equal(store.size, model.size);
      for (const [k, v] of model) assert.equal(store.peek(k), v);
    }),
    { seed: 1238, numRuns: 300 },
  );
});

void test('KvStore: a malformed op gets a bad_request error reply and changes nothing', () => {
  const store = new KvStore();
  run(store, [
    { kind: 'put', key: 'a', value: '1' },
    { kind: 'put', key: 'b', value: 'x' },
  ]);
  const before = hex(store.checkpoint());
  const garbage = [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(9, 9), Uint8Array.of(2, 0, 0, 0, 1, 0x61)];
  const replies = store.execute(batchOf(garbage));
  assert.equal(replies.length, garbage.length);
  for (const r of replies) assert.deepStrictEqual(decodeKvOutput(r), { kind: 'error', code: 'bad_request' });
  assert.equal(hex(store.checkpoint()), before);
});

void test('KvStore: incr on a non-integer replies not_integer and leaves the value', () => {
  const store = new KvStore();
  const outs = run(store, [
    { kind: 'put', key: 'n', value: 'seven' },
    { kind: 'incr', key: 'n', delta: 1 },
    { kind: 'incr', key: 'm', delta: -2 },
  ]);
  assert.deepStrictEqual(outs, [{ kind: 'put' }, { kind: 'error', code: 'not_integer' }, { kind: 'incr', value: -2 }]);
  assert.equal(store.peek('n'), 'seven');
  assert.equal(store.peek('m'), '-2');
});

void test('KvStore.checkpoint is deterministic: same final state gives the same bytes whatever the insertion history', () => {
  fc.assert(
    fc.property(
      fc.dictionary(arbKey, arbValue, { maxKeys: 12 }),
      fc.array(arbKey, { maxLength: 6 }),
      fc.nat(),
      (entries, noise, rot) => {
        const keys = Object.keys(entries);
        const a = new KvStore();
        const b = new KvStore();
        // a: keys in order.
        run(a, keys.map((key) => ({ kind: 'put', key, value: entries[key]! })));
        // b: noise keys first, keys in rotated reverse order, then delete and reinsert the first half.
        run(b, noise.map((key) => ({ kind: 'put', key, value: 'noise' })));
        const reordered = [...keys].reverse();
        const shift = reordered.length === 0 ? 0 : rot % reordered.length;
        const rotated = [...reordered.slice(shift), ...reordered.slice(0, shift)];
        run(b, rotated.map((key) => ({ kind: 'put', key, value: `tmp-${key}` })));
        run(b, noise.filter((k) => !(k in entries)).map((key) => ({ kind: 'del', key })));
        const half = rotated.slice(0, Math.ceil(rotated.length / 2));
        run(b, half.map((key) => ({ kind: 'del', key })));
        run(b, rotated.map((key) => ({ kind: 'put', key, value: entries[key]! })));
        assert.equal(hex(a.checkpoint()), hex(b.checkpoint()));
        assert.equal(a.size, b.size);
      },
    ),
    { seed: 1239, numRuns: 300 },
  );
});

void test('KvStore: two stores fed the same batches produce identical checkpoints, and restore(checkpoint()) round-trips', () => {
  fc.assert(
    fc.property(fc.array(fc.array(arbRequest, { maxLength: 6 }), { maxLength: 5 }), (batches) => {
      const a = new KvStore();
      const b = new KvStore();
      for (const reqs of batches) {
        const bytes = reqs.map((r) => r.bytes);
        const ra = a.execute(batchOf(bytes));
        const rb = b.execute(batchOf(bytes));
        assert.deepStrictEqual(ra.map(hex), rb.map(hex));
      }
      const cp = a.checkpoint();
      assert.equal(hex(cp), hex(b.checkpoint()));
      const c = new KvStore();
      run(c, [{ kind: 'put', key: 'stale', value: 'gone after restore' }]);
      c.restore(cp);
      assert.equal(hex(c.checkpoint()), hex(cp));
      assert.equal(c.size, a.size);
      for (const key of ['a', 'b', 'c', 'ä', '🔑', '', 'stale']) assert.equal(c.peek(key), a.peek(key));
    }),
    { seed: 1240, numRuns: 200 },
  );
});

// Requests with deadlines too (SET ... PX, EXPIRE), so expiry and the sweep run while a snapshot is open.
const arbTimedRequest = fc.oneof(
  { weight: 3, arbitrary: arbRequest },
  {
    weight: 1,
    arbitrary: fc.record({ key: smallKey, value: arbValue, ms: fc.integer({ min: 1, max: 25 }) }).map(({ key, value, ms }) => ({ bytes: encodeKvRequest({ kind: 'set', key, value, when: 'always', get: false, expiry: { kind: 'in', ms } }) })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ key: smallKey, ms: fc.integer({ min: 1, max: 25 }) }).map(({ key, ms }) => ({ bytes: encodeKvRequest({ kind: 'expire', key, expiry: { kind: 'in', ms } }) })),
  },
);

void test('KvStore.snapshot: read in pieces while later batches run, it yields exactly the checkpoint of the moment it was taken (also two at once)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(arbTimedRequest, { maxLength: 6 }), { maxLength: 4 }),
      fc.array(fc.array(arbTimedRequest, { maxLength: 6 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 40 }),
      (before, after, hint) => {
        const s = new KvStore();
        for (const reqs of before) s.execute(batchOf(reqs.map((r) => r.bytes)));
        const expected = hex(s.checkpoint());
        const snap = s.snapshot();
        const pieces: Uint8Array[] = [];
        let second: { snap: ReturnType<KvStore['snapshot']>; expected: string; pieces: Uint8Array[] } | undefined;
        after.forEach((reqs, i) => {
          const p = snap.read(hint);
          if (p !== undefined) pieces.push(p);
          s.execute(batchOf(reqs.map((r) => r.bytes)));
          if (i === 0) second = { expected: hex(s.checkpoint()), snap: s.snapshot(), pieces: [] };
          const q = second?.snap.read(hint);
          if (q !== undefined) second!.pieces.push(q);
        });
        for (let p = snap.read(hint); p !== undefined; p = snap.read(hint)) pieces.push(p);
        snap.close();
        assert.equal(hex(Buffer.concat(pieces)), expected);
        assert.ok(second !== undefined);
        for (let p = second.snap.read(hint); p !== undefined; p = second.snap.read(hint)) second.pieces.push(p);
        assert.equal(hex(Buffer.concat(second.pieces)), second.expected);
        // Both closed: restore is allowed again and round-trips.
        const c = new KvStore();
        c.restore(Buffer.concat(pieces));
        assert.equal(hex(c.checkpoint()), expected);
      },
    ),
    { seed: 1241, numRuns: 300 },
  );
});

void test('KvStore.restore of a truncated checkpoint throws an Error and keeps the previous state intact', () => {
  fc.assert(
    fc.property(fc.dictionary(arbKey, arbValue, { minKeys: 1, maxKeys: 8 }), fc.nat(), (entries, cut) => {
      const source = new KvStore();
      run(source, Object.entries(entries).map(([key, value]) => ({ kind: 'put', key, value })));
      const cp = source.checkpoint();
      const target = new KvStore();
      run(target, [{ kind: 'put', key: 'mine', value: '1' }]);
      const before = hex(target.checkpoint());
      const truncated = cp.subarray(0, cut % cp.length);
      assert.throws(() => {
        target.restore(truncated);
      }, (e: unknown) => e instanceof KvCheckpointError && /kv checkpoint does not decode/.test(e.message));
      assert.equal(hex(target.checkpoint()), before, 'no partial state after a failed restore');
    }),
    { seed: 1241, numRuns: 300 },
  );
});

void test('KvStore.restore of random bytes either throws an Error (state unchanged) or installs a decodable state', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 8 }).map((b) => Uint8Array.of(0, 0, 0, 1, ...b))), (bytes) => {
      const target = new KvStore();
      run(target, [{ kind: 'put', key: 'mine', value: '1' }]);
      const before = hex(target.checkpoint());
      try {
        target.restore(bytes);
      } catch (e) {
        assert.ok(e instanceof Error, 'restore throws an Error');
        assert.match(e.message, /kv checkpoint does not decode/);
        assert.equal(hex(target.checkpoint()), before);
        return;
      }
      // Accepted: the installed state checkpoints and restores again.
      const again = new KvStore();
      again.restore(target.checkpoint());
      assert.equal(hex(again.checkpoint()), hex(target.checkpoint()));
    }),
    { seed: 1242, numRuns: 500 },
  );
  // A hostile entry count is rejected before any allocation.
  const hostile = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0);
  assert.throws(() => {
    new KvStore().restore(hostile);
  }, /entry count 4294967295 exceeds/);
});

void test('KvStore.executeReadOnly answers get and rejects every state-changing op (and garbage) without a change', () => {
  const store = new KvStore();
  run(store, [{ kind: 'put', key: 'k', value: '5' }]);
  const before = hex(store.checkpoint());
  assert.deepStrictEqual(decodeKvOutput(store.executeReadOnly(encodeKvOp({ kind: 'get', key: 'k' }))), { kind: 'get', value: '5' });
  assert.deepStrictEqual(decodeKvOutput(store.executeReadOnly(encodeKvOp({ kind: 'get', key: 'nope' }))), { kind: 'get', value: null });
  const writes: KvOp[] = [
    { kind: 'put', key: 'k', value: '6' },
    { kind: 'del', key: 'k' },
    { kind: 'cas', key: 'k', expected: '5', next: '7' },
    { kind: 'incr', key: 'k', delta: 1 },
  ];
  for (const op of writes) {
    assert.deepStrictEqual(decodeKvOutput(store.executeReadOnly(encodeKvOp(op))), { kind: 'error', code: 'bad_request' }, op.kind);
  }
  for (const g of [new Uint8Array(0), Uint8Array.of(1), Uint8Array.of(0xee, 1, 2)]) {
    assert.deepStrictEqual(decodeKvOutput(store.executeReadOnly(g)), { kind: 'error', code: 'bad_request' });
  }
  assert.equal(hex(store.checkpoint()), before);
});

// ---------------------------------------------------------------------------------------------
// KvClient over a fake Invoker that runs a KvStore directly.

class StoreInvoker implements Invoker {
  readonly store = new KvStore();
  readonly calls: { kind: string | undefined; readOnly: boolean }[] = [];
  private reqId = 0;
  invoke(op: Uint8Array, readOnly: boolean): Promise<Uint8Array> {
    this.calls.push({ kind: decodeKvOp(op)?.kind, readOnly });
    if (readOnly) return Promise.resolve(this.store.executeReadOnly(op));
    this.reqId++;
    const replies = this.store.execute({ seq: this.reqId, time: this.reqId, seed: 0, requests: [{ client: 1, reqId: this.reqId, op }] });
    return Promise.resolve(replies[0]!);
  }
}

void test('KvClient: get/put/del/cas/incr return typed values; only get uses the read-only path', async () => {
  const inv = new StoreInvoker();
  const kv = new KvClient(inv);
  assert.equal(await kv.get('k'), null);
  await kv.put('k', 'v');
  assert.equal(await kv.get('k'), 'v');
  assert.equal(await kv.cas('k', 'x', 'y'), false);
  assert.equal(await kv.cas('k', 'v', 'w'), true);
  assert.equal(await kv.get('k'), 'w');
  assert.equal(await kv.del('k'), true);
  assert.equal(await kv.del('k'), false);
  assert.equal(await kv.cas('k', null, '10'), true);
  assert.equal(await kv.incr('k'), 11);
  assert.equal(await kv.incr('k', -20), -9);
  assert.equal(await kv.incr('fresh', 3), 3);
  assert.equal(await kv.get('🔑'), null);
  await kv.put('🔑', 'ключ');
  assert.equal(await kv.get('🔑'), 'ключ');
  for (const c of inv.calls) assert.equal(c.readOnly, c.kind === 'get', `${String(c.kind)} readOnly=${c.readOnly}`);
});

void test('KvClient: incr on a non-integer rejects with KvError code kv_not_integer; overflow with kv_overflow', async () => {
  const kv = new KvClient(new StoreInvoker());
  await kv.put('s', 'text');
  await assert.rejects(kv.incr('s'), (e: unknown) => e instanceof KvError && e.code === 'kv_not_integer' && /not_integer/.test(e.message));
  assert.equal(await kv.get('s'), 'text');
  await kv.put('big', String(MAX));
  await assert.rejects(kv.incr('big'), (e: unknown) => e instanceof KvError && e.code === 'kv_overflow');
});

void test('KvClient: an undecodable reply or a reply of another kind rejects with kv_bad_reply', async () => {
  const replies = [Uint8Array.of(0xee), encodeKvOutput({ kind: 'put' })];
  let i = 0;
  const kv = new KvClient({ invoke: () => Promise.resolve(replies[i++]!) });
  await assert.rejects(kv.get('k'), (e: unknown) => e instanceof KvError && e.code === 'kv_bad_reply');
  await assert.rejects(kv.incr('k'), (e: unknown) => e instanceof KvError && e.code === 'kv_bad_reply');
});

// =============================================================================================
// The extended commands (SET options, MGET/MSET, multi-key DEL/EXISTS, APPEND, STRLEN, DBSIZE,
// TYPE, EXPIRE/PTTL, SCAN, multi): their codec, their semantics on KvStore, expiry by the agreed
// batch time, and checkpoints that carry deadlines.

/** Runs one request in a batch of agreed time `time` and decodes the reply. */
function at(store: KvStore, time: number, req: KvRequest): KvReply {
  const [reply] = store.execute({ seq: time, time, seed: 0, requests: [{ client: 1, reqId: time, op: encodeKvRequest(req) }] });
  const out = decodeKvReply(reply!);
  assert.ok(out !== undefined, 'the store replies decode');
  return out;
}

const set = (key: string, value: string, o: Partial<{ when: 'always' | 'nx' | 'xx'; get: boolean; expiry: KvExpiry }> = {}): KvCommand => ({
  kind: 'set',
  key,
  value,
  when: o.when ?? 'always',
  get: o.get ?? false,
  expiry: o.expiry ?? { kind: 'clear' },
});
const int = (value: number): KvCommandOutput => ({ kind: 'int', value });

// ---------------------------------------------------------------------------------------------
// Codec.

const xKey = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('', 'ключ', '🔑', 'a\u0000b'));
const xValue = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', '0', '-1', String(Number.MAX_SAFE_INTEGER)));
const xMs = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER)).map((x) => (x === 0 ? 0 : x));
const xKeys = fc.array(xKey, { maxLength: 5 });

function xCommandOver(key: fc.Arbitrary<string>, ms: fc.Arbitrary<number> = xMs): fc.Arbitrary<KvCommand> {
  const timed = fc.record({ kind: fc.constantFrom('in' as const, 'at' as const), ms });
  const keys = fc.array(key, { maxLength: 4 });
  return fc.oneof(
    fc.record({ kind: fc.constant('get' as const), key }),
    fc.record({ kind: fc.constant('put' as const), key, value: xValue }),
    fc.record({ kind: fc.constant('del' as const), key }),
    fc.record({ kind: fc.constant('cas' as const), key, expected: fc.option(xValue, { nil: null }), next: xValue }),
    fc.record({ kind: fc.constant('incr' as const), key, delta: fc.integer({ min: -5, max: 5 }).map((d) => (d === 0 ? 0 : d)) }),
    fc.record({ kind: fc.constant('set' as const), key, value: xValue, when: fc.constantFrom('always' as const, 'nx' as const, 'xx' as const), get: fc.boolean(), expiry: fc.oneof(fc.constant({ kind: 'clear' as const }), fc.constant({ kind: 'keep' as const }), timed) }),
    fc.record({ kind: fc.constant('mget' as const), keys }),
    fc.record({ kind: fc.constant('mset' as const), entries: fc.array(fc.record({ key, value: xValue }), { maxLength: 3 }) }),
    fc.record({ kind: fc.constant('delKeys' as const), keys }),
    fc.record({ kind: fc.constant('exists' as const), keys }),
    fc.record({ kind: fc.constant('append' as const), key, value: xValue }),
    fc.record({ kind: fc.constant('strlen' as const), key }),
    fc.constant({ kind: 'dbsize' as const }),
    fc.record({ kind: fc.constant('type' as const), key }),
    fc.record({ kind: fc.constant('expire' as const), key, expiry: timed }),
    fc.record({ kind: fc.constant('pttl' as const), key }),
    fc.record({ kind: fc.constant('scan' as const), cursor: fc.oneof(fc.constant(0), fc.nat({ max: 0xffffffff })), match: fc.option(fc.constantFrom('*', 'a*', '?', '[ab]*', 'k\\*'), { nil: null }), count: fc.integer({ min: 1, max: 20 }) }),
  );
}
const xCommand = xCommandOver(xKey);
const xRequest: fc.Arbitrary<KvRequest> = fc.oneof(xCommand, fc.record({ kind: fc.constant('multi' as const), commands: fc.array(xCommand, { maxLength: 6 }) }));

const xOutput: fc.Arbitrary<KvCommandOutput> = fc.oneof(
  fc.record({ kind: fc.constant('get' as const), value: fc.option(xValue, { nil: null }) }),
  fc.constant({ kind: 'put' as const }),
  fc.record({ kind: fc.constant('del' as const), existed: fc.boolean() }),
  fc.record({ kind: fc.constant('incr' as const), value: xMs }),
  fc.record({ kind: fc.constant('error' as const), code: fc.constantFrom('not_integer' as const, 'overflow' as const, 'bad_request' as const) }),
  fc.record({ kind: fc.constant('set' as const), written: fc.boolean(), old: fc.option(xValue, { nil: null }) }),
  fc.record({ kind: fc.constant('values' as const), values: fc.array(fc.option(xValue, { nil: null }), { maxLength: 4 }) }),
  fc.record({ kind: fc.constant('int' as const), value: xMs }),
  fc.record({ kind: fc.constant('scan' as const), cursor: fc.nat({ max: 0xffffffff }), keys: xKeys }),
  fc.record({ kind: fc.constant('fail' as const), code: fc.constantFrom('too_large' as const, 'reply_too_large' as const, 'invalid_expire' as const) }),
);
const xReply: fc.Arbitrary<KvReply> = fc.oneof(xOutput, fc.record({ kind: fc.constant('multi' as const), outputs: fc.array(xOutput, { maxLength: 5 }) }));

/** fc.record builds null-prototype objects: compare through JSON. */
const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x));

void test('decodeKvRequest(encodeKvRequest(req)) equals req for every command and for multis', () => {
  fc.assert(
    fc.property(xRequest, (req) => {
      assert.deepStrictEqual(plain(decodeKvRequest(encodeKvRequest(req))), plain(req));
    }),
    { seed: 2001, numRuns: 1000 },
  );
});

void test('decodeKvReply(encodeKvReply(reply)) equals reply for every output kind and for multis', () => {
  fc.assert(
    fc.property(xReply, (reply) => {
      assert.deepStrictEqual(plain(decodeKvReply(encodeKvReply(reply))), plain(reply));
    }),
    { seed: 2002, numRuns: 1000 },
  );
});

void test('the five ops keep their bytes: every encodeKvOp/encodeKvOutput is a KvRequest/KvReply meaning the same', () => {
  const ops = [
    { kind: 'get', key: 'k' },
    { kind: 'put', key: 'k', value: 'v' },
    { kind: 'del', key: 'k' },
    { kind: 'cas', key: 'k', expected: null, next: 'n' },
    { kind: 'incr', key: 'k', delta: -3 },
  ] as const;
  for (const op of ops) {
    assert.equal(hex(encodeKvRequest(op)), hex(encodeKvOp(op)), op.kind);
    assert.deepStrictEqual(decodeKvRequest(encodeKvOp(op)), op);
  }
  const outs = [{ kind: 'get', value: 'v' }, { kind: 'put' }, { kind: 'cas', swapped: true }, { kind: 'incr', value: -7 }, { kind: 'error', code: 'overflow' }] as const;
  for (const o of outs) assert.equal(hex(encodeKvReply(o)), hex(encodeKvOutput(o)), o.kind);
});

void test('decodeKvRequest/decodeKvReply never throw on random bytes; what they accept re-encodes to the same bytes', () => {
  const arbBytes = fc.oneof(
    fc.uint8Array({ maxLength: 48 }),
    fc.tuple(fc.constantFrom(10, 11, 12, 13, 14, 19, 21, 32), fc.uint8Array({ maxLength: 48 })).map(([t, b]) => Uint8Array.of(t, ...b)),
    fc.tuple(fc.constantFrom(11, 13, 14), fc.uint8Array({ maxLength: 24 })).map(([t, b]) => Uint8Array.of(32, 0, 1, t, 0, 1, ...b)),
  );
  fc.assert(
    fc.property(arbBytes, (b) => {
      const req = decodeKvRequest(b);
      if (req !== undefined) assert.equal(hex(encodeKvRequest(req)), hex(b));
      const reply = decodeKvReply(b);
      if (reply !== undefined) assert.equal(hex(encodeKvReply(reply)), hex(b));
    }),
    { seed: 2003, numRuns: 3000 },
  );
  // Nested multis, unknown tags and a scan count of 0 are refused.
  assert.equal(decodeKvRequest(Uint8Array.of(32, 0, 1, 32, 0, 0)), undefined);
  assert.equal(decodeKvRequest(Uint8Array.of(99)), undefined);
  assert.equal(decodeKvRequest(Uint8Array.of(21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), undefined);
  assert.equal(decodeKvReply(Uint8Array.of(14, 9)), undefined);
});

// ---------------------------------------------------------------------------------------------
// Semantics.

void test('SET: NX, XX and GET follow Redis; a refused SET changes nothing and still returns the old value with GET', () => {
  const s = new KvStore();
  assert.deepStrictEqual(at(s, 10, set('k', 'a', { when: 'xx' })), { kind: 'set', written: false, old: null });
  assert.equal(s.peek('k'), null);
  assert.deepStrictEqual(at(s, 11, set('k', 'a', { when: 'nx' })), { kind: 'set', written: true, old: null });
  assert.deepStrictEqual(at(s, 12, set('k', 'b', { when: 'nx', get: true })), { kind: 'set', written: false, old: 'a' });
  assert.deepStrictEqual(at(s, 13, set('k', 'c', { when: 'xx', get: true })), { kind: 'set', written: true, old: 'a' });
  assert.deepStrictEqual(at(s, 14, set('k', 'd', { get: true })), { kind: 'set', written: true, old: 'c' });
  assert.equal(s.peek('k'), 'd');
});

void test('MGET, MSET, multi-key DEL and EXISTS (a key named twice counts twice), APPEND and STRLEN in UTF-8 bytes, DBSIZE, TYPE', () => {
  const s = new KvStore();
  assert.deepStrictEqual(at(s, 1, { kind: 'mset', entries: [{ key: 'a', value: '1' }, { key: 'b', value: 'ключ' }, { key: 'a', value: '2' }] }), { kind: 'put' });
  assert.deepStrictEqual(at(s, 2, { kind: 'mget', keys: ['a', 'b', 'zz', 'a'] }), { kind: 'values', values: ['2', 'ключ', null, '2'] });
  assert.deepStrictEqual(at(s, 3, { kind: 'exists', keys: ['a', 'a', 'zz', 'b'] }), int(3));
  assert.deepStrictEqual(at(s, 4, { kind: 'strlen', key: 'b' }), int(8));
  assert.deepStrictEqual(at(s, 5, { kind: 'strlen', key: 'zz' }), int(0));
  assert.deepStrictEqual(at(s, 6, { kind: 'append', key: 'b', value: '🔑' }), int(12));
  assert.deepStrictEqual(at(s, 7, { kind: 'append', key: 'new', value: 'xy' }), int(2));
  assert.deepStrictEqual(at(s, 8, { kind: 'dbsize' }), int(3));
  assert.deepStrictEqual(at(s, 9, { kind: 'type', key: 'a' }), int(1));
  assert.deepStrictEqual(at(s, 10, { kind: 'type', key: 'zz' }), int(0));
  assert.deepStrictEqual(at(s, 11, { kind: 'delKeys', keys: ['a', 'zz', 'new', 'a'] }), int(2));
  assert.deepStrictEqual(at(s, 12, { kind: 'dbsize' }), int(1));
  const big = 'x'.repeat(valueBytesMax);
  at(s, 13, set('big', big));
  assert.deepStrictEqual(at(s, 14, { kind: 'append', key: 'big', value: 'y' }), { kind: 'fail', code: 'too_large' });
  assert.equal(s.peek('big'), big);
});

void test('expiry follows the batch time only: a key is present before its deadline and absent from the batch whose time reaches it', () => {
  const s = new KvStore();
  at(s, 1000, set('k', 'v', { expiry: { kind: 'in', ms: 500 } }));
  assert.equal(s.peekDeadline('k'), 1500);
  assert.deepStrictEqual(at(s, 1200, { kind: 'pttl', key: 'k' }), int(300));
  assert.deepStrictEqual(at(s, 1499, { kind: 'get', key: 'k' }), { kind: 'get', value: 'v' });
  assert.deepStrictEqual(at(s, 1500, { kind: 'get', key: 'k' }), { kind: 'get', value: null });
  assert.deepStrictEqual(at(s, 1501, { kind: 'pttl', key: 'k' }), int(-2));
  assert.deepStrictEqual(at(s, 1502, { kind: 'exists', keys: ['k'] }), int(0));
  // Absolute deadlines (EXAT/PXAT) are agreed times too; one in the past removes the key at once.
  at(s, 2000, set('a', '1', { expiry: { kind: 'at', ms: 2600 } }));
  at(s, 2001, set('past', '1', { expiry: { kind: 'at', ms: 1999 } }));
  assert.deepStrictEqual(at(s, 2002, { kind: 'mget', keys: ['a', 'past'] }), { kind: 'values', values: ['1', null] });
  assert.deepStrictEqual(at(s, 2599, { kind: 'dbsize' }), int(1));
  assert.deepStrictEqual(at(s, 2600, { kind: 'dbsize' }), int(0));
  assert.equal(s.size, 0);
});

void test('deadlines: SET and put drop them, KEEPTTL, incr and APPEND keep them, EXPIRE sets them (past: deletes), PTTL -1 without one', () => {
  const s = new KvStore();
  at(s, 100, set('k', '1', { expiry: { kind: 'in', ms: 1000 } }));
  assert.deepStrictEqual(at(s, 101, { kind: 'incr', key: 'k', delta: 4 }), { kind: 'incr', value: 5 });
  assert.deepStrictEqual(at(s, 102, { kind: 'append', key: 'k', value: '0' }), int(2));
  assert.deepStrictEqual(at(s, 103, set('k', '7', { expiry: { kind: 'keep' } })), { kind: 'set', written: true, old: null });
  assert.deepStrictEqual(at(s, 104, { kind: 'pttl', key: 'k' }), int(996));
  at(s, 105, set('k', '8'));
  assert.deepStrictEqual(at(s, 106, { kind: 'pttl', key: 'k' }), int(-1));
  assert.deepStrictEqual(at(s, 107, { kind: 'expire', key: 'k', expiry: { kind: 'in', ms: 50 } }), int(1));
  assert.deepStrictEqual(at(s, 108, { kind: 'pttl', key: 'k' }), int(49));
  at(s, 109, { kind: 'put', key: 'k', value: 'p' });
  assert.deepStrictEqual(at(s, 110, { kind: 'pttl', key: 'k' }), int(-1));
  assert.deepStrictEqual(at(s, 111, { kind: 'expire', key: 'nope', expiry: { kind: 'in', ms: 50 } }), int(0));
  assert.deepStrictEqual(at(s, 112, { kind: 'expire', key: 'k', expiry: { kind: 'in', ms: -1 } }), int(1));
  assert.equal(s.peek('k'), null);
  assert.deepStrictEqual(at(s, 113, set('k', 'v', { expiry: { kind: 'in', ms: Number.MAX_SAFE_INTEGER } })), { kind: 'fail', code: 'invalid_expire' });
  assert.equal(s.peek('k'), null, 'an invalid expiry changes nothing');
});

void test('multi: commands run in order within one batch, one output each, and see each other', () => {
  const s = new KvStore();
  const reply = at(s, 5, {
    kind: 'multi',
    commands: [set('a', '1'), { kind: 'incr', key: 'a', delta: 1 }, { kind: 'get', key: 'a' }, { kind: 'incr', key: 's', delta: 1 }, { kind: 'put', key: 's', value: 'x' }, { kind: 'incr', key: 's', delta: 1 }, { kind: 'del', key: 'a' }, { kind: 'exists', keys: ['a', 's'] }],
  });
  assert.deepStrictEqual(reply, {
    kind: 'multi',
    outputs: [{ kind: 'set', written: true, old: null }, { kind: 'incr', value: 2 }, { kind: 'get', value: '2' }, { kind: 'incr', value: 1 }, { kind: 'put' }, { kind: 'error', code: 'not_integer' }, { kind: 'del', existed: true }, int(1)],
  });
});

void test('replies never exceed replyBytesMax: a read that would is refused with reply_too_large, and so is a write with no room left', () => {
  const s = new KvStore();
  const big = 'v'.repeat(valueBytesMax);
  at(s, 1, { kind: 'mset', entries: Array.from({ length: 80 }, (_, i) => ({ key: `k${i}`, value: big })) });
  const keys = Array.from({ length: 80 }, (_, i) => `k${i}`);
  assert.deepStrictEqual(at(s, 2, { kind: 'mget', keys }), { kind: 'fail', code: 'reply_too_large' });
  const reply = at(s, 3, { kind: 'multi', commands: [...keys.map((key): KvCommand => ({ kind: 'get', key })), set('w', 'x', { get: true })] });
  assert.ok(reply.kind === 'multi');
  const served = reply.outputs.filter((o) => o.kind === 'get').length;
  assert.ok(served > 0 && served < 80, `${served} gets fit`);
  assert.ok(reply.outputs.slice(served).every((o) => o.kind === 'fail' && o.code === 'reply_too_large'));
  assert.equal(s.peek('w'), null, 'the refused write did not run');
  assert.ok(encodeKvReply(reply).length <= replyBytesMax);
});

void test('SCAN: iterating with any COUNT returns every key exactly once; keys present throughout survive concurrent writes; MATCH filters', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ maxLength: 6 }), { maxLength: 40 }), fc.integer({ min: 1, max: 7 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 10 }), (keys, count, churn) => {
      const s = new KvStore();
      let t = 1;
      at(s, t++, { kind: 'mset', entries: keys.map((key) => ({ key, value: 'v' })) });
      const seen: string[] = [];
      let cursor = 0;
      let rounds = 0;
      do {
        const r = at(s, t++, { kind: 'scan', cursor, match: null, count });
        assert.ok(r.kind === 'scan');
        seen.push(...r.keys);
        cursor = r.cursor;
        // Churn: keys that come and go during the scan (never one of the permanent keys).
        const c = churn[rounds % Math.max(1, churn.length)];
        if (c !== undefined && !keys.includes(c)) at(s, t++, rounds % 2 === 0 ? set(c, 'x') : { kind: 'del', key: c });
        rounds++;
        assert.ok(rounds <= keys.length + churn.length + 2, 'the scan ends');
      } while (cursor !== 0);
      const permanent = seen.filter((k) => keys.includes(k));
      assert.deepStrictEqual([...permanent].sort(), [...keys].sort(), 'every permanent key once');
      assert.equal(new Set(seen).size, seen.length, 'no key twice');
    }),
    { seed: 2004, numRuns: 200 },
  );
  const s = new KvStore();
  at(s, 1, { kind: 'mset', entries: ['user:1', 'user:2', 'order:1', 'user:10'].map((key) => ({ key, value: 'v' })) });
  const r = at(s, 2, { kind: 'scan', cursor: 0, match: 'user:?', count: 100 });
  assert.deepStrictEqual(r.kind === 'scan' ? [...r.keys].sort() : r, ['user:1', 'user:2']);
  assert.ok(r.kind === 'scan' && r.cursor === 0);
  assert.equal(keyHash('a'), keyHash('a'));
});

void test('Glob: Redis MATCH syntax (*, ?, classes, ranges, negation, escapes), linear on hostile patterns', () => {
  const rows: [string, string, boolean][] = [
    ['*', '', true],
    ['*', 'anything', true],
    ['a*', 'abc', true],
    ['a*', 'bac', false],
    ['*c', 'abc', true],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['[ab]x', 'bx', true],
    ['[ab]x', 'cx', false],
    ['[^ab]x', 'cx', true],
    ['[^ab]x', 'ax', false],
    ['[a-c]', 'b', true],
    ['[c-a]', 'b', true],
    ['[a-c]', 'd', false],
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['[\\]]', ']', true],
    ['h*llo', 'heeeello', true],
    ['h*l*o', 'hello', true],
    ['🔑?', '🔑é', true],
    ['[abc', 'b', true],
  ];
  for (const [p, t, want] of rows) assert.equal(new Glob(p).matches(t), want, `${p} ~ ${t}`);
  const hostile = new Glob(`${'*a'.repeat(30)}b`);
  assert.equal(hostile.matches('a'.repeat(2000)), false);
});

// ---------------------------------------------------------------------------------------------
// Checkpoints with deadlines.

/** Keys a..d, times chosen by the test, expiries within a few ms so they fire during the run. */
const xTimedCommand = xCommandOver(fc.constantFrom('a', 'b', 'c', 'd'), fc.integer({ min: -3, max: 12 }).map((x) => (x === 0 ? 0 : x)));

void test('checkpoint with deadlines: identical on replicas fed the same batches (one restored midway), and restore round-trips', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), fc.array(xTimedCommand, { maxLength: 4 })), { maxLength: 12 }), fc.nat(), (batches, cut) => {
      const a = new KvStore();
      let b = new KvStore();
      let time = 100;
      const split = batches.length === 0 ? 0 : cut % batches.length;
      batches.forEach(([dt, cmds], i) => {
        time += dt;
        const requests = cmds.map((c, j) => ({ client: j, reqId: i * 10 + j, op: encodeKvRequest(c) }));
        const ra = a.execute({ seq: i + 1, time, seed: 0, requests });
        const rb = b.execute({ seq: i + 1, time, seed: 0, requests });
        assert.deepStrictEqual(ra.map(hex), rb.map(hex));
        if (i === split) {
          // b restarts from a checkpoint: the expired entries it held physically are gone.
          const fresh = new KvStore();
          fresh.restore(b.checkpoint());
          b = fresh;
        }
      });
      assert.equal(hex(a.checkpoint()), hex(b.checkpoint()));
      const c = new KvStore();
      c.restore(a.checkpoint());
      assert.equal(hex(c.checkpoint()), hex(a.checkpoint()));
      for (const k of ['a', 'b', 'c', 'd']) {
        assert.equal(c.peek(k), a.peek(k));
        assert.equal(c.peekDeadline(k), a.peekDeadline(k));
      }
      // The restored store answers later batches exactly as the original.
      const probe = [{ kind: 'pttl', key: 'a' }, { kind: 'mget', keys: ['a', 'b', 'c', 'd'] }, { kind: 'dbsize' }] as const;
      for (const dt of [1, 5, 20]) {
        const req = { kind: 'multi', commands: probe } as const;
        assert.deepStrictEqual(at(c, time + dt, req), at(a, time + dt, req));
      }
    }),
    { seed: 2005, numRuns: 300 },
  );
});

void test('checkpoint format: v3 pages; the time only with live deadlines; v1 and v2 from earlier versions still restore', () => {
  const s = new KvStore();
  at(s, 10, set('k', 'v'));
  const entry = '00000001' + hex(Buffer.from('k')) + '00000001' + hex(Buffer.from('v'));
  const plain = s.checkpoint();
  // magic, now (0: no deadline), one page, one entry (key, value, no deadline).
  assert.equal(hex(plain), 'fffffffd' + '0000000000000000' + '00000001' + '00000001' + entry + '00');
  at(s, 11, set('t', 'x', { expiry: { kind: 'in', ms: 5 } }));
  const timed = s.checkpoint();
  assert.equal(hex(timed.subarray(4, 12)), '000000000000000b', 'the agreed time of the last batch');
  const r = new KvStore();
  r.restore(timed);
  assert.equal(r.peekDeadline('t'), 16);
  at(s, 16, { kind: 'get', key: 'zz' });
  assert.equal(hex(s.checkpoint()), hex(plain), 'once the deadline passes, the checkpoint is the plain one again');
  // A checkpoint whose entry expired at or before its own time is corrupt.
  const bad = Buffer.from(timed);
  bad.writeUInt32BE(16, 8);
  assert.throws(() => {
    new KvStore().restore(bad);
  }, /expired before the checkpoint/);
  // v1 and v2, written by earlier versions, restore to the same state.
  const v1 = Buffer.from('00000001' + entry, 'hex');
  const v2 = Buffer.from('fffffffe' + '000000000000000b' + '00000001' + entry + '00', 'hex');
  for (const old of [v1, v2]) {
    const o = new KvStore();
    o.restore(old);
    assert.equal(hex(o.checkpoint()), hex(plain));
  }
});

void test('checkpoint format: a v3 key on the wrong page, or a page count that is not a power of two, does not restore', () => {
  const s = new KvStore();
  // Enough state for several pages.
  at(s, 1, { kind: 'mset', entries: Array.from({ length: 40 }, (_, i) => ({ key: `key-${i}`, value: 'v'.repeat(8_000) })) });
  const cp = Buffer.from(s.checkpoint());
  const pages = cp.readUInt32BE(12);
  assert.ok(pages >= 4, `several pages (${pages})`);
  const odd = Buffer.from(cp);
  odd.writeUInt32BE(pages - 1, 12);
  assert.throws(() => {
    new KvStore().restore(odd);
  }, KvCheckpointError);
  // Two pages, with a key whose hash puts it on page 1 written on page 0.
  let key = 'a';
  for (let i = 0; keyHash(key) >>> 31 !== 1; i++) key = `a${i}`;
  const entry = hex(Buffer.from([0, 0, 0, key.length])) + hex(Buffer.from(key)) + '00000001' + hex(Buffer.from('v')) + '00';
  const good = Buffer.from('fffffffd' + '0000000000000000' + '00000002' + '00000000' + '00000001' + entry, 'hex');
  new KvStore().restore(good);
  const wrong = Buffer.from('fffffffd' + '0000000000000000' + '00000002' + '00000001' + entry + '00000000', 'hex');
  assert.throws(() => {
    new KvStore().restore(wrong);
  }, /wrong page/);
});

/** Reads a paged snapshot whole; a null page is taken from `previous` (the pages of the one before). */
function readPaged(snap: ReturnType<KvStore['pagedSnapshot']>, previous: readonly Uint8Array[] | undefined): { pages: Uint8Array[]; fresh: number } {
  const pages: Uint8Array[] = [];
  let fresh = 0;
  for (let p = snap.nextPage(); p !== undefined; p = snap.nextPage()) {
    if (p === null) {
      const old = previous?.[pages.length];
      assert.ok(old !== undefined, `page ${pages.length} is null without a previous page`);
      pages.push(old);
    } else {
      fresh++;
      pages.push(p);
    }
  }
  snap.close();
  return { pages, fresh };
}

void test('KvStore.pagedSnapshot: unchanged pages are null, and with the previous pages filled in it equals checkpoint() of its moment, while later batches run', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(arbTimedRequest, { maxLength: 8 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 8, max: 200 }),
      (rounds, reads, pageBytes) => {
        const s = new KvStore({ pageBytes });
        let previous: Uint8Array[] | undefined;
        let time = 1;
        rounds.forEach((reqs, i) => {
          s.execute({ ...batchOf(reqs.map((r) => r.bytes)), time: time++ });
          const expected = hex(s.checkpoint());
          const snap = s.pagedSnapshot();
          // Read a few pages, run the next round, then read the rest: the snapshot stays frozen.
          const first: Uint8Array[] = [];
          for (let k = 0; k < (reads[i % reads.length] ?? 1); k++) {
            const p = snap.nextPage();
            if (p === undefined) break;
            first.push(p ?? previous![first.length]!);
          }
          s.execute({ ...batchOf((rounds[(i + 1) % rounds.length] ?? []).map((r) => r.bytes)), time: time++ });
          const rest = readPaged(snap, previous?.slice(first.length));
          const pages = [...first, ...rest.pages];
          assert.equal(hex(Buffer.concat(pages)), expected);
          previous = pages;
        });
      },
    ),
    { seed: 1242, numRuns: 300 },
  );
});

void test('KvStore.pagedSnapshot: one changed key makes one fresh page besides the header; a restore or a new page count makes all fresh', () => {
  const s = new KvStore({ pageBytes: 1024 });
  at(s, 1, { kind: 'mset', entries: Array.from({ length: 200 }, (_, i) => ({ key: `key-${i}`, value: 'x'.repeat(100) })) });
  const all = readPaged(s.pagedSnapshot(), undefined);
  assert.ok(all.pages.length >= 17, `header and at least 16 pages (${all.pages.length})`);
  assert.equal(all.fresh, all.pages.length, 'the first paged snapshot has every page');
  at(s, 2, set('key-7', 'y'.repeat(100)));
  const one = readPaged(s.pagedSnapshot(), all.pages);
  assert.equal(one.fresh, 2, 'the header and the page of key-7');
  assert.equal(hex(Buffer.concat(one.pages)), hex(s.checkpoint()));
  const none = readPaged(s.pagedSnapshot(), one.pages);
  assert.equal(none.fresh, 1, 'nothing changed: the header only');
  // An expiry changes a page without a write to it.
  at(s, 3, set('key-9', 'z'.repeat(100), { expiry: { kind: 'in', ms: 5 } }));
  const timed = readPaged(s.pagedSnapshot(), none.pages);
  at(s, 10, { kind: 'get', key: 'other' });
  const expired = readPaged(s.pagedSnapshot(), timed.pages);
  assert.equal(expired.fresh, 2, 'the header and the page key-9 left');
  assert.equal(hex(Buffer.concat(expired.pages)), hex(s.checkpoint()));
  // Doubling the state changes the page count: every page is fresh.
  at(s, 11, { kind: 'mset', entries: Array.from({ length: 300 }, (_, i) => ({ key: `more-${i}`, value: 'x'.repeat(100) })) });
  const grown = readPaged(s.pagedSnapshot(), expired.pages);
  assert.ok(grown.pages.length > expired.pages.length);
  assert.equal(grown.fresh, grown.pages.length);
  // After a restore, every page is fresh again.
  s.restore(s.checkpoint());
  const restored = readPaged(s.pagedSnapshot(), grown.pages);
  assert.equal(restored.fresh, restored.pages.length);
  assert.equal(hex(Buffer.concat(restored.pages)), hex(Buffer.concat(grown.pages)));
});

void test('executeReadOnly reads a key with a deadline as of the last batch time', () => {
  const s = new KvStore();
  at(s, 10, set('k', 'v', { expiry: { kind: 'in', ms: 5 } }));
  assert.deepStrictEqual(decodeKvOp(encodeKvOp({ kind: 'get', key: 'k' })), { kind: 'get', key: 'k' });
  assert.deepStrictEqual(decodeKvReply(s.executeReadOnly(encodeKvOp({ kind: 'get', key: 'k' }))), { kind: 'get', value: 'v' });
  at(s, 15, { kind: 'dbsize' });
  assert.deepStrictEqual(decodeKvReply(s.executeReadOnly(encodeKvOp({ kind: 'get', key: 'k' }))), { kind: 'get', value: null });
});
