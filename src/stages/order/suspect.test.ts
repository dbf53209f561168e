/**
 * Suspicions (order.ts header): a SUSPECT alone keeps a backup in its view; min(u,r)+1
 * current suspicions of the active view's primary start the view change, a VIEW-CHANGE for a
 * later view counting as one; the primary's own word, other views and stale suspicions do not
 * count, and with a join quorum of one SUSPECTs are not heeded at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OrderCore, suspectTtlMs } from './order.ts';
import { primaryOf } from '../../core/config.ts';
import { Prng } from '../../core/prng.ts';
import { nodePrincipal } from '../../crypto/provider.ts';
import { testCluster } from '../testing.ts';
import { membersOf, requestCoreBytes } from '../common.ts';
import { viewChangeBodyCodec, type Message } from '../../codec/messages.ts';
import { encodeWith } from '../../codec/schema.ts';
import type { Effect } from '../types.ts';

/** A started order replica of node `id` in a u=r=1 cluster (four nodes), view 0. */
function replica(id: number): OrderCore {
  const { cluster, ring } = testCluster(1, 1);
  const core = new OrderCore(cluster, id, ring(nodePrincipal(id)), new Map(), new Prng(7));
  core.step({ kind: 'tick', now: 0 });
  return core;
}

const suspect = (core: OrderCore, from: number, view: number, now: number): Effect[] =>
  core.step({ kind: 'message', from: nodePrincipal(from), msg: { kind: 'suspect', view }, now });

const started = (effects: readonly Effect[]): string[] =>
  effects.flatMap((e) => (e.kind === 'note' && e.note.type === 'viewChangeStarted' ? [e.note.reason] : []));

/** A signed VIEW-CHANGE of `sender` asking for `view`, with nothing prepared. */
function viewChange(sender: number, view: number): Message {
  const { ring } = testCluster(1, 1);
  const body = { view, sender, lowWater: 0, checkpoints: [{ seq: 0, digest: new Uint8Array(32) }], prepared: [], prePrepared: [] };
  return { kind: 'viewChange', signed: { body, signature: ring(nodePrincipal(sender)).sign(encodeWith(viewChangeBodyCodec, body)) } };
}

const { cluster } = testCluster(1, 1);
const primary = primaryOf(cluster, 0);
const backups = cluster.order.nodes.filter((n) => n !== primary);
const [me, b1, b2] = backups as [number, number, number];

test('one SUSPECT keeps the backup in its view; a second replica suspecting starts the view change', () => {
  const core = replica(me);
  assert.deepEqual(started(suspect(core, b1, 0, 10)), []);
  assert.equal(core.status.normal, true);
  assert.equal(core.status.view, 0);
  assert.deepEqual(started(suspect(core, b2, 0, 20)), ['suspected_by_peers']);
  assert.equal(core.status.view, 1);
  assert.equal(core.status.normal, false);
});

test("the primary's SUSPECT, a repeated sender and other views do not count", () => {
  const core = replica(me);
  assert.deepEqual(started(suspect(core, primary, 0, 10)), [], "the primary's word on itself");
  assert.deepEqual(started(suspect(core, b1, 0, 20)), []);
  assert.deepEqual(started(suspect(core, b1, 0, 30)), [], 'the same sender twice is one suspicion');
  assert.deepEqual(started(suspect(core, b2, 1, 40)), [], 'a SUSPECT of another view');
  assert.equal(core.status.normal, true);
  assert.equal(core.status.view, 0);
});

test('a suspicion older than suspectTtlMs has lapsed', () => {
  const core = replica(me);
  assert.deepEqual(started(suspect(core, b1, 0, 10)), []);
  assert.deepEqual(started(suspect(core, b2, 0, 10 + suspectTtlMs + 1)), [], 'the first one lapsed');
  assert.equal(core.status.normal, true);
  assert.deepEqual(started(suspect(core, b1, 0, 20 + suspectTtlMs)), ['suspected_by_peers'], 'renewed within the window of the second');
});

