/**
 * `bulwark compare`: bulwark next to the systems its users would pick instead (etcd, ZooKeeper,
 * Redis), each started on loopback with its data on disk, driven by one closed-loop load
 * generator through per-system client adapters, with YCSB-like workloads.
 *
 * This module holds the parts that need no peer: the workloads, option parsing, which systems
 * can run here, the load generator (over any {@link KvAdapter}), medians, and the report
 * (Markdown table, SVG chart, raw JSON). The peers themselves are started and spoken to in
 * compare-systems.ts; the command that ties both together is {@link compareCommand}.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'commander';
import { BulwarkError } from '../core/errors.ts';
import { median, percentile } from './bench.ts';
import { groupedBarChart } from './chart.ts';

/** The systems `bulwark compare` knows, in table order. */
export const systemNames = ['etcd', 'zookeeper', 'redis-always', 'redis-everysec', 'bulwark-cft', 'bulwark-bft'] as const;
/** One of {@link systemNames}. */
export type SystemName = (typeof systemNames)[number];

/** The workloads, in table order. */
export const workloadNames = ['A', 'B', 'C', 'W'] as const;
/** One of {@link workloadNames}. */
export type WorkloadName = (typeof workloadNames)[number];

/** Keys every system holds before measuring (`k0000` ... `k0999`). */
export const keyCount = 1000;
/** Value bytes of the loaded records and of A/B/C updates: YCSB's record (10 fields of 100 bytes) rounded to 1 KiB. */
export const recordBytes = 1024;

/** One YCSB-like workload: each operation reads with probability `readRatio`, else writes `valueBytes`. */
export interface Workload {
  readonly name: WorkloadName;
  readonly readRatio: number;
  readonly valueBytes: number;
  /** One line for the report. */
  readonly title: string;
}

/** A: 50/50 read/update, B: 95/5, C: read-only, W: 100% 4 KiB writes; keys uniform over {@link keyCount}. */
export const workloads: Readonly<Record<WorkloadName, Workload>> = {
  A: { name: 'A', readRatio: 0.5, valueBytes: recordBytes, title: '50% reads, 50% updates of 1 KiB' },
  B: { name: 'B', readRatio: 0.95, valueBytes: recordBytes, title: '95% reads, 5% updates of 1 KiB' },
  C: { name: 'C', readRatio: 1, valueBytes: recordBytes, title: '100% reads' },
  W: { name: 'W', readRatio: 0, valueBytes: 4096, title: '100% writes of 4 KiB' },
};

/** Key `i` of the data set. */
export function keyName(i: number): string {
  return `k${String(i).padStart(4, '0')}`;
}

/** How the etcd adapter talks to etcd. */
export type EtcdClientKind = 'grpc' | 'http';

function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * Parses `--systems`: a comma-separated list of {@link systemNames}, plus `redis` (both Redis
 * rows) and `bulwark` (both bulwark rows). Returns them in table order without duplicates.
 * @throws InvalidArgumentError naming an unknown system.
 */
export function parseSystems(v: string): SystemName[] {
  const aliases: Record<string, readonly SystemName[]> = { redis: ['redis-always', 'redis-everysec'], bulwark: ['bulwark-cft', 'bulwark-bft'], zk: ['zookeeper'] };
  const want = new Set<SystemName>();
  const items = splitList(v);
  if (items.length === 0) throw new InvalidArgumentError('--systems needs at least one system');
  for (const s of items) {
    const k = s.toLowerCase();
    const alias = aliases[k];
    if (alias !== undefined) for (const a of alias) want.add(a);
    else if ((systemNames as readonly string[]).includes(k)) want.add(k as SystemName);
    else throw new InvalidArgumentError(`unknown system "${s}"; known: ${systemNames.join(', ')} (or redis, bulwark)`);
  }
  return systemNames.filter((s) => want.has(s));
}

/**
 * Parses `--workloads`: a comma-separated list of A, B, C, W (any case), returned in table order.
 * @throws InvalidArgumentError naming an unknown workload.
 */
