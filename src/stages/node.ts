/**
 * A node: one process hosting a replica of some stages (UpRight §5.8: stages are logical; the
 * default deployment co-locates all three). Messages are routed to a stage by their kind;
 * hops between co-located stages stay explicit messages (to the node itself), so a node's
 * behaviour does not depend on placement.
 */
import type { Cluster, StageName } from '../core/config.ts';
import type { KeyRing } from '../crypto/provider.ts';
import type { MsgKindName } from '../codec/messages.ts';
import type { AppFactory } from '../app/contract.ts';
import type { Canaries, Effect, RandomSource, StageEvent } from './types.ts';
import { AuthCore } from './auth/auth.ts';
import { OrderCore } from './order/order.ts';
import { ExecCore } from './exec/exec.ts';

/** Destination of each message kind. */
export const destinationOf: Readonly<Record<MsgKindName, StageName | 'client'>> = {
  request: 'auth',
  readRequest: 'exec',
  authReq: 'order',
  prePrepare: 'order',
  prepare: 'order',
  commit: 'order',
  checkpoint: 'order',
  viewChange: 'order',
  newView: 'order',
  status: 'order',
  catchUp: 'order',
  nextBatch: 'exec',
  loadCheckpoint: 'exec',
  retransmit: 'exec',
  cpToken: 'order',
  lastExec: 'order',
  fetchCheckpoint: 'exec',
  checkpointData: 'exec',
  reply: 'client',
  readReply: 'client',
  viewHint: 'auth',
  relayReply: 'exec',
  forward: 'order',
  fetchBatches: 'order',
  batchBodies: 'order',
  suspect: 'order',
  relayReadReply: 'exec',
  requestDigest: 'auth',
  authDigest: 'order',
};

/** Dependencies of a node. */
export interface NodeDeps {
  readonly cluster: Cluster;
  readonly nodeId: number;
  readonly keys: KeyRing;
  readonly appFactory: AppFactory;
  /** Durable state recovered from storage (empty on first start). */
  readonly durable: ReadonlyMap<string, Uint8Array>;
  readonly random: RandomSource;
  readonly canaries?: Canaries;
  /** Run the costly invariant checks after every step (simulator and tests; off in production). */
  readonly verify?: boolean;
}

/** The stage replicas hosted by one node. */
export class ReplicaNode {
  readonly auth: AuthCore | undefined;
  readonly order: OrderCore | undefined;
  readonly exec: ExecCore | undefined;

  constructor(deps: NodeDeps) {
    const { cluster, nodeId, keys, durable, random } = deps;
    const canaries = deps.canaries ?? new Set();
    this.auth = cluster.auth.indexOf.has(nodeId) ? new AuthCore(cluster, nodeId, keys) : undefined;
    this.order = cluster.order.indexOf.has(nodeId) ? new OrderCore(cluster, nodeId, keys, durable, random, canaries, deps.verify ?? true) : undefined;
    this.exec = cluster.exec.indexOf.has(nodeId) ? new ExecCore(cluster, nodeId, keys, deps.appFactory(), durable, canaries) : undefined;
  }

  step(ev: StageEvent): Effect[] {
    if (ev.kind === 'tick') {
      return [...(this.auth?.step(ev) ?? []), ...(this.order?.step(ev) ?? []), ...(this.exec?.step(ev) ?? [])];
    }
    const dest = destinationOf[ev.msg.kind];
    const stage = dest === 'auth' ? this.auth : dest === 'order' ? this.order : dest === 'exec' ? this.exec : undefined;
    if (stage === undefined) return [{ kind: 'note', note: { type: 'rejected', reason: `no_${dest}_stage_here`, from: ev.from } }];
    return stage.step(ev);
  }
}
