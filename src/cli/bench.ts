/**
 * `bulwark bench`: closed-loop clients against a cluster, with a progress bar; ends with
 * exactly one line
 *   bench: ops_per_s=<X> p50_ms=<Y> p99_ms=<Z> clients=<C> size=<B> nodes=<N> u=<U> r=<R> durability=<D>
 * Against the cluster in --dir (default: the one `bulwark up` made), or with --spawn a
 * temporary local cluster that is stopped and removed afterwards.
 *
 * Each client runs one operation at a time: a put of `size` bytes or, with probability
 * read-ratio, a get, on 100 keys of its own. The first second is warm-up and not counted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../services/kv/client.ts';
import type { TcpClient } from '../runtime/client.ts';
import type { ClusterFile } from '../runtime/cluster-file.ts';
import { connectClient, resolveCluster } from './kv.ts';
import { downCommand, initLoopbackCluster, spawnNode, waitServing } from './cluster.ts';
import type { DurabilityMode } from '../core/config.ts';

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
  readonly warmupS?: number;
  /** Write progress to stderr (default true). */
  readonly progress?: boolean;
}

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
  readonly ops: number;
  readonly errors: number;
}

/** The single summary line. */
export function benchLine(b: BenchResult): string {
  return `bench: ops_per_s=${b.opsPerS.toFixed(0)} p50_ms=${b.p50Ms.toFixed(2)} p99_ms=${b.p99Ms.toFixed(2)} clients=${b.clients} size=${b.size} nodes=${b.nodes} u=${b.u} r=${b.r} durability=${b.durability}`;
}

/** The `p`th percentile (nearest rank, rounded down) of ascending `sorted`; 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Starts a throwaway local cluster for --spawn; returns its directory. */
export async function spawnTemporaryCluster(u: number, r: number, durability: DurabilityMode = 'parallel'): Promise<{ dir: string; cf: ClusterFile }> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-bench-'));
  const cf = await initLoopbackCluster({ dir, u, r, durability });
  for (const n of cf.nodes) spawnNode(dir, n.id);
  await waitServing(cf, cf.nodes.map((n) => n.id));
  return { dir, cf };
}

/** Runs the load against an already running cluster. */
export async function runLoad(ref: { dir?: string; config?: string }, o: BenchOptions, onSecond?: (elapsedS: number, opsLastSecond: number) => void): Promise<BenchResult> {
  const { cf } = resolveCluster(ref);
  const clients: TcpClient[] = [];
  for (let i = 0; i < o.clients; i++) clients.push(await connectClient(ref));
  const value = 'x'.repeat(o.size);
  const warmupMs = (o.warmupS ?? 1) * 1000;
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const end = measureFrom + o.durationS * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let lastSecondOps = 0;
  const ticker = setInterval(() => {
    const elapsed = (performance.now() - measureFrom) / 1000;
    onSecond?.(Math.max(0, elapsed), lastSecondOps);
    lastSecondOps = 0;
  }, 1000);
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
          // Counted; a closed-loop client keeps going.
          errors++;
          continue;
        }
        const t1 = performance.now();
        lastSecondOps++;
        if (t0 >= measureFrom && t1 <= end) latencies.push(t1 - t0);
      }
    }),
  );
  clearInterval(ticker);
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  return {
    opsPerS: latencies.length / o.durationS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    clients: o.clients,
    size: o.size,
    nodes: cf.nodes.length,
    u: cf.protocol.u,
    r: cf.protocol.r,
    durability: cf.protocol.durability ?? 'parallel',
    ops: latencies.length,
    errors,
  };
}

/** `bulwark bench`. */
export async function benchCommand(o: BenchOptions, print: (s: string) => void = console.log): Promise<BenchResult> {
  let spawned: { dir: string; cf: ClusterFile } | undefined;
  if (o.spawn === true) spawned = await spawnTemporaryCluster(o.u ?? 1, o.r ?? 1, o.durability);
  const ref = spawned !== undefined ? { dir: spawned.dir } : o.config !== undefined ? { config: o.config } : { dir: o.dir ?? 'cluster' };
  const barWidth = 30;
  try {
    const result = await runLoad(ref, o, (elapsed, last) => {
      if (o.progress === false) return;
      const done = Math.min(1, elapsed / o.durationS);
      const bar = '#'.repeat(Math.round(done * barWidth)).padEnd(barWidth, '.');
      process.stderr.write(`\r  [${bar}] ${elapsed.toFixed(0).padStart(3)}/${o.durationS}s  ${String(last).padStart(6)} ops/s`);
    });
    if (o.progress !== false) process.stderr.write('\n');
    if (o.json === true) print(JSON.stringify(result));
    if (result.errors > 0) print(`bench: ${result.errors} operation(s) failed`);
    print(benchLine(result));
    return result;
  } finally {
    if (spawned !== undefined) {
      await downCommand({ dir: spawned.dir }, () => undefined);
      rmSync(spawned.dir, { recursive: true, force: true });
    }
  }
}
