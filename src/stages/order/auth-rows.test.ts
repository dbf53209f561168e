/**
 * Rows from a faulty auth replica (order.ts, addRow): a row only proves that its own auth
 * replica vouches for a request, and a faulty one can make valid rows over bodies the client
 * never sent. Such rows must not displace the request the other auth replicas vouch for, under
 * the same id or a later one; the client's real request is still ordered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OrderCore } from './order.ts';
import { primaryOf } from '../../core/config.ts';
import { Prng } from '../../core/prng.ts';
import { nodePrincipal } from '../../crypto/provider.ts';
import { membersOf, requestCoreBytes } from '../common.ts';
import { sends, testCluster } from '../testing.ts';
import type { Effect } from '../types.ts';

const { cluster, ring } = testCluster(1, 1);
const primary = primaryOf(cluster, 0);
const orderPeers = membersOf(cluster.order);
const client = [...cluster.clients.keys()][0]!;
const [liar, ...honest] = cluster.auth.nodes as [number, ...number[]];

function primaryReplica(): OrderCore {
  const core = new OrderCore(cluster, primary, ring(nodePrincipal(primary)), new Map(), new Prng(7));
  core.step({ kind: 'tick', now: 0 });
  return core;
}

/** AUTH-REQ of auth replica `auth` vouching for (client, reqId, op), with a valid row. */
function authReq(core: OrderCore, auth: number, reqId: number, op: Uint8Array, now: number): Effect[] {
  const row = ring(nodePrincipal(auth)).authenticate(orderPeers, requestCoreBytes(client, reqId, op));
  return core.step({ kind: 'message', from: nodePrincipal(auth), msg: { kind: 'authReq', client, reqId, op, row }, now });
}

/** The (client, reqId, op) triples the primary proposed in these effects. */
function proposed(effects: readonly Effect[]): { reqId: number; op: number[] }[] {
  const out: { reqId: number; op: number[] }[] = [];
  for (const e of effects) {
    const msgs = e.kind === 'persist' ? (e.then ?? []).flatMap((x) => (x.kind === 'send' ? [x.msg] : [])) : sends([e]).map((s) => s.msg);
    for (const m of msgs) if (m.kind === 'prePrepare') for (const r of m.requests) out.push({ reqId: r.reqId, op: [...r.op] });
  }
  return out.filter((x, i) => out.findIndex((y) => y.reqId === x.reqId && y.op.join() === x.op.join()) === i);
}

const real = Uint8Array.of(1, 2, 3);
const forged = Uint8Array.of(6, 6, 6);

for (const [name, forgedId] of [
  ['another body under the same id', 5],
  ['a far later id', 900],
] as const) {
  test(`a faulty auth replica's row for ${name}, arriving first, does not block the real request`, () => {
    const core = primaryReplica();
    const effects: Effect[] = [];
    effects.push(...authReq(core, liar, forgedId, forged, 1));
    for (const [i, a] of honest.entries()) effects.push(...authReq(core, a, 5, real, 2 + i));
    assert.deepEqual(proposed(effects), [{ reqId: 5, op: [...real] }]);
  });
}

test('a faulty auth replica cannot take back or change its own claim, and alone never makes a request ready', () => {
  const core = primaryReplica();
  const effects: Effect[] = [];
  effects.push(...authReq(core, liar, 7, forged, 1));
  const rejected = authReq(core, liar, 7, real, 2).flatMap((e) => (e.kind === 'note' && e.note.type === 'rejected' ? [e.note.reason] : []));
  assert.deepEqual(rejected, ['conflicting_auth_row']);
  effects.push(...authReq(core, honest[0]!, 7, real, 3));
  assert.deepEqual(proposed(effects), [], 'two auth replicas vouch for different bodies: neither is ready');
  effects.push(...authReq(core, honest[1]!, 7, real, 4));
  effects.push(...authReq(core, honest[2]!, 7, real, 5));
  assert.deepEqual(proposed(effects), [{ reqId: 7, op: [...real] }]);
});

/** AUTH-DIGEST of auth replica `auth`: its row over the core digest of (client, reqId, op), without the body. */
function authDigest(core: OrderCore, auth: number, reqId: number, op: Uint8Array, now: number): Effect[] {
  const coreDigest = ring(nodePrincipal(auth)).digest(requestCoreBytes(client, reqId, op));
  const row = ring(nodePrincipal(auth)).authenticateDigest(orderPeers, coreDigest);
  return core.step({ kind: 'message', from: nodePrincipal(auth), msg: { kind: 'authDigest', client, reqId, coreDigest, row }, now });
}

test('rows without the body count, but a request is proposed only once an AUTH-REQ brings its body', () => {
  const core = primaryReplica();
  const effects: Effect[] = [];
  for (const [i, a] of honest.entries()) effects.push(...authDigest(core, a, 3, real, 1 + i));
  assert.deepEqual(proposed(effects), [], 'every row is in, the body is not');
  // The relay's AUTH-REQ carries the body; it is one more row as well.
  effects.push(...authReq(core, liar, 3, real, 10));
  assert.deepEqual(proposed(effects), [{ reqId: 3, op: [...real] }]);
});

test('a body whose core digest differs from the vouched one does not complete it', () => {
  const core = primaryReplica();
  const effects: Effect[] = [];
  for (const [i, a] of honest.slice(0, 2).entries()) effects.push(...authDigest(core, a, 4, real, 1 + i));
  // A faulty auth replica brings another body under the same id: its own claim only.
  effects.push(...authReq(core, liar, 4, forged, 5));
  assert.deepEqual(proposed(effects), []);
  effects.push(...authReq(core, honest[2]!, 4, real, 6));
  assert.deepEqual(proposed(effects), [{ reqId: 4, op: [...real] }]);
});

test('forged rows without a body never make a request ready, nor block the real one', () => {
  const core = primaryReplica();
  const effects: Effect[] = [];
  const coreDigest = ring(nodePrincipal(liar)).digest(requestCoreBytes(client, 8, forged));
  const row = ring(nodePrincipal(liar)).authenticateDigest(orderPeers, coreDigest);
  effects.push(...core.step({ kind: 'message', from: nodePrincipal(liar), msg: { kind: 'authDigest', client, reqId: 8, coreDigest, row }, now: 1 }));
  const bad = core.step({ kind: 'message', from: nodePrincipal(honest[0]!), msg: { kind: 'authDigest', client, reqId: 8, coreDigest, row }, now: 2 });
  assert.deepEqual(
    bad.flatMap((e) => (e.kind === 'note' && e.note.type === 'rejected' ? [e.note.reason] : [])),
    ['bad_auth_row'],
    "another auth replica's row does not pass for this one's",
  );
  effects.push(...authDigest(core, honest[0]!, 8, real, 3));
  effects.push(...authDigest(core, honest[1]!, 8, real, 4));
  effects.push(...authReq(core, honest[2]!, 8, real, 5));
  assert.deepEqual(proposed(effects), [{ reqId: 8, op: [...real] }]);
});
