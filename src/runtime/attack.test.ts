/** Attack drivers of the real runtime (issue 5): parsing and what each attack does to messages. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeAttack, parseAttackSpec } from './attack.ts';
import { nodePrincipal } from '../crypto/provider.ts';
import type { MsgOf } from '../codec/messages.ts';

const pp: MsgOf<'prePrepare'> = { kind: 'prePrepare', view: 0, seq: 1, time: 1, seed: 7, requests: [] };
const peers = [1, 2, 3].map(nodePrincipal);

test('parseAttackSpec names the bad field and accepts each attack', () => {
  assert.deepEqual(parseAttackSpec({ name: 'slow-primary', delayMs: 10 }), { name: 'slow-primary', delayMs: 10 });
  assert.deepEqual(parseAttackSpec({ name: 'unfair-primary', victim: 3 }), { name: 'unfair-primary', victim: 3 });
  assert.deepEqual(parseAttackSpec({ name: 'none' }), { name: 'none' });
  assert.match((parseAttackSpec({ name: 'slow-primary', delayMs: -1 }) as { error: string }).error, /delayMs/);
  assert.match((parseAttackSpec({ name: 'replica-flood' }) as { error: string }).error, /ratePerS/);
  assert.match((parseAttackSpec({ name: 'melt' }) as { error: string }).error, /name must be one of/);
  assert.match((parseAttackSpec('x') as { error: string }).error, /JSON object/);
});

test('no attack: every send leaves unchanged, every message is taken in', () => {
  const a = new NodeAttack();
  assert.deepEqual(a.rewrite(peers, pp), [{ to: peers, msg: pp, delayMs: 0 }]);
  assert.equal(a.accepts({ kind: 'authReq', client: 0, reqId: 1, op: new Uint8Array(), row: [] }), true);
  assert.deepEqual(a.floodBatch(10), []);
});

test('slow-primary delays pre-prepares only; equivocating-primary splits the peers over two digests', () => {
  const a = new NodeAttack();
  a.set({ name: 'slow-primary', delayMs: 25 });
  assert.equal(a.rewrite(peers, pp)[0]!.delayMs, 25);
  const prepare: MsgOf<'prepare'> = { kind: 'prepare', view: 0, seq: 1, digest: new Uint8Array(32) };
  assert.equal(a.rewrite(peers, prepare)[0]!.delayMs, 0);
  a.set({ name: 'equivocating-primary' });
  const out = a.rewrite(peers, pp);
  assert.equal(out.length, 2);
  assert.deepEqual([...out[0]!.to, ...out[1]!.to], peers);
  assert.notEqual((out[0]!.msg as MsgOf<'prePrepare'>).seed, (out[1]!.msg as MsgOf<'prePrepare'>).seed);
});

test('unfair-primary drops only its victim\u2019s AUTH-REQs and FORWARDs', () => {
  const a = new NodeAttack();
  a.set({ name: 'unfair-primary', victim: 4 });
  const req = (client: number) => ({ kind: 'authReq' as const, client, reqId: 1, op: new Uint8Array(), row: [] });
  assert.equal(a.accepts(req(4)), false);
  assert.equal(a.accepts(req(5)), true);
  assert.equal(a.accepts({ kind: 'forward', view: 0, request: { client: 4, reqId: 1, op: new Uint8Array(), rows: [] } }), false);
});

test('replica-flood produces ratePerS x tick junk messages of the harmless kinds', () => {
  const a = new NodeAttack();
  a.set({ name: 'replica-flood', ratePerS: 20_000 });
  const batch = a.floodBatch(10);
  assert.equal(batch.length, 200);
  assert.deepEqual(new Set(batch.map((m) => m.kind)), new Set(['prepare', 'commit', 'checkpoint', 'lastExec', 'fetchCheckpoint']));
});

test('forging-auth replaces every AUTH-REQ by one the forge makes, alternately under the same and a later id', () => {
  const seen: number[] = [];
  const a = new NodeAttack((msg, later) => {
    seen.push(later);
    return { ...msg, reqId: msg.reqId + later, op: Uint8Array.of(9) };
  });
  const req: MsgOf<'authReq'> = { kind: 'authReq', client: 2, reqId: 10, op: Uint8Array.of(1), row: [] };
  assert.deepEqual(a.rewrite(peers, req), [{ to: peers, msg: req, delayMs: 0 }], 'no attack set');
  assert.deepEqual(parseAttackSpec({ name: 'forging-auth' }), { name: 'forging-auth' });
  a.set({ name: 'forging-auth' });
  const first = a.rewrite(peers, req);
  const second = a.rewrite(peers, req);
  assert.deepEqual(seen, [0, 2]);
  assert.equal((first[0]!.msg as MsgOf<'authReq'>).reqId, 10);
  assert.equal((second[0]!.msg as MsgOf<'authReq'>).reqId, 12);
  assert.deepEqual([...(first[0]!.msg as MsgOf<'authReq'>).op], [9]);
  assert.deepEqual(a.rewrite(peers, pp), [{ to: peers, msg: pp, delayMs: 0 }], 'other kinds pass');
  assert.deepEqual(new NodeAttack().rewrite(peers, req), [{ to: peers, msg: req, delayMs: 0 }], 'without a forge nothing changes');
});

test('forging-auth reaches the node\u2019s own order replica too; other attacks leave local messages alone', () => {
  const a = new NodeAttack((msg, later) => ({ ...msg, reqId: msg.reqId + later + 100 }));
  const req: MsgOf<'authReq'> = { kind: 'authReq', client: 2, reqId: 10, op: Uint8Array.of(1), row: [] };
  assert.equal(a.local(req), req);
  a.set({ name: 'slow-primary', delayMs: 5 });
  assert.equal(a.local(req), req);
  a.set({ name: 'forging-auth' });
  assert.equal((a.local(req) as MsgOf<'authReq'>).reqId, 110);
  assert.equal(a.local(pp), pp);
});
