/**
 * The new-view decision (PBFT MAC view change, Castro & Liskov TOCS 2002 §4.5; UpRight §6.2
 * quorums). Bodies are built by hand to pin each rule: A1, A2, A3, the null rule, the
 * checkpoint rule, and that Byzantine view changes cannot override a committed batch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decideNewView, type DecideParams } from './decide.ts';
import type { ViewChangeBody } from '../../codec/messages.ts';

const d = (x: number): Uint8Array => new Uint8Array(32).fill(x);
const nullD = d(0);
// u = r = 1, n = 4: medium 3, small 2.
const params: DecideParams = { medium: 3, small: 2, windowMax: 20, nullDigest: nullD, hasBatch: () => true };
const cp0 = { seq: 0, digest: d(9) };

function vc(sender: number, prepared: [seq: number, view: number, digest: number][], prePrepared: [seq: number, view: number, digest: number][] = prepared): ViewChangeBody {
  return {
    view: 5,
    sender,
    lowWater: 0,
    checkpoints: [cp0],
    prepared: prepared.map(([seq, view, x]) => ({ seq, view, digest: d(x) })),
    prePrepared: prePrepared.map(([seq, view, x]) => ({ seq, view, digest: d(x) })),
  };
}

test('a batch prepared by a quorum is carried into the new view (A1 + A2)', () => {
  const out = decideNewView([vc(0, [[1, 2, 7]]), vc(1, [[1, 2, 7]]), vc(2, [])], params);
  assert.ok(out);
  assert.equal(out.checkpoint.seq, 0);
  assert.deepEqual(out.choices, [d(7)]);
});

test('nothing prepared anywhere gives no choices; gaps below a prepared seq become null batches', () => {
  assert.deepEqual(decideNewView([vc(0, []), vc(1, []), vc(2, [])], params)?.choices, []);
  const out = decideNewView([vc(0, [[2, 1, 7]]), vc(1, [[2, 1, 7]]), vc(2, [])], params);
  assert.deepEqual(out?.choices, [nullD, d(7)]);
});

test('fewer than n-u view changes decide nothing', () => {
  assert.equal(decideNewView([vc(0, []), vc(1, [])], params), undefined);
});

test('a prepared claim from one (possibly Byzantine) replica without r+1 pre-prepare vouchers fails A2', () => {
  // Only sender 3 claims seq 1 prepared; nobody else pre-prepared it; the others lack P for 1
  // but medium (3) of 4 have no P -> null is chosen.
  const out = decideNewView([vc(3, [[1, 4, 8]]), vc(0, []), vc(1, []), vc(2, [])], params);
  assert.deepEqual(out?.choices, [nullD]);
});

test('undecidable when a claim passes neither the candidate rules nor the null rule', () => {
  // Two claims at view 1 for different digests from two senders; one without P. No candidate has
  // A1 (3 consistent) and only one view change lacks P: wait for more view changes.
  const out = decideNewView([vc(0, [[1, 1, 7]], [[1, 1, 7]]), vc(1, [[1, 1, 8]], [[1, 1, 8]]), vc(2, [])], params);
  assert.equal(out, undefined);
});

test('A3: a candidate whose batch is unavailable is not chosen', () => {
  const out = decideNewView([vc(0, [[1, 2, 7]]), vc(1, [[1, 2, 7]]), vc(2, [])], { ...params, hasBatch: () => false });
  assert.equal(out, undefined);
});

test('the checkpoint is the highest one held by r+1 view changes with n-u low water marks at or below it', () => {
  const withCp = (sender: number, cps: { seq: number; digest: Uint8Array }[], lowWater: number): ViewChangeBody => ({
    view: 5,
    sender,
    lowWater,
    checkpoints: cps,
    prepared: [],
    prePrepared: [],
  });
  const cp8 = { seq: 8, digest: d(3) };
  const out = decideNewView([withCp(0, [cp0, cp8], 0), withCp(1, [cp8], 8), withCp(2, [cp0], 0)], params);
  assert.equal(out?.checkpoint.seq, 8);
  // Only one holder of cp8: falls back to cp0.
  const out2 = decideNewView([withCp(0, [cp0, cp8], 0), withCp(1, [cp0], 0), withCp(2, [cp0], 0)], params);
  assert.equal(out2?.checkpoint.seq, 0);
});

test('property: a batch committed at (view v, seq 1) is chosen whatever r Byzantine view changes claim', () => {
  // n = 4, u = r = 1. Commit at v means u+1 = 2 correct replicas prepared it at v (they report
  // it); one more correct replica may report nothing or an older view; one Byzantine replica
  // reports anything. Any n-u = 3 of them, plus possibly the fourth, must pick the committed batch.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 0, max: 8 }),
      fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 0, max: 2 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 3 }),
      (v, byzView, byzDigest, thirdKind, includeAll, drop) => {
        const committed = 7;
        const correct1 = vc(0, [[1, v, committed]], [[1, v, committed]]);
        const correct2 = vc(1, [[1, v, committed]], [[1, v, committed]]);
        const third =
          thirdKind === 0 ? vc(2, []) : thirdKind === 1 ? vc(2, [[1, v - 1, 5]], [[1, v - 1, 5]]) : vc(2, [[1, v, committed]], [[1, v, committed]]);
        const byz = vc(3, [[1, byzView, byzDigest]], [[1, byzView + 3, byzDigest]]);
        let set = [correct1, correct2, third, byz];
        // Any 3 of the 4 may be the ones that arrived, but one of the two correct preparers is always in.
        if (!includeAll) set = set.filter((_, i) => i !== (drop === 0 ? 2 : drop));
        const out = decideNewView(set, params);
        if (out === undefined) return true; // waiting for more view changes is always safe
        return out.choices.length >= 1 && Buffer.from(out.choices[0]!).equals(Buffer.from(d(committed)));
      },
    ),
    { seed: 2002, numRuns: 500 },
  );
});
