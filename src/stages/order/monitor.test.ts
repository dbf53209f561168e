/** The primary monitor (Aardvark §3.4.3): heartbeat and throughput rules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrimaryMonitor } from './monitor.ts';

const settings = { heartbeatMs: 40, throughputGraceMs: 1000, viewsRemembered: 4 };

test('heartbeat: expires only with a request waiting, the pipeline open, and no pre-prepare for the timeout; rearm gives one more; suspicion doubles it', () => {
  const m = new PrimaryMonitor(settings);
  m.enterView(0);
  assert.equal(m.heartbeatExpired(100, () => undefined, () => false), false, 'nothing waits: an idle primary is not slow');
  assert.equal(m.heartbeatExpired(100, () => 80, () => false), false, 'waiting for 20 ms only');
  assert.equal(m.heartbeatExpired(100, () => 10, () => true), false, 'pipeline full: the wait is for votes');
  assert.equal(m.heartbeatExpired(100, () => 10, () => false), true);
  m.rearm(100);
  assert.equal(m.heartbeatExpired(120, () => 10, () => false), false, 'rearmed (the backup forwarded what waits)');
  assert.equal(m.heartbeatExpired(140, () => 10, () => false), true);
  m.suspected();
  assert.equal(m.heartbeatTimeoutMs, 80, 'doubled');
  m.enterView(100);
  assert.equal(m.heartbeatExpired(150, () => 0, () => false), false, 'the new view started at 100: 50 < 80');
  assert.equal(m.heartbeatExpired(180, () => 0, () => false), true);
  m.onPrePrepare(200);
  assert.equal(m.heartbeatTimeoutMs, 40, 'a pre-prepare brings the base back');
});

test('heartbeat 0 turns the check off', () => {
  const m = new PrimaryMonitor({ ...settings, heartbeatMs: 0 });
  m.enterView(0);
  assert.equal(m.heartbeatExpired(1e9, () => 0, () => false), false);
});

/** Commits `batches` batches of `perBatch` requests, one per `gapMs`, starting after `from`; returns the verdicts at interval ends. */
function run(m: PrimaryMonitor, from: { seq: number; t: number }, batches: number, perBatch: number, gapMs: number): boolean[] {
  const out: boolean[] = [];
  for (let i = 0; i < batches; i++) {
    from.seq++;
    from.t += gapMs;
    const v = m.onCommitted(from.seq, perBatch, 10, from.t);
    if (from.seq % 10 === 0) out.push(v);
  }
  return out;
}

test('throughput: nothing is judged during the grace period; then a primary at 80% of the best view is replaced', () => {
  const m = new PrimaryMonitor(settings);
  const at = { seq: 0, t: 0 };
  m.enterView(0);
  assert.ok(run(m, at, 200, 10, 10).every((v) => !v), 'a steady primary at its own best survives 20 intervals (2 s, grace 1 s): the bar is still below 100%');
  assert.ok(Math.abs(m.best - 1000) < 1, `best = 1000 req/s (got ${m.best})`);
  m.enterView(at.t);
  const slow = run(m, at, 200, 8, 10);
  // Intervals end every 100 ms; the one ending at 1 s into the view is the first judged, and
  // the second miss in a row is the verdict.
  assert.ok(slow.slice(0, 10).every((v) => !v), 'grace period, then one miss');
  assert.equal(slow[10], true, 'second judged interval below the bar: 800 < 900 req/s');
});

test('throughput: a correct primary on a noisy machine (samples +-25%) is not replaced as soon as its grace ends', () => {
  // Ten fixed pseudo-random sequences; each interval's batches carry 7.5 to 12.5 requests.
  const firsts: number[] = [];
  for (const seed of [12345, 1, 2, 3, 4, 5, 6, 7, 8, 9]) {
    let x = seed;
    const noise = () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648) * 0.5 + 0.75;
    const m = new PrimaryMonitor(settings);
    m.enterView(0);
    let t = 0;
    let seq = 0;
    const verdicts: boolean[] = [];
    for (let view = 0; view < 2; view++) {
      if (view === 1) m.enterView(t);
      for (let i = 0; i < 30; i++) {
        const perBatch = 10 * noise();
        for (let b = 0; b < 10; b++) {
          const v = m.onCommitted(++seq, perBatch, 10, (t += 10));
          if (view === 1 && seq % 10 === 0) verdicts.push(v);
        }
      }
    }
    const first = verdicts.indexOf(true);
    firsts.push(first === -1 ? verdicts.length : first);
  }
  // The second view is judged from interval 9 on. With the bar taken from the highest smoothed
  // sample of the first view, it was replaced at interval 9 in 9 of these 10 sequences (11 in the
  // other): the luckiest second set a bar no primary sustains.
  assert.ok(Math.min(...firsts) >= 10, `never before two judged intervals (${firsts.join(' ')})`);
  const sorted = [...firsts].sort((a, b) => a - b);
  assert.ok(sorted[5]! >= 15, `typically well after the grace period (${firsts.join(' ')})`);
});

