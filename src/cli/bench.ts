/**
 * `bulwark bench`: closed-loop clients against a cluster, with a progress bar; ends with
 * exactly one line
 *   bench: ops_per_s=<X> p50_ms=<Y> p99_ms=<Z> clients=<C> size=<B> nodes=<N> u=<U> r=<R> durability=<D>
 *     [client_signatures=on] [...] slow_ops=<operations that took 500 ms or more>
 * Against the cluster in --dir (default: the one `bulwark up` made), or with --spawn a
 * temporary local cluster that is stopped and removed afterwards.
 *
 * Each client runs one operation at a time: a put of `size` bytes or, with probability
 * read-ratio, a get, on 100 keys of its own. The first second is warm-up and not counted.
 *
 * Durability figures (issue 4):
 * - `--preload-mb M` first writes M MiB of state (4 KiB values, MSET requests of 60 KiB)
 *   through the protocol, so checkpoints and state transfers have real weight;
 * - `--timeline` counts completions per 1-second window and appends
 *   `min_window_ratio=<lowest window / median window>` (and `checkpoints=<mode>`);
 * - `--scenario recovery` (with --spawn) SIGKILLs execution replica 2 a third of the way in,
 *   deletes its data directory and restarts it; the line gains `transfer=<mode>
 *   recovery_s=<until it executed what node 0 had executed when it restarted> during_ratio=<ops/s
 *   during the recovery / median ops/s before the kill>`.
 *
 * Attacks (issue 5): `--attack NAME` (with --spawn) measures a fault-free phase and an attacked
 * phase, each --duration long, in one run. Node attacks are switched on at the phase boundary
 * on the primary of that moment through `POST /attack` (the spawned nodes run with
 * BULWARK_ATTACKS=1; see src/runtime/attack.ts); client attacks start a bad client or a
 * connection flood (attack-drivers.ts). The line gains `attack=<NAME> ratio=<attacked ops/s /
 * fault-free ops/s>` and the figures of each phase; `unfair-primary` adds the victim's mean
 * latency and the others' in the attacked phase. Memory: of the correct node whose peak resident
 * set grew most, `rss_base_mb` (peak up to the attack), `rss_attack_mb` (peak up to its end) and
 * `mem_bound_mb` (the first plus the most its inbox can hold from peers and clients).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../services/kv/client.ts';
import type { TcpClient } from '../runtime/client.ts';
import type { ClusterFile } from '../runtime/cluster-file.ts';
import { BulwarkError } from '../core/errors.ts';
import { connectClient, resolveCluster } from './kv.ts';
import { downCommand, fetchStatus, initLoopbackCluster, pidFile, readPid, spawnNode, waitServing } from './cluster.ts';
import { clusterPaths, loadClusterFile } from '../runtime/cluster-file.ts';
import type { CheckpointMode, DurabilityMode, StateTransferMode, Tunables } from '../core/config.ts';
import { encodeKvRequest } from '../services/kv/ops.ts';
import { renderTimelineSvg } from './timeline-chart.ts';
import { alive } from '../runtime/client.ts';
import type { AttackName } from '../sim/run.ts';
import type { NodeAttackSpec } from '../runtime/attack.ts';
import { startBadClient, startClientFlood, type RunningAttack } from './attack-drivers.ts';

/** Options of `bulwark bench`. */
export interface BenchOptions {
  readonly clients: number;
  readonly durationS: number;
  readonly size: number;
  readonly readRatio: number;
  readonly json?: boolean;
  readonly dir?: string;
  readonly config?: string;
  readonly spawn?: boolean;
  readonly u?: number;
  readonly r?: number;
  /** With spawn: durability mode of the temporary cluster (default parallel). */
  readonly durability?: DurabilityMode;
  /** With spawn: checkpoint mode (default sequential). */
  readonly checkpoints?: CheckpointMode;
  /** With spawn: state transfer mode (default collaborative). */
  readonly stateTransfer?: StateTransferMode;
  /** With spawn: batches between checkpoints. */
  readonly checkpointInterval?: number;
  /** Further tunables of a `--spawn` cluster (programs such as bench/checkpoints.ts; not a CLI flag). */
  readonly tunables?: Partial<Tunables>;
  /** With spawn: clients sign their ordered requests (default off). */
  readonly clientSignatures?: boolean;
  /** MiB of state written before the measured run. */
  readonly preloadMb?: number;
  /** Count completions per second and report the lowest window. */
  readonly timeline?: boolean;
  /** Write the per-second chart (SVG) here; implies timeline. */
  readonly chart?: string;
  /** With spawn: `recovery` wipes and restarts execution replica 2 during the run. */
  readonly scenario?: 'recovery';
  /** With spawn: a fault-free phase, then this attack for a phase of equal length. */
  readonly attack?: AttackName;
  /** slow-primary: delay of each pre-prepare (ms, default 10). */
  readonly attackDelayMs?: number;
  /** Seconds of load before the measured window, not counted (default 1). */
  readonly warmupS?: number;
  /** Write progress to stderr (default true). */
  readonly progress?: boolean;
}