export function parseWorkloads(v: string): WorkloadName[] {
  const want = new Set<WorkloadName>();
  const items = splitList(v);
  if (items.length === 0) throw new InvalidArgumentError('--workloads needs at least one workload');
  for (const s of items) {
    const k = s.toUpperCase();
    if (!(workloadNames as readonly string[]).includes(k)) throw new InvalidArgumentError(`unknown workload "${s}"; known: ${workloadNames.join(', ')}`);
    want.add(k as WorkloadName);
  }
  return workloadNames.filter((w) => want.has(w));
}

// ---------------------------------------------------------------------------------------------
// What a system needs, and skipping the ones this machine lacks.

/** Something a system needs on this machine to run. */
export interface Requirement {
  readonly kind: 'binary' | 'file' | 'module';
  /** Binary on PATH, absolute file path, or npm package name. */
  readonly name: string;
  /** The command that provides it. */
  readonly install: string;
}

const aptEtcd = 'apt-get install -y etcd-server etcd-client';
const aptZk = 'apt-get install -y zookeeper';
const aptRedis = 'apt-get install -y redis-server';

/** Where Debian's zookeeper package puts the server jar (its manifest names the dependencies). */
export const zookeeperJar = '/usr/share/java/zookeeper.jar';

/** What each system needs: server binaries (Debian packages) and the Node client it is driven with. */
export function systemRequirements(system: SystemName, etcdClient: EtcdClientKind = 'grpc'): Requirement[] {
  switch (system) {
    case 'etcd':
      return [{ kind: 'binary', name: 'etcd', install: aptEtcd }, ...(etcdClient === 'grpc' ? [{ kind: 'module' as const, name: 'etcd3', install: 'npm install etcd3 (or use --etcd-client http)' }] : [])];
    case 'zookeeper':
      return [
        { kind: 'binary', name: 'java', install: aptZk },
        { kind: 'file', name: zookeeperJar, install: aptZk },
        { kind: 'module', name: 'node-zookeeper-client', install: 'npm install node-zookeeper-client' },
      ];
    case 'redis-always':
    case 'redis-everysec':
      return [
        { kind: 'binary', name: 'redis-server', install: aptRedis },
        { kind: 'module', name: 'ioredis', install: 'npm install ioredis' },
      ];
    case 'bulwark-cft':
    case 'bulwark-bft':
      return [];
  }
}

/** Looks things up on this machine (injectable for tests). */
export interface Probe {
  hasBinary(name: string): boolean;
  hasFile(path: string): boolean;
  hasModule(name: string): boolean;
}

/** The probe of this machine: PATH, the file system, and Node's module resolution from this package. */
export const machineProbe: Probe = {
  hasBinary(name) {
    for (const d of (process.env.PATH ?? '').split(delimiter)) {
      if (d === '') continue;
      try {
        accessSync(join(d, name), constants.X_OK);
        return true;
      } catch {
        // Not in this directory; try the next.
      }
    }
    return false;
  },
  hasFile(path) {
    return existsSync(path);
  },
  hasModule(name) {
    try {
      createRequire(import.meta.url).resolve(name);
      return true;
    } catch {
      // Not installed.
      return false;
    }
  },
};

/** The requirements of `system` that `probe` does not find. */
export function missingRequirements(system: SystemName, probe: Probe, etcdClient: EtcdClientKind = 'grpc'): Requirement[] {
  return systemRequirements(system, etcdClient).filter((r) => {
    if (r.kind === 'binary') return !probe.hasBinary(r.name);
    if (r.kind === 'file') return !probe.hasFile(r.name);
    return !probe.hasModule(r.name);
  });
}

/** The line printed for a skipped system: what is missing and how to install it. */
export function skipLine(system: SystemName, missing: readonly Requirement[]): string {
  const what = missing.map((m) => (m.kind === 'binary' ? `${m.name} not on PATH` : m.kind === 'file' ? `${m.name} missing` : `npm package ${m.name} not installed`)).join(', ');
  const how = [...new Set(missing.map((m) => m.install))].join('; ');
  return `${system}: skipped (${what}); install with: ${how}`;
}

