import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import fc from 'fast-check';
import { BulwarkError } from '../core/errors.ts';
import {
  availableSystems,
  companionPaths,
  compareCommand,
  driveLoad,
  generatedBegin,
  generatedEnd,
  keyCount,
  keyName,
  loadKeys,
  markdownTables,
  procStatCpuS,
  processesCpuS,
  missingRequirements,
  parseSystems,
  parseWorkloads,
  renderSection,
  spliceSection,
  summarise,
  systemNames,
  workloads,
  type CellRun,
  type CompareReport,
  type KvAdapter,
  type Probe,
} from './compare.ts';
import { median } from './bench.ts';

const nothingInstalled: Probe = { hasBinary: () => false, hasFile: () => false, hasModule: () => false };
const everythingInstalled: Probe = { hasBinary: () => true, hasFile: () => true, hasModule: () => true };

test('parseSystems: names and aliases in table order, unknown names refused', () => {
  assert.deepEqual(parseSystems('bulwark-bft, etcd'), ['etcd', 'bulwark-bft']);
  assert.deepEqual(parseSystems('redis,bulwark,zk,etcd,redis-always'), [...systemNames]);
  assert.throws(() => parseSystems('etcd,mysql'), (e: unknown) => e instanceof InvalidArgumentError && /unknown system "mysql"/.test(e.message));
  assert.throws(() => parseSystems(' , '), InvalidArgumentError);
});

test('parseWorkloads: A, B, C, W in any case and order; others refused', () => {
  assert.deepEqual(parseWorkloads('w,a,C'), ['A', 'C', 'W']);
  assert.throws(() => parseWorkloads('A,E'), (e: unknown) => e instanceof InvalidArgumentError && /unknown workload "E"/.test(e.message));
});

test('workloads: the YCSB-like mixes and sizes the report names', () => {
  assert.equal(workloads.A.readRatio, 0.5);
  assert.equal(workloads.B.readRatio, 0.95);
  assert.equal(workloads.C.readRatio, 1);
  assert.equal(workloads.W.readRatio, 0);
  assert.equal(workloads.W.valueBytes, 4096);
  assert.equal(keyName(0), 'k0000');
  assert.equal(keyName(keyCount - 1), 'k0999');
});

test('skip logic: a missing binary, file or client package skips the system with its install line', () => {
  const { run, skipped } = availableSystems([...systemNames], nothingInstalled);
  assert.deepEqual(run, ['bulwark-cft', 'bulwark-bft'], 'bulwark needs nothing outside this checkout');
  assert.deepEqual(skipped.map((s) => s.system), ['etcd', 'zookeeper', 'redis-always', 'redis-everysec']);
  const line = (s: string): string => skipped.find((x) => x.system === s)!.line;
  assert.match(line('etcd'), /^etcd: skipped \(etcd not on PATH, npm package etcd3 not installed\); install with: apt-get install -y etcd-server etcd-client; npm install etcd3/);
  assert.match(line('zookeeper'), /java not on PATH, \/usr\/share\/java\/zookeeper\.jar missing.*apt-get install -y zookeeper;/);
  assert.equal((line('zookeeper').match(/apt-get install -y zookeeper/g) ?? []).length, 1, 'one install command, not one per missing part');
  assert.match(line('redis-always'), /apt-get install -y redis-server; npm install ioredis/);
  assert.deepEqual(availableSystems([...systemNames], everythingInstalled).skipped, []);
  // Only what is really missing is named.
  const onlyEtcdBinary: Probe = { hasBinary: (b) => b !== 'etcd', hasFile: () => true, hasModule: () => true };
  assert.deepEqual(missingRequirements('etcd', onlyEtcdBinary).map((m) => m.name), ['etcd']);
  // The HTTP gateway client needs no npm package.
  const noModules: Probe = { hasBinary: () => true, hasFile: () => true, hasModule: () => false };
  assert.deepEqual(missingRequirements('etcd', noModules, 'http'), []);
  assert.deepEqual(missingRequirements('etcd', noModules, 'grpc').map((m) => m.name), ['etcd3']);
});

