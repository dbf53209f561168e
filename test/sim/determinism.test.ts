/** Same seed, same trace: the simulator leaks no clock, randomness or timing into a run. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from '../../src/sim/run.ts';

test('a seed run twice gives the same trace hash, history and results', () => {
  for (const [seed, u, r] of [
    [7, 1, 1],
    [8, 2, 1],
    [9, 1, 0],
  ] as const) {
    const a = runSeed({ seed, u, r, keepHistory: true });
    const b = runSeed({ seed, u, r, keepHistory: true });
    assert.equal(a.traceHash, b.traceHash);
    assert.deepEqual(a.history, b.history);
    assert.equal(a.ops, b.ops);
  }
});

test('different seeds give different traces', () => {
  const a = runSeed({ seed: 11, u: 1, r: 1 });
  const b = runSeed({ seed: 12, u: 1, r: 1 });
  assert.notEqual(a.traceHash, b.traceHash);
});
