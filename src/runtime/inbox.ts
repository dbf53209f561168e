/**
 * The inbox of a node: where decoded messages wait between the transport and the stage
 * machines, so that no single sender can take more than its share of the node's work
 * (Aardvark §3.3 resource isolation, §3.4.2 / Fig 3.5 replica-message filter; docs/protocol.md
 * section 11). Pure: no sockets, no timers, no clock; the caller passes `now` (ms, monotonic)
 * and the encoded size of each message.
 *
 * Lanes:
 * - `self`: messages a node's co-located stages send to each other. Served before anything
 *   else and never dropped: their volume is bounded by the inputs that caused them, and a node
 *   that dropped its own messages would stall itself.
 * - one lane per peer replica (by node id), bounded in messages and bytes;
 * - one shared `clients` lane for every client, bounded likewise, holding AT MOST ONE request
 *   per client: a client's newer `request` / `readRequest` takes the place (and the position)
 *   of its queued older one, and an older one arriving after a newer one is dropped. Clients
 *   are closed-loop (stages/client: one operation outstanding), so the older one is obsolete.
 *   A flooding client therefore holds one slot, not the queue. Anything else from a client
 *   (clients send nothing else; the stages would reject it) is dropped as `not_a_client_request`.
 * - low priority, one lane per peer replica: catch-up and state-transfer requests
 *   (`lastExec`, `fetchCheckpoint`, and a remote `retransmit`). Answering them is the costly
 *   part of helping a lagging or malicious peer; Aardvark serves them only when idle.
 *
 * Service (`take`): `self` first; then round-robin over the non-empty normal lanes (replicas
 * and clients), one message per lane per turn, so with k busy lanes a flooder gets 1/k of the
 * service whatever its rate. The low lanes (round-robin among themselves) are served when no
 * normal lane has anything. Bounded starvation: once the oldest low message has waited
 * `lowWaitMaxMs`, the low class takes one turn in the normal rotation (after every other busy
 * lane has had one since its last turn) until it is no longer that old, so it gets at least
 * 1/(k+1) of the service while it is behind and a low message waits at most `lowWaitMaxMs` plus
 * one rotation behind older low messages. Aardvark instead resets an overfull catch-up queue;
 * here the low lanes are bounded like the others (drops counted), which is the same bound on
 * memory without discarding what was already accepted.
 *
 * Full lanes drop the NEWEST message (tail drop), counted as `inbox_full` for its source. Why
 * the newest: O(1); what is queued is served within a bounded delay, so it is not stale; and
 * the protocol's streams (batches by sequence number, checkpoint parts) are useful as a prefix:
 * keeping the oldest leaves a contiguous prefix the stage can apply and retransmission fills
 * in the rest, while dropping the oldest would leave a gap in front of what is kept. A message
 * is always admitted to an empty lane, whatever its size (a legal frame may exceed the byte
 * bound: a large checkpoint chunk), so every lane makes progress.
 *
 * Flood detection (Aardvark Fig 3.5 (a)): messages received from each replica are counted over
 * a sliding window (`floodWindowMs`, in 10 buckets). Replica q is cut off when its count is
 * above the floor (`floodFloor`: an idle cluster's trickle of STATUS never trips the ratio) AND
 * above `floodRatio` (20) times the count of EVERY other replica, and at least one other
 * replica sent something in the window. While cut off (`floodCutOffMs`), everything from q is
 * dropped (`flood_cut_off`) and its queued messages are discarded; the caller disconnects it
 * (push returns 'flood'). Liveness guard (Aardvark reconnects a flooder "once f others are cut
 * off"): at most `cutOffMax` (= r, the number of replicas that may lie) are cut off at once,
 * and never so many that cut-off plus silent replicas (no message in the window: crashed,
 * stopped, partitioned) reach `silentMax` (= u), because a correct node compared only with
 * slow or absent peers can look like a flooder, and cutting it would cost liveness.
 * `cutOffMax = 0` disables flood detection (crash-only clusters, r = 0).
 *
 * Invariants:
 * - every lane's message count and byte count equal the sum over its queued items, and each
 *   is within its bound, except for the single item an empty lane always admits;
 * - a normal lane is in the rotation iff it is non-empty (likewise the low lanes);
 * - the clients lane holds at most one message per client, a request or readRequest of that client;
 * - no message from a cut-off replica is queued;
 * - `size` is the number of queued messages over all lanes.
 */
