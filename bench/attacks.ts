/**
 * The attack table of docs/benchmarks.md (issue 5; the thesis' tables 3.3–3.6).
 *
 *   npx tsx bench/attacks.ts [--runs 3] [--duration 10] [--clients 16] [--sizes 0,1024] [--attacks a,b]
 *
 * Per attack, size and run: one `bench --spawn --attack` (4 nodes, u = r = 1): a fault-free
 * phase, then the attacked phase, each --duration seconds, on a fresh temporary cluster. Prints
 * each run's line, then a markdown table of medians: fault-free and attacked ops/s, their ratio,
 * p50 of each phase, for unfair-primary the victim's and the others' mean latency, and the peak
 * resident set of the correct node that grew most (fault-free, attacked, bound; see bench.ts).
 * `bad-client signed` runs on a cluster with signed client requests (`clientSignatures`);
 * `--client-signatures` turns them on for every case.
 */
import { benchCommand, median, type BenchResult } from '../src/cli/bench.ts';
import type { AttackName } from '../src/sim/run.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const runs = Number(arg('runs', '3'));
const duration = Number(arg('duration', '10'));
const clients = Number(arg('clients', '16'));
const sizes = arg('sizes', '0,1024').split(',').map(Number);
const allSigned = args.includes('--client-signatures');
const cases: { label: string; attack: AttackName; delayMs?: number; signed?: boolean }[] = [
  { label: 'bad-client', attack: 'bad-client' },
  { label: 'bad-client signed', attack: 'bad-client', signed: true },
  { label: 'client-flood', attack: 'client-flood' },
  { label: 'slow-primary 1 ms', attack: 'slow-primary', delayMs: 1 },
  { label: 'slow-primary 10 ms', attack: 'slow-primary', delayMs: 10 },
  { label: 'slow-primary 100 ms', attack: 'slow-primary', delayMs: 100 },
  { label: 'unfair-primary', attack: 'unfair-primary' },
  { label: 'replica-flood', attack: 'replica-flood' },
  { label: 'equivocating-primary', attack: 'equivocating-primary' },
  { label: 'forging-auth', attack: 'forging-auth' },
];
const only = arg('attacks', '');
const chosen = only === '' ? cases : cases.filter((c) => only.split(',').includes(c.label) || only.split(',').includes(c.attack));

const rows: string[] = [];
for (const size of sizes) {
  for (const c of chosen) {
    const results: BenchResult[] = [];
    for (let run = 1; run <= runs; run++) {
      const r = await benchCommand(
        {
          clients,
          durationS: duration,
          size,
          readRatio: 0,
          spawn: true,
          u: 1,
          r: 1,
          attack: c.attack,
          ...(c.delayMs !== undefined ? { attackDelayMs: c.delayMs } : {}),
          ...(c.signed === true || allSigned ? { clientSignatures: true } : {}),
          progress: false,
        },
        (line) => {
          if (line.startsWith('bench:') || line.startsWith('attack:')) console.log(`size=${size} case="${c.label}" run=${run} ${line}`);
        },
      );
      results.push(r);
    }
    const m = (f: (a: NonNullable<BenchResult['attack']>) => number | undefined): string => {
      const xs = results.map((r) => (r.attack === undefined ? undefined : f(r.attack))).filter((x): x is number => x !== undefined);
      const v = median(xs);
      return v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(2);
    };
    const ratios = results.map((r) => r.attack?.ratio.toFixed(2) ?? '–').join(' / ');
    const unfair = c.attack === 'unfair-primary' ? `${m((a) => a.victimMeanMs)} vs ${m((a) => a.othersMeanMs)}` : '';
    const mb = (x: number | undefined) => (x === undefined ? undefined : x / 1048576);
    const memory = `${m((a) => mb(a.memory?.basePeakBytes))} → ${m((a) => mb(a.memory?.attackPeakBytes))} (${m((a) => mb(a.memory?.boundBytes))})`;
    rows.push(`| ${c.label} | ${size} | ${m((a) => a.baseOpsPerS)} | ${m((a) => a.attackedOpsPerS)} | ${m((a) => a.ratio)} (${ratios}) | ${m((a) => a.baseP50Ms)} | ${m((a) => a.attackedP50Ms)} | ${unfair} | ${memory} |`);
  }
}
console.log(`\n| attack | size B | fault-free ops/s | attacked ops/s | ratio, median (runs) | p50 ms fault-free | p50 ms attacked | victim vs others mean ms | peak RSS MiB: fault-free → attacked (bound) |`);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
