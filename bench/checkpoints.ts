/**
 * The checkpoint-disturbance and recovery figures of docs/benchmarks.md (issue 4).
 *
 *   npx tsx bench/checkpoints.ts disturbance [--mb 100] [--runs 3] [--duration 60] [--interval 256] [--modes coordinated,sequential] [--monitor off]
 *   npx tsx bench/checkpoints.ts recovery    [--mb 100] [--runs 3] [--duration 60] [--interval 256] [--modes single,collaborative]
 *
 * disturbance: per run, one temporary 4-node u=r=1 cluster per checkpoint mode (coordinated,
 * then sequential), the state preloaded, 16 clients writing 4 KiB values; prints each run's
 * per-second throughput and lowest-window ratio, and writes docs/img/checkpoints.svg with the
 * last round's two timelines.
 * recovery: the same with `--scenario recovery` per state transfer mode (single, then
 * collaborative): replica 2 is killed, wiped and restarted a third of the way in; prints the
 * recovery time and the throughput while recovering over the throughput before; writes
 * docs/img/recovery.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { median, type BenchResult, benchCommand } from '../src/cli/bench.ts';
import { renderTimelineSvg, type TimelineSpan } from '../src/cli/timeline-chart.ts';

const [what = 'disturbance', ...rest] = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? Number(rest[i + 1]) : dflt;
};
const mb = arg('mb', 100);
const runs = arg('runs', 3);
const duration = arg('duration', 60);
const interval = arg('interval', 256);
// --monitor off: no throughput monitor (throughputGraceMs 0), to tell the checkpoints' own cost
// from the dips of the primary replacements the monitor makes.
const monitorOff = rest.includes('--monitor') && rest[rest.indexOf('--monitor') + 1] === 'off';
if (what !== 'disturbance' && what !== 'recovery') throw new Error('usage: checkpoints.ts disturbance|recovery [--mb M] [--runs N] [--duration S] [--interval P]');

const allModes = what === 'disturbance' ? (['coordinated', 'sequential'] as const) : (['single', 'collaborative'] as const);
const only = rest.includes('--modes') ? (rest[rest.indexOf('--modes') + 1] ?? '').split(',') : undefined;
const modes = allModes.filter((m) => only === undefined || only.includes(m));
if (modes.length === 0) throw new Error(`--modes: pick from ${allModes.join(', ')}`);
const results = new Map<string, BenchResult[]>();
for (let run = 1; run <= runs; run++) {
  for (const mode of modes) {
    const r = await benchCommand(
      {
        clients: 16,
        durationS: duration,
        size: 4096,
        readRatio: 0,
        spawn: true,
        u: 1,
        r: 1,
        preloadMb: mb,
        checkpointInterval: interval,
        ...(monitorOff ? { tunables: { throughputGraceMs: 0 } } : {}),
        timeline: true,
        progress: false,
        ...(what === 'disturbance' ? { checkpoints: mode as 'coordinated' | 'sequential' } : { stateTransfer: mode as 'single' | 'collaborative', scenario: 'recovery' as const }),
      },
      (line) => {
        console.log(`run=${run} mode=${mode} ${line}`);
      },
    );
    results.set(mode, [...(results.get(mode) ?? []), r]);
  }
}

console.log(`\n| mode | ${what === 'disturbance' ? 'ops/s (median of runs) | lowest 1-s window / median window, per run' : 'ops/s | recovery s, per run | ops/s while recovering / before, per run'} |`);
console.log(what === 'disturbance' ? '|---|---|---|' : '|---|---|---|---|');
for (const mode of modes) {
  const rs = results.get(mode)!;
  const ops = (median(rs.map((r) => r.opsPerS)) ?? 0).toFixed(0);
  if (what === 'disturbance') console.log(`| ${mode} | ${ops} | ${rs.map((r) => (r.minWindowRatio ?? 0).toFixed(2)).join(', ')} |`);
  else console.log(`| ${mode} | ${ops} | ${rs.map((r) => r.recovery?.recoveryS?.toFixed(1) ?? 'none').join(', ')} | ${rs.map((r) => r.recovery?.duringRatio?.toFixed(2) ?? 'none').join(', ')} |`);
}

mkdirSync('docs/img', { recursive: true });
const last = modes.map((m) => results.get(m)!.at(-1)!);
const spans: TimelineSpan[] = [];
last.forEach((r, i) => {
  if (r.recovery?.caughtUpAtS !== undefined) spans.push({ label: `${modes[i]}: replica 2 recovering`, fromS: r.recovery.killedAtS, toS: r.recovery.caughtUpAtS, series: i });
});
const file = what === 'disturbance' ? 'docs/img/checkpoints.svg' : 'docs/img/recovery.svg';
writeFileSync(
  file,
  renderTimelineSvg({
    title: what === 'disturbance' ? `Throughput per second, ${mb} MiB state, checkpoint every ${interval} batches` : `Throughput per second, replica 2 wiped and restarted (${mb} MiB state)`,
    yLabel: 'ops/s (4 KiB puts)',
    series: modes.map((m, i) => ({ label: m, values: last[i]!.perSecond })),
    spans,
  }),
);
console.log(`wrote ${file}`);
