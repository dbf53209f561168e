/**
 * The simulated world: every replica node and client in one process, virtual time, a seeded
 * network, seeded storage and fault injection. The protocol code is the production code; only
 * the driver around it is simulated.
 *
 * Time is integer microseconds; stages see milliseconds (`now = us / 1000`).
 *
 * Driver semantics mirror the Node runtime:
 * - a node processes one event at a time; its effects run in order; a `persist` effect is a
 *   barrier: the effects behind it wait until the write completes (fsync latency), and a
 *   crash before completion loses the write and everything behind it;
 * - every message between different principals crosses the network as encoded bytes with a
 *   channel MAC under the pair's key; the receiver checks the MAC and decodes, dropping and
 *   counting anything that fails; messages to oneself (co-located stages) are delivered
 *   locally, without faults.
 *
 * Fault model (per seed, drawn by scenario.ts): message drop, delay, duplication and
 * reordering; symmetric and one-way partitions; crash with loss of unsynced writes and later
 * restart; pause (like SIGSTOP). Crash and pause hit only the seed's faulty nodes (at most u),
 * of which at most r are Byzantine. At the heal time every network fault stops, crashed nodes
 * restart and paused nodes resume; Byzantine nodes stay Byzantine.
 */
import { assert } from '../core/assert.ts';
import type { Cluster } from '../core/config.ts';
import { tryDecodeMessage, encodeMessage, type Message } from '../codec/messages.ts';
import { clientPrincipal, KeyRing, nodePrincipal, principalKey, type Principal } from '../crypto/provider.ts';
import { SimCrypto, SimKeys } from '../crypto/sim.ts';
import { ReplicaNode } from '../stages/node.ts';
import type { Canaries, Effect, Note } from '../stages/types.ts';
import { ClientCore, type ClientEvent } from '../stages/client/client.ts';
import type { AppFactory } from '../app/contract.ts';
import { EventHeap } from './heap.ts';
import { Prng } from '../core/prng.ts';
import { ReplicaAdversary, type AttackSettings, type ByzantineBehaviour, type ClientBehaviour } from './byzantine.ts';
import { Trace } from './trace.ts';

/** Network behaviour while faults are active. Probabilities are integer per-mille. */
export interface NetworkFaults {
  readonly dropPerMille: number;
  readonly dupPerMille: number;
  /** Chance of a long extra delay (reordering). */
  readonly spikePerMille: number;
  readonly spikeMaxUs: number;
}

/** Per-seed world settings. */
export interface WorldOptions {
  readonly cluster: Cluster;
  readonly seed: number;
  readonly appFactory: AppFactory;
  readonly canaries: Canaries;
  /** One-way latency range between principals, microseconds. */
  readonly delayMinUs: number;
  readonly delayMaxUs: number;
  /** Storage write latency range (fsync), microseconds. */
  readonly fsyncMinUs: number;
  readonly fsyncMaxUs: number;
  readonly tickUs: number;
  readonly faults: NetworkFaults;
  /** Byzantine behaviours per node id. */
  readonly byzantine: ReadonlyMap<number, ReadonlySet<ByzantineBehaviour>>;
  /** Settings of the attack behaviours (defaults when absent). */
  readonly attack?: AttackSettings;
  /** Client request-id reservation block (1 = persist per request). */
  readonly clientReserveBlock: number;
}

type NodeState = 'up' | 'down' | 'paused';

interface Host {
  readonly principal: Principal;
  state: NodeState;
  /** Durable key/value store: survives crashes. */
  readonly durable: Map<string, Uint8Array>;
  /** Effects waiting to run (behind a persist barrier). */
  queue: Effect[];
  /** True while a persist is in flight and the queue must wait. */
  blocked: boolean;
  /** Incremented at each crash; events from an older epoch are ignored. */
  epoch: number;
  /** Messages that arrived while paused. */
  parked: { from: Principal; bytes: Uint8Array }[];
  /** Completion time of the latest scheduled write (writes complete in order). */
  lastPersistAt: number;
}

interface NodeHost extends Host {
  readonly id: number;
  node: ReplicaNode | undefined;
  adversary: ReplicaAdversary | undefined;
}

interface ClientHost extends Host {
  readonly id: number;
  core: ClientCore | undefined;
  /** Called with each completed operation. */
  onResult: ((callId: number, reqId: number, result: Uint8Array, now: number) => void) | undefined;
  /** Faulty client behaviour, if any. */
  faulty: ReadonlySet<ClientBehaviour> | undefined;
}

