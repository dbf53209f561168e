/** Execution stage: the read fence (a restarted executor does not answer reads from a rolled-back state). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExecCore, execFenceKey } from './exec.ts';
import type { ReplicatedApp } from '../../app/contract.ts';
import { clientPrincipal, nodePrincipal, type Principal } from '../../crypto/provider.ts';
import { encodeBatch, type Batch, type Message } from '../../codec/messages.ts';
import { sends, testCluster } from '../testing.ts';
import { readU64Durable, requestCoreBytes, u64Bytes } from '../common.ts';
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

function readRequest(reqId: number) {
  const client = clientPrincipal(1);
  const core = requestCoreBytes(1, reqId, new Uint8Array([0]));
  const macs = ring(client).authenticate(cluster.exec.nodes.map(nodePrincipal), core);
  return msg(client, { kind: 'readRequest', client: 1, reqId, op: new Uint8Array([0]), macs });
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