test('compareCommand: prints the skip lines and refuses to run with no system left', async () => {
  const printed: string[] = [];
  await assert.rejects(
    compareCommand(
      { systems: ['etcd', 'redis-everysec'], workloads: ['A'], clients: 1, durationS: 1, runs: 1, warmupS: 0, out: '/nonexistent/x.md', keep: false, etcdClient: 'grpc', command: 'test', probe: nothingInstalled },
      (s) => printed.push(s),
      () => undefined,
    ),
    (e: unknown) => e instanceof BulwarkError && e.code === 'usage',
  );
  assert.equal(printed.length, 2);
  assert.match(printed[0]!, /^etcd: skipped .*apt-get install -y etcd-server etcd-client/);
  assert.match(printed[1]!, /^redis-everysec: skipped .*apt-get install -y redis-server/);
});

test('median: middle value, mean of the two middle ones for an even count, undefined for none', () => {
  assert.equal(median([]), undefined);
  assert.equal(median([5]), 5);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  // Found by fast-check in CI: 0 and -0 sort as equal, so the middle one depended on input order.
  assert.ok(Object.is(median([0, -0, 5e-324]), 0) && Object.is(median([5e-324, -0, 0]), 0));
  fc.assert(
    fc.property(fc.array(fc.double({ noNaN: true, min: -1e9, max: 1e9 }), { minLength: 1, maxLength: 15 }), (xs) => {
      const m = median(xs)!;
      const below = xs.filter((x) => x < m).length;
      const above = xs.filter((x) => x > m).length;
      assert.ok(below <= xs.length / 2 && above <= xs.length / 2, `${m} is not a median of ${xs.join(',')}`);
      assert.equal(median([...xs].reverse()), m, 'independent of order');
    }),
  );
});

function run(system: CellRun['system'], workload: CellRun['workload'], round: number, opsPerS: number, p50Ms = 1, p99Ms = 2, errors = 0): CellRun {
  return { system, workload, round, opsPerS, p50Ms, p99Ms, ops: opsPerS * 10, reads: 0, writes: opsPerS * 10, errors, ...(errors > 0 ? { firstError: 'Error: boom' } : {}) };
}

test('summarise: one cell per system and workload, each figure the median of its runs, in table order', () => {
  const runs = [
    run('bulwark-cft', 'W', 1, 500, 20, 90),
    run('etcd', 'A', 2, 2000, 12, 40),
    run('etcd', 'A', 1, 2300, 11, 45),
    run('etcd', 'A', 3, 1700, 15, 30, 2),
    run('bulwark-cft', 'W', 2, 700, 18, 120),
  ];
  const cells = summarise(runs);
  assert.deepEqual(cells.map((c) => `${c.system}/${c.workload}`), ['etcd/A', 'bulwark-cft/W']);
  const etcd = cells[0]!;
  assert.equal(etcd.opsPerS, 2000);
  assert.equal(etcd.p50Ms, 12);
  assert.equal(etcd.p99Ms, 40, 'each figure is its own median, not the median run\'s');
  assert.equal(etcd.errors, 2);
  assert.deepEqual(etcd.runs.map((r) => r.round), [1, 2, 3]);
  assert.equal(cells[1]!.opsPerS, 600);
});

test('markdownTables: a matrix of ops/s and a detailed table; dashes for cells without runs', () => {
  const cells = summarise([
    { ...run('etcd', 'A', 1, 2345.4, 12.345, 40.2), serverCpuMsPerOp: 0.5, loaderCpuMsPerOp: 0.2 },
    { ...run('etcd', 'A', 2, 1000, 9.5, 150), serverCpuMsPerOp: 1 },
    run('zookeeper', 'W', 1, 7400, 4, 10),
  ]);
  const md = markdownTables(cells, ['etcd', 'zookeeper'], ['A', 'W']);
  const lines = md.trimEnd().split('\n');
  assert.equal(lines[0], '| ops/s (median) | A | W |');
  assert.equal(lines[1], '|---|---:|---:|');
  assert.equal(lines[2], '| etcd | 1,673 | - |');
  assert.equal(lines[3], '| zookeeper | - | 7,400 |');
  assert.equal(lines[4], '');
  assert.equal(lines[5], '| System | Workload | ops/s | p50 ms | p99 ms | ops/s of each run | server CPU ms/op | loader CPU ms/op | errors |');
  assert.equal(lines[7], '| etcd | A | 1,673 | 10.9 | 95.1 | 2,345, 1,000 | 0.75 | 0.20 | 0 |');
  assert.equal(lines[8], '| etcd | W | - | - | - | - | - | - | - |');
  assert.equal(lines[10], '| zookeeper | W | 7,400 | 4.00 | 10.0 | 7,400 | - | - | 0 |');
  // Every row of a table has as many cells as its header.
  for (const block of md.trimEnd().split('\n\n')) {
    const rows = block.split('\n');
    const n = rows[0]!.split('|').length;
    for (const r of rows) assert.equal(r.split('|').length, n, r);
  }
});