test('SUSPECT from outside the order stage is rejected', () => {
  const core = replica(me);
  const effects = core.step({ kind: 'message', from: { kind: 'client', id: 1 }, msg: { kind: 'suspect', view: 0 }, now: 5 });
  assert.ok(effects.some((e) => e.kind === 'note' && e.note.type === 'rejected'));
  assert.equal(core.status.normal, true);
});

test('a backup that left on its own (VIEW-CHANGE) and one that suspects add up, in either order', () => {
  const a = replica(me);
  assert.deepEqual(started(suspect(a, b2, 0, 10)), []);
  assert.deepEqual(started(a.step({ kind: 'message', from: nodePrincipal(b1), msg: viewChange(b1, 1), now: 20 })), ['joined']);
  assert.equal(a.status.view, 1);
  const b = replica(me);
  assert.deepEqual(started(b.step({ kind: 'message', from: nodePrincipal(b1), msg: viewChange(b1, 1), now: 10 })), [], 'one VIEW-CHANGE alone does not pull');
  assert.equal(b.status.normal, true);
  assert.deepEqual(started(suspect(b, b2, 0, 20)), ['suspected_by_peers']);
  assert.equal(b.status.view, 1);
});

test('with a join quorum of one (r = 0) a SUSPECT is not heeded', () => {
  const { cluster: cft, ring } = testCluster(1, 0);
  const p = primaryOf(cft, 0);
  const [x, y] = cft.order.nodes.filter((n) => n !== p) as [number, number];
  const core = new OrderCore(cft, x, ring(nodePrincipal(x)), new Map(), new Prng(7));
  core.step({ kind: 'tick', now: 0 });
  assert.deepEqual(started(suspect(core, y, 0, 10)), []);
  assert.equal(core.status.normal, true);
});

test("a backup's request timer is a suspicion: SUSPECT, the backup stays, the timer restarts; a second replica moves it", () => {
  const { cluster: base, ring } = testCluster(1, 1);
  // The monitor's rules off, so the request timer is the only one that can fire.
  const cluster = { ...base, config: { ...base.config, heartbeatMs: 0, throughputGraceMs: 0, fairnessOvertakes: 0 } };
  const core = new OrderCore(cluster, me, ring(nodePrincipal(me)), new Map(), new Prng(7));
  core.step({ kind: 'tick', now: 0 });
  const client = [...cluster.clients.keys()][0]!;
  const op = Uint8Array.of(9);
  for (const [i, auth] of cluster.auth.nodes.entries()) {
    const row = ring(nodePrincipal(auth)).authenticate(membersOf(cluster.order), requestCoreBytes(client, 1, op));
    core.step({ kind: 'message', from: nodePrincipal(auth), msg: { kind: 'authReq', client, reqId: 1, op, row }, now: 1 + i });
  }
  const suspects = (effects: readonly Effect[]): number => effects.filter((e) => e.kind === 'send' && e.msg.kind === 'suspect').length;
  const timeout = cluster.config.viewChangeTimeoutMs;
  assert.equal(suspects(core.step({ kind: 'tick', now: timeout / 2 })), 0, 'not before the timeout');
  const first = core.step({ kind: 'tick', now: timeout + 10 });
  assert.equal(suspects(first), 1);
  assert.deepEqual(started(first), []);
  assert.equal(core.status.normal, true);
  assert.equal(core.status.view, 0);
  assert.equal(suspects(core.step({ kind: 'tick', now: timeout + 20 })), 0, 'the timer restarted: no SUSPECT per tick');
  assert.equal(suspects(core.step({ kind: 'tick', now: 2 * timeout + 20 })), 1, 'it fires again one timeout later');
  assert.deepEqual(started(suspect(core, b1, 0, 2 * timeout + 30)), ['suspected_by_peers']);
  assert.equal(core.status.view, 1);
});