type SimEvent =
  | { readonly t: 'deliver'; readonly to: Principal; readonly from: Principal; readonly bytes: Uint8Array; readonly mac: Uint8Array }
  | { readonly t: 'tick'; readonly host: NodeHost | ClientHost; readonly epoch: number }
  | { readonly t: 'persisted'; readonly host: NodeHost | ClientHost; readonly epoch: number; readonly puts: readonly (readonly [string, Uint8Array])[]; readonly deletes: readonly string[]; readonly barrier: boolean; readonly then: readonly Effect[] }
  | { readonly t: 'call'; readonly fn: () => void };

/** Counters the checkers and the summary read. */
export interface WorldStats {
  messagesSent: number;
  messagesDropped: number;
  messagesRejected: number;
  crashes: number;
  restarts: number;
  pauses: number;
  partitions: number;
  eventsProcessed: number;
}

/** Observer of stage notes (checkers subscribe here). */
export type NoteListener = (host: Principal, note: Note, now: number) => void;
/** Sees every message a host accepts (after channel MAC and decoding), for scenario tests. */
export type DeliveryListener = (from: Principal, to: Principal, msg: Message) => void;

/** The simulated world. */
export class World {
  readonly cluster: Cluster;
  readonly keys: SimKeys;
  readonly crypto = new SimCrypto();
  readonly trace = new Trace();
  readonly stats: WorldStats = { messagesSent: 0, messagesDropped: 0, messagesRejected: 0, crashes: 0, restarts: 0, pauses: 0, partitions: 0, eventsProcessed: 0 };
  /** Virtual time, microseconds. */
  now = 0;
  /** Whether network faults are active (false after heal). */
  faultsActive = true;
  private readonly heap = new EventHeap<SimEvent>();
  private readonly rng: Prng;
  private readonly netRng: Prng;
  private readonly nodes = new Map<number, NodeHost>();
  private readonly clients = new Map<number, ClientHost>();
  private readonly keyRings = new Map<string, KeyRing>();
  /** Blocked directed links "from>to" (partitions). */
  private readonly blocked = new Set<string>();
  private readonly listeners: NoteListener[] = [];
  private readonly deliveryListeners: DeliveryListener[] = [];

