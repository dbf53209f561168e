/**
 * Execution stage: the read fence (a restarted executor does not answer reads from a rolled-back
 * state), and reads relayed through the client's home executor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExecCore, execFenceKey } from './exec.ts';
import type { ReplicatedApp } from '../../app/contract.ts';
import { clientPrincipal, nodePrincipal, type Principal } from '../../crypto/provider.ts';
import { encodeBatch, type Batch, type Message } from '../../codec/messages.ts';
import { sends, testCluster } from '../testing.ts';
import { readU64Durable, replyCoreBytes, requestCoreBytes, u64Bytes } from '../common.ts';
import type { Effect } from '../types.ts';

const { cluster, ring } = testCluster(1, 1, 4, { checkpointInterval: 8 });
const zero: Uint8Array = new Uint8Array(32);

/** A counter: every request adds one; a read returns the count. */
function counter(): ReplicatedApp {
  let n = 0;
  return {
    execute: (b) => b.requests.map(() => new Uint8Array([++n])),
    executeReadOnly: () => new Uint8Array([n]),
    checkpoint: () => new Uint8Array([n]),
    restore: (d) => {
      n = d[0] ?? 0;
    },
  };
}

/** Batches 1..count, each with one request of client 1, and their chain hashes. */
function chain(count: number): { seq: number; history: Uint8Array; batch: Batch }[] {
  const keys = ring(nodePrincipal(0));
  let history: Uint8Array = zero;
  const out = [];
  for (let seq = 1; seq <= count; seq++) {
    const batch: Batch = { time: seq, seed: seq, requests: [{ client: 1, reqId: seq, op: new Uint8Array([seq]) }] };
    history = keys.digest(history, u64Bytes(seq), keys.digest(encodeBatch(batch)));
    out.push({ seq, history, batch });
  }
  return out;
}

function msg(from: Principal, m: Message, now = 1) {
  return { kind: 'message' as const, from, msg: m, now };
}

function readRequest(reqId: number, fanout = false, from: Principal = clientPrincipal(1)) {
  const core = requestCoreBytes(1, reqId, new Uint8Array([0]));
  const macs = ring(clientPrincipal(1)).authenticate(cluster.exec.nodes.map(nodePrincipal), core);
  return msg(from, { kind: 'readRequest', client: 1, reqId, op: new Uint8Array([0]), macs, fanout });
}

function readReplies(effects: Effect[]) {
  return sends(effects).flatMap((s) => (s.msg.kind === 'readReply' ? [s.msg] : []));
}

/** Feeds batches through node 0's co-located order replica (enough on its own). */
function feed(exec: ExecCore, batches: ReturnType<typeof chain>): Effect[] {
  return batches.flatMap((b) => exec.step(msg(nodePrincipal(0), { kind: 'nextBatch', seq: b.seq, history: b.history, batch: b.batch })));
}

test('read fence: executing past the fence first writes a new fence with a barrier, ahead of the replies', () => {
  const exec = new ExecCore(cluster, 0, ring(nodePrincipal(0)), counter(), new Map());
  const effects = feed(exec, chain(1));
  const first = effects.findIndex((e) => e.kind === 'persist' && e.puts.some(([k]) => k === execFenceKey));
  const reply = effects.findIndex((e) => e.kind === 'send' && (e.msg.kind === 'reply' || e.msg.kind === 'relayReply'));
  assert.ok(first >= 0, 'the fence is written');
  const p = effects[first];
  assert.ok(p?.kind === 'persist' && p.barrier !== false, 'as a barrier');
  const fence = p.puts.find(([k]) => k === execFenceKey)![1];
  assert.equal(readU64Durable(fence, execFenceKey), 8, 'one checkpoint interval ahead');
  assert.ok(reply < 0 || reply > first, 'the reply waits behind it');
  const next = feed(exec, chain(8).slice(1));
  assert.ok(!next.some((e) => e.kind === 'persist' && e.puts.some(([k]) => k === execFenceKey)), 'no new fence within the interval');
});

