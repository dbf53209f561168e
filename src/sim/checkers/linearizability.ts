/**
 * Linearizability checker for key-value histories.
 *
 * Input is a list of client operations, each with the instant the client issued it (`invoke`) and,
 * when it finished, the instant the client saw the answer (`complete`) plus that answer. The
 * question is whether one total order of the operations exists that (a) respects real time, i.e.
 * puts `a` before `b` whenever `a.complete < b.invoke`, and (b) replayed one at a time through the
 * sequential model `applyKv` gives every completed operation exactly the output its client saw
 * (compared with `outputsEqual`).
 *
 * Per key. Operations on different keys never touch each other's state, and linearizability is
 * compositional (P-compositionality): the whole history is linearizable exactly when each per-key
 * sub-history is. So the history is split by `op.key` and every key is searched on its own, from
 * `initial.get(key) ?? null`. This turns one search over N operations into several much smaller
 * ones, which matters because the search is exponential in the worst case.
 *
 * Search (after Wing & Gong, with Lowe's memoisation, arranged the way Porcupine does it). Each
 * operation becomes a call event at `invoke` and a return event at `complete`. The events are
 * sorted by time into a doubly linked list; at equal times calls sort before returns, so an
 * operation returning at the same instant another is invoked counts as concurrent with it (the
 * real-time order uses a strict `<`). Walking the list from its head:
 *  - at a call event, try to make that operation the next one in the order: run `applyKv` on the
 *    current value; if the output matches and the resulting configuration (see below) is new,
 *    take it: push (operation, previous value) on a stack, unlink its call and return events from
 *    the list, and start again from the head; otherwise move on to the next event;
 *  - at a return event, the operation it belongs to has reached its deadline without being placed,
 *    so the current configuration is a dead end: pop the last placed operation, restore the value
 *    and relink its events (links are restored in reverse order of removal, so the list comes back
 *    exactly as it was), and carry on with the event after its call;
 *  - when every completed operation is placed the key is linearizable; when a dead end is reached
 *    with an empty stack, it is not.
 * Invariants: the stack holds the placed operations in order and the list holds exactly the
 * events of the unplaced ones; the current value is the initial value with the stacked
 * operations applied in order; every event before the cursor is a call that was already tried
 * from the current configuration. Only calls that precede every remaining return are ever tried,
 * which is precisely the set of operations that real time allows to go next.
 *
 * Memoisation. A configuration is (set of placed operations, current value); two partial orders
 * reaching the same configuration have the same futures, so each is explored once. Sets are
 * bitsets; the cache is a hash map keyed by an incrementally maintained Zobrist hash of the set
 * of placed completed operations mixed with a hash of the value, with full comparison behind it.
 *
 * Pending operations (`complete === undefined`: the client crashed or gave up). Such an operation
 * may have taken effect at any instant after its invoke, or never. It gets a call event but no
 * return event (its deadline is infinitely far away) and any output is accepted for it. The search
 * may place it wherever real time allows, which lets it explain later reads; it never has to be
 * placed, because success only asks for all *completed* operations to be placed (leaving a
 * pending operation out is the same as placing it after everything else). A pending `get`
 * cannot change state and cannot explain anything, so it is dropped before searching. Pending
 * operations also strengthen the cache: a configuration is dominated by an explored one with the
 * same value and the same completed operations placed whose placed pending operations are a
 * subset of its own (the explored one could still do everything the new one can, step for step),
 * so the new one is skipped; per (completed set, value) only the minimal pending sets are kept.
 *
 * Reads. A completed `get` whose output matches the current value can be placed right now
 * without loss: any linearization from here that places it later stays valid with it moved to
 * the front, since it changes nothing and every operation that real time puts before it is
 * already placed. So when placing such a read leads to a dead end (or to a dominated
 * configuration), the current configuration is a dead end too and the search backtracks at once
 * instead of trying the other candidates. (This holds only for operations that leave every value
 * unchanged; a `cas` that fails here might succeed elsewhere.)
 *
 * Operations whose output is an error are ordinary operations: `applyKv` produces errors too
 * (e.g. `incr` on a non-integer value), and the error code must match. An error that `applyKv`
 * can never produce (such as `bad_request`) therefore makes a history non-linearizable.
 *
 * Budget. The search counts steps (events examined plus backtracks) per key and gives up with
 * `ok: 'unknown'` once `stepsMax` is exceeded, so a pathological history cannot hang a test run.
 */
