/**
 * Aardvark's defences on the simulated cluster (issue 5; thesis §3.4.3): a primary that is
 * slow or unfair without breaking a protocol rule is replaced, and service goes on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness } from '../../src/sim/harness.ts';
import type { ByzantineBehaviour } from '../../src/sim/byzantine.ts';
import type { Tunables } from '../../src/core/config.ts';
import { runSeed } from '../../src/sim/run.ts';

function attacked(behaviour: ByzantineBehaviour, tunables: Partial<Tunables>, attack = { slowPrimaryUs: 10_000, victimClient: 0, floodFactor: 8 }): Harness {
  return new Harness({ u: 1, r: 1, clients: 4, byzantine: new Map([[0, new Set([behaviour])]]), attack, tunables });
}

/**
 * Why correct replicas (1..3) wanted the primary out: the reasons of the view changes they
 * started, and of the suspicions they announced (SUSPECT) while staying in the view.
 */
function reasons(h: Harness): string[] {
  return h.notes.flatMap((n) => (n.node === 0 ? [] : n.note.type === 'viewChangeStarted' || n.note.type === 'primarySuspected' ? [n.note.reason] : []));
}

/** Mean latency (virtual µs) of completed operations, for one client or the others. */
function meanLatency(h: Harness, client: number, mine: boolean): number {
  const ops = h.history.filter((o) => o.complete !== undefined && (o.client === client) === mine);
  return ops.reduce((a, o) => a + (o.complete! - o.invoke) / 1000, 0) / Math.max(1, ops.length);
}

test('unfair primary: backups forward the starved request, then replace the primary; the victim waits no more than 3x the others', () => {
  const h = attacked('unfairPrimary', { viewChangeTimeoutMs: 2_000 });
  assert.equal(h.runOps(200), 200);
  assert.ok(reasons(h).includes('unfair'), `a backup found the primary unfair (reasons: ${reasons(h).join(',')})`);
  for (const id of [1, 2, 3]) assert.ok((h.viewOf(id) ?? 0) >= 1, `node ${id} left view 0`);
  assert.ok(h.history.filter((o) => o.client === 0 && o.complete !== undefined).length >= 20, 'the victim is served');
  const victim = meanLatency(h, 0, true);
  const others = meanLatency(h, 0, false);
  assert.ok(victim <= 3 * others, `victim ${victim.toFixed(0)} µs vs others ${others.toFixed(0)} µs`);
  assert.deepEqual(h.problems(), []);
});

test('unfair primary without the fairness check: the victim is starved until the request timer fires', () => {
  const h = attacked('unfairPrimary', { viewChangeTimeoutMs: 2_000, fairnessOvertakes: 0, throughputGraceMs: 0 });
  assert.equal(h.runOps(200), 200);
  assert.ok(!reasons(h).includes('unfair'));
  assert.equal(h.history.filter((o) => o.client === 0 && o.complete !== undefined).length, 0, 'no operation of the victim completed');
  assert.deepEqual(h.problems(), []);
});

test('slow primary (100 ms per pre-prepare): the heartbeat replaces it', () => {
  const h = attacked('slowPrimary', { viewChangeTimeoutMs: 2_000, heartbeatMs: 40 }, { slowPrimaryUs: 100_000, victimClient: 0, floodFactor: 0 });
  assert.equal(h.runOps(200), 200);
  assert.ok(reasons(h).includes('heartbeat'), `reasons: ${reasons(h).join(',')}`);
  assert.deepEqual(h.problems(), []);
});

test('slow primary (10 ms per pre-prepare): the throughput monitor replaces it once the bar rises past its rate', () => {
  const h = attacked('slowPrimary', { viewChangeTimeoutMs: 2_000, heartbeatMs: 40, throughputGraceMs: 300 }, { slowPrimaryUs: 10_000, victimClient: 0, floodFactor: 0 });
  assert.equal(h.runOps(600), 600);
  assert.ok(reasons(h).includes('throughput'), `reasons: ${reasons(h).join(',')}`);
  assert.deepEqual(h.problems(), []);
});

test('a flooding replica (junk votes, catch-up requests, bad MACs) changes nothing', () => {
  const h = new Harness({ u: 1, r: 1, clients: 4, byzantine: new Map([[2, new Set(['replicaFlood'] as const)]]), attack: { slowPrimaryUs: 0, victimClient: 0, floodFactor: 16 } });
  assert.equal(h.runOps(150), 150);
  assert.deepEqual(h.problems(), []);
});

test('fault-free with the heartbeat and the fairness check on: no view change in 600 operations', () => {
  const h = new Harness({ u: 1, r: 1, clients: 4, tunables: { heartbeatMs: 40, throughputGraceMs: 0, fairnessOvertakes: 2 } });
  assert.equal(h.runOps(600), 600);
  assert.deepEqual(reasons(h), []);
  assert.deepEqual(h.problems(), []);
});

test('sim --attack puts the attack into every seed: a faulty client for the client attacks, node 0 as the attacker otherwise', () => {
  for (let seed = 1; seed <= 6; seed++) {
    const flood = runSeed({ seed, u: 1, r: 1, attack: 'client-flood', ops: 40 });
    assert.match(flood.scenario, /clients=\d+\+1 /, `seed ${seed}: ${flood.scenario}`);
    assert.deepEqual(flood.failures, []);
    const slow = runSeed({ seed, u: 1, r: 1, attack: 'slow-primary', ops: 40 });
    assert.match(slow.scenario, /byz=\[n0:slowPrimary\]/, `seed ${seed}: ${slow.scenario}`);
    assert.deepEqual(slow.failures, []);
  }
});

test('signed client requests: a client sending bad signatures is blacklisted by the auth replicas it reaches; nothing else changes', () => {
  let badSignature = 0;
  let blacklisted = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const res = runSeed({
      seed,
      u: 1,
      r: 1,
      attack: 'bad-client',
      clientSignatures: true,
      ops: 60,
      debug: (line) => {
        if (line.includes('rejected bad_signature from c100')) badSignature++;
        if (line.includes('rejected client_blacklisted from c100')) blacklisted++;
      },
    });
    assert.match(res.scenario, /sigs=on/);
    assert.deepEqual(res.failures, [], `seed ${seed}`);
  }
  assert.ok(badSignature > 0, 'some bad signature reached an auth replica straight from the client');
  assert.ok(blacklisted > 0, 'and its later requests were refused at the first check');
});
