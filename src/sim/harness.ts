/**
 * A small driver for named scenario tests: a fault-free simulated cluster running a KV
 * workload, into which a test injects one specific fault and then checks an expectation.
 * The seeded swarm (run.ts) draws faults at random; this harness places them by hand.
 */
import { defaultConfig, deriveCluster, type CheckpointMode, type DurabilityMode, type StateTransferMode, type Tunables } from '../core/config.ts';
import { nodePrincipal } from '../crypto/provider.ts';
import type { Note } from '../stages/types.ts';
import { KvStore } from '../services/kv/store.ts';
import { encodeKvOp, decodeKvOutput } from '../services/kv/ops.ts';
import type { KvOp } from '../services/kv/model.ts';
import { World } from './world.ts';
import type { AttackSettings, ByzantineBehaviour } from './byzantine.ts';
import { AgreementChecker } from './checkers/agreement.ts';
import { checkLinearizable, type HistoryOp } from './checkers/linearizability.ts';

/** Options of a scenario cluster. */
export interface HarnessOptions {
  readonly u: number;
  readonly r: number;
  readonly clients?: number;
  readonly seed?: number;
  readonly tunables?: Partial<Tunables>;
  readonly byzantine?: ReadonlyMap<number, ReadonlySet<ByzantineBehaviour>>;
  /** Durability mode (default parallel, as in real clusters). */
  readonly durability?: DurabilityMode;
  /** Distinct keys the workload touches (default 3). */
  readonly keys?: number;
  /** Values are padded to at least this many bytes (default: none), to grow the state. */
  readonly valueBytes?: number;
  /** Checkpoint mode (default sequential). */
  readonly checkpoints?: CheckpointMode;
  /** State transfer mode (default collaborative). */
  readonly stateTransfer?: StateTransferMode;
  /** Settings of the attack behaviours (slow primary delay, victim client, flood factor). */
  readonly attack?: AttackSettings;
}

/** A running scenario cluster. */
export class Harness {
  readonly world: World;
  readonly agreement = new AgreementChecker();
  readonly history: HistoryOp[] = [];
  readonly notes: { node: number; note: Note; atUs: number }[] = [];
  private readonly clients: number[];
  private readonly outstanding = new Map<number, number>();
  private completed = 0;
  private counter = 0;
  private keyIndex = 0;
  private readonly keys: number;
  private readonly pad: string;

  constructor(o: HarnessOptions) {
    const clients = o.clients ?? 3;
    this.keys = o.keys ?? 3;
    this.pad = '.'.repeat(o.valueBytes ?? 0);
    this.clients = Array.from({ length: clients }, (_, i) => i);
    const cfg = defaultConfig({ u: o.u, r: o.r, clients, tunables: { checkpointInterval: 8, viewChangeTimeoutMs: 300, clientRetryMs: 100, statusIntervalMs: 50, execRetryMs: 80, authResendMs: 100, ...o.tunables } });
    const cluster = deriveCluster({ ...cfg, durability: o.durability ?? 'parallel', checkpoints: o.checkpoints ?? 'sequential', stateTransfer: o.stateTransfer ?? 'collaborative' });
    const byz = o.byzantine ?? new Map<number, ReadonlySet<ByzantineBehaviour>>();
    this.world = new World({
      cluster,
      seed: o.seed ?? 1,
      appFactory: () => new KvStore({ pageBytes: cluster.config.checkpointChunkBytes }),
      canaries: new Set(),
      delayMinUs: 500,
      delayMaxUs: 2_000,
      fsyncMinUs: 100,
      fsyncMaxUs: 300,
      tickUs: 5_000,
      faults: { dropPerMille: 0, dupPerMille: 0, spikePerMille: 0, spikeMaxUs: 0 },
      byzantine: byz,
      ...(o.attack !== undefined ? { attack: o.attack } : {}),
      clientReserveBlock: 16,
    });
    this.world.onNote((p, note, now) => {
      if (p.kind !== 'node') return;
      this.notes.push({ node: p.id, note, atUs: now });
      if (!byz.has(p.id)) this.agreement.observe(p.id, note);
    });
    for (const c of this.clients) this.world.addClient(c, (_call, _reqId, result, nowUs) => this.onResult(c, result, nowUs));
    this.world.startNodes();
  }

  private onResult(c: number, result: Uint8Array, nowUs: number): void {
    const index = this.outstanding.get(c);
    if (index === undefined) return;
    this.outstanding.delete(c);
    const h = this.history[index]!;
    this.history[index] = { ...h, output: decodeKvOutput(result) ?? { kind: 'error', code: 'bad_request' }, complete: nowUs * 1000 };
    this.completed += 1;
  }

  private issue(c: number): void {
    if (this.outstanding.has(c) || !this.world.clientIdle(c)) return;
    const key = `k${this.keyIndex++ % this.keys}`;
    const op: KvOp = this.counter % 3 === 0 ? { kind: 'get', key } : this.counter % 3 === 1 ? { kind: 'put', key, value: `v${this.counter}${this.pad}` } : { kind: 'incr', key: `n${c}`, delta: 1 };
    this.counter += 1;
    this.outstanding.set(c, this.history.length);
    this.history.push({ client: c, op, output: undefined, invoke: this.world.now * 1000, complete: undefined });
    this.world.invoke(c, this.counter, encodeKvOp(op), false);
  }

  /** Runs the closed-loop workload until `ops` more operations complete or `maxUs` passes. */
  runOps(ops: number, maxUs = 30_000_000): number {
    const target = this.completed + ops;
    const deadline = this.world.now + maxUs;
    while (this.completed < target && this.world.now < deadline) {
      for (const c of this.clients) this.issue(c);
      this.world.run(Math.min(deadline, this.world.now + 2_000), () => this.completed >= target);
    }
    return this.completed - (target - ops);
  }

  /** Advances virtual time without new operations. */
  idle(us: number): void {
    this.world.run(this.world.now + us);
  }

  /** Notes of one type, optionally from one node. */
  notesOf<T extends Note['type']>(type: T, node?: number): Extract<Note, { type: T }>[] {
    return this.notes.filter((n) => n.note.type === type && (node === undefined || n.node === node)).map((n) => n.note as Extract<Note, { type: T }>);
  }

  /** Current view of an order replica. */
  viewOf(node: number): number | undefined {
    return this.world.replica(node)?.order?.status.view;
  }

  /** Asserts nothing unsafe happened: agreement and linearizability. Returns failures. */
  problems(): string[] {
    const out = [...this.agreement.violations];
    const lin = checkLinearizable(this.history);
    if (lin.ok !== true) out.push(`linearizability: ${lin.reason}`);
    return out;
  }

  /** Node principal helper. */
  static node(id: number): ReturnType<typeof nodePrincipal> {
    return nodePrincipal(id);
  }
}
