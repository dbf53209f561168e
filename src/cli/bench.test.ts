/** Pure parts of `bulwark bench`: the summary line and the attack run's memory figures. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchLine, worstMemory, type BenchResult } from './bench.ts';

const MiB = 1048576;
const peaks = (xs: [number, number, number][]) => new Map(xs.map(([node, peak, bound]) => [node, { peak: peak * MiB, bound: bound * MiB }] as const));

test('worstMemory: the correct node whose peak grew most, with its bound = its fault-free peak + its inbox bound', () => {
  const base = peaks([[0, 100, 115], [1, 90, 115], [2, 95, 115], [3, 80, 115]]);
  const after = peaks([[0, 400, 115], [1, 130, 115], [2, 100, 115]]);
  assert.deepEqual(worstMemory(base, after, 0), { node: 1, basePeakBytes: 90 * MiB, attackPeakBytes: 130 * MiB, boundBytes: 205 * MiB }, 'node 0 is the attacker; node 3 did not answer the second time');
  assert.equal(worstMemory(base, after, undefined)!.node, 0);
  assert.equal(worstMemory(base, new Map(), undefined), undefined);
});

test('benchLine: attack runs carry ratio and memory; signed-request clusters say so', () => {
  const r: BenchResult = {
    opsPerS: 1000, p50Ms: 10, p99Ms: 30, clients: 16, size: 0, nodes: 4, u: 1, r: 1, durability: 'parallel', clientSignatures: true, ops: 20000, errors: 0, perSecond: [], checkpoints: 'sequential', stateTransfer: 'collaborative',
    attack: { name: 'client-flood', detail: 'x', baseOpsPerS: 1000, attackedOpsPerS: 800, ratio: 0.8, baseP50Ms: 10, attackedP50Ms: 12, viewBefore: 0, viewAfter: 0, memory: { node: 2, basePeakBytes: 100 * MiB, attackPeakBytes: 120 * MiB, boundBytes: 215 * MiB } },
  };
  const line = benchLine(r);
  assert.match(line, /^bench: ops_per_s=1000 p50_ms=10\.00 p99_ms=30\.00 clients=16 size=0 nodes=4 u=1 r=1 durability=parallel client_signatures=on /);
  assert.match(line, / attack=client-flood ratio=0\.80 .* rss_base_mb=100 rss_attack_mb=120 mem_bound_mb=215 views=0->0$/);
  assert.doesNotMatch(benchLine({ ...r, clientSignatures: false }), /client_signatures/);
});

test('benchLine: slow_ops, the operations of 500 ms or more, ends the line when measured', () => {
  const r: BenchResult = { opsPerS: 10, p50Ms: 1, p99Ms: 600, clients: 1, size: 0, nodes: 4, u: 1, r: 1, durability: 'none', clientSignatures: false, ops: 100, errors: 0, perSecond: [], checkpoints: 'sequential', stateTransfer: 'single', slowOps: 3 };
  assert.match(benchLine(r), / durability=none slow_ops=3$/);
  const without: BenchResult = { ...r };
  delete (without as { slowOps?: number }).slowOps;
  assert.doesNotMatch(benchLine(without), /slow_ops/);
});

test('benchLine: abandoned operations (never answered) end the line only when there are some', () => {
  const r: BenchResult = { opsPerS: 10, p50Ms: 1, p99Ms: 2, clients: 1, size: 0, nodes: 4, u: 1, r: 1, durability: 'none', clientSignatures: false, ops: 100, errors: 0, perSecond: [], checkpoints: 'sequential', stateTransfer: 'single', slowOps: 0 };
  assert.doesNotMatch(benchLine(r), /abandoned/);
  assert.doesNotMatch(benchLine({ ...r, abandoned: 0 }), /abandoned/);
  assert.match(benchLine({ ...r, abandoned: 3 }), / slow_ops=0 abandoned=3$/);
});
