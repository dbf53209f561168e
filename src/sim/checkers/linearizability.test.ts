import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { KvOp, KvOutput } from '../../services/kv/model.ts';
import { applyKv, outputsEqual } from '../../services/kv/model.ts';
import type { HistoryOp, LinearizabilityResult } from './linearizability.ts';
import { checkLinearizable, fromJsonLine, toJsonLine } from './linearizability.ts';

// ---------------------------------------------------------------------------------------------
// Builders for hand-written histories.

function done(client: number, op: KvOp, output: KvOutput, invoke: number, complete: number): HistoryOp {
  return { client, op, output, invoke, complete };
}
function pending(client: number, op: KvOp, invoke: number): HistoryOp {
  return { client, op, output: undefined, invoke, complete: undefined };
}
function get(client: number, key: string, value: string | null, invoke: number, complete: number): HistoryOp {
  return done(client, { kind: 'get', key }, { kind: 'get', value }, invoke, complete);
}
function put(client: number, key: string, value: string, invoke: number, complete: number): HistoryOp {
  return done(client, { kind: 'put', key, value }, { kind: 'put' }, invoke, complete);
}
function del(client: number, key: string, existed: boolean, invoke: number, complete: number): HistoryOp {
  return done(client, { kind: 'del', key }, { kind: 'del', existed }, invoke, complete);
}
function cas(client: number, key: string, expected: string | null, next: string, swapped: boolean, invoke: number, complete: number): HistoryOp {
  return done(client, { kind: 'cas', key, expected, next }, { kind: 'cas', swapped }, invoke, complete);
}
function incr(client: number, key: string, delta: number, result: number | 'not_integer' | 'overflow', invoke: number, complete: number): HistoryOp {
  const output: KvOutput = typeof result === 'number' ? { kind: 'incr', value: result } : { kind: 'error', code: result };
  return done(client, { kind: 'incr', key, delta }, output, invoke, complete);
}