  constructor(private readonly opts: WorldOptions) {
    this.cluster = opts.cluster;
    this.rng = new Prng(opts.seed);
    this.netRng = this.rng.fork();
    this.keys = new SimKeys(`seed-${opts.seed}`);
    for (const id of this.cluster.config.nodes.map((n) => n.id)) {
      const host: NodeHost = {
        id,
        principal: nodePrincipal(id),
        state: 'down',
        durable: new Map(),
        queue: [],
        blocked: false,
        epoch: 0,
        parked: [],
        lastPersistAt: 0,
        node: undefined,
        adversary: undefined,
      };
      this.nodes.set(id, host);
      const behaviours = opts.byzantine.get(id);
      if (behaviours !== undefined && behaviours.size > 0) {
        host.adversary = new ReplicaAdversary(id, behaviours, this.rng.fork(), this.keyRing(host.principal), this.cluster.config.nodes.map((n) => n.id), this.opts.attack, this.cluster.order.nodes);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Setup
  // ---------------------------------------------------------------------------------------

  /** Subscribes to stage notes. */
  onNote(l: NoteListener): void {
    this.listeners.push(l);
  }

  /** Subscribes to accepted messages. */
  onDelivery(l: DeliveryListener): void {
    this.deliveryListeners.push(l);
  }

  keyRing(p: Principal): KeyRing {
    const k = principalKey(p);
    let ring = this.keyRings.get(k);
    if (ring === undefined) {
      ring = new KeyRing(p, this.crypto, this.keys.materialFor(p));
      this.keyRings.set(k, ring);
    }
    return ring;
  }

  /** Starts every node. */
  startNodes(): void {
    for (const h of this.nodes.values()) this.startNode(h);
  }

  /** Adds a client; `onResult` receives completed operations. */
  addClient(id: number, onResult: ClientHost['onResult'], faulty?: ClientHost['faulty']): void {
    const host: ClientHost = {
      id,
      principal: clientPrincipal(id),
      state: 'down',
      durable: new Map(),
      queue: [],
      blocked: false,
      epoch: 0,
      parked: [],
      lastPersistAt: 0,
      core: undefined,
      onResult,
      faulty,
    };
    this.clients.set(id, host);
    this.startClient(host);
  }

  private startNode(h: NodeHost): void {
    h.state = 'up';
    h.queue = [];
    h.blocked = false;
    h.node = new ReplicaNode({
      cluster: this.cluster,
      nodeId: h.id,
      keys: this.keyRing(h.principal),
      appFactory: this.opts.appFactory,
      durable: h.durable,
      random: this.rng.fork(),
      canaries: this.opts.canaries,
    });
    this.scheduleTick(h, this.rng.int(0, this.opts.tickUs));
  }

  private startClient(h: ClientHost): void {
    h.state = 'up';
    h.queue = [];
    h.blocked = false;
    h.core = new ClientCore(this.cluster, h.id, this.keyRing(h.principal), h.durable, this.opts.canaries, {
      reserveBlock: this.opts.clientReserveBlock,
      queueMax: 16,
    });
    this.scheduleTick(h, this.rng.int(0, this.opts.tickUs));
  }

  private scheduleTick(h: NodeHost | ClientHost, delay: number): void {
    this.heap.push(this.now + delay, { t: 'tick', host: h, epoch: h.epoch });
  }

  /** Schedules a function at an absolute virtual time. */
  at(timeUs: number, fn: () => void): void {
    this.heap.push(Math.max(timeUs, this.now), { t: 'call', fn });
  }

  // ---------------------------------------------------------------------------------------
  // Faults
  // ---------------------------------------------------------------------------------------

  /** Crashes a node or client: volatile state and unsynced writes are lost. */
  crash(p: Principal): void {
    const h = this.host(p);
    if (h.state === 'down') return;
    h.state = 'down';
    h.epoch += 1;
    h.queue = [];
    h.blocked = false;
    h.parked = [];
    if ('node' in h) h.node = undefined;
    if ('core' in h) h.core = undefined;
    this.stats.crashes += 1;
    this.trace.add(this.now, 'crash', principalKey(p));
  }

  /** Restarts a crashed node or client from its durable state. */
  restart(p: Principal): void {
    const h = this.host(p);
    if (h.state !== 'down') return;
    this.stats.restarts += 1;
    this.trace.add(this.now, 'restart', principalKey(p));
    if ('node' in h) this.startNode(h);
    else this.startClient(h);
  }

  /** The durable state of a node or client as its disk holds it now (tests). */
  durableOf(p: Principal): ReadonlyMap<string, Uint8Array> {
    return this.host(p).durable;
  }

  /**
   * Damages the durable state of a crashed node before its restart (storage faults): `damage`
   * edits the key/value view of its disk, the way the runtime's recovery would leave it.
   */
  damageStorage(p: Principal, damage: (durable: Map<string, Uint8Array>) => number): number {
    const h = this.host(p);
    if (h.state !== 'down') return 0;
    const n = damage(h.durable);
    if (n > 0) this.trace.add(this.now, 'storageDamage', principalKey(p));
    return n;
  }

  /** Pauses a node (it neither processes events nor ticks) until resume. */
  pause(p: Principal): void {
    const h = this.host(p);
    if (h.state !== 'up') return;
    h.state = 'paused';
    this.stats.pauses += 1;
    this.trace.add(this.now, 'pause', principalKey(p));
  }

  resume(p: Principal): void {
    const h = this.host(p);
    if (h.state !== 'paused') return;
    h.state = 'up';
    this.trace.add(this.now, 'resume', principalKey(p));
    const parked = h.parked;
    h.parked = [];
    for (const m of parked) this.deliverLocal(h, m.from, m.bytes);
    this.scheduleTick(h, 0);
  }

  /** Blocks messages from `a` to `b` (one-way). */
  block(a: Principal, b: Principal): void {
    this.blocked.add(`${principalKey(a)}>${principalKey(b)}`);
    this.stats.partitions += 1;
  }

  unblock(a: Principal, b: Principal): void {
    this.blocked.delete(`${principalKey(a)}>${principalKey(b)}`);
  }

  /**
   * Drops every network message (not in-memory hops between co-located stages) for which
   * `drop` returns true, faults active or not; undefined removes the filter. For scenario
   * tests that need one kind of message to go missing.
   */
  dropWhere(drop: ((from: Principal, to: Principal, msg: Message) => boolean) | undefined): void {
    this.dropFilter = drop;
  }
  private dropFilter: ((from: Principal, to: Principal, msg: Message) => boolean) | undefined;

  /** Heals the network and every crashed or paused principal. */
  heal(): void {
    this.faultsActive = false;
    this.blocked.clear();
    for (const h of [...this.nodes.values(), ...this.clients.values()]) {
      if (h.state === 'down') this.restart(h.principal);
      else if (h.state === 'paused') this.resume(h.principal);
    }
    this.trace.add(this.now, 'heal', '');
  }

  /** State of a principal. */
  stateOf(p: Principal): NodeState {
    return this.host(p).state;
  }

  private host(p: Principal): NodeHost | ClientHost {
    const h = p.kind === 'node' ? this.nodes.get(p.id) : this.clients.get(p.id);
    assert(h !== undefined, `unknown principal ${principalKey(p)}`);
    return h;
  }

  // ---------------------------------------------------------------------------------------
  // Access for checkers and workloads
  // ---------------------------------------------------------------------------------------

  /** The live node object of a node id (undefined while down). */
  replica(id: number): ReplicaNode | undefined {
    return this.nodes.get(id)?.node;
  }

  /** Asks a client to run an operation. */
  invoke(clientId: number, callId: number, op: Uint8Array, readOnly: boolean): boolean {
    const h = this.clients.get(clientId);
    if (h?.core === undefined || h.state !== 'up') return false;
    this.runEffects(h, h.core.step({ kind: 'invoke', callId, op, readOnly, now: this.now / 1000 }));
    return true;
  }

  /** Whether the client is up and has nothing outstanding. */
  clientIdle(clientId: number): boolean {
    const h = this.clients.get(clientId);
    return h?.core?.idle === true && h.state === 'up';
  }

  /** Sends a raw message from a (faulty) client, bypassing its state machine. */
  clientSendRaw(clientId: number, to: readonly Principal[], msg: Message): void {
    const h = this.clients.get(clientId);
    if (h === undefined || h.state !== 'up') return;
    for (const p of to) this.transmit(h.principal, p, msg, false);
  }

  // ---------------------------------------------------------------------------------------
  // Event loop
  // ---------------------------------------------------------------------------------------

  /** Runs events until virtual time `untilUs` or until `stop()` returns true. */
  run(untilUs: number, stop?: () => boolean): void {
    for (;;) {
      const t = this.heap.peekTime();
      if (t === undefined || t > untilUs) {
        this.now = Math.max(this.now, untilUs);
        return;
      }
      const e = this.heap.pop()!;
      this.now = e.time;
      this.stats.eventsProcessed += 1;
      this.dispatch(e.item);
      if (stop?.() === true) return;
    }
  }

  private dispatch(e: SimEvent): void {
    switch (e.t) {
      case 'call':
        e.fn();
        return;
      case 'tick': {
        const h = e.host;
        if (e.epoch !== h.epoch || h.state === 'down') return;
        if (h.state === 'paused') return; // resume reschedules
        this.scheduleTick(h, this.opts.tickUs);
        this.trace.add(this.now, 'tick', principalKey(h.principal));
        this.stepHost(h, { kind: 'tick', now: this.now / 1000 });
        return;
      }
      case 'persisted': {
        const h = e.host;
        if (e.epoch !== h.epoch) return; // crashed before the write completed: lost
        for (const [k, v] of e.puts) h.durable.set(k, v);
        for (const k of e.deletes) h.durable.delete(k);
        // Effects behind a scoped barrier run now, whatever else the host waits for.
        for (const t of e.then) this.runOne(h, t);
        if (e.barrier) {
          h.blocked = false;
          this.drainQueue(h);
        }
        return;
      }
      case 'deliver': {
        const h = this.host(e.to);
        if (h.state === 'down') return;
        // Channel authentication: MAC under the pair key over the bytes.
        if (!this.keyRing(e.to).verifyMacFrom(e.from, e.bytes, e.mac)) {
          this.stats.messagesRejected += 1;
          this.trace.add(this.now, 'badmac', principalKey(e.to));
          return;
        }
        if (h.state === 'paused') {
          h.parked.push({ from: e.from, bytes: e.bytes });
          return;
        }
        this.deliverLocal(h, e.from, e.bytes);
        return;
      }
    }
  }

  private deliverLocal(h: NodeHost | ClientHost, from: Principal, bytes: Uint8Array): void {
    if (h.state !== 'up') return;
    this.trace.addBytes(this.now, 'recv', principalKey(h.principal), bytes);
    const res = tryDecodeMessage(bytes);
    if (!res.ok) {
      this.stats.messagesRejected += 1;
      return;
    }
    for (const l of this.deliveryListeners) l(from, h.principal, res.value);
    if ('adversary' in h && h.adversary !== undefined && !h.adversary.accepts(res.value)) return;
    this.stepHost(h, { kind: 'message', from, msg: res.value, now: this.now / 1000 });
  }

  private stepHost(h: NodeHost | ClientHost, ev: ClientEvent): void {
    let effects: Effect[];
    if ('node' in h) {
      if (h.node === undefined || ev.kind === 'invoke') return;
      effects = h.node.step(ev);
    } else {
      if (h.core === undefined) return;
      effects = h.core.step(ev);
    }
    this.runEffects(h, effects);
  }

  private runEffects(h: NodeHost | ClientHost, effects: Effect[]): void {
    if (effects.length === 0) return;
    h.queue.push(...effects);
    this.drainQueue(h);
  }

  /** Runs queued effects until the queue empties or a persist barrier blocks it. */
  private drainQueue(h: NodeHost | ClientHost): void {
    const barrierless = this.opts.canaries.has('noPersistBeforeSend');
    while (!h.blocked && h.queue.length > 0 && h.state !== 'down') {
      const e = h.queue.shift()!;
      if (e.kind === 'persist') {
        // Writes of one host complete in order, as with an append-only log.
        const delay = Math.max(this.rng.int(this.opts.fsyncMinUs, this.opts.fsyncMaxUs), h.lastPersistAt + 1 - this.now);
        h.lastPersistAt = this.now + delay;
        const barrier = !barrierless && e.barrier !== false;
        const then = e.then ?? [];
        if (barrierless) for (const t of then) this.runOne(h, t);
        this.heap.push(this.now + delay, { t: 'persisted', host: h, epoch: h.epoch, puts: e.puts, deletes: e.deletes, barrier, then: barrierless ? [] : then });
        if (barrier) h.blocked = true;
      } else this.runOne(h, e);
    }
  }

  /** Runs one effect other than a persist. */
  private runOne(h: NodeHost | ClientHost, e: Effect): void {
    if (h.state === 'down') return;
    switch (e.kind) {
      case 'persist':
        assert(false, 'persists go through the queue');
        break;
      case 'send':
        this.send(h, e.to, e.msg);
        break;
      case 'note':
        for (const l of this.listeners) l(h.principal, e.note, this.now);
        break;
      case 'result':
        if ('onResult' in h && h.onResult !== undefined) h.onResult(e.callId, e.reqId, e.result, this.now);
        break;
    }
  }

  private send(h: NodeHost | ClientHost, to: readonly Principal[], msg: Message): void {
    if ('adversary' in h && h.adversary !== undefined) {
      for (const o of h.adversary.rewrite(to, msg)) this.transmit(h.principal, o.to, o.msg, o.badMac, o.delayUs ?? 0);
      return;
    }
    if ('faulty' in h && h.faulty !== undefined && msg.kind === 'request' && (h.faulty.has('badAuthenticators') || h.faulty.has('badSignatures'))) {
      // Break the MACs for a random subset of auth replicas; break the signature of every
      // odd-numbered request (no draw: a seed's trace with signatures on stays that of the same
      // seed with them off until an auth replica reacts).
      const macs = h.faulty.has('badAuthenticators') ? msg.macs.map((m) => (this.rng.chance(1, 2) ? m.map((x) => x ^ 0xff) : m)) : msg.macs;
      const sig = msg.sig !== undefined && h.faulty.has('badSignatures') && msg.reqId % 2 === 1 ? msg.sig.map((x) => x ^ 0x0f) : msg.sig;
      for (const p of to) this.transmit(h.principal, p, { ...msg, macs, sig }, false);
      return;
    }
    for (const p of to) this.transmit(h.principal, p, msg, false);
  }

  private transmit(from: Principal, to: Principal, msg: Message, badMac: boolean, extraDelayUs = 0): void {
    const bytes = encodeMessage(msg);
    this.stats.messagesSent += 1;
    const key = this.keyRing(from);
    let mac = key.macFor(to, bytes);
    if (badMac) mac = mac.map((x) => x ^ 0x55);
    const same = from.kind === to.kind && from.id === to.id;
    if (same) {
      // Co-located stages: an in-memory hop, never faulty.
      this.heap.push(this.now + extraDelayUs, { t: 'deliver', to, from, bytes, mac });
      return;
    }
    if (this.dropFilter?.(from, to, msg) === true) {
      this.stats.messagesDropped += 1;
      return;
    }
    if (this.faultsActive && this.blocked.has(`${principalKey(from)}>${principalKey(to)}`)) {
      this.stats.messagesDropped += 1;
      return;
    }
    const f = this.opts.faults;
    const rng = this.netRng;
    if (this.faultsActive && rng.int(0, 999) < f.dropPerMille) {
      this.stats.messagesDropped += 1;
      return;
    }
    const copies = this.faultsActive && rng.int(0, 999) < f.dupPerMille ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let delay = extraDelayUs + rng.int(this.opts.delayMinUs, this.opts.delayMaxUs);
      if (this.faultsActive && rng.int(0, 999) < f.spikePerMille) delay += rng.int(0, f.spikeMaxUs);
      this.heap.push(this.now + delay, { t: 'deliver', to, from, bytes, mac });
    }
  }
}
