import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { minOverlap, quorums, stageCounts } from './quorum.ts';

// ---------------------------------------------------------------------------------------------
// Replica counts: UpRight thesis Table 2.1(d) (order) and Table 6.1 (auth, order, exec).
// Rows are r = 0..3, columns u = 0..3.

const orderTable: readonly (readonly number[])[] = [
  [1, 3, 5, 7], // r = 0
  [2, 4, 6, 8], // r = 1
  [3, 5, 7, 9], // r = 2
  [4, 6, 8, 10], // r = 3
];
const execTable: readonly (readonly number[])[] = [
  [1, 3, 5, 7],
  [2, 3, 5, 7],
  [3, 4, 5, 7],
  [4, 5, 6, 7],
];
const authTable: readonly (readonly number[])[] = [
  [1, 3, 5, 7],
  [3, 4, 6, 8],
  [5, 6, 7, 9],
  [7, 8, 9, 10],
];

void test('stageCounts matches Table 2.1(d)/6.1 for u, r in 0..3 (order 2u+r+1, exec u+max(u,r)+1, auth u+max(u,r)+r+1)', () => {
  for (let r = 0; r <= 3; r++) {
    for (let u = 0; u <= 3; u++) {
      const c = stageCounts(u, r);
      const where = `u=${u} r=${r}`;
      assert.equal(c.order, orderTable[r]![u], `order ${where}`);
      assert.equal(c.exec, execTable[r]![u], `exec ${where}`);
      assert.equal(c.auth, authTable[r]![u], `auth ${where}`);
    }
  }
});

void test('classic BFT (u = r = f) needs 3f+1 auth, 3f+1 order, 2f+1 exec replicas (Table 6.1)', () => {
  for (let f = 0; f <= 6; f++) {
    assert.deepEqual(stageCounts(f, f), { auth: 3 * f + 1, order: 3 * f + 1, exec: 2 * f + 1 }, `f=${f}`);
  }
});

void test('CFT (r = 0) needs 2u+1 replicas in every stage (Table 6.1)', () => {
  for (let u = 0; u <= 6; u++) {
    assert.deepEqual(stageCounts(u, 0), { auth: 2 * u + 1, order: 2 * u + 1, exec: 2 * u + 1 }, `u=${u}`);
  }
});

void test('quorums(n, u, r) are small r+1, medium n-u, large n (§6.2.1)', () => {
  assert.deepEqual(quorums(4, 1, 1), { small: 2, medium: 3, large: 4 });
  assert.deepEqual(quorums(3, 1, 0), { small: 1, medium: 2, large: 3 });
  assert.deepEqual(quorums(7, 2, 2), { small: 3, medium: 5, large: 7 });
});

// ---------------------------------------------------------------------------------------------
// Quorum intersection and availability properties (§6.2.1), over u, r in 0..6 and any stage
// size at or above the stage minimum.

const ur = fc.record({ u: fc.integer({ min: 0, max: 6 }), r: fc.integer({ min: 0, max: 6 }) });
const urExtra = fc.record({ u: fc.integer({ min: 0, max: 6 }), r: fc.integer({ min: 0, max: 6 }), extra: fc.integer({ min: 0, max: 10 }) });

void test('minOverlap is the true minimum intersection of two subsets (brute force over n <= 8)', () => {
  for (let n = 0; n <= 8; n++) {
    const popcount = (x: number): number => {
      let c = 0;
      for (let y = x; y !== 0; y &= y - 1) c++;
      return c;
    };
    const best = new Map<string, number>();
    for (let a = 0; a < 1 << n; a++) {
      for (let b = 0; b < 1 << n; b++) {
        const k = `${popcount(a)},${popcount(b)}`;
        const o = popcount(a & b);
        const prev = best.get(k);
        if (prev === undefined || o < prev) best.set(k, o);
      }
    }
    for (const [k, o] of best) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      assert.equal(minOverlap(n, a, b), o, `n=${n} a=${a} b=${b}`);
    }
  }
});

