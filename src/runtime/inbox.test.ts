/** The node inbox (Aardvark §3.3, §3.4.2 / Fig 3.5): fair, bounded, low priority when idle, flood cut-off. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Inbox, type InboxOptions } from './inbox.ts';
import { clientPrincipal, nodePrincipal, principalKey } from '../crypto/provider.ts';
import type { Message } from '../codec/messages.ts';

const prepare = (seq: number): Message => ({ kind: 'prepare', view: 0, seq, digest: new Uint8Array(32) });
const lastExec = (next: number): Message => ({ kind: 'lastExec', next });
const request = (client: number, reqId: number): Message => ({ kind: 'request', client, reqId, op: new Uint8Array(1), macs: [], fanout: false, sig: undefined });

function inbox(o: Partial<InboxOptions> = {}): Inbox {
  return new Inbox({ replicas: [1, 2, 3], ...o });
}

/** Takes everything queued; returns the senders in service order. */
function drain(box: Inbox, now = 0, max = Infinity): string[] {
  const out: string[] = [];
  while (out.length < max) {
    const m = box.take(now);
    if (m === undefined) break;
    out.push(principalKey(m.from));
  }
  return out;
}

test('round robin: a flooding replica gets one turn per rotation, not its arrival share', () => {
  const box = inbox();
  for (let i = 0; i < 1000; i++) box.push(nodePrincipal(1), prepare(i), 50, 0);
  for (let i = 0; i < 10; i++) box.push(nodePrincipal(2), prepare(i), 50, 0);
  for (let i = 0; i < 10; i++) box.push(clientPrincipal(i), request(i, 1), 50, 0);
  const first = drain(box, 0, 30);
  assert.equal(first.filter((s) => s === 'n1').length, 10, 'n1 served a third of the first 30');
  assert.equal(first.filter((s) => s === 'n2').length, 10);
  assert.equal(first.filter((s) => s.startsWith('c')).length, 10, 'all clients together are one lane');
  assert.deepEqual(first.slice(0, 3), ['n1', 'n2', 'c0']);
  assert.equal(box.size, 990);
});

test('the node\u2019s own messages come first and are never dropped', () => {
  const box = inbox({ replicaMessagesMax: 2 });
  box.push(nodePrincipal(1), prepare(1), 10, 0);
  for (let i = 0; i < 10_000; i++) box.pushLocal(nodePrincipal(0), prepare(i), 0);
  assert.equal(box.size, 10_001);
  const order = drain(box);
  assert.equal(order.length, 10_001);
  assert.ok(order.slice(0, 10_000).every((s) => s === 'n0'));
  assert.equal(order[10_000], 'n1');
});

test('lanes are bounded in messages and bytes; the newest is dropped and counted per source', () => {
  const box = inbox({ replicaMessagesMax: 3, replicaBytesMax: 1000, clientMessagesMax: 2 });
  for (let i = 0; i < 5; i++) box.push(nodePrincipal(1), prepare(i), 10, 0);
  assert.equal(box.push(nodePrincipal(2), prepare(0), 900, 0), 'queued');
  assert.equal(box.push(nodePrincipal(2), prepare(1), 200, 0), 'inbox_full', 'byte bound');
  assert.equal(box.push(nodePrincipal(3), prepare(0), 5000, 0), 'queued', 'an empty lane admits a message larger than its bound');
  for (let c = 0; c < 4; c++) box.push(clientPrincipal(c), request(c, 1), 10, 0);
  assert.deepEqual(box.dropped(), { n1: { inbox_full: 2 }, n2: { inbox_full: 1 }, clients: { inbox_full: 2 } });
  assert.deepEqual(box.depths(), { n1: { messages: 3, bytes: 30 }, n2: { messages: 1, bytes: 900 }, n3: { messages: 1, bytes: 5000 }, clients: { messages: 2, bytes: 20 } });
  const n1 = [];
  for (let m = box.take(0); m !== undefined; m = box.take(0)) if (m.from.kind === 'node' && m.from.id === 1 && m.msg.kind === 'prepare') n1.push(m.msg.seq);
  assert.deepEqual(n1, [0, 1, 2], 'the oldest were kept');
  assert.equal(box.size, 0);
  assert.deepEqual(box.depths(), {});
});