import { assert } from '../core/assert.ts';
import type { Principal } from '../crypto/provider.ts';
import type { Message, MsgKindName } from '../codec/messages.ts';

/** Bounds and rules of an inbox. Times are ms of the caller's clock. */
export interface InboxOptions {
  /** Node ids of the peer replicas (not this node). */
  readonly replicas: readonly number[];
  /** Per replica lane: most messages queued (default 8192). */
  readonly replicaMessagesMax?: number;
  /** Per replica lane: most encoded bytes queued (default 32 MiB). */
  readonly replicaBytesMax?: number;
  /** Clients lane (all clients together): most messages (default 4096). */
  readonly clientMessagesMax?: number;
  /** Clients lane: most encoded bytes (default 16 MiB). */
  readonly clientBytesMax?: number;
  /** Per replica low-priority lane: most messages (default 1024). */
  readonly lowMessagesMax?: number;
  /** Per replica low-priority lane: most bytes (default 1 MiB). */
  readonly lowBytesMax?: number;
  /** A low-priority message this old joins the normal rotation (default 100 ms). */
  readonly lowWaitMaxMs?: number;
  /** Sliding window over which replica messages are counted (default 1000 ms). */
  readonly floodWindowMs?: number;
  /** A replica sending more than this many times every other replica is flooding (default 20). */
  readonly floodRatio?: number;
  /** Counts at or below this (per window) never trip the ratio (default 4000). */
  readonly floodFloor?: number;
  /** How long a flooding replica stays cut off (default 60 000 ms). */
  readonly floodCutOffMs?: number;
  /** Most replicas cut off at once; 0 disables flood detection (default 0; the driver uses r). */
  readonly cutOffMax?: number;
  /** Cut-off plus silent replicas must stay below this to cut off another (default 1; the driver uses u). */
  readonly silentMax?: number;
}

/** A queued message. */
export interface InboxItem {
  readonly from: Principal;
  msg: Message;
  /** Encoded size (0 for the node's own messages). */
  bytes: number;
  /** When it was pushed. */
  readonly at: number;
}

/**
 * What `push` did: queued; replaced the client's older queued request; dropped (the reason,
 * as counted); or 'flood': the sender was just found flooding and is now cut off (the caller
 * disconnects it for `floodCutOffMs`).
 */
export type PushOutcome = 'queued' | 'replaced' | 'inbox_full' | 'superseded' | 'not_a_client_request' | 'flood_cut_off' | 'flood';

/** Depth of one lane. */
export interface LaneDepth {
  readonly messages: number;
  readonly bytes: number;
}

/** Message kinds from replicas served with low priority (catch-up and state-transfer requests). */
export const lowPriorityKinds: ReadonlySet<MsgKindName> = new Set<MsgKindName>(['lastExec', 'fetchCheckpoint', 'retransmit']);

/** A FIFO with O(1) amortised push and shift. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(x: T): void {
    this.items.push(x);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** One bounded queue. */
class Lane {
  readonly q = new Fifo<InboxItem>();
  bytes = 0;
  inRotation = false;

  constructor(
    readonly name: string,
    readonly messagesMax: number,
    readonly bytesMax: number,
  ) {}

  /** Whether `bytes` more fit (an empty lane admits anything). */
  fits(bytes: number): boolean {
    return this.q.length === 0 || (this.q.length < this.messagesMax && this.bytes + bytes <= this.bytesMax);
  }

  add(item: InboxItem): void {
    this.q.push(item);
    this.bytes += item.bytes;
  }

