/**
 * Canaries: each planted protocol bug must be caught by the simulator's checkers within a
 * bounded number of seeds. A suite that cannot catch these cannot be trusted to catch real
 * bugs. The bound is generous; `npx bulwark sim --canaries` prints how many seeds each needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canaryCatalogue, type CanaryName } from '../../src/stages/types.ts';
import { runJob } from '../../src/sim/jobs.ts';
import { defaultFaultModels } from '../../src/sim/run.ts';

const seedsMax = 250;

for (const name of Object.keys(canaryCatalogue) as CanaryName[]) {
  test(`canary ${name} (${canaryCatalogue[name]}) is caught within ${seedsMax} seeds`, () => {
    const res = runJob({ kind: 'canary', name, seedsMax, models: defaultFaultModels });
    assert.ok(res.kind === 'canary');
    assert.equal(res.result.caught, true, `canary ${name} survived ${seedsMax} seeds`);
  });
}
