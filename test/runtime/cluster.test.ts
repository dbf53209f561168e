/**
 * A real 4-node cluster on loopback (four processes, TCP, files): kill a replica and the
 * workload continues; restart it and it catches up to the same state; stop the primary
 * (SIGSTOP) and a view change keeps the workload going; the recorded client history is
 * linearizable. Uses real time, so nothing here asserts on speed, only on outcomes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProcessCluster, RecordingWorkload, eventually } from './harness.ts';
import { checkLinearizable } from '../../src/sim/checkers/linearizability.ts';
import type { TcpClient } from '../../src/runtime/client.ts';

test('4 processes (u=r=1): SIGKILL a replica, restart it, SIGSTOP the primary; the history stays linearizable', { timeout: 240_000 }, async () => {
  const cluster = await ProcessCluster.start({ u: 1, r: 1, tunables: { viewChangeTimeoutMs: 600, clientRetryMs: 200, checkpointInterval: 16 } });
  const clients: TcpClient[] = [];
  try {
    for (let i = 0; i < 4; i++) clients.push(await cluster.client());
    const w = new RecordingWorkload(clients);
    assert.ok((await w.progressOver(1500)) > 0, 'the workload runs');

    // Kill a backup that hosts an executor.
    cluster.signal(2, 'SIGKILL');
    assert.ok((await w.progressOver(2500)) > 0, 'the workload continues with replica 2 dead');

    // Restart it: it catches up (committed and executed past where the others were).
    cluster.restart(2);
    await cluster.waitServing([2]);
    const target = Math.min(...(await cluster.statuses()).filter((s) => s !== undefined && s.node !== 2).map((s) => s!.executedSeq ?? Infinity));
    await eventually('replica 2 executes past the others\u2019 point at its restart', async () => ((await cluster.status(2))?.executedSeq ?? 0) >= target);

    // Silence the primary: a view change must replace it and the workload must go on.
    const primary = (await cluster.status(1))!.primary!;
    const viewBefore = (await cluster.status(1))!.view!;
    cluster.signal(primary, 'SIGSTOP');
    await eventually('a view change away from the stopped primary', async () => {
      const s = await cluster.status(primary === 1 ? 2 : 1);
      return s !== undefined && s.normal === true && (s.view ?? 0) > viewBefore;
    });
    assert.ok((await w.progressOver(2500)) > 0, 'the workload continues after the view change');
    cluster.signal(primary, 'SIGCONT');
    await w.progressOver(1000);
    await w.stop();

    // Quiesce and compare the executors' states.
    const execs = cluster.cf.nodes.filter((n) => n.stages.includes('exec')).map((n) => n.id);
    await eventually('all executors at the same seq with the same state digest', async () => {
      const st = await Promise.all(execs.map((id) => cluster.status(id, true)));
      return st.every((s) => s !== undefined) && new Set(st.map((s) => s.executedSeq)).size === 1 && new Set(st.map((s) => s.stateDigest)).size === 1;
    });

    const lin = checkLinearizable(w.history);
    assert.equal(lin.ok, true, lin.ok === false ? `not linearizable: ${lin.reason}` : 'checker undecided');
    assert.ok(lin.checked > 50, `checked ${lin.checked} operations`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await cluster.stop();
  }
});