/** Splits the wanted systems into those that can run here and the skip lines of the others. */
export function availableSystems(wanted: readonly SystemName[], probe: Probe, etcdClient: EtcdClientKind = 'grpc'): { run: SystemName[]; skipped: { system: SystemName; line: string }[] } {
  const run: SystemName[] = [];
  const skipped: { system: SystemName; line: string }[] = [];
  for (const s of wanted) {
    const missing = missingRequirements(s, probe, etcdClient);
    if (missing.length === 0) run.push(s);
    else skipped.push({ system: s, line: skipLine(s, missing) });
  }
  return { run, skipped };
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/** One closed-loop client's connection to a system under test. */
export interface KvAdapter {
  /** Reads `key`; resolves true when it holds a value. */
  get(key: string): Promise<boolean>;
  /** Overwrites `key` with `value`. */
  put(key: string, value: string): Promise<void>;
  /** Creates `key` during the load phase (default: {@link KvAdapter.put}). */
  insert?(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

/** Figures of one load run. */
export interface LoadResult {
  readonly opsPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Operations completed inside the measured window. */
  readonly ops: number;
  readonly reads: number;
  readonly writes: number;
  /** Operations that failed, read a loaded key as absent, or were still running at the end. */
  readonly errors: number;
  readonly firstError?: string;
}

/** Options of {@link driveLoad}. */
export interface LoadOptions {
  readonly durationS: number;
  /** Seconds of load before the measured window (default 1). */
  readonly warmupS?: number;
  /** Seed of the operation mix and key choice (default 1). */
  readonly seed?: number;
  /** Ends the run early (Ctrl-C); operations in flight are abandoned. */
  readonly signal?: AbortSignal;
  /** Seconds an operation may still run after the window before it is abandoned (default 10). */
  readonly graceS?: number;
  /** Called when the measured window opens and when it closes (for CPU accounting). */
  readonly onWindow?: (edge: 'open' | 'close') => void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs `w` with one closed-loop client per adapter: each does one operation at a time, a read
 * with probability `w.readRatio` or else a write of `w.valueBytes`, on a key drawn uniformly
 * from the {@link keyCount} loaded keys. Operations that start in the warm-up or end after the
 * window are not counted; ops/s is the count inside the window over its length.
 */
export async function driveLoad(adapters: readonly KvAdapter[], w: Workload, o: LoadOptions): Promise<LoadResult> {
  const value = 'v'.repeat(w.valueBytes);
  const start = performance.now();
  const measureFrom = start + (o.warmupS ?? 1) * 1000;
  const end = measureFrom + o.durationS * 1000;
  // One promise that settles when in-flight operations are to be abandoned.
  let giveUp: () => void = () => undefined;
  const abandoned = new Promise<'abandoned'>((resolve) => {
    giveUp = () => {
      resolve('abandoned');
    };
  });
  const graceTimer = setTimeout(giveUp, end - start + (o.graceS ?? 10) * 1000);
  // The window opens once and closes once: by its timer, or when the clients stop, whichever is
  // first (a timer can fire late on a busy machine).
  let windowState: 'before' | 'open' | 'closed' = 'before';
  const closeWindow = (): void => {
    if (windowState !== 'open') return;
    windowState = 'closed';
    o.onWindow?.('close');
  };
  const windowTimers = o.onWindow === undefined ? [] : [
    setTimeout(() => {
      if (windowState !== 'before') return;
      windowState = 'open';
      o.onWindow?.('open');
    }, measureFrom - start),
    setTimeout(closeWindow, end - start),
  ];
  const onAbort = (): void => {
    giveUp();
  };
  o.signal?.addEventListener('abort', onAbort);
  // A function, so that the compiler does not narrow a flag that changes across awaits.
  const aborted = (): boolean => o.signal?.aborted === true;
  const latencies: number[] = [];
  let reads = 0;
  let writes = 0;
  let errors = 0;
  let firstError: string | undefined;
  const fail = (e: unknown): void => {
    errors++;
    firstError ??= e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  };
  await Promise.all(
    adapters.map(async (a, ci) => {
      let seed = ((o.seed ?? 1) * 7919 + ci * 104_729 + 1) >>> 0;
      const rand = (): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 0x1_0000_0000;
      };
      while (performance.now() < end && !aborted()) {
        const read = rand() < w.readRatio;
        const key = keyName(Math.floor(rand() * keyCount));
        const t0 = performance.now();
        let outcome: boolean | 'abandoned';
        try {
          outcome = await Promise.race([read ? a.get(key) : a.put(key, value).then(() => true), abandoned]);
        } catch (e) {
          fail(e);
          // A failing system must not turn the loop into a busy spin.
          await sleep(10);
          continue;
        }
        if (outcome === 'abandoned') {
          if (!aborted()) fail(new Error(`operation still running ${o.graceS ?? 10} s after the window`));
          return;
        }
        if (!outcome) {
          fail(new Error(`read of loaded key ${key} found nothing`));
          continue;
        }
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= end) {
          latencies.push(t1 - t0);
          if (read) reads++;
          else writes++;
        }
      }
    }),
  );
  closeWindow();
  clearTimeout(graceTimer);
  for (const t of windowTimers) clearTimeout(t);
  o.signal?.removeEventListener('abort', onAbort);
  latencies.sort((x, y) => x - y);
  return {
    opsPerS: latencies.length / o.durationS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    ops: latencies.length,
    reads,
    writes,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** Writes every key once with a {@link recordBytes} value, the keys spread over the adapters. */
export async function loadKeys(adapters: readonly KvAdapter[]): Promise<void> {
  if (adapters.length === 0) throw new BulwarkError('usage', 'loading keys needs at least one client');
  const value = 'r'.repeat(recordBytes);
  await Promise.all(
    adapters.map(async (a, ci) => {
      for (let i = ci; i < keyCount; i += adapters.length) {
        const k = keyName(i);
        await (a.insert !== undefined ? a.insert(k, value) : a.put(k, value));
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// CPU accounting: on two shared cores, CPU time per operation explains most of the throughput.

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux). */
export const clockTicksPerS = 100;

/**
 * CPU seconds (user + system, all threads) from the text of /proc/<pid>/stat; undefined when it
 * cannot be parsed. The command name may hold spaces and parentheses, so fields are counted
 * from the last ")".
 */
export function procStatCpuS(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ")": state is field 3; utime and stime are fields 14 and 15.
  const f = stat.slice(close + 2).trim().split(/\s+/);
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return (utime + stime) / clockTicksPerS;
}

/** CPU seconds used so far by the processes `pids` (those that are gone count 0). */
export function processesCpuS(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += procStatCpuS(readFileSync(`/proc/${pid}/stat`, 'utf8')) ?? 0;
    } catch {
      // Gone, or no /proc: counts nothing.
    }
  }
  return total;
}

/** CPU seconds this process (the load generator and its clients) has used so far. */
export function selfCpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Runs, medians and the report.

/** One measured run of one system on one workload. */
export interface CellRun extends LoadResult {
  readonly system: SystemName;
  readonly workload: WorkloadName;
  /** Round number, from 1. */
  readonly round: number;
  /** The machine's 1-minute load average at the end of the run (this run's processes included). */
  readonly load1?: number;
  /** CPU milliseconds the system's server processes used per counted operation in the window. */
  readonly serverCpuMsPerOp?: number;
  /** CPU milliseconds the load generator (with the system's client library) used per counted operation. */
  readonly loaderCpuMsPerOp?: number;
}

/** A system's run that could not be measured (start failed, clients failed, ...). */
export interface FailedRound {
  readonly system: SystemName;
  readonly round: number;
  readonly error: string;
}

/** The cell of one system and workload: the median of each figure over its runs. */
export interface CellSummary {
  readonly system: SystemName;
  readonly workload: WorkloadName;
  readonly runs: readonly CellRun[];
  readonly opsPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Errors over all runs of the cell. */
  readonly errors: number;
  /** Median server CPU ms per operation, when measured. */
  readonly serverCpuMsPerOp?: number;
  /** Median load-generator CPU ms per operation, when measured. */
  readonly loaderCpuMsPerOp?: number;
}

function optionalMedian<K extends string>(k: K, xs: readonly (number | undefined)[]): Partial<Record<K, number>> {
  const m = median(xs.filter((x): x is number => x !== undefined));
  return m === undefined ? {} : ({ [k]: m } as Partial<Record<K, number>>);
}

/** One summary per (system, workload) that has runs, in table order; each figure is the median of its runs. */
export function summarise(runs: readonly CellRun[]): CellSummary[] {
  const out: CellSummary[] = [];
  for (const system of systemNames) {
    for (const workload of workloadNames) {
      const rs = runs.filter((r) => r.system === system && r.workload === workload).sort((a, b) => a.round - b.round);
      if (rs.length === 0) continue;
      out.push({
        system,
        workload,
        runs: rs,
        opsPerS: median(rs.map((r) => r.opsPerS))!,
        p50Ms: median(rs.map((r) => r.p50Ms))!,
        p99Ms: median(rs.map((r) => r.p99Ms))!,
        errors: rs.reduce((n, r) => n + r.errors, 0),
        ...optionalMedian('serverCpuMsPerOp', rs.map((r) => r.serverCpuMsPerOp)),
        ...optionalMedian('loaderCpuMsPerOp', rs.map((r) => r.loaderCpuMsPerOp)),
      });
    }
  }
  return out;
}

/** Formats ops/s as a whole number with thousands separators (1,234). */
export function formatOps(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Formats milliseconds: two decimals below 10 ms, one below 100, none above. */
export function formatMs(n: number): string {
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
}

/**
 * The Markdown tables of the summaries: ops/s per system (rows) and workload (columns), then one
 * row per cell with ops/s, p50 and p99 (medians), each run's ops/s, and the median CPU time per
 * operation of the servers and of the load generator. Cells without a figure get a dash.
 */
export function markdownTables(cells: readonly CellSummary[], systems: readonly SystemName[], wl: readonly WorkloadName[]): string {
  const find = (s: SystemName, w: WorkloadName): CellSummary | undefined => cells.find((c) => c.system === s && c.workload === w);
  const lines: string[] = [];
  lines.push(`| ops/s (median) | ${wl.join(' | ')} |`);
  lines.push(`|---|${wl.map(() => '---:').join('|')}|`);
  for (const s of systems) lines.push(`| ${s} | ${wl.map((w) => { const c = find(s, w); return c === undefined ? '-' : formatOps(c.opsPerS); }).join(' | ')} |`);
  lines.push('');
  lines.push('| System | Workload | ops/s | p50 ms | p99 ms | ops/s of each run | server CPU ms/op | loader CPU ms/op | errors |');
  lines.push('|---|---|---:|---:|---:|---|---:|---:|---:|');
  const cpu = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(2));
  for (const s of systems) {
    for (const w of wl) {
      const c = find(s, w);
      if (c === undefined) lines.push(`| ${s} | ${w} | - | - | - | - | - | - | - |`);
      else lines.push(`| ${s} | ${w} | ${formatOps(c.opsPerS)} | ${formatMs(c.p50Ms)} | ${formatMs(c.p99Ms)} | ${c.runs.map((r) => formatOps(r.opsPerS)).join(', ')} | ${cpu(c.serverCpuMsPerOp)} | ${cpu(c.loaderCpuMsPerOp)} | ${c.errors} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The chart of the summaries: one group of bars per workload, one bar per system with a cell. */
export function compareChart(cells: readonly CellSummary[], systems: readonly SystemName[], wl: readonly WorkloadName[], title: string): string {
  return groupedBarChart({
    title,
    yLabel: 'ops/s (median)',
    series: systems,
    groups: wl.map((w) => ({ label: `${w}: ${workloads[w].title}`.replace(' of 1 KiB', '').replace(' of 4 KiB', ' (4 KiB)'), values: Object.fromEntries(systems.map((s) => [s, cells.find((c) => c.system === s && c.workload === w)?.opsPerS])) })),
  });
}

/** Everything one `bulwark compare` measured; written as the raw JSON next to the report. */
export interface CompareReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly settings: {
    readonly systems: readonly SystemName[];
    readonly workloads: readonly WorkloadName[];
    readonly clients: number;
    readonly durationS: number;
    readonly warmupS: number;
    readonly runs: number;
    readonly keys: number;
    readonly recordBytes: number;
    readonly etcdClient: EtcdClientKind;
  };
  readonly environment: Readonly<Record<string, string>>;
  /** One line per system: how it was run and with which client. */
  readonly setups: Readonly<Partial<Record<SystemName, string>>>;
  readonly skipped: readonly { readonly system: SystemName; readonly line: string }[];
  readonly failed: readonly FailedRound[];
  readonly runs: readonly CellRun[];
}

/** First line of the generated part of a report file. */
export const generatedBegin = '<!-- bulwark compare: generated from here to the end marker; a new run replaces it -->';
/** Last line of the generated part of a report file. */
export const generatedEnd = '<!-- bulwark compare: end of generated part -->';

/** The generated Markdown section of a report: settings, environment, tables, chart, notes. */
export function renderSection(r: CompareReport, chartFile: string, jsonFile: string): string {
  const cells = summarise(r.runs);
  const shown = r.settings.systems.filter((s) => !r.skipped.some((k) => k.system === s));
  const l: string[] = [generatedBegin, ''];
  l.push(`Measured ${r.startedAt} to ${r.finishedAt} with:`);
  l.push('');
  l.push('```sh');
  l.push(r.command);
  l.push('```');
  l.push('');
  l.push(
    `${r.settings.clients} closed-loop clients in one Node process; ${r.settings.keys} keys loaded with ${r.settings.recordBytes}-byte values before measuring; each run ${r.settings.durationS} s measured after 1 s of warm-up, each system warmed up for ${r.settings.warmupS} s of workload A after loading; each cell is the median of ${r.settings.runs} run(s), rounds interleaved (every system once per round, started fresh).`,
  );
  l.push('');
  l.push(`Environment: ${Object.entries(r.environment).map(([k, v]) => `${k} ${v}`).join('; ')}.`);
  l.push('');
  for (const s of shown) if (r.setups[s] !== undefined) l.push(`- **${s}**: ${r.setups[s]}`);
  for (const k of r.skipped) l.push(`- ${k.line}`);
  l.push('');
  l.push(markdownTables(cells, shown, r.settings.workloads).trimEnd());
  l.push('');
  for (const f of r.failed) l.push(`- ${f.system}, round ${f.round}: not measured: ${f.error}`);
  for (const c of cells) if (c.errors > 0) l.push(`- ${c.system} / ${c.workload}: ${c.errors} failed operation(s); first: ${c.runs.find((x) => x.firstError !== undefined)?.firstError ?? '?'}`);
  if (r.failed.length > 0 || cells.some((c) => c.errors > 0)) l.push('');
  l.push(`![ops/s per system and workload](${chartFile})`);
  l.push('');
  l.push(`Every run's figures: [${jsonFile}](${jsonFile}).`);
  l.push('');
  l.push(generatedEnd);
  return l.join('\n') + '\n';
}

/**
 * Puts `section` into a report file's text: replaces the part between the markers, appends it to
 * a file that has none (keeping what is there), or starts a new file.
 */
export function spliceSection(existing: string | undefined, section: string): string {
  if (existing === undefined || existing.trim() === '') return `# bulwark next to etcd, ZooKeeper and Redis\n\n${section}`;
  const b = existing.indexOf(generatedBegin);
  const e = existing.indexOf(generatedEnd);
  if (b >= 0 && e > b) return existing.slice(0, b) + section.trimEnd() + existing.slice(e + generatedEnd.length);
  return `${existing.trimEnd()}\n\n${section}`;
}

/** Paths of the chart and raw JSON that go with a report file `out`. */
export function companionPaths(out: string): { svg: string; json: string } {
  const stem = out.endsWith('.md') ? out.slice(0, -3) : out;
  return { svg: `${stem}.svg`, json: `${stem}.json` };
}

// ---------------------------------------------------------------------------------------------
// The command.

/** Options of `bulwark compare`. */
export interface CompareOptions {
  readonly systems: readonly SystemName[];
  readonly workloads: readonly WorkloadName[];
  readonly clients: number;
  readonly durationS: number;
  readonly runs: number;
  /** Seconds of workload A after loading, before the first measured run (default 10). */
  readonly warmupS: number;
  readonly out: string;
  /** Keep the temporary directory (data and logs) instead of removing it. */
  readonly keep: boolean;
  readonly etcdClient: EtcdClientKind;
  /** The command line, for the report. */
  readonly command: string;
  /** How to look for binaries and client packages (default: {@link machineProbe}). */
  readonly probe?: Probe;
}

function tryRun(cmd: string, args: readonly string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).trim();
  } catch {
    // Not available: the environment line leaves it out.
    return undefined;
  }
}

function environment(): Record<string, string> {
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  const commit = tryRun('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']);
  const cpu = cpus();
  return {
    node: process.version,
    cores: String(cpu.length),
    cpu: cpu[0]?.model.trim() ?? '?',
    memory: `${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    kernel: release(),
    ...(commit === undefined ? {} : { 'bulwark commit': commit }),
  };
}

/**
 * `bulwark compare`: for each round, starts each available system afresh (on loopback, data in
 * a temporary directory), loads the keys, warms it up, runs each workload once, and stops it;
 * then prints the tables and writes the report, its chart and the raw JSON. Everything started
 * is stopped at the end, on an error, and on Ctrl-C (a second Ctrl-C kills at once).
 */
export async function compareCommand(o: CompareOptions, print: (s: string) => void = console.log, progress: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<CompareReport> {
  const { startSystem, killAllNow } = await import('./compare-systems.ts');
  const startedAt = new Date().toISOString();
  // The machine's load before anything starts: how busy it was with other work.
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
  // Read now: the checkout may change while a long run goes on.
  const env = environment();
  const { run, skipped } = availableSystems(o.systems, o.probe ?? machineProbe, o.etcdClient);
  for (const k of skipped) print(k.line);
  if (run.length === 0) throw new BulwarkError('usage', 'no system to compare: every one asked for is skipped (see above)');
  const root = mkdtempSync(join(tmpdir(), 'bulwark-compare-'));
  const abort = new AbortController();
  const aborted = (): boolean => abort.signal.aborted;
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    if (signals === 1) {
      progress('compare: stopping everything (Ctrl-C again to kill at once)');
      abort.abort();
    } else {
      killAllNow();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const runs: CellRun[] = [];
  const failed: FailedRound[] = [];
  const setups: Partial<Record<SystemName, string>> = {};
  try {
    for (let round = 1; round <= o.runs; round++) {
      for (const system of run) {
        if (aborted()) break;
        const dir = join(root, `round-${round}`, system);
        mkdirSync(dir, { recursive: true });
        progress(`round ${round}/${o.runs}: ${system}: starting`);
        let sys: Awaited<ReturnType<typeof startSystem>> | undefined;
        const adapters: KvAdapter[] = [];
        try {
          sys = await startSystem(system, { dir, etcdClient: o.etcdClient, clients: o.clients, signal: abort.signal });
          setups[system] = sys.setup;
          for (let i = 0; i < o.clients; i++) adapters.push(await sys.connect(i));
          await loadKeys(adapters);
          if (o.warmupS > 0) {
            const wu = await driveLoad(adapters, workloads.A, { durationS: o.warmupS, warmupS: 0, seed: 1000 + round, signal: abort.signal });
            if (!aborted()) progress(`round ${round}/${o.runs}: ${system}: warm-up ${formatOps(wu.opsPerS)} ops/s (not counted)`);
          }
          for (const w of o.workloads) {
            if (aborted()) break;
            const pids = sys.pids();
            const cpu = { server: 0, loader: 0 };
            const res = await driveLoad(adapters, workloads[w], {
              durationS: o.durationS,
              seed: round * 31 + workloadNames.indexOf(w),
              signal: abort.signal,
              onWindow: (edge) => {
                const sign = edge === 'open' ? -1 : 1;
                cpu.server += sign * processesCpuS(pids);
                cpu.loader += sign * selfCpuS();
              },
            });
            if (aborted()) break;
            const load1 = Math.round(loadavg()[0]! * 100) / 100;
            const perOp = (x: number): number | undefined => (res.ops > 0 && x > 0 ? Math.round((x * 1000 * 1000) / res.ops) / 1000 : undefined);
            const serverCpuMsPerOp = perOp(cpu.server);
            const loaderCpuMsPerOp = perOp(cpu.loader);
            runs.push({ system, workload: w, round, ...res, load1, ...(serverCpuMsPerOp === undefined ? {} : { serverCpuMsPerOp }), ...(loaderCpuMsPerOp === undefined ? {} : { loaderCpuMsPerOp }) });
            progress(`round ${round}/${o.runs}: ${system} ${w}: ${formatOps(res.opsPerS)} ops/s  p50 ${formatMs(res.p50Ms)} ms  p99 ${formatMs(res.p99Ms)} ms  cpu/op ${serverCpuMsPerOp?.toFixed(2) ?? '-'} + ${loaderCpuMsPerOp?.toFixed(2) ?? '-'} ms  load ${load1.toFixed(1)}${res.errors > 0 ? `  errors ${res.errors} (${res.firstError ?? ''})` : ''}`);
          }
        } catch (e) {
          if (aborted()) break;
          const msg = e instanceof Error ? e.message : String(e);
          failed.push({ system, round, error: msg.split('\n')[0]! });
          progress(`round ${round}/${o.runs}: ${system}: failed: ${msg}`);
        } finally {
          await Promise.allSettled(adapters.map((a) => a.close()));
          if (sys !== undefined) await sys.stop();
          if (!o.keep) rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    killAllNow();
    if (o.keep) progress(`compare: data and logs kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
  if (aborted()) throw new BulwarkError('interrupted', 'compare: interrupted; nothing written');
  const report: CompareReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    command: o.command,
    settings: { systems: o.systems, workloads: o.workloads, clients: o.clients, durationS: o.durationS, warmupS: o.warmupS, runs: o.runs, keys: keyCount, recordBytes, etcdClient: o.etcdClient },
    environment: { ...env, 'load average (1, 5, 15 min) before starting': loadAtStart, 'at the end': loadavg().map((x) => x.toFixed(2)).join(' ') },
    setups,
    skipped,
    failed,
    runs,
  };
  const cells = summarise(runs);
  print(markdownTables(cells, run, o.workloads).trimEnd());
  for (const f of failed) print(`${f.system}, round ${f.round}: not measured: ${f.error}`);
  const paths = companionPaths(o.out);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(paths.svg, compareChart(cells, run, o.workloads, `ops/s, median of ${o.runs} run(s) of ${o.durationS} s, ${o.clients} clients`));
  writeFileSync(paths.json, JSON.stringify(report, null, 2) + '\n');
  const existing = existsSync(o.out) ? readFileSync(o.out, 'utf8') : undefined;
  writeFileSync(o.out, spliceSection(existing, renderSection(report, basename(paths.svg), basename(paths.json))));
  print(`compare: wrote ${o.out}, ${paths.svg}, ${paths.json}`);
  return report;
}
