/**
 * Regression seeds: every seed that once failed, with the bug it found. Each must pass (and
 * replay identically) forever.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeedTwice } from '../../src/sim/run.ts';

const seeds: { seed: number; u: number; r: number; found: string; storageFaults?: boolean }[] = [
  { seed: 2, u: 1, r: 1, found: 'catch-up claims were dropped before enough replicas vouched for them' },
  { seed: 9, u: 1, r: 1, found: 'a silent relay or auth replica cost every operation a client timeout' },
  { seed: 683, u: 1, r: 2, found: 'replicas in a view change could never commit what the others had committed' },
  { seed: 1227, u: 2, r: 1, found: 'executors that missed a stretch of batches never asked for them' },
  { seed: 188, u: 1, r: 2, found: 'a selective primary split the correct replicas into views that never met' },
  { seed: 1828, u: 1, r: 2, found: 'the window stayed full: a new view\u2019s checkpoint never became stable' },
  { seed: 1943, u: 1, r: 2, found: 'the window stayed full: a new view\u2019s checkpoint never became stable' },
  { seed: 423, u: 1, r: 2, found: 'replicas that had committed did not vote in the next view' },
  { seed: 674, u: 2, r: 2, storageFaults: true, found: 'a primary that showed its NEW-VIEW to two replicas let them run ahead through views for good' },
  { seed: 338, u: 1, r: 2, found: 'a view-change timer that waited for n-u requests for exactly its view never started' },
  { seed: 191, u: 1, r: 1, storageFaults: true, found: 'after a whole-cluster crash every executor was behind at once and they agreed on a stale read' },
  { seed: 62113, u: 1, r: 2, storageFaults: true, found: 'a per-request timer shorter than the queue of one batch per client replaced every correct primary' },
  { seed: 96278, u: 1, r: 2, storageFaults: true, found: 'PREPAREs sent before their pre-prepare was durable: after a whole-cluster crash too few replicas vouched for a prepared batch and no new view was decidable' },
  { seed: 381, u: 1, r: 1, found: 'an auth replica’s valid rows over requests the client never sent displaced its real ones: clients stalled for good' },
  { seed: 353, u: 1, r: 2, found: 'an auth replica’s valid rows over requests the client never sent displaced its real ones: clients stalled for good' },
  { seed: 790, u: 1, r: 0, storageFaults: true, found: 'a new primary behind the chosen checkpoint proposed fresh batches at seqs its NEW-VIEW had assigned beyond its window; voting on its own proposal (crash-only), it replaced a committed batch' },
  { seed: 5, u: 1, r: 0, found: 'a replica that got the NEW-VIEW late waited for good for batches the others had checkpointed and dropped' },
  { seed: 62, u: 2, r: 1, found: 'a replica that got the NEW-VIEW late waited for good for batches the others had checkpointed and dropped' },
];

for (const s of seeds) {
  test(`regression seed ${s.seed} (u=${s.u} r=${s.r}${s.storageFaults === true ? ', storage faults' : ''}): ${s.found}`, () => {
    const res = runSeedTwice({ seed: s.seed, u: s.u, r: s.r, storageFaults: s.storageFaults === true });
    assert.deepEqual(res.failures, []);
    assert.equal(res.ackedLost, 0);
  });
}
