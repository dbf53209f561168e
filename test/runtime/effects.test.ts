/**
 * EffectRunner: barriers hold back later effects; persists reach the store in queue order,
 * lazy ones included, while a barrier is in flight (a record written with a barrier must never
 * reach the disk before a body written lazily ahead of it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EffectRunner, type DurableWriter } from '../../src/runtime/effects.ts';
import type { Effect } from '../../src/stages/types.ts';
import { Outbox } from '../../src/stages/common.ts';
import { nodePrincipal } from '../../src/crypto/provider.ts';

/** A store that records the order of writes and completes them only when told. */
class HeldStore implements DurableWriter {
  readonly order: string[] = [];
  private readonly pending: (() => void)[] = [];
  /** Keys of the writes handed over as lazy (nothing waits for them). */
  readonly lazy: string[] = [];
  write(puts: readonly (readonly [string, Uint8Array])[], _deletes: readonly string[], lazy = false): Promise<void> {
    this.order.push(puts.map(([k]) => k).join(','));
    if (lazy) this.lazy.push(puts.map(([k]) => k).join(','));
    return new Promise((resolve) => this.pending.push(resolve));
  }
  /** Completes every write handed over so far. */
  async completeAll(): Promise<void> {
    for (const r of this.pending.splice(0)) r();
    await new Promise((r) => setImmediate(r));
  }
}

/** A runner over `store` that records the details of the safety-alarm notes it runs. */
function recordingRunner(store: DurableWriter): { runner: EffectRunner; ran: string[] } {
  const ran: string[] = [];
  const runner = new EffectRunner(
    store,
    (e) => {
      if (e.kind === 'note' && e.note.type === 'safetyAlarm') ran.push(e.note.detail);
    },
    (err) => {
      throw err;
    },
  );
  return { runner, ran };
}

const persist = (key: string, barrier = true): Effect => ({ kind: 'persist', puts: [[key, new Uint8Array([1])]], deletes: [], ...(barrier ? {} : { barrier: false }) });
const note = (detail: string): Effect => ({ kind: 'note', note: { type: 'safetyAlarm', detail } });

test('persists reach the store in queue order while a barrier waits; effects behind a barrier wait for it', async () => {
  const store = new HeldStore();
  const { runner, ran } = recordingRunner(store);
  runner.run([persist('x'), note('after x')]);
  runner.run([persist('body', false)]);
  runner.run([persist('record'), note('after record'), { kind: 'send', to: [nodePrincipal(1)], msg: { kind: 'viewHint', view: 0 } }]);
  assert.deepEqual(store.order, ['x', 'body', 'record'], 'the lazy body is written before the later barrier record');
  assert.deepEqual(ran, [], 'nothing runs before the first barrier is durable');
  await store.completeAll();
  assert.deepEqual(ran, ['after x', 'after record']);
  assert.deepEqual(store.order, ['x', 'body', 'record'], 'no write is handed over twice');
});

test('a scoped persist holds back only its own effects: later effects run at once, its `then` once it is durable', async () => {
  const store = new HeldStore();
  const { runner, ran } = recordingRunner(store);
  runner.run([persist('chunk', false), { kind: 'persist', puts: [['manifest', new Uint8Array([1])]], deletes: [], barrier: false, then: [{ kind: 'note', note: { type: 'safetyAlarm', detail: 'token' } }] }, note('reply')]);
  assert.deepEqual(store.order, ['chunk', 'manifest'], 'the scoped write goes to the store after the lazy one before it');
  assert.deepEqual(ran, ['reply'], 'the effect behind it did not wait; its own did');
  await store.completeAll();
  assert.deepEqual(ran, ['reply', 'token']);
});

test('Outbox: a scoped write is emitted last and carries the newest value of a key written again later in the step', () => {
  const out = new Outbox();
  const v = (b: number): Uint8Array => new Uint8Array([b]);
  out.persistThen([['o/s/5', v(1)]], [], [{ kind: 'note', note: { type: 'safetyAlarm', detail: 'prepare' } }]);
  out.write('o/s/5', v(2));
  out.writeLazy('o/b/5', v(3));
  out.persistThen([['o/b/5', v(4)]], [], []);
  out.removeLazy('o/b/5');
  const effects = out.drain();
  const persists = effects.filter((e) => e.kind === 'persist');
  assert.equal(persists.length, 4, 'barrier, lazy, and two scoped persists');
  const last = (key: string): Uint8Array | undefined | 'deleted' => {
    let found: Uint8Array | undefined | 'deleted';
    for (const p of persists) {
      for (const [k, b] of p.puts) if (k === key) found = b;
      if (p.deletes.includes(key)) found = 'deleted';
    }
    return found;
  };
  assert.deepEqual(last('o/s/5'), v(2), 'the later barrier value wins in the store, not the older scoped one');
  assert.equal(last('o/b/5'), 'deleted', 'a later delete reaches the scoped persist too');
  assert.deepEqual(persists[2]!.then?.length, 1, 'the first scoped persist keeps its effect');
});

test('Outbox: a write after a scoped write carries it, so no record reaches the store before a body it names', () => {
  const v = (b: number): Uint8Array => new Uint8Array([b]);
  for (const later of ['barrier', 'lazy'] as const) {
    const out = new Outbox();
    out.persistThen([['o/b/5/d', v(1)], ['o/s/5', v(2)]], [], []);
    if (later === 'barrier') out.write('o/s/5', v(3));
    else out.writeLazy('o/s/5', v(3));
    const persists = out.drain().filter((e) => e.kind === 'persist');
    const firstWithRecord = persists.findIndex((p) => p.puts.some(([k, b]) => k === 'o/s/5' && b[0] === 3));
    const firstWithBody = persists.findIndex((p) => p.puts.some(([k]) => k === 'o/b/5/d'));
    assert.ok(firstWithRecord >= 0 && firstWithBody >= 0);
    assert.ok(firstWithBody <= firstWithRecord, `${later}: the body is in the same or an earlier persist than the record naming it`);
  }
});

test('the store learns which writes are lazy: barrier false and no effects behind it', async () => {
  const store = new HeldStore();
  const { runner } = recordingRunner(store);
  runner.run([persist('barrier'), persist('lazy', false), { kind: 'persist', puts: [['scoped', new Uint8Array([1])]], deletes: [], barrier: false, then: [{ kind: 'note', note: { type: 'safetyAlarm', detail: 'after scoped' } }] }]);
  assert.deepEqual(store.order, ['barrier', 'lazy', 'scoped']);
  assert.deepEqual(store.lazy, ['lazy'], 'a scoped write is waited for by its own effects, so it is not lazy');
  await store.completeAll();
});