void test('order stage: two medium quorums (n-u) of n >= 2u+r+1 replicas overlap in >= r+1, so in a correct replica (§6.2.1)', () => {
  fc.assert(
    fc.property(urExtra, ({ u, r, extra }) => {
      const n = stageCounts(u, r).order + extra;
      const q = quorums(n, u, r);
      assert.ok(minOverlap(n, q.medium, q.medium) >= r + 1, `n=${n} medium=${q.medium}`);
      assert.ok(minOverlap(n, q.medium, q.medium) > r);
    }),
    { seed: 1234, numRuns: 300 },
  );
});

void test('order stage bound is tight: with n = 2u+r two medium quorums may share only r (possibly faulty) replicas', () => {
  fc.assert(
    fc.property(ur, ({ u, r }) => {
      const n = stageCounts(u, r).order - 1;
      const q = quorums(n, u, r);
      assert.ok(minOverlap(n, q.medium, q.medium) <= r, `n=${n} medium=${q.medium}`);
    }),
    { seed: 1235, numRuns: 200 },
  );
});

void test('every stage: a medium quorum is reachable with u replicas down and is at least a small quorum', () => {
  fc.assert(
    fc.property(urExtra, fc.constantFrom('auth' as const, 'order' as const, 'exec' as const), ({ u, r, extra }, stage) => {
      const n = stageCounts(u, r)[stage] + extra;
      const q = quorums(n, u, r);
      assert.ok(n - u >= q.medium, `up replicas ${n - u} < medium ${q.medium}`);
      assert.ok(q.medium >= 1);
      assert.ok(q.large === n);
      assert.ok(q.medium >= q.small, `${stage} medium ${q.medium} < small ${q.small}`);
    }),
    { seed: 1236, numRuns: 300 },
  );
});

void test('small quorum r+1 exceeds r, so it contains at least one correct replica', () => {
  fc.assert(
    fc.property(urExtra, ({ u, r, extra }) => {
      const q = quorums(stageCounts(u, r).order + extra, u, r);
      assert.equal(q.small, r + 1);
      assert.ok(q.small > r);
    }),
    { seed: 1237, numRuns: 300 },
  );
});

void test('exec stage: max(u,r)+1 matching tokens include a correct one and are reachable with u of u+max(u,r)+1 down (§6.2.1)', () => {
  fc.assert(
    fc.property(urExtra, ({ u, r, extra }) => {
      const ne = stageCounts(u, r).exec;
      assert.equal(ne, u + Math.max(u, r) + 1);
      const tokens = Math.max(u, r) + 1;
      // Contains a correct replica: more tokens than commission faults.
      assert.ok(tokens > r);
      // Liveness assumes at most u faulty replicas in all: the n_e - u others are correct and
      // enough on their own, also when the stage has more than the minimum.
      assert.equal(ne - u, tokens);
      assert.ok(ne + extra - u >= tokens);
    }),
    { seed: 1238, numRuns: 300 },
  );
});

void test('auth stage: primary collects max(u,r)+r+1 rows; minus r faulty rows leaves the max(u,r)+1 a backup requires (§6.2.1)', () => {
  fc.assert(
    fc.property(urExtra, ({ u, r, extra }) => {
      const m = Math.max(u, r);
      const na = stageCounts(u, r).auth + extra;
      const primaryRows = m + r + 1;
      const backupRows = m + 1;
      // The primary can collect its rows with u auth replicas down.
      assert.ok(na - u >= primaryRows, `auth n=${na} u=${u} rows=${primaryRows}`);
      // At most r of the collected rows are bad for a given backup.
      assert.ok(primaryRows - r >= backupRows);
      // The backup's requirement includes a correct auth replica.
      assert.ok(backupRows > r);
    }),
    { seed: 1239, numRuns: 300 },
  );
});