/** How long operations still running at the end of a run may take before they are abandoned (ms). */
export const abandonAfterMs = 10_000;

/** Latency from which an operation counts in `slow_ops` (ms). */
export const slowOpMs = 500;

/** Figures of one bench run. */
export interface BenchResult {
  readonly opsPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly clients: number;
  readonly size: number;
  readonly nodes: number;
  readonly u: number;
  readonly r: number;
  readonly durability: DurabilityMode;
  /** Whether the cluster's clients sign their ordered requests. */
  readonly clientSignatures: boolean;
  readonly ops: number;
  readonly errors: number;
  /** Operations still running abandonAfterMs after the end, abandoned (the cluster never answered). */
  readonly abandoned?: number;
  /** Completions per 1-second window of the measured run. */
  readonly perSecond: readonly number[];
  /**
   * Operations that took `slowOpMs` or longer: about what one client retransmission costs
   * (clientRetryMs is 500 by default), so mostly requests that were stuck somewhere.
   */
  readonly slowOps?: number;
  /** Checkpoint mode of the cluster. */
  readonly checkpoints: CheckpointMode;
  /** State transfer mode of the cluster. */
  readonly stateTransfer: StateTransferMode;
  /** With timeline: lowest window / median window. */
  readonly minWindowRatio?: number;
  /** With the recovery scenario: what happened. */
  readonly recovery?: RecoveryResult;
  /** With --attack: the two phases. */
  readonly attack?: AttackResult;
}

/** Figures of an attack run: phase 1 fault-free, phase 2 attacked, equal lengths. */
export interface AttackResult {
  readonly name: AttackName;
  /** What the attack was (node attacked, delay, victim...). */
  readonly detail: string;
  readonly baseOpsPerS: number;
  readonly attackedOpsPerS: number;
  readonly ratio: number;
  readonly baseP50Ms: number;
  readonly attackedP50Ms: number;
  /** unfair-primary: mean latency of the victim and of the others in the attacked phase. */
  readonly victimMeanMs?: number;
  readonly othersMeanMs?: number;
  /** View of node 0 before and after the attacked phase. */
  readonly viewBefore: number | undefined;
  readonly viewAfter: number | undefined;
  /**
   * Memory of the correct node whose peak resident set grew most: its peak up to the end of the
   * fault-free phase, its peak up to the end of the attack, and its bound: the first plus what
   * peers and clients can make its inbox hold. Undefined when a node did not report.
   */
  readonly memory?: { readonly node: number; readonly basePeakBytes: number; readonly attackPeakBytes: number; readonly boundBytes: number };
}

/** Figures of the recovery scenario (seconds from the start of the measured run). */
export interface RecoveryResult {
  readonly node: number;
  readonly killedAtS: number;
  /** When the node executed at the head again; undefined if it never did within the run. */
  readonly caughtUpAtS: number | undefined;
  readonly recoveryS: number | undefined;
  /** Mean ops/s while recovering / median ops/s of the windows before the kill. */
  readonly duringRatio: number | undefined;
}

