/**
 * Simulator speed: wall time to simulate one 4-replica (u = r = 1) seed with 300 client
 * operations, fault-free and with the seed's faults. A benchmark, not a test: it prints
 * figures (median and spread of per-seed wall times) and asserts nothing.
 *
 *   npx tsx bench/sim-speed.ts [seeds=20]
 */
import { runSeed } from '../src/sim/run.ts';

const seeds = Number(process.argv[2] ?? 20);

function measure(faultFree: boolean): { ms: number[]; ops: number; virtualMs: number } {
  const ms: number[] = [];
  let ops = 0;
  let virtualMs = 0;
  // One warm-up seed so module loading and JIT warm-up are not counted.
  runSeed({ seed: 999, u: 1, r: 1, ops: 300, faultFree });
  for (let seed = 1; seed <= seeds; seed++) {
    const t0 = performance.now();
    const res = runSeed({ seed, u: 1, r: 1, ops: 300, faultFree });
    ms.push(performance.now() - t0);
    ops += res.ops;
    virtualMs += res.virtualMs;
    if (!res.passed) console.error(`seed ${seed} failed: ${res.failures.join(' | ')}`);
  }
  return { ms, ops, virtualMs };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

for (const faultFree of [true, false]) {
  const { ms, ops, virtualMs } = measure(faultFree);
  console.log(
    `sim-speed: faults=${faultFree ? 'none' : 'seeded'} seeds=${seeds} ops_per_seed=${(ops / seeds).toFixed(0)} ` +
      `wall_ms_median=${pct(ms, 50).toFixed(0)} wall_ms_p90=${pct(ms, 90).toFixed(0)} wall_ms_max=${Math.max(...ms).toFixed(0)} ` +
      `virtual_s_per_seed=${(virtualMs / seeds / 1000).toFixed(1)}`,
  );
}