/** A monitor that saw one view run at 1000 req/s (200 batches of 10 requests, 10 ms apart), now in the next view. */
function afterFastView(): { m: PrimaryMonitor; at: { seq: number; t: number } } {
  const m = new PrimaryMonitor(settings);
  const at = { seq: 0, t: 0 };
  m.enterView(0);
  run(m, at, 200, 10, 10);
  m.enterView(at.t);
  return { m, at };
}

test('throughput: a rate below half the requirement is suspected at once, without waiting for a second miss', () => {
  const { m, at } = afterFastView();
  const slow = run(m, at, 200, 3, 10);
  // 300 req/s against a bar of 900: the first sample is enough, even in the grace period.
  assert.equal(slow[0], true, 'first sample: 300 < 450 req/s');
});

test('throughput: during the grace period only a rate below half the bar counts', () => {
  const { m, at } = afterFastView();
  assert.deepEqual(run(m, at, 10, 10, 10), [false], 'the view opens its first sample');
  assert.deepEqual(run(m, at, 10, 8, 10), [false], 'a primary at 80% is spared while in grace');
  assert.deepEqual(run(m, at, 10, 3, 10), [true], 'a primary at 30% is not');
});

test('throughput: samples that begin within the ramp after a view change are neither judged nor kept', () => {
  const fresh = (rampMs: number): { m: PrimaryMonitor; at: { seq: number; t: number } } => {
    const m = new PrimaryMonitor({ ...settings, rampMs });
    const at = { seq: 0, t: 0 };
    m.enterView(0);
    run(m, at, 200, 10, 10);
    m.enterView(at.t);
    return { m, at };
  };
  // Without a ramp the new view's first sample (from its first commit, 10 ms in), at 20% while
  // the clients have not yet retransmitted to the new primary, is suspected at once.
  const bare = fresh(0);
  assert.deepEqual(run(bare.m, bare.at, 10, 2, 10), [true]);
  // With a 250 ms ramp the samples that begin 10, 100 and 200 ms into the view pass unjudged,
  // and the view keeps none of them: best is still the first view's 1000 req/s.
  const ramped = fresh(250);
  assert.deepEqual(run(ramped.m, ramped.at, 30, 2, 10), [false, false, false]);
  assert.ok(Math.abs(ramped.m.best - 1000) < 1, `best unchanged (got ${ramped.m.best})`);
  // The sample that begins at 300 ms is judged by the half-rate rule as before.
  assert.deepEqual(run(ramped.m, ramped.at, 10, 2, 10), [true]);
});

test('throughput: the bar rises 1% per interval judged, so even a steady primary is replaced in the end', () => {
  const m = new PrimaryMonitor(settings);
  const at = { seq: 0, t: 0 };
  m.enterView(0);
  const verdicts = run(m, at, 400, 10, 10);
  const first = verdicts.indexOf(true);
  assert.ok(first > 10, `not during the grace period (first at interval ${first})`);
  // Judged from t = 1 s (interval 10); the bar passes 100% of the best after 10 more.
  assert.ok(first <= 22, `replaced within ~11 judged intervals (first at interval ${first})`);
});

test('throughput: the best rate is remembered for viewsRemembered views only', () => {
  const m = new PrimaryMonitor({ ...settings, viewsRemembered: 2 });
  const at = { seq: 0, t: 0 };
  m.enterView(0);
  run(m, at, 30, 10, 10);
  assert.ok(m.best > 900);
  m.enterView(at.t);
  run(m, at, 30, 1, 10);
  m.enterView(at.t);
  assert.ok(m.best < 200, `the fast view is forgotten two views later (best ${m.best})`);
});

test('throughput: a sample also closes once a second old, so a primary too slow to reach the next checkpoint is judged', () => {
  const m = new PrimaryMonitor(settings);
  m.enterView(0);
  let t = 0;
  // Fast at first: 10 requests per batch, a batch per 10 ms (1000 req/s), interval 64.
  for (let seq = 1; seq <= 640; seq++) m.onCommitted(seq, 10, 64, (t += 10));
  // Then a batch per 200 ms: the next multiple of 64 would be 12.8 s away.
  let verdict = false;
  let at = 0;
  for (let seq = 641; seq <= 700 && !verdict; seq++) {
    verdict = m.onCommitted(seq, 10, 64, (t += 200));
    at = t;
  }
  assert.equal(verdict, true, 'replaced');
  assert.ok(at - 6400 <= 2000, `within two samples of a second: the smoothed rate falls below half the bar (after ${at - 6400} ms)`);
});