/** The single summary line. */
export function benchLine(b: BenchResult): string {
  let line = `bench: ops_per_s=${b.opsPerS.toFixed(0)} p50_ms=${b.p50Ms.toFixed(2)} p99_ms=${b.p99Ms.toFixed(2)} clients=${b.clients} size=${b.size} nodes=${b.nodes} u=${b.u} r=${b.r} durability=${b.durability}`;
  if (b.clientSignatures) line += ' client_signatures=on';
  if (b.minWindowRatio !== undefined) line += ` checkpoints=${b.checkpoints} min_window_ratio=${b.minWindowRatio.toFixed(2)}`;
  if (b.recovery !== undefined) {
    const r = b.recovery;
    line += ` transfer=${b.stateTransfer} recovery_s=${r.recoveryS === undefined ? 'none' : r.recoveryS.toFixed(1)} during_ratio=${r.duringRatio === undefined ? 'none' : r.duringRatio.toFixed(2)}`;
  }
  if (b.attack !== undefined) {
    const a = b.attack;
    line += ` attack=${a.name} ratio=${a.ratio.toFixed(2)} base_ops_per_s=${a.baseOpsPerS.toFixed(0)} attacked_ops_per_s=${a.attackedOpsPerS.toFixed(0)} base_p50_ms=${a.baseP50Ms.toFixed(2)} attacked_p50_ms=${a.attackedP50Ms.toFixed(2)}`;
    if (a.memory !== undefined) {
      const mb = (x: number) => (x / 1048576).toFixed(0);
      line += ` rss_base_mb=${mb(a.memory.basePeakBytes)} rss_attack_mb=${mb(a.memory.attackPeakBytes)} mem_bound_mb=${mb(a.memory.boundBytes)}`;
    }
    if (a.victimMeanMs !== undefined && a.othersMeanMs !== undefined) line += ` victim_mean_ms=${a.victimMeanMs.toFixed(2)} others_mean_ms=${a.othersMeanMs.toFixed(2)}`;
    line += ` views=${a.viewBefore ?? '?'}->${a.viewAfter ?? '?'}`;
  }
  if (b.slowOps !== undefined) line += ` slow_ops=${b.slowOps}`;
  if ((b.abandoned ?? 0) > 0) line += ` abandoned=${b.abandoned}`;
  return line;
}

import { median } from '../core/median.ts';

/** Re-exported for the report scripts (`bench/*.ts`, compare.ts). */
export { median };

/** The `p`th percentile (nearest rank, rounded down) of ascending `sorted`; 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Starts a throwaway local cluster for --spawn; returns its directory. */
export async function spawnTemporaryCluster(
  u: number,
  r: number,
  durability: DurabilityMode = 'parallel',
  more: { checkpoints?: CheckpointMode; stateTransfer?: StateTransferMode; clientSignatures?: boolean; tunables?: Partial<Tunables> } = {},
  env: Record<string, string> = {},
): Promise<{ dir: string; cf: ClusterFile }> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-bench-'));
  const cf = await initLoopbackCluster({ dir, u, r, durability, ...more });
  for (const n of cf.nodes) spawnNode(dir, n.id, env);
  await waitServing(cf, cf.nodes.map((n) => n.id));
  return { dir, cf };
}

/** Runs the load against an already running cluster. */
export async function runLoad(
  ref: { dir?: string; config?: string },
  o: BenchOptions,
  onSecond?: (elapsedS: number, opsLastSecond: number) => void,
  measureFromAt?: number,
  record?: (clientId: number, t0: number, t1: number) => void,
): Promise<BenchResult> {
  const { cf } = resolveCluster(ref);
  const clients: TcpClient[] = [];
  for (let i = 0; i < o.clients; i++) clients.push(await connectClient(ref));
  const value = 'x'.repeat(o.size);
  const warmupMs = (o.warmupS ?? 1) * 1000;
  const start = performance.now();
  const measureFrom = measureFromAt ?? start + warmupMs;
  const end = measureFrom + o.durationS * 1000;
  const latencies: number[] = [];
  const perSecond: number[] = new Array<number>(o.durationS).fill(0);
  let errors = 0;
  let lastSecondOps = 0;
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - measureFrom) / 1000;
    onSecond?.(Math.max(0, elapsed), lastSecondOps);
    lastSecondOps = 0;
  }, 1000);
  // A cluster that never answers an operation must not hang the bench: what is still running
  // abandonAfterMs after the end is abandoned (its client closed) and counted.
  let abandoning = false;
  let abandoned = 0;
  const abandonTimer = setTimeout(
    () => {
      abandoning = true;
      for (const c of clients) void c.close();
    },
    Math.max(0, end - performance.now()) + abandonAfterMs,
  );
  let seed = 12345;
  const rand = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 0x1_0000_0000;
  };
  await Promise.all(
    clients.map(async (c) => {
      const kv = new KvClient(c);
      let i = 0;
      while (performance.now() < end) {
        const key = `b${c.id}:${i++ % 100}`;
        const t0 = performance.now();
        try {
          if (rand() < o.readRatio) await kv.get(key);
          else await kv.put(key, value);
        } catch {
          if (abandoning) {
            abandoned++;
            break;
          }
          // Counted; a closed-loop client keeps going.
          errors++;
          continue;
        }
        const t1 = performance.now();
        record?.(c.id, t0, t1);
        lastSecondOps++;
        if (t1 >= measureFrom && t1 < end) perSecond[Math.floor((t1 - measureFrom) / 1000)]! += 1;
        if (t0 >= measureFrom && t1 <= end) latencies.push(t1 - t0);
      }
    }),
  );
  clearInterval(ticker);
  clearTimeout(abandonTimer);
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  return {
    opsPerS: latencies.length / o.durationS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    slowOps: latencies.filter((ms) => ms >= slowOpMs).length,
    clients: o.clients,
    size: o.size,
    nodes: cf.nodes.length,
    u: cf.protocol.u,
    r: cf.protocol.r,
    durability: cf.protocol.durability ?? 'parallel',
    clientSignatures: cf.protocol.clientSignatures ?? false,
    ops: latencies.length,
    errors,
    abandoned,
    perSecond,
    checkpoints: cf.protocol.checkpoints ?? 'sequential',
    stateTransfer: cf.protocol.stateTransfer ?? 'collaborative',
  };
}

