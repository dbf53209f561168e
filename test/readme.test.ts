/**
 * The README's embedding example, compiled and run for real: the Counter app replicated on a
 * simulated u = r = 1 cluster, every executor ending with the same count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ReplicatedApp, AppBatch } from '../src/index.ts';
import { World, defaultFaultModels } from '../src/sim/index.ts';
import { defaultConfig, deriveCluster } from '../src/index.ts';

// --- begin README example (kept identical to README.md) ---
class Counter implements ReplicatedApp {
  private n = 0;
  execute(batch: AppBatch) { return batch.requests.map(() => new TextEncoder().encode(String(++this.n))); }
  executeReadOnly() { return new TextEncoder().encode(String(this.n)); }
  checkpoint() { return new TextEncoder().encode(String(this.n)); }
  restore(data: Uint8Array) { this.n = Number(new TextDecoder().decode(data)); }
}
// --- end README example ---

test('the README counter runs replicated: 50 increments, all replies distinct, every executor at 50', () => {
  assert.ok(defaultFaultModels.length > 0);
  const cluster = deriveCluster(defaultConfig({ u: 1, r: 1, clients: 2, tunables: { checkpointInterval: 8 } }));
  const world = new World({
    cluster,
    seed: 5,
    appFactory: () => new Counter(),
    canaries: new Set(),
    delayMinUs: 300,
    delayMaxUs: 1500,
    fsyncMinUs: 100,
    fsyncMaxUs: 200,
    tickUs: 5000,
    faults: { dropPerMille: 0, dupPerMille: 0, spikePerMille: 0, spikeMaxUs: 0 },
    byzantine: new Map(),
    clientReserveBlock: 10,
  });
  const replies: number[] = [];
  const op = new Uint8Array([1]);
  let remaining = 50;
  for (const c of [0, 1]) {
    world.addClient(c, (_call, _req, result) => {
      replies.push(Number(new TextDecoder().decode(result)));
      if (--remaining > 1) world.at(world.now + 100, () => world.invoke(c, remaining, op, false));
    });
  }
  world.startNodes();
  for (const c of [0, 1]) world.invoke(c, 0, op, false);
  world.run(20_000_000, () => replies.length >= 50);
  assert.equal(replies.length, 50);
  assert.equal(new Set(replies).size, 50, 'each increment got its own value');
  assert.equal(Math.max(...replies), 50);
  world.run(world.now + 1_000_000);
  for (const id of cluster.exec.nodes) {
    assert.equal(new TextDecoder().decode(world.replica(id)!.exec!.appCheckpoint()), '50');
  }
});