function report(runs: CellRun[]): CompareReport {
  return {
    startedAt: 's',
    finishedAt: 'f',
    command: 'npx bulwark compare',
    settings: { systems: ['etcd', 'zookeeper'], workloads: ['A'], clients: 32, durationS: 10, warmupS: 10, runs: 3, keys: 1000, recordBytes: 1024, etcdClient: 'grpc' },
    environment: { node: 'v20' },
    setups: { etcd: 'three members' },
    skipped: [{ system: 'zookeeper', line: 'zookeeper: skipped (java not on PATH); install with: apt-get install -y zookeeper' }],
    failed: [{ system: 'etcd', round: 3, error: 'etcd m1 exited' }],
    runs,
  };
}

test('renderSection and spliceSection: the generated part is replaced in place, prose around it is kept', () => {
  const sec = renderSection(report([run('etcd', 'A', 1, 2000, 1, 2, 3)]), 'compare.svg', 'compare.json');
  assert.ok(sec.startsWith(generatedBegin) && sec.trimEnd().endsWith(generatedEnd));
  assert.match(sec, /- \*\*etcd\*\*: three members/);
  assert.match(sec, /- zookeeper: skipped \(java not on PATH\)/);
  assert.match(sec, /- etcd, round 3: not measured: etcd m1 exited/);
  assert.match(sec, /- etcd \/ A: 3 failed operation\(s\); first: Error: boom/);
  assert.match(sec, /!\[ops\/s per system and workload\]\(compare\.svg\)/);
  assert.ok(!/\| zookeeper \|/.test(sec), 'a skipped system has no table row');

  const fresh = spliceSection(undefined, sec);
  assert.ok(fresh.startsWith('# ') && fresh.includes(sec));
  const doc = `# Title\n\nIntro prose.\n\n${sec}\n## Reading\n\nHand-written reading.\n`;
  const sec2 = renderSection(report([run('etcd', 'A', 1, 9999)]), 'compare.svg', 'compare.json');
  const next = spliceSection(doc, sec2);
  assert.ok(next.startsWith('# Title\n\nIntro prose.\n\n'));
  assert.ok(next.endsWith('\n## Reading\n\nHand-written reading.\n'));
  assert.ok(next.includes('9,999') && !next.includes('2,000'));
  assert.equal(next.split(generatedBegin).length, 2, 'exactly one generated part');
  assert.equal(spliceSection(next, sec2), next, 'idempotent');
  // A file without markers keeps its text and gets the section appended.
  const appended = spliceSection('# Mine\n\nkeep me\n', sec2);
  assert.ok(appended.startsWith('# Mine\n\nkeep me\n\n') && appended.includes(generatedBegin));
});

test('procStatCpuS: user + system ticks of /proc/<pid>/stat, command names with spaces and parentheses included', () => {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
  assert.equal(procStatCpuS('632 (cat) R 629 629 16195 0 -1 4194304 127 0 0 0 250 130 7 9 20 0 1 0'), 3.8);
  assert.equal(procStatCpuS('77 (a b) (c)) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0'), 0.03);
  assert.equal(procStatCpuS('garbage'), undefined);
  assert.equal(procStatCpuS('1 (x) S 1'), undefined);
  // This process: what /proc says is what the kernel counted, so it never goes down.
  const a = processesCpuS([process.pid]);
  let x = 0;
  for (let i = 0; i < 2_000_000; i++) x += i % 7;
  assert.ok(x > 0);
  assert.ok(processesCpuS([process.pid]) >= a);
  assert.equal(processesCpuS([2 ** 22 + 12_345]), 0, 'a process that does not exist counts nothing');
});

test('companionPaths: chart and JSON next to the report', () => {
  assert.deepEqual(companionPaths('docs/compare.md'), { svg: 'docs/compare.svg', json: 'docs/compare.json' });
  assert.deepEqual(companionPaths('/tmp/report'), { svg: '/tmp/report.svg', json: '/tmp/report.json' });
});

