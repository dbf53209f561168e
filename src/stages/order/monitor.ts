/**
 * How a backup judges its primary (Aardvark, UpRight thesis §3.4.3): besides the PBFT triggers
 * (a request waiting too long, an invalid or equivocating pre-prepare), a primary that is slow or
 * unfair without breaking any rule is replaced. Pure bookkeeping; the order stage asks it and
 * starts the view change.
 *
 * - Heartbeat: while this backup holds a ready request that no pre-prepare carries, and the
 *   primary has room in its pipeline, a PRE-PREPARE must arrive at least every `heartbeatMs`.
 *   On a first expiry the backup FORWARDs what waits to the primary (which may not have it: auth
 *   replicas send a request to the primary of the view they believe in, and a new primary was
 *   not that one) and waits one more timeout; on expiry with nothing left to forward it starts a
 *   view change and the timeout doubles; the first pre-prepare
 *   accepted (or batch committed) in a view afterwards brings it back to `heartbeatMs`. A commit
 *   counts like a pre-prepare: a replica that rejoined a view catches up on batches whose
 *   pre-prepares it never saw. (Aardvark resets its timer on every
 *   pre-prepare and expects one every 40 ms; ours runs only while there is work, so an idle
 *   cluster is not a slow one, and not while the pipeline is full, because then the wait is for
 *   the backups' votes, not for the primary.)
 * - Throughput: at every committed multiple of the checkpoint interval, or at the first commit
 *   `sampleMaxMs` (1 s) after the previous sample if that comes first, the replica measures the
 *   requests committed per second since the previous sample, smoothed (each new rate averaged with
 *   the previous smoothed one: a single slow interval on a busy machine is noise, two are a
 *   trend). After `throughputGraceMs` in the view, `throughputMisses` (2) smoothed rates in a row
 *   below the requirement start a view change. The requirement starts at 90% of the best view's
 *   rate, over the last `viewsRemembered` views, and rises by 1% of it per sample judged, so every
 *   primary is replaced in the end and a slow one soon. A view's rate is the MEDIAN of its
 *   samples, not the highest: on a shared machine single samples swing by 20%, and a bar taken
 *   from the luckiest second would sit above what any primary sustains, replacing a correct one
 *   every grace period (measured: a view change every 6 s on a fault-free 4-node cluster). Two
 *   misses in a row for the same reason (three cost too much under a primary delaying each
 *   pre-prepare by 10 ms: measured 0.75 and 0.86 of fault-free throughput). A sample
 *   below half the requirement is suspected at once (`throughputSevere`): no noise halves a
 *   rate; this one rule applies during the grace period too (against 90% of the best), so a
 *   primary turning slow right after its election is not spared for seconds. As in Aardvark, the
 *   rate is not corrected for demand: when the clients send less, the primary is replaced after
 *   the grace period (a view change costs one agreement round). A backup cannot tell demand
 *   apart: auth replicas send a request to the primary alone until the client retransmits.
 * - Ramp: samples that begin within `rampMs` (the clients' retransmission timeout) of a view's
 *   start are neither kept nor judged. Until the clients retransmit, requests they sent to the old
 *   primary are missing at the new one, so every new primary's first sample was low: measured in
 *   `bulwark demo`, a silenced primary's successor was suspected 130 ms into its view by the
 *   half-rate rule, then its successor, and so on (views 3 to 7 in 1.4 s, one of them the
 *   silenced node's own, which only a view-change timeout ends).
 *
 * Invariants: heartbeat timeout in [heartbeatMs, heartbeatMs * 2^10]; `best` is the highest
 * median of the remembered views' samples; a throughput suspicion needs `throughputMisses`
 * judged samples in a row below the requirement.
 */
import { median } from '../../core/median.ts';

/** Settings of the monitor (tunables of the cluster; 0 turns a check off). */
export interface MonitorSettings {
  readonly heartbeatMs: number;
  readonly throughputGraceMs: number;
  /** Views whose best rate the requirement is taken from. */
  readonly viewsRemembered: number;
  /**
   * A view's ramp (ms, default 0): samples that begin within this long of the view's start are
   * neither kept nor judged. Requests sent to the previous primary reach the new one only when
   * the client retransmits them to every auth replica (the cluster's `clientRetryMs`), so the first
   * few hundred milliseconds of a view run below any correct primary's rate.
   */
  readonly rampMs?: number;
}

/**
 * Longest a throughput sample runs: Aardvark samples at every checkpoint, every 128 requests,
 * a few milliseconds on its hardware; a slow primary here may take seconds for an interval.
 */
export const sampleMaxMs = 1000;

/** Judged samples in a row below the requirement that make a backup suspect the primary. */
export const throughputMisses = 2;

/**
 * A sample (raw, not smoothed) below this fraction of the requirement is suspected at once: no
 * noise halves a rate, while a primary that delays each pre-prepare by 100 ms cuts it to a sixth
 * (measured with `bench --attack slow-primary --attack-delay-ms 100`: three misses required even
 * then kept 0.52 to 0.61 of the fault-free throughput, against 0.90 to 1.00 when judged at the
 * first sample).
 */
export const throughputSevere = 0.5;

/** Samples kept per view for its median rate (the oldest are dropped). */
const samplesPerViewMax = 64;

