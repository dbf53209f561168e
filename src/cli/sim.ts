/**
 * `bulwark sim`: the seeded simulator from the command line.
 *
 *   bulwark sim --seeds N [--seed S] [--u U --r R] [--workers W] [--no-determinism] [--storage-faults] [--attack NAME]
 *   bulwark sim --seed S [--u U --r R] --history FILE [--verbose]
 *   bulwark sim --canaries [--seeds N]
 *
 * Prints one line per failing seed with its replay command, then exactly one summary line:
 *   sim: seeds=<N> passed=<P> failed=<F> ops=<O> checked=<C> acked_lost=<L> faults=<K> byzantine=<B>
 * Canary mode ends with: canaries: caught=<X>/<Y> worst_seeds=<W>
 */
import { writeFileSync } from 'node:fs';
import { runJobs } from '../sim/pool.ts';
import { canaryNames, modelForSeed, type CanaryResult, type SimJob } from '../sim/jobs.ts';
import { attackNeedsCommission, defaultFaultModels, describeNote, runSeed, type AttackName, type SeedResult } from '../sim/run.ts';
import { toJsonLine } from '../sim/checkers/linearizability.ts';
import { principalKey } from '../crypto/provider.ts';
import { canaryCatalogue } from '../stages/types.ts';

/** Parsed options of `bulwark sim`. */
export interface SimCliOptions {
  readonly seeds?: number;
  readonly seed?: number;
  readonly u?: number;
  readonly r?: number;
  readonly canaries?: boolean;
  readonly history?: string;
  readonly workers?: number;
  readonly determinism: boolean;
  readonly verbose?: boolean;
  /** Whole-cluster crashes and restarts in every seed (canary mode: in every seed, not every other). */
  readonly storageFaults?: boolean;
  /** Run every seed under this attack (issue 5). */
  readonly attack?: AttackName;
}

/** Runs the command; returns the process exit code. */
export async function simCommand(o: SimCliOptions, print: (line: string) => void = console.log): Promise<number> {
  if ((o.u === undefined) !== (o.r === undefined)) {
    print('sim: give both --u and --r, or neither');
    return 2;
  }
  let models = o.u !== undefined && o.r !== undefined ? [[o.u, o.r] as const] : defaultFaultModels;
  if (o.attack !== undefined && attackNeedsCommission(o.attack)) {
    // A commission fault is outside the model when r = 0: run the models that tolerate it.
    models = models.filter(([, r]) => r >= 1);
    if (models.length === 0) {
      print(`sim: --attack ${o.attack} is a commission fault; it needs r >= 1`);
      return 2;
    }
  }
  const storageFaults = o.storageFaults === true;
  if (o.canaries === true) return canaryMode(o.seeds ?? 500, models, o.workers, print, storageFaults);
  if (o.history !== undefined || o.verbose === true) {
    if (o.seed === undefined) {
      print('sim: --history and --verbose need --seed S');
      return 2;
    }
    return singleSeed(o, print);
  }
  const first = o.seed ?? 1;
  const count = o.seeds ?? (o.seed !== undefined ? 1 : 100);
  const jobs: SimJob[] = [];
  for (let seed = first; seed < first + count; seed++) {
    const [u, r] = modelForSeed(seed, models);
    jobs.push({ kind: 'seed', seed, u, r, determinism: o.determinism, keepHistory: false, storageFaults, ...(o.attack !== undefined ? { attack: o.attack } : {}) });
  }
  const results: SeedResult[] = [];
  await runJobs(
    jobs,
    (res) => {
      if (res.kind !== 'seed') return;
      results.push(res.result);
      if (!res.result.passed) printFailure(res.result, print, storageFaults, o.attack);
    },
    o.workers,
  );
  const sum = (f: (r: SeedResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const failed = results.filter((r) => !r.passed).length;
  const ackedLost = sum((r) => r.ackedLost);
  print(
    `sim: seeds=${results.length} passed=${results.length - failed} failed=${failed} ops=${sum((r) => r.ops)} ` +
      `checked=${sum((r) => r.checked)} acked_lost=${ackedLost} faults=${sum((r) => r.faults)} byzantine=${sum((r) => r.byzantine)}`,
  );
  return failed === 0 && ackedLost === 0 ? 0 : 1;
}

function printFailure(r: SeedResult, print: (line: string) => void, storageFaults: boolean, attack: AttackName | undefined): void {
  print(`FAIL seed=${r.seed} u=${r.u} r=${r.r}: ${r.failures.join(' | ')}`);
  print(`  scenario: ${r.scenario}`);
  print(`  replay: npx bulwark sim --seed ${r.seed} --u ${r.u} --r ${r.r}${storageFaults ? ' --storage-faults' : ''}${attack !== undefined ? ` --attack ${attack}` : ''} --verbose`);
}

function singleSeed(o: SimCliOptions, print: (line: string) => void): number {
  const seed = o.seed!;
  const [u, r] = o.u !== undefined && o.r !== undefined ? [o.u, o.r] : modelForSeed(seed);
  const res = runSeed({
    seed,
    u,
    r,
    keepHistory: o.history !== undefined,
    storageFaults: o.storageFaults === true,
    ...(o.attack !== undefined ? { attack: o.attack } : {}),
    ...(o.verbose === true ? { debug: print } : {}),
  });
  if (o.history !== undefined) {
    writeFileSync(o.history, (res.history ?? []).map((h) => toJsonLine(h) + '\n').join(''));
    print(`history: ${res.history?.length ?? 0} operations written to ${o.history}`);
  }
  if (!res.passed) printFailure(res, print, o.storageFaults === true, o.attack);
  print(`scenario: ${res.scenario} trace=${res.traceHash} virtual_ms=${res.virtualMs}`);
  print(
    `sim: seeds=1 passed=${res.passed ? 1 : 0} failed=${res.passed ? 0 : 1} ops=${res.ops} checked=${res.checked} ` +
      `acked_lost=${res.ackedLost} faults=${res.faults} byzantine=${res.byzantine}`,
  );
  return res.passed && res.ackedLost === 0 ? 0 : 1;
}

async function canaryMode(seedsMax: number, models: readonly (readonly [number, number])[], workers: number | undefined, print: (line: string) => void, storageFaults: boolean): Promise<number> {
  const jobs: SimJob[] = canaryNames.map((name) => ({ kind: 'canary', name, seedsMax, models, ...(storageFaults ? { storageFaults } : {}) }));
  const results: CanaryResult[] = [];
  await runJobs(
    jobs,
    (res) => {
      if (res.kind === 'canary') results.push(res.result);
    },
    workers,
  );
  results.sort((a, b) => canaryNames.indexOf(a.name) - canaryNames.indexOf(b.name));
  for (const c of results) {
    if (c.caught) print(`canary ${c.name}: caught after ${c.seeds} seed(s) (seed ${c.seed} u=${c.u} r=${c.r}): ${c.failure?.slice(0, 160) ?? ''}`);
    else print(`canary ${c.name}: NOT caught in ${c.seeds} seeds — ${canaryCatalogue[c.name]}`);
  }
  const caught = results.filter((c) => c.caught).length;
  const worst = Math.max(0, ...results.filter((c) => c.caught).map((c) => c.seeds));
  print(`canaries: caught=${caught}/${results.length} worst_seeds=${worst}`);
  return caught === results.length ? 0 : 1;
}

/** For debugging output: name of a principal. */
export const principalName = principalKey;
/** For debugging output: one line per note. */
export const noteLine = describeNote;