import type { KvOp, KvOutput } from '../../services/kv/model.ts';
import { applyKv, isReadOnly, outputsEqual } from '../../services/kv/model.ts';

/** One client operation as recorded by a client: invocation and (maybe) completion time. */
export interface HistoryOp {
  /** Identifier of the client that issued the operation (only used in reports). */
  readonly client: number;
  /** The operation; its `key` selects the sub-history it belongs to. */
  readonly op: KvOp;
  /** Output observed by the client; undefined when the op never completed (crashed/timed out client). */
  readonly output: KvOutput | undefined;
  /** Invocation time (any monotone unit, e.g. virtual ns). */
  readonly invoke: number;
  /** Completion time, or undefined when it never completed. complete >= invoke. */
  readonly complete: number | undefined;
}

/**
 * Verdict of {@link checkLinearizable}.
 * - `ok: true`: every key's sub-history is linearizable.
 * - `ok: false`: the sub-history of `key` (given in full as `ops`) has no linearization.
 * - `ok: 'unknown'`: no key was found to be non-linearizable, but the search for `key` ran out of
 *   its step budget.
 *
 * `checked` is the number of completed operations in the keys that were examined.
 */
export type LinearizabilityResult =
  | { readonly ok: true; readonly checked: number }
  | { readonly ok: false; readonly key: string; readonly reason: string; readonly ops: readonly HistoryOp[]; readonly checked: number }
  | { readonly ok: 'unknown'; readonly key: string; readonly reason: string; readonly checked: number };

/** Options of {@link checkLinearizable}. */
export interface CheckLinearizableOptions {
  /** Value of each key before the history starts; keys not in the map start as `null` (absent). */
  readonly initial?: ReadonlyMap<string, string | null>;
  /** Step budget of the search, per key. Defaults to {@link DEFAULT_STEPS_MAX}. */
  readonly stepsMax?: number;
}

/** Default per-key step budget of {@link checkLinearizable}. */
export const DEFAULT_STEPS_MAX = 2_000_000;

/**
 * Checks that a key-value history is linearizable with respect to `applyKv`.
 *
 * Keys are checked in order of first appearance in `history`; the first key found not to be
 * linearizable ends the check with `ok: false`. A key that exhausts its budget is remembered and
 * the remaining keys are still checked, so a definite failure elsewhere wins over `'unknown'`.
 *
 * @throws RangeError when the history is malformed: a non-finite time, `complete < invoke`, or an
 *   operation with exactly one of `output` and `complete` undefined; or when `stepsMax` is not a
 *   positive integer.
 */
export function checkLinearizable(history: readonly HistoryOp[], opts?: CheckLinearizableOptions): LinearizabilityResult {
  const stepsMax = opts?.stepsMax ?? DEFAULT_STEPS_MAX;
  if (!Number.isSafeInteger(stepsMax) || stepsMax < 1) throw new RangeError(`stepsMax must be a positive integer, got ${stepsMax}`);
  const byKey = new Map<string, HistoryOp[]>();
  history.forEach((h, index) => {
    validate(h, index);
    const list = byKey.get(h.op.key);
    if (list === undefined) byKey.set(h.op.key, [h]);
    else list.push(h);
  });
  let checked = 0;
  let unknown: { key: string; reason: string } | undefined;
  for (const [key, ops] of byKey) {
    const verdict = checkKey(ops, opts?.initial?.get(key) ?? null, stepsMax);
    checked += verdict.completed;
    if (verdict.ok === false) return { ok: false, key, reason: verdict.reason, ops, checked };
    if (verdict.ok === 'unknown') unknown ??= { key, reason: verdict.reason };
  }
  if (unknown !== undefined) return { ok: 'unknown', key: unknown.key, reason: unknown.reason, checked };
  return { ok: true, checked };
}

