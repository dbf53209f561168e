/**
 * How many rounds the order stage runs (order.ts header): with r = 0 a replica that accepts the
 * primary's PRE-PREPARE is prepared, so it sends COMMIT behind its durable pre-prepare record
 * and no PREPARE at all; n-u COMMITs commit. With r >= 1 the PREPARE round stays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OrderCore } from './order.ts';
import { primaryOf, type DurabilityMode } from '../../core/config.ts';
import { Prng } from '../../core/prng.ts';
import { nodePrincipal, type Principal } from '../../crypto/provider.ts';
import { membersOf, requestCoreBytes } from '../common.ts';
import { testCluster } from '../testing.ts';
import type { Message } from '../../codec/messages.ts';
import type { Effect } from '../types.ts';

/** Every message in `effects`, with whether it waits for a durable record (scoped or barrier). */
function messages(effects: readonly Effect[]): { msg: Message; to: readonly Principal[]; afterRecord: boolean }[] {
  const out: { msg: Message; to: readonly Principal[]; afterRecord: boolean }[] = [];
  let recorded = false;
  for (const e of effects) {
    if (e.kind === 'persist') {
      for (const x of e.then ?? []) if (x.kind === 'send') out.push({ msg: x.msg, to: x.to, afterRecord: true });
      if (e.then === undefined) recorded = true;
    }
    if (e.kind === 'send') out.push({ msg: e.msg, to: e.to, afterRecord: recorded });
  }
  return out;
}

const kinds = (effects: readonly Effect[]): string[] => messages(effects).map((m) => m.msg.kind);

const committed = (effects: readonly Effect[]): number[] =>
  effects.flatMap((e) => (e.kind === 'note' && e.note.type === 'committed' ? [e.note.seq] : []));

/** A (u, r) cluster in a durability mode, its view-0 primary and one backup, and a replica maker. */
function replicas(u: number, r: number, durability: DurabilityMode = 'parallel') {
  const { cluster: base, ring } = testCluster(u, r);
  const cluster = { ...base, durability };
  const primary = primaryOf(cluster, 0);
  const backup = cluster.order.nodes.find((n) => n !== primary)!;
  const make = (id: number): OrderCore => {
    const core = new OrderCore(cluster, id, ring(nodePrincipal(id)), new Map(), new Prng(7));
    core.step({ kind: 'tick', now: 0 });
    return core;
  };
  return { cluster, ring, primary, backup, make, client: [...cluster.clients.keys()][0]! };
}

/** A primary and one backup of a (u, r) cluster, and the primary's PRE-PREPARE of one request. */
function setUp(u: number, r: number, durability: DurabilityMode) {
  const { cluster, ring, primary, backup, make, client } = replicas(u, r, durability);
  const p = make(primary);
  const op = Uint8Array.of(1, 2, 3);
  const effects: Effect[] = [];
  for (const [i, auth] of cluster.auth.nodes.entries()) {
    const row = ring(nodePrincipal(auth)).authenticate(membersOf(cluster.order), requestCoreBytes(client, 1, op));
    effects.push(...p.step({ kind: 'message', from: nodePrincipal(auth), msg: { kind: 'authReq', client, reqId: 1, op, row }, now: 1 + i }));
  }
  const pp = messages(effects).find((m) => m.msg.kind === 'prePrepare');
  assert.ok(pp !== undefined, 'the primary proposed');
  return { primary, backup, p, b: make(backup), pp: pp.msg, primaryEffects: effects, medium: cluster.order.quorum.medium };
}

for (const durability of ['parallel', 'batch'] as const) {
  test(`r=0 (${durability}): COMMIT right behind the pre-prepare record, no PREPARE, n-u COMMITs commit`, () => {
    const { primary, backup, b, pp, primaryEffects, medium } = setUp(1, 0, durability);
    assert.equal(medium, 2);
    const mine = messages(primaryEffects);
    assert.ok(!mine.some((m) => m.msg.kind === 'prepare'), 'the primary sends no PREPARE');
    const pCommit = mine.find((m) => m.msg.kind === 'commit');
    assert.ok(pCommit !== undefined && pCommit.afterRecord, "the primary's COMMIT waits for its record");
    assert.ok(mine.findIndex((m) => m.msg.kind === 'prePrepare') < mine.indexOf(pCommit), 'PRE-PREPARE first');

    const got = b.step({ kind: 'message', from: nodePrincipal(primary), msg: pp, now: 10 });
    assert.deepEqual(kinds(got), ['commit']);
    assert.ok(messages(got)[0]!.afterRecord, "the backup's COMMIT waits for its record");
    // Its own COMMIT (the in-memory hop in parallel mode) and the primary's make n-u = 2.
    const commit = messages(got)[0]!.msg;
    const own = durability === 'parallel' ? b.step({ kind: 'message', from: nodePrincipal(backup), msg: commit, now: 11 }) : [];
    assert.deepEqual(committed(own), []);
    const done = b.step({ kind: 'message', from: nodePrincipal(primary), msg: commit, now: 12 });
    assert.deepEqual(committed(done), [1]);
  });
}

test('r=1: the backup answers a PRE-PREPARE with PREPARE, not COMMIT', () => {
  const { primary, b, pp } = setUp(1, 1, 'parallel');
  const got = b.step({ kind: 'message', from: nodePrincipal(primary), msg: pp, now: 10 });
  assert.deepEqual(kinds(got), ['prepare']);
});

test('r=0: one AUTH-REQ row makes a request ready, and a backup accepts a batch carrying one row', () => {
  const { cluster, ring, primary, backup, make, client } = replicas(1, 0);
  const op = Uint8Array.of(4);
  const auth = cluster.auth.nodes[0]!;
  const row = ring(nodePrincipal(auth)).authenticate(membersOf(cluster.order), requestCoreBytes(client, 1, op));
  const out = make(primary).step({ kind: 'message', from: nodePrincipal(auth), msg: { kind: 'authReq', client, reqId: 1, op, row }, now: 1 });
  const pp = messages(out).find((m) => m.msg.kind === 'prePrepare');
  assert.ok(pp !== undefined && pp.msg.kind === 'prePrepare');
  assert.equal(pp.msg.requests[0]!.rows.length, 1);
  assert.deepEqual(kinds(make(backup).step({ kind: 'message', from: nodePrincipal(primary), msg: pp.msg, now: 2 })), ['commit']);
});