/** An in-memory store behind adapters that yield to the event loop like a network client. */
function memoryAdapters(n: number, o: { failPuts?: boolean; hang?: boolean } = {}): { adapters: KvAdapter[]; store: Map<string, string>; counts: { get: number; put: number; insert: number } } {
  const store = new Map<string, string>();
  const counts = { get: 0, put: 0, insert: 0 };
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
  const adapters = Array.from({ length: n }, (): KvAdapter => ({
    get: async (k) => {
      counts.get++;
      if (o.hang === true) await new Promise(() => undefined);
      await tick();
      return store.has(k);
    },
    put: async (k, v) => {
      counts.put++;
      await tick();
      if (o.failPuts === true) throw new Error('disk full');
      store.set(k, v);
    },
    insert: async (k, v) => {
      counts.insert++;
      await tick();
      assert.ok(!store.has(k), `key ${k} inserted twice`);
      store.set(k, v);
    },
    close: () => Promise.resolve(),
  }));
  return { adapters, store, counts };
}

test('loadKeys: every key exactly once, with a 1 KiB value, spread over the clients', async () => {
  const { adapters, store, counts } = memoryAdapters(7);
  await loadKeys(adapters);
  assert.equal(store.size, keyCount);
  assert.equal(counts.insert, keyCount);
  assert.equal(counts.put, 0);
  for (let i = 0; i < keyCount; i++) assert.equal(store.get(keyName(i))?.length, 1024);
});

test('driveLoad: the mix follows the workload, every counted op is a read or a write, writes carry the workload size', async () => {
  const { adapters, store } = memoryAdapters(4);
  await loadKeys(adapters);
  const c = await driveLoad(adapters, workloads.C, { durationS: 0.2, warmupS: 0.05 });
  assert.ok(c.ops > 0);
  assert.equal(c.writes, 0);
  assert.equal(c.reads, c.ops);
  assert.equal(c.errors, 0);
  assert.ok(c.p50Ms <= c.p99Ms);
  const w = await driveLoad(adapters, workloads.W, { durationS: 0.2, warmupS: 0.05 });
  assert.equal(w.reads, 0);
  assert.equal(w.writes, w.ops);
  assert.ok([...store.values()].some((v) => v.length === 4096));
  const edges: string[] = [];
  const a = await driveLoad(adapters, workloads.A, { durationS: 0.3, warmupS: 0.05, seed: 7, onWindow: (e) => edges.push(e) });
  assert.deepEqual(edges, ['open', 'close'], 'the window opens once and closes once');
  assert.equal(a.reads + a.writes, a.ops);
  assert.ok(a.ops > 0);
  // Within four standard deviations of a fair coin, however many operations the machine ran.
  const share = a.reads / a.ops;
  assert.ok(Math.abs(share - 0.5) <= 4 * Math.sqrt(0.25 / a.ops) + 1e-9, `read share ${share} of ${a.ops} for a 50/50 workload`);
});

test('driveLoad: failures and reads of absent keys are counted as errors, not as operations', async () => {
  const failing = memoryAdapters(2, { failPuts: true });
  const w = await driveLoad(failing.adapters, workloads.W, { durationS: 0.1, warmupS: 0 });
  assert.equal(w.ops, 0);
  assert.ok(w.errors > 0);
  assert.equal(w.firstError, 'Error: disk full');
  // Nothing loaded: every read finds nothing.
  const empty = memoryAdapters(2);
  const c = await driveLoad(empty.adapters, workloads.C, { durationS: 0.1, warmupS: 0 });
  assert.equal(c.ops, 0);
  assert.ok(c.errors > 0);
  assert.match(c.firstError ?? '', /read of loaded key k\d{4} found nothing/);
});

test('driveLoad: operations that never answer are abandoned after the grace period and counted', async () => {
  const { adapters } = memoryAdapters(3, { hang: true });
  const r = await driveLoad(adapters, workloads.C, { durationS: 0.05, warmupS: 0, graceS: 0.05 });
  assert.equal(r.ops, 0);
  assert.equal(r.errors, 3, 'one abandoned operation per client');
  assert.match(r.firstError ?? '', /still running/);
});

test('driveLoad: an abort ends the run and abandons operations in flight without counting them as errors', async () => {
  const { adapters } = memoryAdapters(3, { hang: true });
  const ac = new AbortController();
  const p = driveLoad(adapters, workloads.C, { durationS: 3600, warmupS: 0, signal: ac.signal });
  setImmediate(() => {
    ac.abort();
  });
  const r = await p;
  assert.equal(r.ops, 0);
  assert.equal(r.errors, 0);
});