function validate(h: HistoryOp, index: number): void {
  const where = `history[${index}] (client ${h.client}, ${h.op.kind} ${JSON.stringify(h.op.key)})`;
  if (!Number.isFinite(h.invoke)) throw new RangeError(`${where}: invoke must be a finite number`);
  if (h.complete === undefined) {
    if (h.output !== undefined) throw new RangeError(`${where}: has an output but no completion time`);
    return;
  }
  if (h.output === undefined) throw new RangeError(`${where}: has a completion time but no output`);
  if (!Number.isFinite(h.complete)) throw new RangeError(`${where}: complete must be a finite number`);
  if (h.complete < h.invoke) throw new RangeError(`${where}: complete (${h.complete}) is before invoke (${h.invoke})`);
}

// ---------------------------------------------------------------------------------------------
// Per-key search.

/** An operation taking part in one key's search. */
interface SearchOp {
  /** Position in the key's operation list (tie-breaker when sorting events). */
  readonly id: number;
  /** Index in the placed-set bitset of its class (completed or pending operations). */
  readonly bit: number;
  readonly source: HistoryOp;
  /** Expected output; undefined for a pending operation (anything goes). */
  readonly output: KvOutput | undefined;
}

/** A call or return event in the linked list. */
interface Event {
  readonly op: SearchOp;
  readonly isCall: boolean;
  readonly time: number;
  /** For a call event: the matching return event (null for a pending operation). */
  ret: Event | null;
  prev: Event | null;
  next: Event | null;
}

type KeyVerdict =
  | { readonly ok: true; readonly completed: number }
  | { readonly ok: false | 'unknown'; readonly reason: string; readonly completed: number };