test('one pending request per client: a newer one replaces the queued one in place, an older one is dropped', () => {
  const box = inbox();
  box.push(clientPrincipal(1), request(1, 5), 10, 0);
  box.push(clientPrincipal(2), request(2, 1), 10, 0);
  assert.equal(box.push(clientPrincipal(1), request(1, 6), 30, 1), 'replaced');
  assert.equal(box.push(clientPrincipal(1), { kind: 'readRequest', client: 1, reqId: 7, op: new Uint8Array(1), macs: [], fanout: false }, 20, 1), 'replaced');
  assert.equal(box.push(clientPrincipal(1), request(1, 4), 10, 1), 'superseded');
  assert.equal(box.push(clientPrincipal(1), request(9, 8), 10, 1), 'not_a_client_request', 'another client\u2019s request');
  assert.equal(box.push(clientPrincipal(1), prepare(1), 10, 1), 'not_a_client_request');
  assert.equal(box.size, 2);
  assert.deepEqual(box.depths(), { clients: { messages: 2, bytes: 30 } });
  const first = box.take(2)!;
  assert.equal(first.msg.kind, 'readRequest');
  assert.equal((first.msg as { reqId: number }).reqId, 7, 'the newest, in the oldest one\u2019s place');
  // Taken: the client may queue again.
  assert.equal(box.push(clientPrincipal(1), request(1, 8), 10, 3), 'queued');
  assert.deepEqual(box.dropped().clients, { superseded: 3, not_a_client_request: 2 });
});

test('catch-up requests wait while other lanes are busy, and are served when idle', () => {
  const box = inbox();
  box.push(nodePrincipal(1), lastExec(5), 10, 0);
  box.push(nodePrincipal(1), { kind: 'fetchCheckpoint', seq: 64, part: 0 }, 10, 0);
  for (let i = 0; i < 5; i++) box.push(nodePrincipal(2), prepare(i), 10, 0);
  box.push(nodePrincipal(3), prepare(0), 10, 0);
  assert.deepEqual(box.depths()['n1/low'], { messages: 2, bytes: 20 });
  const kinds: string[] = [];
  for (let m = box.take(10); m !== undefined; m = box.take(10)) kinds.push(m.msg.kind);
  assert.deepEqual(kinds, ['prepare', 'prepare', 'prepare', 'prepare', 'prepare', 'prepare', 'lastExec', 'fetchCheckpoint']);
});

test('catch-up requests are not starved: once one has waited lowWaitMaxMs the class gets a turn per rotation', () => {
  const box = inbox({ lowWaitMaxMs: 100 });
  box.push(nodePrincipal(3), lastExec(1), 10, 0);
  box.push(nodePrincipal(3), lastExec(2), 10, 0);
  box.push(nodePrincipal(3), lastExec(3), 10, 200);
  let now = 0;
  const served: { kind: string; now: number }[] = [];
  // Two replicas keep their lanes busy for the whole run.
  for (let step = 0; step < 80; step++) {
    box.push(nodePrincipal(1), prepare(step), 10, now);
    box.push(nodePrincipal(2), prepare(step), 10, now);
    const m = box.take(now)!;
    served.push({ kind: m.msg.kind, now });
    now += 5;
  }
  const low = served.filter((s) => s.kind === 'lastExec');
  assert.equal(low.length, 3, 'all three served although the normal lanes never emptied');
  assert.ok(low[0]!.now >= 100 && low[0]!.now <= 115, `the first after about 100 ms (${low[0]!.now})`);
  assert.ok(low[1]!.now - low[0]!.now <= 15, 'the next aged one within a rotation');
  assert.ok(low[2]!.now >= 300 && low[2]!.now <= 315, `the third (pushed at 200) after about 100 ms of its own (${low[2]!.now})`);
  // Between low turns, each busy lane had its turn.
  const i0 = served.findIndex((s) => s.kind === 'lastExec');
  assert.notEqual(served[i0 + 1]!.kind, 'lastExec');
});

/** Pushes `n` prepares from replica `id` spread over [t0, t0 + span). */
function send(box: Inbox, id: number, n: number, t0: number, span = 500): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(box.push(nodePrincipal(id), prepare(i), 10, t0 + Math.floor((i * span) / n)));
  return out;
}