/** Values per preload request: 15 x 4 KiB, under the default 64 KiB request limit. */
const preloadPerRequest = 15;
const preloadValueBytes = 4096;

/**
 * Writes `mb` MiB of state (keys `pre:<i>`, 4 KiB values) through the protocol with a few
 * concurrent MSET requests; returns the seconds it took.
 */
export async function preload(ref: { dir?: string; config?: string }, mb: number): Promise<number> {
  const total = Math.ceil((mb * 1024 * 1024) / preloadValueBytes);
  const requests = Math.ceil(total / preloadPerRequest);
  const value = 'p'.repeat(preloadValueBytes);
  const clients: TcpClient[] = [];
  for (let i = 0; i < 8; i++) clients.push(await connectClient(ref));
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    clients.map(async (c) => {
      for (let r = next++; r < requests; r = next++) {
        const entries = [];
        for (let k = r * preloadPerRequest; k < Math.min(total, (r + 1) * preloadPerRequest); k++) entries.push({ key: `pre:${k}`, value });
        await c.invoke(encodeKvRequest({ kind: 'mset', entries }), false);
      }
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return (performance.now() - t0) / 1000;
}

/**
 * After a preload, writes a little more until every execution replica has taken a checkpoint
 * past the preload and has none left to serialise: the preload dirtied every page, so the first
 * checkpoint after it is a full one, and it belongs to loading the state, not to the measured
 * run. Returns the seconds it took (at most 10 minutes).
 */
async function settle(ref: { dir?: string; config?: string }, cf: ClusterFile): Promise<number> {
  const t0 = performance.now();
  const seqs = await Promise.all(cf.nodes.map((n) => fetchStatus(cf, n.id, false, 10_000)));
  const loadedSeq = Math.max(0, ...seqs.map((st) => st?.executedSeq ?? 0));
  const client = await connectClient(ref);
  try {
    for (let i = 0; performance.now() - t0 < 600_000; i++) {
      await client.invoke(encodeKvRequest({ kind: 'put', key: `settle:${i % 64}`, value: '' }), false);
      if (i % 50 !== 49) continue;
      const st = await Promise.all(cf.nodes.map((n) => fetchStatus(cf, n.id, false, 10_000)));
      const done = st.every((x) => x !== undefined && (x.executedSeq === undefined || (x.checkpointsPending === 0 && Math.max(0, ...(x.checkpointsHeld ?? [])) > loadedSeq)));
      if (done) break;
    }
  } finally {
    await client.close();
  }
  return (performance.now() - t0) / 1000;
}

/**
 * The recovery scenario: at `atMs` (performance.now), SIGKILL `node`, delete its data, restart
 * it, and poll until it has executed everything node 0 had executed when it came back (it holds
 * all the state it lost and is replaying live batches).
 */
async function recoveryScenario(dir: string, cf: ClusterFile, node: number, atMs: number, untilMs: number): Promise<{ killedAt: number; caughtUpAt: number | undefined }> {
  await new Promise((r) => setTimeout(r, Math.max(0, atMs - performance.now())));
  const pid = readPid(pidFile(dir, node));
  if (pid === undefined) throw new Error(`node ${node} has no pid file in ${dir}`);
  const killedAt = performance.now();
  process.kill(pid, 'SIGKILL');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
  rmSync(join(clusterPaths(dir).data, `node-${node}`), { recursive: true, force: true });
  const target = (await fetchStatus(cf, 0, false, 5000))?.executedSeq ?? 0;
  spawnNode(dir, node);
  while (performance.now() < untilMs) {
    await new Promise((r) => setTimeout(r, 250));
    const me = await fetchStatus(cf, node);
    if (me?.executedSeq === undefined) continue;
    if (me.executedSeq >= target && me.executedSeq > 0) return { killedAt, caughtUpAt: performance.now() };
  }
  return { killedAt, caughtUpAt: undefined };
}

/** `bulwark bench`. */
/** The primary most nodes report (undefined when none answers). */
async function currentPrimary(cf: ClusterFile): Promise<{ primary: number | undefined; view: number | undefined }> {
  const views = new Map<string, number>();
  for (const n of cf.nodes) {
    const s = await fetchStatus(cf, n.id);
    if (s?.primary === undefined || s.view === undefined) continue;
    const k = `${s.view}:${s.primary}`;
    views.set(k, (views.get(k) ?? 0) + 1);
  }
  const best = [...views.entries()].sort((a, b) => b[1] - a[1])[0];
  if (best === undefined) return { primary: undefined, view: undefined };
  const [view, primary] = best[0].split(':').map(Number);
  return { primary, view };
}

/** Sets a node's attack through its metrics port (the node must run with BULWARK_ATTACKS=1). */
async function postAttack(cf: ClusterFile, node: number, spec: NodeAttackSpec): Promise<void> {
  const n = cf.nodes.find((x) => x.id === node);
  if (n === undefined || n.metricsPort === 0) throw new BulwarkError('attack_failed', `node ${node} has no metrics port to take the attack`);
  const host = n.host === '0.0.0.0' ? '127.0.0.1' : n.host;
  const res = await fetch(`http://${host}:${n.metricsPort}/attack`, { method: 'POST', body: JSON.stringify(spec), signal: AbortSignal.timeout(2000) });
  if (res.status !== 200) throw new BulwarkError('attack_failed', `node ${node} refused the attack: ${res.status} ${(await res.text()).trim()}`);
}

/** The client the unfair primary starves: the bench's first client (ids are taken from 0 up). */
const victimClient = 0;

/** What `POST /attack` tells the attacking node for a node attack, and how the report describes it. */
function nodeAttack(attack: Exclude<AttackName, 'bad-client' | 'client-flood'>, o: BenchOptions): { spec: NodeAttackSpec; what: string } {
  switch (attack) {
    case 'slow-primary': {
      const delayMs = o.attackDelayMs ?? 10;
      return { spec: { name: 'slow-primary', delayMs }, what: `, pre-prepares ${delayMs} ms late` };
    }
    case 'unfair-primary':
      return { spec: { name: 'unfair-primary', victim: victimClient }, what: `, starving client ${victimClient}` };
    case 'equivocating-primary':
      return { spec: { name: 'equivocating-primary' }, what: '' };
    case 'replica-flood':
      return { spec: { name: 'replica-flood', ratePerS: 20_000 }, what: ', 20000 junk messages/s to each peer' };
    case 'forging-auth':
      return { spec: { name: 'forging-auth' }, what: ', every AUTH-REQ replaced by a valid row over a body the client never sent' };
  }
}

/**
 * Starts `attack` against the spawned cluster at `atMs` (performance.now); resolves with what
 * was attacked and a stop function.
 */
async function startAttack(dir: string, cf: ClusterFile, attack: AttackName, o: BenchOptions, atMs: number): Promise<{ detail: string; viewBefore: number | undefined; attacker?: number; stop: () => Promise<void> }> {
  await new Promise((r) => setTimeout(r, Math.max(0, atMs - performance.now())));
  const { primary, view } = await currentPrimary(cf);
  if (attack === 'bad-client') {
    // An identity the bench's clients do not use: the last one of the cluster file.
    const id = Math.max(...cf.clients.map((c) => c.id));
    const running: RunningAttack = await startBadClient(dir, cf, id, 2000);
    const how = cf.protocol.clientSignatures === true ? 'valid MACs and a broken signature, to every auth replica' : 'valid MAC for its relay only';
    return { detail: `client ${id}, 2000 requests/s, ${how}`, viewBefore: view, stop: () => running.stop() };
  }
  if (attack === 'client-flood') {
    const running = startClientFlood(cf, { connections: 64, bytesPerS: 64 << 10, idle: 512 });
    return { detail: '64 connections writing 64 KiB/s of random bytes each, reopened when closed, and 512 idle connections', viewBefore: view, stop: () => running.stop() };
  }
  if (primary === undefined) throw new BulwarkError('attack_failed', 'no node reports a primary');
  const { spec, what } = nodeAttack(attack, o);
  // The flood comes from a backup (the primary's junk would also slow its own proposals); the
  // forged rows from another node's auth replica (the primary's own reach it in memory).
  const target = attack === 'replica-flood' || attack === 'forging-auth' ? cf.nodes.find((n) => n.id !== primary)!.id : primary;
  await postAttack(cf, target, spec);
  return { detail: `node ${target}${target === primary ? ' (primary)' : ''}${what}`, viewBefore: view, attacker: target, stop: () => postAttack(cf, target, { name: 'none' }).catch(() => undefined) };
}

/** Peak resident set and inbox bound of every node that answers, by node id. */
async function memoryPeaks(cf: ClusterFile): Promise<Map<number, { peak: number; bound: number }>> {
  const out = new Map<number, { peak: number; bound: number }>();
  for (const n of cf.nodes) {
    const s = await fetchStatus(cf, n.id, false, 3000);
    if (s !== undefined) out.set(n.id, { peak: s.rssPeakBytes, bound: s.inbox.boundBytes });
  }
  return out;
}

/** The correct node (not `attacker`) whose peak grew most during the attack; undefined if none reported twice. */
export function worstMemory(
  base: ReadonlyMap<number, { peak: number; bound: number }>,
  after: ReadonlyMap<number, { peak: number; bound: number }>,
  attacker: number | undefined,
): AttackResult['memory'] {
  let worst: AttackResult['memory'];
  for (const [node, b] of base) {
    const a = after.get(node);
    if (node === attacker || a === undefined) continue;
    if (worst === undefined || a.peak - b.peak > worst.attackPeakBytes - worst.basePeakBytes) {
      worst = { node, basePeakBytes: b.peak, attackPeakBytes: a.peak, boundBytes: b.peak + b.bound };
    }
  }
  return worst;
}

/** The progress line on stderr: a bar over `totalS` seconds, a label, and the last second's ops (nothing with progress off). */
function progressLine(o: BenchOptions, totalS: number, label: (elapsedS: number) => string): (elapsedS: number, opsLastSecond: number) => void {
  const barWidth = 30;
  return (elapsed, last) => {
    if (o.progress === false) return;
    const done = Math.min(1, elapsed / totalS);
    const bar = '#'.repeat(Math.round(done * barWidth)).padEnd(barWidth, '.');
    process.stderr.write(`\r  [${bar}] ${elapsed.toFixed(0).padStart(3)}/${totalS}s ${label(elapsed)} ${String(last).padStart(6)} ops/s   `);
  };
}

/** With --timeline or --chart: prints the per-second windows and adds the lowest window / median. */
function withTimeline(result: BenchResult, o: BenchOptions, print: (s: string) => void): BenchResult {
  if (o.timeline !== true && o.chart === undefined) return result;
  const m = median(result.perSecond) ?? 0;
  print(`timeline (ops per 1-second window): ${result.perSecond.join(' ')}`);
  return { ...result, minWindowRatio: m > 0 ? Math.min(...result.perSecond) / m : 0 };
}

/** The end of every run: JSON if asked, failed operations, then the `bench:` line. */
function printResult(result: BenchResult, o: BenchOptions, print: (s: string) => void): void {
  if (o.json === true) print(JSON.stringify(result));
  if (result.errors > 0) print(`bench: ${result.errors} operation(s) failed`);
  if ((result.abandoned ?? 0) > 0) print(`bench: ${result.abandoned} operation(s) still unanswered ${abandonAfterMs / 1000} s after the run, abandoned`);
  print(benchLine(result));
}

export async function benchCommand(o: BenchOptions, print: (s: string) => void = console.log): Promise<BenchResult> {
  let spawned: { dir: string; cf: ClusterFile } | undefined;
  if (o.scenario !== undefined && o.spawn !== true) throw new BulwarkError('usage', '--scenario needs --spawn (it kills and wipes a node)');
  if (o.attack !== undefined && o.spawn !== true) throw new BulwarkError('usage', '--attack needs --spawn (it turns a node of the cluster into an attacker)');
  if (o.attack !== undefined && o.scenario !== undefined) throw new BulwarkError('usage', '--attack and --scenario do not combine');
  if (o.spawn === true) {
    const tunables: Partial<Tunables> = { ...o.tunables, ...(o.checkpointInterval === undefined ? {} : { checkpointInterval: o.checkpointInterval }) };
    spawned = await spawnTemporaryCluster(
      o.u ?? 1,
      o.r ?? 1,
      o.durability,
      {
        tunables,
        ...(o.checkpoints === undefined ? {} : { checkpoints: o.checkpoints }),
        ...(o.stateTransfer === undefined ? {} : { stateTransfer: o.stateTransfer }),
        ...(o.clientSignatures === true ? { clientSignatures: true } : {}),
      },
      o.attack !== undefined ? { BULWARK_ATTACKS: '1' } : {},
    );
  }
  if (o.attack !== undefined) return attackBench(spawned!, o, print);
  const ref = spawned !== undefined ? { dir: spawned.dir } : o.config !== undefined ? { config: o.config } : { dir: o.dir ?? 'cluster' };
  try {
    if (o.preloadMb !== undefined && o.preloadMb > 0) {
      const took = await preload(ref, o.preloadMb);
      if (o.progress !== false) process.stderr.write(`  preloaded ${o.preloadMb} MiB in ${took.toFixed(1)} s\n`);
      const cf = spawned?.cf ?? loadClusterFile(ref.config ?? clusterPaths(ref.dir).file);
      const settled = await settle(ref, cf);
      if (o.progress !== false) process.stderr.write(`  every executor checkpointed the preloaded state in ${settled.toFixed(1)} s more\n`);
    }
    // The scenario needs the measured run's clock up front: allow a second for the clients to
    // connect on top of the warm-up.
    const warmupMs = (o.warmupS ?? 1) * 1000;
    const measureFrom = performance.now() + warmupMs + 1000;
    const endMs = measureFrom + o.durationS * 1000;
    const scenario =
      o.scenario === 'recovery' && spawned !== undefined ? recoveryScenario(spawned.dir, spawned.cf, 2, measureFrom + (o.durationS * 1000) / 3, endMs) : Promise.resolve(undefined);
    const [loaded, rec] = await Promise.all([
      runLoad(ref, o, progressLine(o, o.durationS, () => ''), o.scenario === undefined ? undefined : measureFrom),
      scenario,
    ]);
    if (o.progress !== false) process.stderr.write('\n');
    let result = withTimeline(loaded, o, print);
    if (rec !== undefined) {
      const killedAtS = (rec.killedAt - measureFrom) / 1000;
      const caughtUpAtS = rec.caughtUpAt === undefined ? undefined : (rec.caughtUpAt - measureFrom) / 1000;
      const before = result.perSecond.slice(0, Math.floor(killedAtS));
      const from = Math.floor(killedAtS);
      const to = caughtUpAtS === undefined ? undefined : Math.max(from + 1, Math.ceil(caughtUpAtS));
      const during = to === undefined ? [] : result.perSecond.slice(from, to);
      const base = median(before) ?? 0;
      const duringRatio = during.length > 0 && base > 0 ? during.reduce((a, b) => a + b, 0) / during.length / base : undefined;
      result = { ...result, recovery: { node: 2, killedAtS, caughtUpAtS, recoveryS: caughtUpAtS === undefined ? undefined : caughtUpAtS - killedAtS, duringRatio } };
    }
    if (o.chart !== undefined) {
      const spans = result.recovery?.caughtUpAtS !== undefined ? [{ label: 'replica 2 recovering', fromS: result.recovery.killedAtS, toS: result.recovery.caughtUpAtS, series: 0 }] : [];
      writeFileSync(o.chart, renderTimelineSvg({ title: `ops/s per second (${result.checkpoints} checkpoints)`, yLabel: 'ops/s', series: [{ label: result.checkpoints, values: result.perSecond }], spans }));
    }
    printResult(result, o, print);
    return result;
  } finally {
    if (spawned !== undefined) {
      await downCommand({ dir: spawned.dir }, () => undefined);
      rmSync(spawned.dir, { recursive: true, force: true });
    }
  }
}

/**
 * `bench --attack`: one closed-loop run of two phases of --duration each; the attack starts at
 * the boundary. Phase figures come from completions inside each phase.
 */
async function attackBench(spawned: { dir: string; cf: ClusterFile }, o: BenchOptions, print: (s: string) => void): Promise<BenchResult> {
  const attack = o.attack!;
  const ref = { dir: spawned.dir };
  const phaseMs = o.durationS * 1000;
  const warmupMs = (o.warmupS ?? 1) * 1000;
  const measureFrom = performance.now() + warmupMs + 1000;
  const boundary = measureFrom + phaseMs;
  const end = boundary + phaseMs;
  const ops: { client: number; t0: number; t1: number }[] = [];
  let stop: (() => Promise<void>) | undefined;
  try {
    const starting = startAttack(spawned.dir, spawned.cf, attack, o, boundary).then((a) => {
      stop = a.stop;
      return a;
    });
    // Peak memory per node at the end of the fault-free phase (read just before the attack).
    const basePeaks = new Promise<void>((r) => setTimeout(r, Math.max(0, boundary - 200 - performance.now()))).then(() => memoryPeaks(spawned.cf));
    const [loaded, started] = await Promise.all([
      runLoad(
        ref,
        { ...o, durationS: 2 * o.durationS },
        progressLine(o, 2 * o.durationS, (elapsed) => (elapsed < o.durationS ? 'fault-free' : `attack ${attack}`)),
        measureFrom,
        (client, t0, t1) => ops.push({ client, t0, t1 }),
      ),
      starting,
    ]);
    if (o.progress !== false) process.stderr.write('\n');
    const viewAfter = (await currentPrimary(spawned.cf)).view;
    const memory = worstMemory(await basePeaks, await memoryPeaks(spawned.cf), started.attacker);
    const phase = (from: number, to: number) => ops.filter((x) => x.t0 >= from && x.t1 <= to);
    const base = phase(measureFrom, boundary);
    const attacked = phase(boundary, end);
    const p50 = (xs: typeof ops) => percentile(xs.map((x) => x.t1 - x.t0).sort((a, b) => a - b), 50);
    const mean = (xs: typeof ops) => (xs.length === 0 ? 0 : xs.reduce((a, x) => a + (x.t1 - x.t0), 0) / xs.length);
    const baseOps = base.length / o.durationS;
    const attackedOps = attacked.length / o.durationS;
    let result: BenchResult = {
      ...loaded,
      attack: {
        name: attack,
        detail: started.detail,
        baseOpsPerS: baseOps,
        attackedOpsPerS: attackedOps,
        ratio: baseOps > 0 ? attackedOps / baseOps : 0,
        baseP50Ms: base.length > 0 ? p50(base) : 0,
        attackedP50Ms: attacked.length > 0 ? p50(attacked) : 0,
        ...(attack === 'unfair-primary'
          ? { victimMeanMs: mean(attacked.filter((x) => x.client === victimClient)), othersMeanMs: mean(attacked.filter((x) => x.client !== victimClient)) }
          : {}),
        viewBefore: started.viewBefore,
        viewAfter,
        ...(memory === undefined ? {} : { memory }),
      },
    };
    result = withTimeline(result, o, print);
    if (o.chart !== undefined) {
      writeFileSync(
        o.chart,
        renderTimelineSvg({
          title: `ops/s per second: fault-free, then ${attack} (${started.detail})`,
          yLabel: 'ops/s',
          series: [{ label: attack, values: result.perSecond }],
          spans: [{ label: `attack: ${attack}`, fromS: o.durationS, toS: 2 * o.durationS, series: 0 }],
        }),
      );
    }
    print(`attack: ${attack} on ${started.detail}`);
    printResult(result, o, print);
    return result;
  } finally {
    if (stop !== undefined) await stop();
    await downCommand({ dir: spawned.dir }, () => undefined);
    rmSync(spawned.dir, { recursive: true, force: true });
  }
}
