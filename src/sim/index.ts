/** The deterministic simulator, for tests of applications and of bulwark itself. */
export { runSeed, runSeedTwice, defaultFaultModels, type SeedOptions, type SeedResult } from './run.ts';
export { World, type WorldOptions, type NetworkFaults } from './world.ts';
export { Harness, type HarnessOptions } from './harness.ts';
export { checkLinearizable, toJsonLine, fromJsonLine, type HistoryOp, type LinearizabilityResult } from './checkers/linearizability.ts';
export { AgreementChecker } from './checkers/agreement.ts';
export { Prng } from '../core/prng.ts';