function checkKey(history: readonly HistoryOp[], initial: string | null, stepsMax: number): KeyVerdict {
  // Build the operations: pending reads are dropped, everything else takes part.
  const ops: SearchOp[] = [];
  let completed = 0;
  let pendingCount = 0;
  for (const h of history) {
    if (h.complete === undefined) {
      if (isReadOnly(h.op)) continue;
      ops.push({ id: ops.length, bit: pendingCount++, source: h, output: undefined });
    } else {
      ops.push({ id: ops.length, bit: completed++, source: h, output: h.output });
    }
  }
  if (completed === 0) return { ok: true, completed };

  // Events sorted by time; calls before returns at equal times (strict real-time order).
  const events: Event[] = [];
  for (const op of ops) {
    const call: Event = { op, isCall: true, time: op.source.invoke, ret: null, prev: null, next: null };
    events.push(call);
    if (op.source.complete !== undefined) {
      const ret: Event = { op, isCall: false, time: op.source.complete, ret: null, prev: null, next: null };
      call.ret = ret;
      events.push(ret);
    }
  }
  events.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.op.id - b.op.id);
  let head: Event | null = events[0] ?? null;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    e.prev = events[i - 1] ?? null;
    e.next = events[i + 1] ?? null;
  }
  const unlink = (e: Event): void => {
    if (e.prev === null) head = e.next;
    else e.prev.next = e.next;
    if (e.next !== null) e.next.prev = e.prev;
  };
  const relink = (e: Event): void => {
    if (e.prev === null) head = e;
    else e.prev.next = e;
    if (e.next !== null) e.next.prev = e;
  };

  // Placed sets: completed and pending operations are kept apart for the dominance check.
  const done = new Uint32Array((completed + 31) >>> 5);
  const pend = new Uint32Array((pendingCount + 31) >>> 5);
  let zobrist = 0; // of `done` only
  const cache = new SeenCache();
  // `certain`: the op was a read that matched, so no alternative at that level needs trying.
  const stack: { readonly call: Event; readonly before: string | null; readonly certain: boolean }[] = [];
  let state = initial;
  let placedCompleted = 0;
  // Diagnostics: the deepest point reached and the operation whose deadline stopped it.
  let best = -1;
  let blocker: SearchOp | undefined;

  // `cursor === null` means the current configuration is known to be a dead end.
  let cursor: Event | null = head;
  let steps = 0;
  while (placedCompleted < completed) {
    if (++steps > stepsMax) {
      return {
        ok: 'unknown',
        reason: `search budget of ${stepsMax} steps exhausted on ${ops.length} ops (${completed} completed); deepest partial linearization placed ${Math.max(best, placedCompleted)} completed ops`,
        completed,
      };
    }
    if (cursor !== null && cursor.isCall) {
      const op = cursor.op;
      const step = applyKv(state, op.source.op);
      if (op.output === undefined || outputsEqual(step.output, op.output)) {
        const certain = isReadOnly(op.source.op);
        const set = op.output === undefined ? pend : done;
        const word = op.bit >>> 5;
        const mask = 1 << (op.bit & 31);
        set[word] = set[word]! | mask;
        const z = op.output === undefined ? zobrist : zobrist ^ zobristOf(op.bit);
        if (cache.visit(z, done, pend, step.next)) {
          zobrist = z;
          stack.push({ call: cursor, before: state, certain });
          state = step.next;
          if (op.output !== undefined) placedCompleted++;
          unlink(cursor);
          if (cursor.ret !== null) unlink(cursor.ret);
          cursor = head;
          continue;
        }
        set[word] = set[word] & ~mask;
        // Not new: the configuration with this op placed is covered by a stored one. For a read
        // that makes the current configuration a dead end as well (see "Reads" above).
        cursor = certain ? null : cursor.next;
        continue;
      }
      cursor = cursor.next;
      continue;
    }
    // A return event (an unplaced op's deadline) or a known dead end: backtrack.
    if (cursor !== null && placedCompleted > best) {
      best = placedCompleted;
      blocker = cursor.op;
    }
    const top = stack.pop();
    if (top === undefined) {
      const stuck = blocker === undefined ? '' : `; the longest linearizable prefix has ${best} completed ops, after which ${describe(blocker.source)} cannot be linearized before it completes`;
      return { ok: false, reason: `no linearization of ${ops.length} ops (${completed} completed)${stuck}`, completed };
    }
    const op = top.call.op;
    if (top.call.ret !== null) relink(top.call.ret);
    relink(top.call);
    state = top.before;
    if (op.output !== undefined) placedCompleted--;
    const set = op.output === undefined ? pend : done;
    set[op.bit >>> 5] = set[op.bit >>> 5]! & ~(1 << (op.bit & 31));
    if (op.output !== undefined) zobrist ^= zobristOf(op.bit);
    cursor = top.certain ? null : top.call.next;
  }
  return { ok: true, completed };
}

/**
 * Explored configurations. A configuration is (completed ops placed, pending ops placed, value);
 * one is dominated by a stored one with the same completed set and value whose pending set is a
 * subset of its own (the stored one can do everything it can: the extra pending ops were optional
 * and carry no deadline). Per (completed set, value) only the minimal pending sets are kept.
 */
class SeenCache {
  private readonly buckets = new Map<number, { readonly done: Uint32Array; readonly state: string | null; readonly pendingSets: Uint32Array[] }[]>();

  /** Stores the configuration and returns true, or returns false when it is dominated. */
  visit(zobrist: number, done: Uint32Array, pend: Uint32Array, state: string | null): boolean {
    // Kept within 30 bits so the map key stays a small integer.
    const hash = (zobrist ^ Math.imul(hashState(state), 0x9e3779b1)) & 0x3fffffff;
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) {
      this.buckets.set(hash, [{ done: done.slice(), state, pendingSets: [pend.slice()] }]);
      return true;
    }
    for (const entry of bucket) {
      if (entry.state !== state || !sameBits(entry.done, done)) continue;
      const sets = entry.pendingSets;
      for (const seen of sets) if (isSubset(seen, pend)) return false;
      let kept = 0;
      for (const seen of sets) if (!isSubset(pend, seen)) sets[kept++] = seen;
      sets.length = kept;
      sets.push(pend.slice());
      return true;
    }
    bucket.push({ done: done.slice(), state, pendingSets: [pend.slice()] });
    return true;
  }
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isSubset(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if ((a[i]! & ~b[i]!) !== 0) return false;
  return true;
}