  take(): InboxItem {
    const item = this.q.shift();
    assert(item !== undefined, 'take from an empty lane');
    this.bytes -= item.bytes;
    return item;
  }
}

const buckets = 10;

/** Per-replica message counts over a sliding window of `buckets` buckets. */
class FloodMeter {
  private readonly counts = new Map<number, { n: Float64Array; epoch: Float64Array }>();
  private readonly bucketMs: number;

  constructor(windowMs: number) {
    this.bucketMs = Math.max(1, windowMs / buckets);
  }

  add(id: number, now: number): void {
    let c = this.counts.get(id);
    if (c === undefined) {
      c = { n: new Float64Array(buckets), epoch: new Float64Array(buckets).fill(-Infinity) };
      this.counts.set(id, c);
    }
    const e = Math.floor(now / this.bucketMs);
    const i = e % buckets;
    if (c.epoch[i] !== e) {
      c.epoch[i] = e;
      c.n[i] = 0;
    }
    c.n[i]! += 1;
  }

  /** Messages from `id` in the window ending at `now`. */
  count(id: number, now: number): number {
    const c = this.counts.get(id);
    if (c === undefined) return 0;
    const e = Math.floor(now / this.bucketMs);
    let sum = 0;
    for (let i = 0; i < buckets; i++) if (c.epoch[i]! > e - buckets) sum += c.n[i]!;
    return sum;
  }

  forget(id: number): void {
    this.counts.delete(id);
  }
}

/** The bounded, fair inbox of one node (see the module comment for the rules). */
export class Inbox {
  private readonly self = new Fifo<InboxItem>();
  private readonly replicaLanes = new Map<number, Lane>();
  private readonly lowLanes = new Map<number, Lane>();
  private readonly clients: Lane;
  /** The queued request of each client in the clients lane. */
  private readonly pendingRequest = new Map<number, InboxItem>();
  private readonly rotation = new Fifo<Lane>();
  private readonly lowRotation = new Fifo<Lane>();
  /** Normal messages served since the low class last had a turn. */
  private servedSinceLow = 0;
  private queued = 0;
  private readonly meter: FloodMeter;
  private readonly cutOffUntil = new Map<number, number>();
  private readonly drops = new Map<string, Map<string, number>>();
  private readonly lowWaitMaxMs: number;
  private readonly floodRatio: number;
  private readonly floodFloor: number;
  private readonly floodCutOffMs: number;
  private readonly cutOffMax: number;
  private readonly silentMax: number;

  constructor(o: InboxOptions) {
    const rm = o.replicaMessagesMax ?? 8192;
    const rb = o.replicaBytesMax ?? 32 << 20;
    const lm = o.lowMessagesMax ?? 1024;
    const lb = o.lowBytesMax ?? 1 << 20;
    for (const id of o.replicas) {
      this.replicaLanes.set(id, new Lane(`n${id}`, rm, rb));
      this.lowLanes.set(id, new Lane(`n${id}`, lm, lb));
    }
    this.clients = new Lane('clients', o.clientMessagesMax ?? 4096, o.clientBytesMax ?? 16 << 20);
    this.lowWaitMaxMs = o.lowWaitMaxMs ?? 100;
    this.meter = new FloodMeter(o.floodWindowMs ?? 1000);
    this.floodRatio = o.floodRatio ?? 20;
    this.floodFloor = o.floodFloor ?? 4000;
    this.floodCutOffMs = o.floodCutOffMs ?? 60_000;
    this.cutOffMax = o.cutOffMax ?? 0;
    this.silentMax = o.silentMax ?? 1;
  }

  /**
   * Most bytes the lanes fed by peers can hold at once (every replica lane, low lane and the
   * clients lane full): what other nodes and clients can make this node buffer, whatever they
   * send. The `self` lane is left out: it holds only what this node's own stages sent.
   */
  get bytesBound(): number {
    let total = this.clients.bytesMax;
    for (const lane of this.replicaLanes.values()) total += lane.bytesMax;
    for (const lane of this.lowLanes.values()) total += lane.bytesMax;
    return total;
  }