const floodRules = { cutOffMax: 1, silentMax: 1, floodFloor: 1000, floodWindowMs: 1000, floodCutOffMs: 60_000 };

test('flood detection: a replica sending more than 20x every other replica is cut off; exactly 20x is not', () => {
  const box = inbox(floodRules);
  send(box, 2, 100, 0);
  send(box, 3, 50, 0);
  const at20 = send(box, 1, 2000, 0);
  assert.ok(!at20.includes('flood'), '2000 = 20 x 100: not above');
  assert.equal(box.push(nodePrincipal(1), prepare(0), 10, 500), 'flood', 'the 2001st trips it');
  assert.deepEqual(box.cutOffs(500), { n1: 60_000 });
  assert.equal(box.depths().n1, undefined, 'its queued messages are discarded');
  assert.equal(box.push(nodePrincipal(1), prepare(1), 10, 501), 'flood_cut_off');
  assert.equal(box.dropped().n1?.flood_cut_off, 2001);
  // Lapses after the period.
  assert.equal(box.push(nodePrincipal(1), prepare(2), 10, 60_500), 'queued');
  assert.deepEqual(box.cutOffs(60_500), {});
});

test('flood detection respects the floor: an idle cluster\u2019s trickle never trips the ratio', () => {
  const box = inbox(floodRules);
  send(box, 2, 1, 0);
  send(box, 3, 1, 0);
  assert.ok(!send(box, 1, 1000, 0).includes('flood'), '1000 = 1000x the others, but not above the floor');
  assert.equal(box.push(nodePrincipal(1), prepare(0), 10, 600), 'flood', 'above the floor it trips');
});

test('flood detection counts over a sliding window', () => {
  const box = inbox(floodRules);
  // 1500 a second against the others' 100: above the floor but 15x, never 20x.
  for (let s = 0; s < 5; s++) {
    send(box, 2, 100, s * 1000, 1000);
    send(box, 3, 100, s * 1000, 1000);
    assert.ok(!send(box, 1, 1500, s * 1000, 1000).includes('flood'), `second ${s}`);
  }
  // Bursts of 900 (under the floor) ten seconds apart: 1800 in all, but never 1000 in one window.
  const spaced = inbox(floodRules);
  for (const t of [0, 10_000]) {
    send(spaced, 2, 10, t);
    send(spaced, 3, 10, t);
    assert.ok(!send(spaced, 1, 900, t).includes('flood'));
  }
  // The same 1800 inside one window trips it.
  const burst = inbox(floodRules);
  send(burst, 2, 10, 0);
  send(burst, 3, 10, 0);
  assert.ok(send(burst, 1, 1800, 0).includes('flood'));
});

test('flood detection: never with every other replica silent, nor past the liveness budget, nor when disabled', () => {
  // The others crashed (or stopped): comparing with nothing would cut off the last live peer.
  const alone = inbox(floodRules);
  assert.ok(!send(alone, 1, 5000, 0).includes('flood'));
  // One of two others silent and silentMax = 1 (u = 1): cutting the busy one would leave too few.
  const oneSilent = inbox(floodRules);
  send(oneSilent, 2, 10, 0);
  assert.ok(!send(oneSilent, 1, 5000, 0).includes('flood'));
  // With u = 2 the same is allowed.
  const u2 = inbox({ ...floodRules, silentMax: 2 });
  send(u2, 2, 10, 0);
  assert.ok(send(u2, 1, 5000, 0).includes('flood'));
  // At most cutOffMax (r) replicas cut off at once.
  const r1 = new Inbox({ replicas: [1, 2, 3, 4, 5], ...floodRules, cutOffMax: 1, silentMax: 3 });
  for (const id of [3, 4, 5]) send(r1, id, 10, 0);
  assert.ok(send(r1, 1, 5000, 0).includes('flood'));
  assert.ok(!send(r1, 2, 5000, 0).includes('flood'), 'a second one is not cut off while r = 1 already is');
  // cutOffMax = 0 (the default; r = 0 clusters): disabled.
  const off = inbox({ ...floodRules, cutOffMax: 0 });
  send(off, 2, 10, 0);
  send(off, 3, 10, 0);
  assert.ok(!send(off, 1, 50_000, 0).includes('flood'));
});