function assertOk(result: LinearizabilityResult, checked?: number): void {
  assert.equal(result.ok, true, `expected linearizable, got ${JSON.stringify(result)}`);
  if (checked !== undefined) assert.equal(result.checked, checked);
}
function assertFails(result: LinearizabilityResult, key: string): Extract<LinearizabilityResult, { ok: false }> {
  if (result.ok !== false) assert.fail(`expected a violation on ${key}, got ${JSON.stringify(result)}`);
  assert.equal(result.key, key);
  assert.match(result.reason, /no linearization/);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Known-good histories.

void test('sequential history over every operation kind is linearizable', () => {
  const h = [
    put(1, 'a', '1', 0, 1),
    get(1, 'a', '1', 2, 3),
    incr(1, 'a', 2, 3, 4, 5),
    cas(1, 'a', '3', 'x', true, 6, 7),
    cas(1, 'a', '3', 'y', false, 8, 9),
    get(1, 'a', 'x', 10, 11),
    incr(1, 'a', 1, 'not_integer', 12, 13),
    del(1, 'a', true, 14, 15),
    get(1, 'a', null, 16, 17),
    del(1, 'a', false, 18, 19),
    cas(1, 'a', null, 'z', true, 20, 21),
    get(1, 'a', 'z', 22, 23),
  ];
  assertOk(checkLinearizable(h), h.length);
});

void test('empty history is linearizable and checks nothing', () => {
  assert.deepEqual(checkLinearizable([]), { ok: true, checked: 0 });
});

void test('a read concurrent with a write may see either the old or the new value', () => {
  assertOk(checkLinearizable([put(1, 'a', '1', 0, 10), get(2, 'a', null, 2, 5)]));
  assertOk(checkLinearizable([put(1, 'a', '1', 0, 10), get(2, 'a', '1', 2, 5)]));
  // Order of the history array does not matter.
  assertOk(checkLinearizable([get(2, 'a', '1', 2, 5), put(1, 'a', '1', 0, 10)]));
});

void test('overlapping increments may complete in either order', () => {
  assertOk(checkLinearizable([incr(1, 'n', 1, 2, 0, 10), incr(2, 'n', 1, 1, 1, 11), get(3, 'n', '2', 12, 13)]));
  assertOk(
    checkLinearizable([
      incr(1, 'n', 1, 3, 0, 10),
      incr(2, 'n', 1, 1, 1, 11),
      incr(3, 'n', 1, 2, 2, 12),
      get(4, 'n', '3', 13, 14),
    ]),
  );
});

void test('cas race: exactly one of two concurrent cas on the same expected value wins', () => {
  for (const winner of [1, 2] as const) {
    const h = [
      put(0, 'c', '0', 0, 1),
      cas(1, 'c', '0', 'one', winner === 1, 2, 10),
      cas(2, 'c', '0', 'two', winner === 2, 3, 9),
      get(3, 'c', winner === 1 ? 'one' : 'two', 11, 12),
    ];
    assertOk(checkLinearizable(h));
  }
});

void test('a pending write can explain a later read', () => {
  const h = [pending(1, { kind: 'put', key: 'a', value: '1' }, 0), get(2, 'a', '1', 5, 6)];
  assertOk(checkLinearizable(h), 1);
  // A pending incr and a pending cas can too, after the read of the old value.
  assertOk(
    checkLinearizable([
      put(1, 'n', '5', 0, 1),
      pending(2, { kind: 'incr', key: 'n', delta: 10 }, 2),
      get(3, 'n', '5', 3, 4),
      get(3, 'n', '15', 5, 6),
      pending(4, { kind: 'cas', key: 'n', expected: '15', next: 'done' }, 7),
      get(3, 'n', 'done', 8, 9),
    ]),
  );
});

void test('a pending write may never take effect, or take effect late', () => {
  assertOk(checkLinearizable([pending(1, { kind: 'put', key: 'a', value: '1' }, 0), get(2, 'a', null, 5, 6), get(2, 'a', null, 7, 8)]));
  assertOk(checkLinearizable([pending(1, { kind: 'put', key: 'a', value: '1' }, 0), get(2, 'a', null, 5, 6), get(2, 'a', '1', 70, 80)]));
  assertOk(checkLinearizable([pending(1, { kind: 'del', key: 'a' }, 0), put(2, 'a', 'v', 1, 2), get(2, 'a', 'v', 3, 4)], { initial: new Map([['a', 'v']]) }));
});

void test('pending reads are dropped and not counted', () => {
  const result = checkLinearizable([put(1, 'a', '1', 0, 1), pending(2, { kind: 'get', key: 'a' }, 0), pending(3, { kind: 'get', key: 'b' }, 5)]);
  assert.deepEqual(result, { ok: true, checked: 1 });
});

void test('several keys are checked independently and all completed ops are counted', () => {
  const h = [
    put(1, 'a', '1', 0, 4),
    put(2, 'b', '2', 1, 3),
    incr(3, 'c', 5, 5, 2, 6),
    get(1, 'b', '2', 5, 7),
    get(2, 'a', '1', 5, 8),
    get(3, 'c', '5', 7, 9),
    pending(4, { kind: 'put', key: 'b', value: '3' }, 8),
    get(1, 'b', '3', 10, 11),
  ];
  assertOk(checkLinearizable(h), 7);
});

void test('initial values are used per key (missing keys start absent, explicit null too)', () => {
  const initial = new Map<string, string | null>([
    ['a', '41'],
    ['b', null],
  ]);
  assertOk(checkLinearizable([incr(1, 'a', 1, 42, 0, 1), get(1, 'b', null, 2, 3), get(1, 'c', null, 4, 5)], { initial }));
  assertFails(checkLinearizable([get(1, 'a', null, 0, 1)], { initial }), 'a');
});

void test('error outputs are real operations checked against the model', () => {
  assertOk(checkLinearizable([put(1, 'a', 'x', 0, 1), incr(1, 'a', 1, 'not_integer', 2, 3), get(1, 'a', 'x', 4, 5)]));
  const max = String(Number.MAX_SAFE_INTEGER);
  assertOk(checkLinearizable([incr(1, 'a', 1, 'overflow', 0, 1), get(1, 'a', max, 2, 3)], { initial: new Map([['a', max]]) }));
  // The error must be the one the model gives: incr on an absent key succeeds.
  assertFails(checkLinearizable([incr(1, 'a', 1, 'not_integer', 0, 1)]), 'a');
  // An error the model never produces cannot be linearized.
  assertFails(checkLinearizable([done(1, { kind: 'put', key: 'a', value: 'v' }, { kind: 'error', code: 'bad_request' }, 0, 1)]), 'a');
});

void test('an op completing at the instant another is invoked is concurrent with it (strict <)', () => {
  assertOk(checkLinearizable([put(1, 'a', '1', 0, 10), get(2, 'a', null, 10, 20)]));
  assertFails(checkLinearizable([put(1, 'a', '1', 0, 10), get(2, 'a', null, 11, 20)]), 'a');
  // Zero-length intervals are fine.
  assertOk(checkLinearizable([put(1, 'a', '1', 5, 5), get(2, 'a', '1', 5, 5), get(3, 'a', null, 5, 5)]));
});

// ---------------------------------------------------------------------------------------------
// Known-bad histories.

void test('stale read after a completed write is rejected', () => {
  assertFails(checkLinearizable([put(1, 'a', '1', 0, 1), put(1, 'a', '2', 2, 3), get(2, 'a', '1', 4, 5)]), 'a');
});

void test('read of a value never written is rejected', () => {
  assertFails(checkLinearizable([put(1, 'a', '1', 0, 10), get(2, 'a', 'zzz', 1, 9)]), 'a');
  assertFails(checkLinearizable([pending(1, { kind: 'put', key: 'a', value: '1' }, 0), get(2, 'a', '2', 1, 2)]), 'a');
});

void test('two non-overlapping increments returning the same value are rejected', () => {
  assertFails(checkLinearizable([incr(1, 'n', 1, 1, 0, 1), incr(2, 'n', 1, 1, 2, 3)]), 'n');
});

void test('lost update via cas is rejected', () => {
  // Both cas claim to have swapped from "0", sequentially and concurrently.
  assertFails(checkLinearizable([put(0, 'c', '0', 0, 1), cas(1, 'c', '0', 'one', true, 2, 3), cas(2, 'c', '0', 'two', true, 4, 5)]), 'c');
  assertFails(checkLinearizable([put(0, 'c', '0', 0, 1), cas(1, 'c', '0', 'one', true, 2, 10), cas(2, 'c', '0', 'two', true, 3, 9)]), 'c');
  // A failed cas whose expected value was there the whole time.
  assertFails(checkLinearizable([put(0, 'c', '0', 0, 1), cas(1, 'c', '0', 'one', false, 2, 3)]), 'c');
});

void test('a later read returning an older value than an earlier read is rejected', () => {
  const h = [put(1, 'a', '1', 0, 1), put(2, 'a', '2', 2, 20), get(3, 'a', '2', 3, 4), get(3, 'a', '1', 5, 6)];
  assertFails(checkLinearizable(h), 'a');
  // Same thing across two readers.
  assertFails(checkLinearizable([put(1, 'a', '1', 0, 1), put(2, 'a', '2', 2, 20), get(3, 'a', '2', 3, 4), get(4, 'a', '1', 5, 6)]), 'a');
});

void test('a read observing a write invoked after the read completed is rejected', () => {
  assertFails(checkLinearizable([get(1, 'a', '1', 0, 1), put(2, 'a', '1', 2, 3)]), 'a');
  assertFails(checkLinearizable([get(1, 'a', '1', 0, 1), pending(2, { kind: 'put', key: 'a', value: '1' }, 2)]), 'a');
});

void test('a pending op takes effect at most once', () => {
  const writes = [pending(1, { kind: 'put', key: 'a', value: '1' }, 0), pending(2, { kind: 'put', key: 'a', value: '2' }, 0)];
  assertOk(checkLinearizable([...writes, get(3, 'a', '1', 1, 2), get(3, 'a', '2', 3, 4)]));
  assertFails(checkLinearizable([...writes, get(3, 'a', '2', 1, 2), get(3, 'a', '1', 3, 4), get(3, 'a', '2', 5, 6)]), 'a');
  assertFails(checkLinearizable([pending(1, { kind: 'incr', key: 'n', delta: 1 }, 0), get(2, 'n', '1', 1, 2), get(2, 'n', '2', 3, 4)]), 'n');
});

void test('failure reports the key, its whole sub-history and the op that could not be placed', () => {
  const bad = get(3, 'b', 'old', 10, 11);
  const h = [
    put(1, 'a', '1', 0, 1),
    put(1, 'b', 'old', 0, 1),
    put(2, 'b', 'new', 2, 3),
    get(2, 'a', '1', 4, 5),
    pending(4, { kind: 'get', key: 'b' }, 6),
    bad,
    put(2, 'c', '1', 12, 13),
  ];
  const result = assertFails(checkLinearizable(h), 'b');
  assert.deepEqual(result.ops, [h[1], h[2], h[4], bad]);
  assert.match(result.reason, /client 3 get\("b"\) -> "old" \[10, 11\]/);
  // Keys are checked in order of first appearance: "a" (2 completed ops) and then "b" (3).
  assert.equal(result.checked, 5);
});

void test('a step budget that is too small gives unknown, but a definite failure elsewhere wins', () => {
  const busy: HistoryOp[] = [];
  for (let c = 0; c < 8; c++) busy.push(put(c, 'busy', String(c), 0, 100));
  busy.push(get(9, 'busy', '0', 101, 102));
  const result = checkLinearizable(busy, { stepsMax: 5 });
  if (result.ok !== 'unknown') assert.fail(`expected unknown, got ${JSON.stringify(result)}`);
  assert.equal(result.key, 'busy');
  assert.match(result.reason, /budget of 5 steps/);
  assertOk(checkLinearizable(busy), busy.length);
  assertFails(checkLinearizable([...busy, get(1, 'other', 'x', 0, 1)], { stepsMax: 5 }), 'other');
});

void test('malformed histories and options are rejected with a RangeError', () => {
  assert.throws(() => checkLinearizable([put(1, 'a', '1', 5, 4)]), /complete \(4\) is before invoke \(5\)/);
  assert.throws(() => checkLinearizable([{ ...put(1, 'a', '1', 0, 1), complete: undefined }]), /output but no completion time/);
  assert.throws(() => checkLinearizable([{ ...put(1, 'a', '1', 0, 1), output: undefined }]), /completion time but no output/);
  assert.throws(() => checkLinearizable([put(1, 'a', '1', Number.NaN, 1)]), RangeError);
  assert.throws(() => checkLinearizable([], { stepsMax: 0 }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Simulated atomic store: generates histories that are linearizable by construction.

const pool = ['1', '2', 'x', '10', '-3'] as const;
const neverWritten = '#never-written#';

interface StepSpec {
  readonly kind: KvOp['kind'];
  readonly key: number;
  readonly a: number;
  readonly b: number;
  readonly delta: number;
  readonly gap: number;
  readonly toEffect: number;
  readonly toComplete: number;
  /** 0: pending and took effect; 1: pending and never took effect; anything else: completed. */
  readonly fate: number;
}
interface Scenario {
  readonly nKeys: number;
  readonly initial: readonly (string | null | undefined)[];
  readonly clients: readonly (readonly StepSpec[])[];
}

function stepArb(maxTime: number, fateMax: number): fc.Arbitrary<StepSpec> {
  return fc.record({
    kind: fc.constantFrom<KvOp['kind']>('get', 'put', 'del', 'cas', 'incr'),
    key: fc.nat(7),
    a: fc.nat(pool.length),
    b: fc.nat(pool.length),
    delta: fc.integer({ min: -3, max: 3 }),
    gap: fc.nat(maxTime),
    toEffect: fc.nat(maxTime),
    toComplete: fc.nat(maxTime),
    fate: fc.nat(fateMax),
  });
}
/** `fateMax`: ops are pending with probability 2 / (fateMax + 1). */
function scenarioArb(opts: { maxKeys: number; maxClients: number; maxSteps: number; fateMax?: number }): fc.Arbitrary<Scenario> {
  return fc.record({
    nKeys: fc.integer({ min: 1, max: opts.maxKeys }),
    initial: fc.array(fc.constantFrom<string | null | undefined>(undefined, undefined, null, '7', 'x'), { minLength: 8, maxLength: 8 }),
    clients: fc.array(fc.array(stepArb(4, opts.fateMax ?? 14), { maxLength: opts.maxSteps }), { minLength: 1, maxLength: opts.maxClients }),
  });
}

function keyName(i: number): string {
  return `k${i}`;
}

function makeOp(spec: StepSpec, nKeys: number): KvOp {
  const key = keyName(spec.key % nKeys);
  const value = pool[spec.a % pool.length]!;
  const next = pool[spec.b % pool.length]!;
  switch (spec.kind) {
    case 'get':
    case 'del':
      return { kind: spec.kind, key };
    case 'put':
      return { kind: 'put', key, value };
    case 'cas':
      return { kind: 'cas', key, expected: spec.a === pool.length ? null : value, next };
    case 'incr':
      return { kind: 'incr', key, delta: spec.delta };
  }
}

function initialMap(s: Scenario): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (let i = 0; i < s.nKeys; i++) {
    const v = s.initial[i];
    if (v !== undefined) m.set(keyName(i), v);
  }
  return m;
}

/**
 * Runs the scenario against an atomic map: every client issues its ops one after another, each
 * op takes effect at one instant inside [invoke, complete] and its output is what applyKv gives
 * there. A pending op either takes effect at its would-be instant or never; its client moves on.
 */
function simulate(s: Scenario): { history: HistoryOp[]; initial: Map<string, string | null> } {
  interface Rec {
    readonly client: number;
    readonly op: KvOp;
    readonly invoke: number;
    readonly effect: number | undefined;
    readonly complete: number | undefined;
    output: KvOutput | undefined;
  }
  const recs: Rec[] = [];
  s.clients.forEach((steps, client) => {
    let t = 0;
    for (const spec of steps) {
      const invoke = t + spec.gap;
      const effect = invoke + spec.toEffect;
      const complete = effect + spec.toComplete;
      const isPending = spec.fate <= 1;
      recs.push({
        client,
        op: makeOp(spec, s.nKeys),
        invoke,
        effect: spec.fate === 1 ? undefined : effect,
        complete: isPending ? undefined : complete,
        output: undefined,
      });
      t = complete;
    }
  });
  const initial = initialMap(s);
  const store = new Map(initial);
  const effects = recs.filter((r) => r.effect !== undefined).sort((x, y) => x.effect! - y.effect!);
  for (const r of effects) {
    const step = applyKv(store.get(r.op.key) ?? null, r.op);
    store.set(r.op.key, step.next);
    if (r.complete !== undefined) r.output = step.output;
  }
  const history = recs.map((r): HistoryOp => ({ client: r.client, op: r.op, output: r.output, invoke: r.invoke, complete: r.complete }));
  return { history, initial };
}

/** Replaces the output with one the model can never produce for this key's history. */
function impossible(h: HistoryOp): HistoryOp | undefined {
  if (h.complete === undefined) return undefined;
  switch (h.op.kind) {
    case 'get':
      return { ...h, output: { kind: 'get', value: neverWritten } };
    case 'incr':
      return { ...h, output: { kind: 'incr', value: 0.5 } }; // integer deltas only ever yield integers
    case 'cas':
      return { ...h, output: { kind: 'error', code: 'overflow' } }; // cas never fails with an error
    case 'del':
      return { ...h, output: { kind: 'error', code: 'not_integer' } }; // nor does del
    case 'put':
      return undefined;
  }
}

/** Definition-level reference: tries every order that real time allows (small histories only). */
function bruteForce(ops: readonly HistoryOp[], initial: string | null): boolean {
  const placed = ops.map(() => false);
  const completed = ops.filter((o) => o.complete !== undefined).length;
  const search = (state: string | null, placedCompleted: number): boolean => {
    if (placedCompleted === completed) return true;
    for (let i = 0; i < ops.length; i++) {
      const o = ops[i]!;
      if (placed[i]) continue;
      const mustWait = ops.some((p, j) => !placed[j] && j !== i && p.complete !== undefined && p.complete < o.invoke);
      if (mustWait) continue;
      const step = applyKv(state, o.op);
      if (o.output !== undefined && !outputsEqual(step.output, o.output)) continue;
      placed[i] = true;
      const found = search(step.next, placedCompleted + (o.complete === undefined ? 0 : 1));
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return search(initial, 0);
}

/** Some output the client could plausibly have seen (right or wrong) for this op. */
function plausibleOutput(op: KvOp, n: number): KvOutput {
  switch (op.kind) {
    case 'get':
      return { kind: 'get', value: n % (pool.length + 1) === pool.length ? null : pool[n % (pool.length + 1)]! };
    case 'put':
      return { kind: 'put' };
    case 'del':
      return { kind: 'del', existed: n % 2 === 0 };
    case 'cas':
      return { kind: 'cas', swapped: n % 2 === 0 };
    case 'incr':
      return n % 3 === 0 ? { kind: 'error', code: 'not_integer' } : { kind: 'incr', value: (n % 9) - 4 };
  }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

void test('property: histories of a simulated atomic store are linearizable', () => {
  fc.assert(
    fc.property(scenarioArb({ maxKeys: 4, maxClients: 6, maxSteps: 8 }), (s) => {
      const { history, initial } = simulate(s);
      const result = checkLinearizable(history, { initial });
      const completed = history.filter((h) => h.complete !== undefined).length;
      assert.deepEqual(result, { ok: true, checked: completed });
    }),
    { seed: 42, numRuns: 200 },
  );
});

void test('property: an impossible output on one completed get/incr/cas/del is always caught', () => {
  fc.assert(
    fc.property(scenarioArb({ maxKeys: 4, maxClients: 6, maxSteps: 8 }), fc.nat(), (s, pick) => {
      const { history, initial } = simulate(s);
      const candidates = history.flatMap((h, i) => (impossible(h) === undefined ? [] : [i]));
      fc.pre(candidates.length > 0);
      const index = candidates[pick % candidates.length]!;
      const original = history[index]!;
      const broken = history.map((h, i) => (i === index ? impossible(h)! : h));
      const result = checkLinearizable(broken, { initial });
      if (result.ok !== false) assert.fail(`mutated ${JSON.stringify(original)} but got ${JSON.stringify(result)}`);
      assert.equal(result.key, original.op.key);
      assert.deepEqual(
        result.ops,
        broken.filter((h) => h.op.key === original.op.key),
      );
    }),
    { seed: 42, numRuns: 200 },
  );
});

void test('property: verdict agrees with brute-force search on small noisy histories', () => {
  let good = 0;
  let bad = 0;
  fc.assert(
    fc.property(
      scenarioArb({ maxKeys: 2, maxClients: 4, maxSteps: 3, fateMax: 5 }),
      fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
      (s, noise) => {
        const { history: clean, initial } = simulate(s);
        // Corrupt about a third of the completed outputs with plausible (possibly correct) ones.
        const history = clean.map((h, i) => {
          const n = noise[i] ?? 0;
          return h.complete !== undefined && n % 3 === 0 ? { ...h, output: plausibleOutput(h.op, n >>> 2) } : h;
        });
        const keys = [...new Set(history.map((h) => h.op.key))];
        const expected = keys.every((k) =>
          bruteForce(
            history.filter((h) => h.op.key === k),
            initial.get(k) ?? null,
          ),
        );
        const result = checkLinearizable(history, { initial });
        assert.notEqual(result.ok, 'unknown');
        assert.equal(result.ok, expected, `history ${JSON.stringify(history)} initial ${JSON.stringify([...initial])}`);
        if (expected) good++;
        else bad++;
      },
    ),
    { seed: 42, numRuns: 1000 },
  );
  // Both verdicts must actually have been exercised.
  assert.ok(good >= 200, `only ${good} linearizable cases`);
  assert.ok(bad >= 200, `only ${bad} non-linearizable cases`);
});

// ---------------------------------------------------------------------------------------------
// JSON lines.

void test('toJsonLine writes the documented fields in order', () => {
  assert.equal(
    toJsonLine(put(3, 'k', 'v', 10, 20)),
    '{"client":3,"op":"put","key":"k","value":"v","output":"ok","invoke":10,"complete":20}',
  );
  assert.equal(toJsonLine(get(1, 'k', null, 1, 2)), '{"client":1,"op":"get","key":"k","value":null,"output":null,"invoke":1,"complete":2}');
  assert.equal(toJsonLine(del(1, 'k', true, 1, 2)), '{"client":1,"op":"del","key":"k","value":null,"output":true,"invoke":1,"complete":2}');
  assert.equal(
    toJsonLine(cas(1, 'k', null, 'n', false, 1, 2)),
    '{"client":1,"op":"cas","key":"k","value":{"expected":null,"next":"n"},"output":false,"invoke":1,"complete":2}',
  );
  assert.equal(toJsonLine(incr(1, 'k', -2, 5, 1, 2)), '{"client":1,"op":"incr","key":"k","value":-2,"output":5,"invoke":1,"complete":2}');
  assert.equal(
    toJsonLine(incr(1, 'k', 1, 'not_integer', 1, 2)),
    '{"client":1,"op":"incr","key":"k","value":1,"output":{"error":"not_integer"},"invoke":1,"complete":2}',
  );
  assert.equal(
    toJsonLine(pending(4, { kind: 'put', key: 'k', value: 'v' }, 7)),
    '{"client":4,"op":"put","key":"k","value":"v","output":null,"invoke":7,"complete":null}',
  );
  assert.throws(() => toJsonLine(done(1, { kind: 'get', key: 'k' }, { kind: 'put' }, 1, 2)), /does not match op kind/);
});

void test('fromJsonLine rejects malformed lines, naming the field', () => {
  const good = '{"client":1,"op":"put","key":"k","value":"v","output":"ok","invoke":1,"complete":2}';
  assert.deepEqual(fromJsonLine(good), put(1, 'k', 'v', 1, 2));
  const edit = (patch: Record<string, unknown>): string => JSON.stringify({ ...(JSON.parse(good) as Record<string, unknown>), ...patch });
  const cases: [string, RegExp][] = [
    ['not json', /not valid JSON/],
    ['[1,2]', /not a JSON object/],
    [edit({ extra: 1 }), /unknown field "extra"/],
    ['{"client":1,"op":"put","key":"k","value":"v","output":"ok","invoke":1}', /missing field "complete"/],
    [edit({ client: '1' }), /field "client"/],
    [edit({ op: 'append' }), /field "op"/],
    [edit({ key: 5 }), /field "key"/],
    [edit({ value: 5 }), /field "value"/],
    [edit({ op: 'cas', value: { expected: 'a' }, output: true }), /field "value"/],
    [edit({ op: 'incr', value: '1', output: 1 }), /field "value"/],
    [edit({ op: 'get', value: 'v', output: null }), /field "value"/],
    [edit({ output: 'yes' }), /field "output"/],
    [edit({ output: { error: 'nope' } }), /field "output"/],
    [edit({ op: 'del', value: null, output: 1 }), /field "output"/],
    [edit({ complete: null }), /field "output"/],
    [edit({ invoke: null }), /field "invoke"/],
    [edit({ complete: 0 }), /field "complete"/],
  ];
  for (const [line, message] of cases) assert.throws(() => fromJsonLine(line), message, line);
});

const historyOpArb: fc.Arbitrary<HistoryOp> = (() => {
  const text = fc.string({ unit: 'binary', maxLength: 12 });
  const opArb: fc.Arbitrary<KvOp> = fc.oneof(
    fc.record({ kind: fc.constant('get' as const), key: text }),
    fc.record({ kind: fc.constant('del' as const), key: text }),
    fc.record({ kind: fc.constant('put' as const), key: text, value: text }),
    fc.record({ kind: fc.constant('cas' as const), key: text, expected: fc.option(text, { nil: null }), next: text }),
    fc.record({ kind: fc.constant('incr' as const), key: text, delta: fc.integer({ min: -1_000_000, max: 1_000_000 }) }),
  ).map((op): KvOp => ({ ...op })); // fc.record builds null-prototype objects; deepEqual compares prototypes
  const outputFor = (op: KvOp): fc.Arbitrary<KvOutput> => {
    const error = fc.constantFrom('not_integer', 'overflow', 'bad_request').map((code): KvOutput => ({ kind: 'error', code }));
    const normal: fc.Arbitrary<KvOutput> = (() => {
      switch (op.kind) {
        case 'get':
          return fc.option(text, { nil: null }).map((value): KvOutput => ({ kind: 'get', value }));
        case 'put':
          return fc.constant<KvOutput>({ kind: 'put' });
        case 'del':
          return fc.boolean().map((existed): KvOutput => ({ kind: 'del', existed }));
        case 'cas':
          return fc.boolean().map((swapped): KvOutput => ({ kind: 'cas', swapped }));
        case 'incr':
          return fc.maxSafeInteger().map((value): KvOutput => ({ kind: 'incr', value }));
      }
    })();
    return fc.oneof({ arbitrary: normal, weight: 4 }, { arbitrary: error, weight: 1 });
  };
  return fc
    .tuple(opArb, fc.integer(), fc.maxSafeNat(), fc.option(fc.nat(1_000_000), { nil: undefined }))
    .chain(([op, client, invoke, duration]) =>
      duration === undefined
        ? fc.constant<HistoryOp>({ client, op, output: undefined, invoke, complete: undefined })
        : outputFor(op).map((output): HistoryOp => ({ client, op, output, invoke, complete: invoke + duration })),
    );
})();

void test('property: JSON lines round-trip arbitrary ops', () => {
  fc.assert(
    fc.property(historyOpArb, (h) => {
      const line = toJsonLine(h);
      assert.ok(!line.includes('\n'));
      assert.deepEqual(fromJsonLine(line), h);
    }),
    { seed: 42, numRuns: 500 },
  );
});

void test('property: JSON lines round-trip simulated histories (and the checker agrees on both)', () => {
  fc.assert(
    fc.property(scenarioArb({ maxKeys: 4, maxClients: 6, maxSteps: 8 }), (s) => {
      const { history, initial } = simulate(s);
      const text = history.map(toJsonLine).join('\n');
      const back = text === '' ? [] : text.split('\n').map(fromJsonLine);
      assert.deepEqual(back, history);
      assert.deepEqual(checkLinearizable(back, { initial }), checkLinearizable(history, { initial }));
    }),
    { seed: 42, numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------------------
// Size sanity (not a timing assertion).

/** Deterministic 32-bit generator (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function bigScenario(seed: number, clients: number, opsPerClient: number, keys: number): Scenario {
  const next = prng(seed);
  const kinds: readonly KvOp['kind'][] = ['get', 'get', 'put', 'del', 'cas', 'incr', 'incr'];
  const steps = (): StepSpec[] =>
    Array.from({ length: opsPerClient }, () => ({
      kind: kinds[next() % kinds.length]!,
      key: next() % keys,
      a: next() % (pool.length + 1),
      b: next() % (pool.length + 1),
      delta: (next() % 7) - 3,
      gap: next() % 20,
      toEffect: next() % 40,
      toComplete: next() % 40,
      fate: next() % 40, // 1 in 20 ops pending
    }));
  return { nKeys: keys, initial: [], clients: Array.from({ length: clients }, steps) };
}

void test('a 400-op, 8-key, 10-client history is decided (ok, not unknown)', () => {
  const { history, initial } = simulate(bigScenario(2024, 10, 40, 8));
  assert.equal(history.length, 400);
  assert.equal(new Set(history.map((h) => h.op.key)).size, 8);
  // The history really is concurrent: find the largest number of ops in flight at once.
  const edges = history.flatMap((h) => [
    [h.invoke, 1],
    [h.complete ?? Number.POSITIVE_INFINITY, -1],
  ]);
  edges.sort((x, y) => x[0]! - y[0]! || y[1]! - x[1]!);
  let inFlight = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (inFlight += d!));
  assert.ok(most >= 8, `only ${most} ops in flight at once`);
  const completed = history.filter((h) => h.complete !== undefined).length;
  assert.deepEqual(checkLinearizable(history, { initial }), { ok: true, checked: completed });
});