  /** Messages queued over all lanes. */
  get size(): number {
    return this.queued;
  }

  /** Queues a message this node sent itself (a co-located stage); never dropped. */
  pushLocal(from: Principal, msg: Message, now: number): void {
    this.self.push({ from, msg, bytes: 0, at: now });
    this.queued += 1;
  }

  /** Queues a message from a peer; `bytes` is its encoded size. */
  push(from: Principal, msg: Message, bytes: number, now: number): PushOutcome {
    if (from.kind === 'client') return this.pushClient(from, msg, bytes, now);
    const lane = this.replicaLanes.get(from.id);
    const low = this.lowLanes.get(from.id);
    // The transport only delivers from cluster members; a stranger is a caller bug.
    assert(lane !== undefined && low !== undefined, `no lane for node ${from.id}`);
    if (this.isCutOff(from.id, now)) return this.drop(lane.name, 'flood_cut_off');
    this.meter.add(from.id, now);
    if (this.floods(from.id, now)) {
      this.cutOff(from.id, now);
      return 'flood';
    }
    const target = lowPriorityKinds.has(msg.kind) ? low : lane;
    if (!target.fits(bytes)) return this.drop(lane.name, 'inbox_full');
    target.add({ from, msg, bytes, at: now });
    this.queued += 1;
    this.activate(target, target === low ? this.lowRotation : this.rotation);
    return 'queued';
  }

  private pushClient(from: Principal, msg: Message, bytes: number, now: number): PushOutcome {
    const lane = this.clients;
    // Clients send nothing else; the stages would reject it, so it does not take a slot here.
    if ((msg.kind !== 'request' && msg.kind !== 'readRequest') || msg.client !== from.id) return this.drop(lane.name, 'not_a_client_request');
    const queued = this.pendingRequest.get(from.id);
    if (queued !== undefined) {
      const old = queued.msg as Message & { reqId: number };
      // One pending request per client: the newer one takes the older one's place.
      if (msg.reqId < old.reqId) return this.drop(lane.name, 'superseded');
      lane.bytes += bytes - queued.bytes;
      queued.msg = msg;
      queued.bytes = bytes;
      this.count(lane.name, 'superseded');
      return 'replaced';
    }
    if (!lane.fits(bytes)) return this.drop(lane.name, 'inbox_full');
    const item: InboxItem = { from, msg, bytes, at: now };
    lane.add(item);
    this.pendingRequest.set(from.id, item);
    this.queued += 1;
    this.activate(lane, this.rotation);
    return 'queued';
  }

  /** The next message to step, or undefined when nothing is queued. */
  take(now: number): InboxItem | undefined {
    const own = this.self.shift();
    if (own !== undefined) {
      this.queued -= 1;
      return own;
    }
    if (this.rotation.length === 0) return this.lowRotation.length > 0 ? this.takeLow() : undefined;
    if (this.lowRotation.length > 0 && this.servedSinceLow >= this.rotation.length && this.oldestLow() <= now - this.lowWaitMaxMs) return this.takeLow();
    const lane = this.rotation.shift()!;
    this.servedSinceLow += 1;
    return this.takeFrom(lane, this.rotation);
  }

  private takeLow(): InboxItem {
    this.servedSinceLow = 0;
    return this.takeFrom(this.lowRotation.shift()!, this.lowRotation);
  }

  private takeFrom(lane: Lane, rotation: Fifo<Lane>): InboxItem {
    const item = lane.take();
    this.queued -= 1;
    if (lane.q.length > 0) rotation.push(lane);
    else lane.inRotation = false;
    if (lane === this.clients && item.from.kind === 'client' && this.pendingRequest.get(item.from.id) === item) this.pendingRequest.delete(item.from.id);
    return item;
  }

  /** Arrival time of the oldest queued low-priority message (Infinity if none). */
  private oldestLow(): number {
    let t = Infinity;
    for (const lane of this.lowLanes.values()) {
      const head = lane.q.peek();
      if (head !== undefined && head.at < t) t = head.at;
    }
    return t;
  }

