/**
 * Named scenarios on the simulated cluster: one fault each, placed by hand, with the
 * expectation in the test name (style of etcd's raft_paper_test and TigerBeetle's scenarios).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from '../../src/sim/harness.ts';
import { nodePrincipal } from '../../src/crypto/provider.ts';
import { isExecCheckpointKey } from '../../src/stages/exec/exec.ts';

test('primary crashes: backups time out, change view, and the service continues (PBFT §4.4)', () => {
  const h = new Harness({ u: 1, r: 1 });
  assert.equal(h.runOps(30), 30);
  assert.equal(h.viewOf(1), 0);
  h.world.crash(nodePrincipal(0)); // primary of view 0
  assert.equal(h.runOps(30), 30, 'operations complete after the primary crashed');
  for (const id of [1, 2, 3]) assert.ok((h.viewOf(id) ?? 0) >= 1, `node ${id} moved past view 0`);
  assert.ok(h.notesOf('viewEntered').length > 0);
  assert.deepEqual(h.problems(), []);
});

test('an equivocating primary cannot make correct replicas commit different batches; it is replaced', () => {
  const h = new Harness({ u: 1, r: 1, byzantine: new Map([[0, new Set(['equivocate'] as const)]]) });
  assert.equal(h.runOps(60), 60);
  assert.deepEqual(h.problems(), []);
});

test('a silent Byzantine replica (u = r = 1) cannot stop progress', () => {
  const h = new Harness({ u: 1, r: 1, byzantine: new Map([[1, new Set(['silent'] as const)]]) });
  assert.equal(h.runOps(60), 60);
  assert.deepEqual(h.problems(), []);
});

test('CFT (u = 1, r = 0): three nodes, one crashed, still serve', () => {
  const h = new Harness({ u: 1, r: 0 });
  h.runOps(10);
  h.world.crash(nodePrincipal(2));
  assert.equal(h.runOps(40), 40);
  assert.deepEqual(h.problems(), []);
});

test('a partitioned-away primary is replaced; after the partition heals the old primary rejoins the new view', () => {
  const h = new Harness({ u: 1, r: 1 });
  h.runOps(10);
  for (const other of [1, 2, 3]) {
    h.world.block(nodePrincipal(0), nodePrincipal(other));
    h.world.block(nodePrincipal(other), nodePrincipal(0));
  }
  assert.equal(h.runOps(20), 20);
  for (const other of [1, 2, 3]) {
    h.world.unblock(nodePrincipal(0), nodePrincipal(other));
    h.world.unblock(nodePrincipal(other), nodePrincipal(0));
  }
  h.runOps(20);
  h.idle(3_000_000);
  assert.equal(h.viewOf(0), h.viewOf(1), 'node 0 joined the current view');
  assert.deepEqual(h.problems(), []);
});

for (const durability of ['batch', 'parallel'] as const) {
  test(`durability ${durability}: a restarted backup votes again at once in its view`, () => {
    // The throughput monitor is off: a backup's crash halves the rate for a moment, and the
    // monitor's half-rate rule would replace the primary, which is not what this test is about.
    const h = new Harness({ u: 1, r: 1, durability, tunables: { throughputGraceMs: 0 } });
    assert.equal(h.runOps(30), 30);
    h.world.crash(nodePrincipal(2));
    h.world.restart(nodePrincipal(2));
    h.world.crash(nodePrincipal(3));
    assert.equal(h.runOps(30), 30, 'nodes 0, 1 and the restarted 2 form the quorum in view 0');
    assert.equal(h.viewOf(2), 0);
    assert.deepEqual(h.problems(), []);
  });

  test(`durability ${durability}: every node crashes at once and restarts; service resumes and nothing is lost`, () => {
    const h = new Harness({ u: 1, r: 1, durability });
    assert.equal(h.runOps(40), 40);
    for (const id of [0, 1, 2, 3]) h.world.crash(nodePrincipal(id));
    for (const id of [0, 1, 2, 3]) h.world.restart(nodePrincipal(id));
    assert.equal(h.runOps(40), 40, 'service resumes after the whole-cluster crash');
    assert.deepEqual(h.problems(), []);
  });
}

test('storage damage: a replica restarted with its checkpoints gone, or with an empty disk, catches up to the same state', () => {
  for (const wipe of [false, true]) {
    const h = new Harness({ u: 1, r: 1, tunables: { checkpointInterval: 4 } });
    assert.equal(h.runOps(60), 60);
    h.world.crash(nodePrincipal(2));
    const dropped = h.world.damageStorage(nodePrincipal(2), (durable) => {
      const keys = wipe ? [...durable.keys()] : [...durable.keys()].filter(isExecCheckpointKey);
      for (const k of keys) durable.delete(k);
      return keys.length;
    });
    assert.ok(dropped > 0, `something was damaged (wipe=${wipe})`);
    h.world.restart(nodePrincipal(2));
    assert.equal(h.runOps(40), 40);
    h.idle(2_000_000);
    const exec2 = h.world.replica(2)?.exec;
    const exec0 = h.world.replica(0)?.exec;
    assert.ok(exec2 !== undefined && exec0 !== undefined);
    assert.equal(exec2.next, exec0.next, `node 2 executes at the head again (wipe=${wipe})`);
    assert.deepEqual(Buffer.from(exec2.appCheckpoint()), Buffer.from(exec0.appCheckpoint()));
    assert.deepEqual(h.problems(), []);
  }
});

test('a new primary that never saw the batches fetches them by digest (FETCH-BATCHES) and the view change completes', () => {
  // Node 1, the primary of view 1, hears nothing from node 0, the primary of view 0: no
  // pre-prepare, no batch. Then node 0 stops. The view changes name the batches by digest only,
  // so node 1 must fetch the ones prepared by the others before its NEW-VIEW. Catch-up (which
  // would also bring committed batches) never reaches node 1.
  const h = new Harness({ u: 1, r: 1, tunables: { checkpointInterval: 64 } });
  h.world.dropWhere((_from, to, msg) => msg.kind === 'catchUp' && to.kind === 'node' && to.id === 1);
  let fetches = 0;
  let bodies = 0;
  h.world.onDelivery((_from, to, msg) => {
    if (msg.kind === 'fetchBatches' && to.kind === 'node') fetches++;
    if (msg.kind === 'batchBodies' && to.kind === 'node' && to.id === 1) bodies++;
  });
  h.world.block(nodePrincipal(0), nodePrincipal(1));
  assert.equal(h.runOps(30), 30);
  h.world.pause(nodePrincipal(0));
  assert.equal(h.runOps(30), 30, 'operations complete after the view change');
  assert.ok((h.viewOf(1) ?? 0) >= 1);
  assert.ok(fetches > 0 && bodies > 0, `node 1 fetched batch bodies (${fetches} requests, ${bodies} answers)`);
  assert.deepEqual(h.problems(), []);
});

test('FETCH-BATCHES repeated by a peer within a status interval gets each body once', () => {
  const h = new Harness({ u: 1, r: 1, tunables: { checkpointInterval: 64 } });
  assert.equal(h.runOps(20), 20);
  const order1 = h.world.replica(1)?.order;
  assert.ok(order1 !== undefined);
  // A digest node 1 holds: the batch it committed last.
  let digest: Uint8Array | undefined;
  h.world.onDelivery((_from, to, msg) => {
    if (to.kind === 'node' && to.id === 1 && msg.kind === 'prepare') digest = msg.digest;
  });
  assert.equal(h.runOps(5), 5);
  assert.ok(digest !== undefined);
  const bodies = (now: number): number =>
    order1.step({ kind: 'message', from: nodePrincipal(2), msg: { kind: 'fetchBatches', digests: [digest!] }, now }).filter((e) => e.kind === 'send' && e.msg.kind === 'batchBodies').length;
  const t = h.world.now / 1000;
  assert.equal(bodies(t), 1, 'first request answered');
  assert.equal(bodies(t + 1), 0, 'a repeat right away is not');
  assert.equal(bodies(t + 60), 1, 'after the status interval (50 ms here) it is again');
});
