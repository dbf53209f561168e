import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyKv, isReadOnly, outputsEqual, type KvOp, type KvOutput } from './model.ts';
import { decodeKvOp, decodeKvOutput, encodeKvOp, encodeKvOutput, keyBytesMax } from './ops.ts';
import { KvStore } from './store.ts';
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
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((bytes) => ({ op: decodeKvOp(bytes), bytes })) },
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
      }, (e: unknown) => e instanceof Error && /kv checkpoint does not decode/.test(e.message));
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
