/**
 * Simulator jobs that can run in this thread or in a worker: one seed (checked, and run
 * twice for determinism), or one canary (seeds until the planted bug is caught).
 */
import { canaryCatalogue, type CanaryName } from '../stages/types.ts';
import { defaultFaultModels, runSeedGuarded, type AttackName, type SeedResult } from './run.ts';

/** A unit of simulator work. */
export type SimJob =
  | { readonly kind: 'seed'; readonly seed: number; readonly u: number; readonly r: number; readonly determinism: boolean; readonly keepHistory: boolean; readonly storageFaults?: boolean; readonly attack?: AttackName }
  /** Canary seeds have storage faults (whole-cluster crashes) on every other seed, or on all with `storageFaults`. */
  | { readonly kind: 'canary'; readonly name: CanaryName; readonly seedsMax: number; readonly models: readonly (readonly [number, number])[]; readonly storageFaults?: boolean };

/** Result of a canary job. */
export interface CanaryResult {
  readonly name: CanaryName;
  readonly caught: boolean;
  /** Seeds run until caught (or seedsMax). */
  readonly seeds: number;
  readonly seed?: number;
  readonly u?: number;
  readonly r?: number;
  readonly failure?: string;
}

/** Output of a job. */
export type SimJobResult = { readonly kind: 'seed'; readonly result: SeedResult } | { readonly kind: 'canary'; readonly result: CanaryResult };

/** (u, r) used for seed `seed` when none is given: cycles through the default models. */
export function modelForSeed(seed: number, models: readonly (readonly [number, number])[] = defaultFaultModels): readonly [number, number] {
  return models[seed % models.length]!;
}

/** Runs a job in the calling thread. */
export function runJob(job: SimJob): SimJobResult {
  if (job.kind === 'seed') {
    const o = { seed: job.seed, u: job.u, r: job.r, keepHistory: job.keepHistory, storageFaults: job.storageFaults === true, ...(job.attack !== undefined ? { attack: job.attack } : {}) };
    return { kind: 'seed', result: runSeedGuarded(o, job.determinism) };
  }
  const canaries = new Set<CanaryName>([job.name]);
  for (let seed = 1; seed <= job.seedsMax; seed++) {
    const [u, r] = modelForSeed(seed, job.models);
    const res = runSeedGuarded({ seed, u, r, canaries, storageFaults: job.storageFaults === true || seed % 2 === 0 });
    if (!res.passed) {
      return { kind: 'canary', result: { name: job.name, caught: true, seeds: seed, seed, u, r, failure: res.failures[0] ?? '' } };
    }
  }
  return { kind: 'canary', result: { name: job.name, caught: false, seeds: job.seedsMax } };
}

/** Every canary name. */
export const canaryNames = Object.keys(canaryCatalogue) as CanaryName[];