/** Fixed pseudo-random 32-bit value for bit `id` (an integer finaliser, so no table is needed). */
function zobristOf(id: number): number {
  let x = Math.imul(id + 1, 0x9e3779b1);
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) | 0;
}

/** FNV-1a over the UTF-16 code units; `null` gets its own constant. */
function hashState(state: string | null): number {
  if (state === null) return 0x5bd1e995;
  let h = 0x811c9dc5;
  for (let i = 0; i < state.length; i++) h = Math.imul(h ^ state.charCodeAt(i), 0x01000193);
  return h | 0;
}

function describe(h: HistoryOp): string {
  // A forged reply may carry an output of another kind than its op: show it raw.
  const output = h.output !== undefined && h.output.kind !== 'error' && h.output.kind !== h.op.kind ? h.output : toJsonObject(h).output;
  const args = h.op.kind === 'get' || h.op.kind === 'del' ? '' : `, ${JSON.stringify(jsonValue(h.op))}`;
  return `client ${h.client} ${h.op.kind}(${JSON.stringify(h.op.key)}${args}) -> ${JSON.stringify(output)} [${h.invoke}, ${h.complete ?? 'pending'}]`;
}

// ---------------------------------------------------------------------------------------------
// JSON lines.

type Json = string | number | boolean | null | { readonly [k: string]: Json };

const fieldOrder = ['client', 'op', 'key', 'value', 'output', 'invoke', 'complete'] as const;
const errorCodes: readonly string[] = ['not_integer', 'overflow', 'bad_request'] satisfies readonly Extract<KvOutput, { kind: 'error' }>['code'][];

function jsonValue(op: KvOp): Json {
  switch (op.kind) {
    case 'put':
      return op.value;
    case 'cas':
      return { expected: op.expected, next: op.next };
    case 'incr':
      return op.delta;
    case 'get':
    case 'del':
      return null;
  }
}

function jsonOutput(h: HistoryOp): Json {
  const out = h.output;
  if (out === undefined) return null;
  if (out.kind === 'error') return { error: out.code };
  if (out.kind !== h.op.kind) throw new Error(`toJsonLine: output kind "${out.kind}" does not match op kind "${h.op.kind}"`);
  switch (out.kind) {
    case 'get':
      return out.value;
    case 'put':
      return 'ok';
    case 'del':
      return out.existed;
    case 'cas':
      return out.swapped;
    case 'incr':
      return out.value;
  }
}

function toJsonObject(h: HistoryOp): Record<(typeof fieldOrder)[number], Json> {
  return {
    client: h.client,
    op: h.op.kind,
    key: h.op.key,
    value: jsonValue(h.op),
    output: jsonOutput(h),
    invoke: h.invoke,
    complete: h.complete ?? null,
  };
}

/**
 * Serialises one history operation as a single-line JSON object with the fields, in order,
 * `client`, `op` (`put|get|del|cas|incr`), `key`, `value` (put: the string; cas:
 * `{"expected", "next"}`; incr: the delta; get/del: null), `output` (get: string or null; put:
 * `"ok"`; del/cas: boolean; incr: number; error: `{"error": code}`; pending: null), `invoke`, and
 * `complete` (null when pending). {@link fromJsonLine} reverses it.
 *
 * @throws Error when the output's kind belongs to a different operation kind (not representable).
 */
export function toJsonLine(h: HistoryOp): string {
  return JSON.stringify(toJsonObject(h));
}