  private activate(lane: Lane, rotation: Fifo<Lane>): void {
    if (lane.inRotation) return;
    lane.inRotation = true;
    rotation.push(lane);
  }

  /** Whether replica `id` just crossed the flood rule (see the module comment). */
  private floods(id: number, now: number): boolean {
    if (this.cutOffMax === 0) return false;
    const mine = this.meter.count(id, now);
    if (mine <= this.floodFloor) return false;
    let busiest = 0;
    let silent = 0;
    let cut = 0;
    for (const other of this.replicaLanes.keys()) {
      if (other === id) continue;
      if (this.isCutOff(other, now)) {
        cut += 1;
        continue;
      }
      const n = this.meter.count(other, now);
      if (n === 0) silent += 1;
      if (n > busiest) busiest = n;
    }
    if (busiest === 0 || mine <= this.floodRatio * busiest) return false;
    // Liveness guard: never cut off more replicas than may lie, nor leave too few to talk to.
    return cut < this.cutOffMax && cut + silent < this.silentMax;
  }

  private cutOff(id: number, now: number): void {
    this.cutOffUntil.set(id, now + this.floodCutOffMs);
    this.meter.forget(id);
    for (const lane of [this.replicaLanes.get(id)!, this.lowLanes.get(id)!]) {
      while (lane.q.length > 0) {
        lane.take();
        this.queued -= 1;
        this.count(`n${id}`, 'flood_cut_off');
      }
      // Leave it in its rotation: an empty lane is skipped there (see dropEmpty).
    }
    this.dropEmpty(this.rotation);
    this.dropEmpty(this.lowRotation);
  }

  /** Removes emptied lanes from a rotation, keeping the order of the others. */
  private dropEmpty(rotation: Fifo<Lane>): void {
    const keep: Lane[] = [];
    for (let l = rotation.shift(); l !== undefined; l = rotation.shift()) {
      if (l.q.length > 0) keep.push(l);
      else l.inRotation = false;
    }
    for (const l of keep) rotation.push(l);
  }

  /** Whether replica `id` is cut off at `now` (the cut-off lapses by itself). */
  isCutOff(id: number, now: number): boolean {
    const until = this.cutOffUntil.get(id);
    if (until === undefined) return false;
    if (now < until) return true;
    this.cutOffUntil.delete(id);
    return false;
  }

  /** Replicas cut off at `now`, with the ms left for each (by name, e.g. `n3`). */
  cutOffs(now: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const id of [...this.cutOffUntil.keys()]) if (this.isCutOff(id, now)) out[`n${id}`] = this.cutOffUntil.get(id)! - now;
    return out;
  }

  /** Messages and bytes queued per lane (`self`, `n<id>`, `n<id>/low`, `clients`); empty lanes left out. */
  depths(): Record<string, LaneDepth> {
    const out: Record<string, LaneDepth> = {};
    if (this.self.length > 0) out.self = { messages: this.self.length, bytes: 0 };
    for (const l of this.replicaLanes.values()) if (l.q.length > 0) out[l.name] = { messages: l.q.length, bytes: l.bytes };
    for (const l of this.lowLanes.values()) if (l.q.length > 0) out[`${l.name}/low`] = { messages: l.q.length, bytes: l.bytes };
    if (this.clients.q.length > 0) out.clients = { messages: this.clients.q.length, bytes: this.clients.bytes };
    return out;
  }

  /** Messages dropped so far, per source (`n<id>` or `clients`) and reason. */
  dropped(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [source, reasons] of this.drops) out[source] = Object.fromEntries(reasons);
    return out;
  }

  private drop(source: string, reason: Exclude<PushOutcome, 'queued' | 'replaced' | 'flood'>): PushOutcome {
    this.count(source, reason);
    return reason;
  }

  private count(source: string, reason: string): void {
    let m = this.drops.get(source);
    if (m === undefined) {
      m = new Map();
      this.drops.set(source, m);
    }
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }
}
