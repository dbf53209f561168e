/**
 * Shared body of the seeded simulation suites: runs a range of seeds cycling through the five
 * (u, r) models and asserts every checker passed. Each failing seed is reported with its
 * replay command. Split over several *.test.ts files so the runner spreads them over cores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed, runSeedTwice, defaultFaultModels } from '../../src/sim/run.ts';

/** Registers one test per (u, r) model covering seeds [first, first + count). */
export function seedSuite(first: number, count: number, opts: { determinismEvery: number; storageFaults?: boolean }): void {
  const storageFaults = opts.storageFaults === true;
  const flag = storageFaults ? ' --storage-faults' : '';
  for (const [u, r] of defaultFaultModels) {
    test(`simulated seeds ${first}..${first + count - 1} at u=${u} r=${r}${storageFaults ? ' with whole-cluster crashes' : ''}: agreement, linearizability, no lost write, replay, liveness`, () => {
      const failures: string[] = [];
      let ops = 0;
      let byzantine = 0;
      for (let seed = first; seed < first + count; seed++) {
        const res = seed % opts.determinismEvery === 0 ? runSeedTwice({ seed, u, r, storageFaults }) : runSeed({ seed, u, r, storageFaults });
        ops += res.ops;
        byzantine += res.byzantine;
        if (!res.passed) failures.push(`seed ${seed}: ${res.failures.join(' | ')} (replay: npx bulwark sim --seed ${seed} --u ${u} --r ${r}${flag} --verbose)`);
        assert.equal(res.ackedLost, 0, `seed ${seed} lost acknowledged writes`);
      }
      assert.deepEqual(failures, []);
      assert.ok(ops > count * 20, `the workload ran (${ops} ops)`);
      if (r > 0) assert.ok(byzantine > 0, 'some seeds injected Byzantine replicas or clients');
    });
  }
}