test('read fence: a restarted executor refuses reads (seq 0) until it has executed through its fence', () => {
  const durable = new Map([[execFenceKey, u64Bytes(8)]]);
  const exec = new ExecCore(cluster, 0, ring(nodePrincipal(0)), counter(), durable);
  const batches = chain(9);
  feed(exec, batches.slice(0, 5));
  const refused = readReplies(exec.step(readRequest(1)));
  assert.equal(refused.length, 1);
  assert.equal(refused[0]!.seq, 0, 'refused while behind the fence (5 < 8)');
  assert.equal(refused[0]!.result.length, 0);
  feed(exec, batches.slice(5, 8));
  const answered = readReplies(exec.step(readRequest(2)));
  assert.equal(answered[0]!.seq, 9, 'answered once through the fence');
  assert.deepEqual([...answered[0]!.result], [8]);
});

test('read fence: a fresh executor (no fence on disk) answers reads at once', () => {
  const exec = new ExecCore(cluster, 0, ring(nodePrincipal(0)), counter(), new Map());
  const r = readReplies(exec.step(readRequest(1)));
  assert.equal(r[0]!.seq, 1);
});

// Client 1's home executor is exec.nodes[1 % 3] = node 1.
const home = cluster.exec.nodes[1 % cluster.exec.nodes.length]!;
const others = cluster.exec.nodes.filter((n) => n !== home);

test("read relay: the home passes a fanout read on, gathers every executor's answer, and sends them together", () => {
  const h = new ExecCore(cluster, home, ring(nodePrincipal(home)), counter(), new Map());
  const first = sends(h.step(readRequest(1, true)));
  assert.deepEqual(first.filter((s) => s.msg.kind === 'readRequest').map((s) => s.to.id).sort(), [...others].sort());
  assert.ok(first.every((s) => s.msg.kind !== 'readRequest' || !s.msg.fanout), 'passed on without fanout');
  assert.equal(first.filter((s) => s.msg.kind === 'readReply').length, 0, 'nothing to the client before every answer is in');
  const answers = others.map((o) => {
    const e = new ExecCore(cluster, o, ring(nodePrincipal(o)), counter(), new Map());
    const out = sends(e.step(readRequest(1, false, nodePrincipal(home)))).filter((s) => s.msg.kind === 'relayReadReply' || s.msg.kind === 'readReply');
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]!.to, nodePrincipal(home), 'answered to the home');
    assert.equal(out[0]!.msg.kind, 'relayReadReply');
    return out[0]!.msg;
  });
  const clientRing = ring(clientPrincipal(1));
  let sent: ReturnType<typeof sends> = [];
  for (const [i, a] of answers.entries()) sent = sends(h.step(msg(nodePrincipal(others[i]!), a)));
  const replies = sent.filter((s) => s.msg.kind === 'readReply');
  assert.equal(replies.length, cluster.exec.nodes.length, 'all three answers at once');
  for (const r of replies) {
    assert.deepEqual(r.to, clientPrincipal(1));
    assert.ok(r.msg.kind === 'readReply' && clientRing.verifyMacFrom(nodePrincipal(r.msg.exec), replyCoreBytes(r.msg.exec, 1, r.msg.result), r.msg.mac), "each with its executor's MAC for the client");
  }
});

test('read relay: a refusal at the home goes at once; a relayed read from a node that is not the home is rejected', () => {
  const h = new ExecCore(cluster, home, ring(nodePrincipal(home)), counter(), new Map([[execFenceKey, u64Bytes(8)]]));
  const refused = readReplies(h.step(readRequest(1, true)));
  assert.equal(refused.length, 1);
  assert.equal(refused[0]!.seq, 0);
  const o = new ExecCore(cluster, others[0]!, ring(nodePrincipal(others[0]!)), counter(), new Map());
  const effects = o.step(readRequest(1, false, nodePrincipal(others[1]!)));
  assert.ok(!sends(effects).some((s) => s.msg.kind === 'relayReadReply' || s.msg.kind === 'readReply'));
  assert.ok(effects.some((e) => e.kind === 'note' && e.note.type === 'rejected' && e.note.reason === 'sender_mismatch'));
});