/** Why a backup wants a new primary. */
export type SuspicionReason = 'heartbeat' | 'throughput' | 'unfair';

/** Per-replica monitor of the current primary. */
export class PrimaryMonitor {
  private hbTimeout: number;
  /** Last PRE-PREPARE accepted, or when the view began. */
  private lastPrePrepareAt = 0;
  private viewStartedAt = 0;
  /** Rate samples: where the current interval started. */
  private intervalFrom: { at: number; requests: number } | undefined;
  private committedRequests = 0;
  /** Intervals judged in this view (the requirement rises with each). */
  private judged = 0;
  /** Smoothed rate of this view (requests/s); undefined before its first sample. */
  private smoothed: number | undefined;
  /** Judged samples in a row below the requirement. */
  private misses = 0;
  /** Rate samples (requests/s) of each remembered view, newest view last (the current one). */
  private readonly samplesByView: number[][] = [[]];

  constructor(private readonly s: MonitorSettings) {
    this.hbTimeout = s.heartbeatMs;
  }

  /** The current heartbeat timeout (doubles per expiry). */
  get heartbeatTimeoutMs(): number {
    return this.hbTimeout;
  }

  /** The best view's rate (requests/s) over the views remembered: the highest median of a view's samples. */
  get best(): number {
    let best = 0;
    for (const samples of this.samplesByView) best = Math.max(best, median(samples) ?? 0);
    return best;
  }

  /** A view began (entered after a view change, or at start). */
  enterView(now: number): void {
    this.viewStartedAt = now;
    this.lastPrePrepareAt = now;
    this.intervalFrom = undefined;
    this.judged = 0;
    this.misses = 0;
    this.smoothed = undefined;
    this.samplesByView.push([]);
    while (this.samplesByView.length > Math.max(1, this.s.viewsRemembered)) this.samplesByView.shift();
  }

  /** A PRE-PREPARE of the current view was accepted, or a batch committed in it. */
  onPrePrepare(now: number): void {
    this.lastPrePrepareAt = now;
    this.hbTimeout = this.s.heartbeatMs;
  }

  /**
   * Whether the heartbeat expired: `waitingSince` gives when the oldest ready request that no
   * pre-prepare carries became ready (undefined: none), `pipelineFull` whether the primary may
   * not propose now. Both are asked only once the last pre-prepare is a timeout old (they cost a
   * walk over the window; this runs every tick). No side effect: the caller either forwards what
   * waits and `rearm`s, or suspects the primary (`suspected`).
   */
  heartbeatExpired(now: number, waitingSince: () => number | undefined, pipelineFull: () => boolean): boolean {
    if (this.s.heartbeatMs <= 0 || now - this.lastPrePrepareAt < this.hbTimeout) return false;
    const since = waitingSince();
    return since !== undefined && now - since >= this.hbTimeout && !pipelineFull();
  }

  /** The heartbeat expired once more; the primary gets one more timeout before suspicion. */
  rearm(now: number): void {
    this.lastPrePrepareAt = now;
  }

  /** The replica suspects the primary on the heartbeat: the timeout doubles (up to 2^10 x). */
  suspected(): void {
    this.hbTimeout = Math.min(this.hbTimeout * 2, this.s.heartbeatMs * 1024);
  }

  /**
   * A batch of `requests` requests was committed at `seq`. At each multiple of `interval` (or
   * once the sample is sampleMaxMs old) it closes a sample; returns true when the primary falls
   * short of the requirement.
   */
  onCommitted(seq: number, requests: number, interval: number, now: number): boolean {
    this.committedRequests += requests;
    const from = this.intervalFrom;
    if (from === undefined) {
      // The view's first commit opens its first sample.
      this.intervalFrom = { at: now, requests: this.committedRequests };
      return false;
    }
    if (seq % interval !== 0 && now - from.at < sampleMaxMs) return false;
    this.intervalFrom = { at: now, requests: this.committedRequests };
    if (now <= from.at) return false;
    // A sample from the view's ramp would judge the clients' retransmission timers, not the
    // primary; it would also lower this view's median and so the bar for the next views.
    if (from.at - this.viewStartedAt < (this.s.rampMs ?? 0)) return false;
    const sample = ((this.committedRequests - from.requests) * 1000) / (now - from.at);
    const rate = this.smoothed === undefined ? sample : (this.smoothed + sample) / 2;
    this.smoothed = rate;
    const mine = this.samplesByView[this.samplesByView.length - 1]!;
    mine.push(sample);
    if (mine.length > samplesPerViewMax) mine.shift();
    if (this.s.throughputGraceMs <= 0) return false;
    // The grace period spares a new primary the rising bar, not the half-rate rule: a primary
    // that turns slow just after its election would otherwise have the whole grace period free.
    if (now - this.viewStartedAt < this.s.throughputGraceMs) return sample < throughputSevere * 0.9 * this.best;
    const required = this.best * (0.9 + 0.01 * this.judged);
    this.judged++;
    this.misses = rate < required ? this.misses + 1 : 0;
    // The severe check takes the raw sample: averaging it with the rate from before the primary
    // turned slow would hide the drop for one more sample.
    return this.misses >= throughputMisses || sample < throughputSevere * required;
  }
}