/**
 * Parses a line produced by {@link toJsonLine} back into a {@link HistoryOp}.
 *
 * @throws Error naming the offending field when the line is not such an object (bad JSON,
 *   missing or unknown field, wrong type, unknown op or error code, complete before invoke,
 *   a non-null output on a pending op).
 */
export function fromJsonLine(line: string): HistoryOp {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (e) {
    throw new Error(`fromJsonLine: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('fromJsonLine: line is not a JSON object');
  const rec = parsed as Record<string, unknown>;
  for (const name of Object.keys(rec)) {
    if (!(fieldOrder as readonly string[]).includes(name)) throw new Error(`fromJsonLine: unknown field "${name}"`);
  }
  for (const name of fieldOrder) {
    if (!(name in rec)) throw new Error(`fromJsonLine: missing field "${name}"`);
  }
  const bad = (field: string, want: string): Error => new Error(`fromJsonLine: field "${field}" must be ${want}, got ${JSON.stringify(rec[field])}`);
  const finite = (field: string): number => {
    const v = rec[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(field, 'a finite number');
    return v;
  };
  const nullableString = (v: unknown): v is string | null => v === null || typeof v === 'string';

  const client = finite('client');
  const key = rec['key'];
  if (typeof key !== 'string') throw bad('key', 'a string');
  const value = rec['value'];
  let op: KvOp;
  switch (rec['op']) {
    case 'get':
    case 'del':
      if (value !== null) throw bad('value', `null for ${rec['op']}`);
      op = { kind: rec['op'], key };
      break;
    case 'put':
      if (typeof value !== 'string') throw bad('value', 'a string for put');
      op = { kind: 'put', key, value };
      break;
    case 'cas': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('value', 'an {"expected","next"} object for cas');
      const v = value as Record<string, unknown>;
      const names = Object.keys(v);
      if (names.length !== 2 || !nullableString(v['expected']) || typeof v['next'] !== 'string') {
        throw bad('value', 'exactly {"expected": string|null, "next": string} for cas');
      }
      op = { kind: 'cas', key, expected: v['expected'], next: v['next'] };
      break;
    }
    case 'incr':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('value', 'a finite number (the delta) for incr');
      op = { kind: 'incr', key, delta: value };
      break;
    default:
      throw bad('op', 'one of "put", "get", "del", "cas", "incr"');
  }
  const invoke = finite('invoke');
  let complete: number | undefined;
  if (rec['complete'] !== null) {
    complete = finite('complete');
    if (complete < invoke) throw bad('complete', `null or a number >= invoke (${invoke})`);
  }
  const out = rec['output'];
  let output: KvOutput | undefined;
  if (complete === undefined) {
    if (out !== null) throw bad('output', 'null for a pending op (complete is null)');
  } else if (typeof out === 'object' && out !== null && !Array.isArray(out)) {
    const o = out as Record<string, unknown>;
    const code = o['error'];
    if (Object.keys(o).length !== 1 || typeof code !== 'string' || !errorCodes.includes(code)) {
      throw bad('output', `{"error": ${errorCodes.map((c) => JSON.stringify(c)).join('|')}} when it is an object`);
    }
    output = { kind: 'error', code: code as Extract<KvOutput, { kind: 'error' }>['code'] };
  } else {
    switch (op.kind) {
      case 'get':
        if (!nullableString(out)) throw bad('output', 'a string or null for get');
        output = { kind: 'get', value: out };
        break;
      case 'put':
        if (out !== 'ok') throw bad('output', '"ok" for put');
        output = { kind: 'put' };
        break;
      case 'del':
        if (typeof out !== 'boolean') throw bad('output', 'a boolean for del');
        output = { kind: 'del', existed: out };
        break;
      case 'cas':
        if (typeof out !== 'boolean') throw bad('output', 'a boolean for cas');
        output = { kind: 'cas', swapped: out };
        break;
      case 'incr':
        if (typeof out !== 'number' || !Number.isFinite(out)) throw bad('output', 'a finite number for incr');
        output = { kind: 'incr', value: out };
        break;
    }
  }
  return { client, op, output, invoke, complete };
}
