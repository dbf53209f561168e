/**
 * Cluster configuration: the fault model (u, r), which node hosts which stage, and the
 * protocol's tunables. `validateConfig` reports every broken field and relation in one
 * ConfigError; `deriveCluster` turns a valid config into the membership tables the stages use.
 *
 * Invariants of a derived Cluster:
 * - each stage has at least its minimum replica count (quorum.ts) and at most `nodesMax`;
 * - a stage's replica index i is the position of its node in the stage's node list, so the
 *   order primary of view v is `order[v mod order.length]`;
 * - node ids are distinct integers in [0, nodeIdMax]; client ids are distinct in [0, clientIdMax].
 */
import { ConfigError, type ConfigProblem } from './errors.ts';
import { stageCounts, quorums, type Quorums } from './quorum.ts';

/** The three replicated stages of UpRight. */
export type StageName = 'auth' | 'order' | 'exec';
/** All stage names, in pipeline order. */
export const stageNames: readonly StageName[] = ['auth', 'order', 'exec'];

/** Largest node id. */
export const nodeIdMax = 255;
/** Largest client id. */
export const clientIdMax = 0xffff_fffe;
/** Largest number of nodes in a cluster. */
export const nodesMax = 64;

/** One node: a process hosting a replica of some stages. */
export interface NodeSpec {
  readonly id: number;
  readonly stages: readonly StageName[];
}

/** Protocol tunables. Times are milliseconds of the driver's clock (virtual in the simulator). */
export interface Tunables {
  /**
   * Batches between checkpoints (CP_int), at most 256. Order never runs more than 2 intervals
   * past a stable one.
   */
  readonly checkpointInterval: number;
  /** Most requests in one batch. */
  readonly batchSizeMax: number;
  /** Most bytes of request bodies in one batch. */
  readonly batchBytesMax: number;
  /** A partial batch is proposed this long after its first request became ready. */
  readonly batchTimeoutMs: number;
  /** Most batches the primary keeps proposed but not yet committed. */
  readonly pipelineMax: number;
  /** A backup starts a view change when a ready request waits this long (doubles per failed view). */
  readonly viewChangeTimeoutMs: number;
  /**
   * Heartbeat (Aardvark): while a backup holds a ready request no pre-prepare carries and the
   * primary's pipeline has room, a PRE-PREPARE must arrive this often, or the backup starts a view
   * change (the timeout doubles per expiry, back to this on the next pre-prepare). 0: off.
   */
  readonly heartbeatMs: number;
  /**
   * Throughput monitor (Aardvark; stages/order/monitor.ts): after this long in a view, a backup
   * replaces a primary whose smoothed committed rate is twice in a row below 90% of the best
   * recent view's median rate, a bar rising 1% per sample; a sample below half the bar counts at
   * once, even before this period ends. 0: off.
   */
  readonly throughputGraceMs: number;
  /**
   * Fairness (Aardvark): a backup forwards a ready request that a pre-prepare with room passed
   * over to the primary, and replaces the primary once this many later pre-prepares with room
   * pass it over too. 0: off.
   */
  readonly fairnessOvertakes: number;
  /**
   * An auth replica that sees two different requests under one request id from a client, each
   * with a valid MAC for itself (proof: only the client can make them), drops everything from
   * that client for this long (Aardvark's blacklist; 10 min). 0: off.
   */
  readonly blacklistMs: number;
  /** First client retransmission timeout; doubles per retry up to clientRetryMaxMs. */
  readonly clientRetryMs: number;
  /** Upper bound of the client retransmission timeout. */
  readonly clientRetryMaxMs: number;
  /** A read-only request falls back to the ordered path after this long without a unanimous answer. */
  readonly readTimeoutMs: number;
  /** Period of the order replicas' STATUS gossip (catch-up and view synchronisation). */
  readonly statusIntervalMs: number;
  /** Most a batch's agreed time may exceed a backup's clock. */
  readonly clockSkewMaxMs: number;
  /** An auth replica forwards the same request again at most this often (thesis: 4000 ms). */
  readonly authResendMs: number;
  /** An execution replica asks again for missing batches or state after this long. */
  readonly execRetryMs: number;
  /** Largest request body in bytes (replies are bounded by the codec limit opBytesMax). */
  readonly requestBytesMax: number;
  /** Size of the pieces an execution checkpoint is hashed, stored and transferred in. */
  readonly checkpointChunkBytes: number;
  /**
   * An execution replica serialises at most one checkpoint chunk per this many milliseconds,
   * between batches, so a large checkpoint never stops the node for long (0: as fast as events come).
   */
  readonly checkpointSliceMs: number;
}

/**
 * How the order stage's log reaches the disk (issue 4; Dura-SMaRt §4.1 for the names):
 * - `none`: nothing is written; a node that restarts comes back empty and must be repaired from
 *   its peers like a node with a lost disk (it counts as faulty until then). For measurement;
 * - `sync`: every persist is its own write and fdatasync (no group commit);
 * - `batch`: group commit; a replica's pre-prepare is durable before it votes PREPARE;
 * - `parallel` (default): group commit, and the pre-prepare record holds back only the vote it
 *   backs (a scoped barrier): execution, replies and other slots' votes go on while it is
 *   written. Every vote is still durable before it leaves; COMMIT waits for the prepared record.
 */
export type DurabilityMode = 'none' | 'sync' | 'batch' | 'parallel';

/** Every durability mode. */
export const durabilityModes: readonly DurabilityMode[] = ['none', 'sync', 'batch', 'parallel'];

/**
 * When execution replicas checkpoint (Dura-SMaRt §4.2):
 * - `sequential` (default): every replica freezes its state at each multiple of
 *   checkpointInterval (so tokens still match), but replica group g of G (groups of at most
 *   max(u,1) replicas) starts serialising it only after g * floor(checkpointInterval / G)
 *   further batches, so at most u replicas are busy checkpointing at a time;
 * - `coordinated`: all start at once (the classic scheme; kept for comparison).
 */
export type CheckpointMode = 'sequential' | 'coordinated';

/** Every checkpoint mode. */
export const checkpointModes: readonly CheckpointMode[] = ['sequential', 'coordinated'];

/**
 * How a lagging execution replica fetches an agreed checkpoint (Dura-SMaRt §4.3):
 * - `collaborative` (default): the manifest from one peer, then the chunks spread over every
 *   execution peer, each chunk checked against the agreed manifest; a peer that lies or times
 *   out is skipped and its chunks go to the others;
 * - `single`: everything from one peer at a time (the PBFT-style baseline), the next peer only
 *   when that one lies or times out.
 */
export type StateTransferMode = 'collaborative' | 'single';

/** Every state transfer mode. */
export const stateTransferModes: readonly StateTransferMode[] = ['collaborative', 'single'];

/** A complete cluster configuration. */
export interface ProtocolConfig extends Tunables {
  /** How the order log reaches the disk (default `parallel`). */
  readonly durability?: DurabilityMode;
  /** When execution replicas checkpoint (default `sequential`). */
  readonly checkpoints?: CheckpointMode;
  /** How execution replicas fetch checkpoints from each other (default `collaborative`). */
  readonly stateTransfer?: StateTransferMode;
  /**
   * Signed client requests (Aardvark §3.4.1; default false): every client signs each ordered
   * request with its Ed25519 key besides MACing it, and an authentication replica forwards a
   * request only when the signature verifies. All correct auth replicas reach the same verdict on
   * a signature, and a bad signature under a MAC that verifies, on the client's own connection,
   * proves the client faulty, so it is blacklisted. Costs one signature per request at the client
   * and one verification per request at each auth replica.
   */
  readonly clientSignatures?: boolean;
  /** Faults of any kind tolerated while live. */
  readonly u: number;
  /** Commission faults tolerated while safe. */
  readonly r: number;
  readonly nodes: readonly NodeSpec[];
  /** Authorised client ids. */
  readonly clients: readonly number[];
}

/** Defaults for the tunables; chosen for a LAN or loopback cluster. */
export const defaultTunables: Tunables = {
  checkpointInterval: 64,
  batchSizeMax: 128,
  batchBytesMax: 1 << 20,
  batchTimeoutMs: 5,
  pipelineMax: 1,
  viewChangeTimeoutMs: 1000,
  heartbeatMs: 100,
  throughputGraceMs: 5000,
  fairnessOvertakes: 2,
  blacklistMs: 600_000,
  clientRetryMs: 500,
  clientRetryMaxMs: 4000,
  readTimeoutMs: 250,
  statusIntervalMs: 200,
  clockSkewMaxMs: 30_000,
  authResendMs: 1000,
  execRetryMs: 300,
  requestBytesMax: 64 * 1024,
  checkpointChunkBytes: 256 << 10,
  checkpointSliceMs: 5,
};

/** Limits that tunables must stay within (validated). */
const tunableRanges: Record<keyof Tunables, readonly [number, number]> = {
  // A view change carries the batches of the whole window (2 intervals), and NEW-VIEW holds at
  // most batchesPerMessageMax (512) of them: a longer interval could not change views.
  checkpointInterval: [2, 256],
  batchSizeMax: [1, 4096],
  batchBytesMax: [1024, 16 << 20],
  batchTimeoutMs: [0, 10_000],
  pipelineMax: [1, 64],
  viewChangeTimeoutMs: [10, 600_000],
  heartbeatMs: [0, 600_000],
  throughputGraceMs: [0, 3_600_000],
  fairnessOvertakes: [0, 1000],
  blacklistMs: [0, 86_400_000],
  clientRetryMs: [1, 600_000],
  clientRetryMaxMs: [1, 3_600_000],
  readTimeoutMs: [1, 600_000],
  statusIntervalMs: [1, 600_000],
  clockSkewMaxMs: [0, 86_400_000],
  authResendMs: [1, 600_000],
  execRetryMs: [1, 600_000],
  requestBytesMax: [16, 4 << 20],
  checkpointChunkBytes: [64, 16 << 20],
  checkpointSliceMs: [0, 1000],
};

/**
 * Builds the default deployment for (u, r): every stage's replicas placed on the first nodes,
 * as many nodes as the largest stage needs (the auth stage, u + max(u,r) + r + 1).
 */
export function defaultConfig(opts: { u: number; r: number; clients: number; tunables?: Partial<Tunables> }): ProtocolConfig {
  const counts = stageCounts(opts.u, opts.r);
  const n = Math.max(counts.auth, counts.order, counts.exec);
  const nodes: NodeSpec[] = [];
  for (let id = 0; id < n; id++) {
    const stages: StageName[] = [];
    if (id < counts.auth) stages.push('auth');
    if (id < counts.order) stages.push('order');
    if (id < counts.exec) stages.push('exec');
    nodes.push({ id, stages });
  }
  const clients = Array.from({ length: opts.clients }, (_, i) => i);
  return { ...defaultTunables, ...opts.tunables, u: opts.u, r: opts.r, nodes, clients };
}

/** Describes an untrusted value in a message; never throws (String throws on `{"toString": 1}`). */
function show(x: unknown): string {
  try {
    return String(x);
  } catch {
    return `(${typeof x} without a string form)`;
  }
}

/** Returns every problem of `cfg`; empty when valid. */
export function checkConfig(cfg: ProtocolConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  // Parsed input may be null (an empty YAML file) or a scalar: report it, do not crash.
  const whole: unknown = cfg;
  if (typeof whole !== 'object' || whole === null) return [{ path: '', message: `must be an object, got ${show(whole)}` }];
  const bad = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
  if (!isInt(cfg.u) || cfg.u < 0 || cfg.u > 10) bad('u', `must be an integer in [0, 10], got ${show(cfg.u)}`);
  if (!isInt(cfg.r) || cfg.r < 0 || cfg.r > 10) bad('r', `must be an integer in [0, 10], got ${show(cfg.r)}`);
  for (const [key, [lo, hi]] of Object.entries(tunableRanges) as [keyof Tunables, readonly [number, number]][]) {
    const v: unknown = cfg[key];
    if (!isInt(v) || v < lo || v > hi) bad(key, `must be an integer in [${lo}, ${hi}], got ${show(v)}`);
  }
  if (cfg.durability !== undefined && !durabilityModes.includes(cfg.durability)) {
    bad('durability', `must be one of ${durabilityModes.join(', ')}, got ${show(cfg.durability)}`);
  }
  if (cfg.checkpoints !== undefined && !checkpointModes.includes(cfg.checkpoints)) {
    bad('checkpoints', `must be one of ${checkpointModes.join(', ')}, got ${show(cfg.checkpoints)}`);
  }
  if (cfg.stateTransfer !== undefined && !stateTransferModes.includes(cfg.stateTransfer)) {
    bad('stateTransfer', `must be one of ${stateTransferModes.join(', ')}, got ${show(cfg.stateTransfer)}`);
  }
  if (cfg.clientSignatures !== undefined && typeof cfg.clientSignatures !== 'boolean') {
    bad('clientSignatures', `must be true or false, got ${show(cfg.clientSignatures)}`);
  }
  if (isInt(cfg.clientRetryMs) && isInt(cfg.clientRetryMaxMs) && cfg.clientRetryMaxMs < cfg.clientRetryMs) {
    bad('clientRetryMaxMs', `must be >= clientRetryMs (${cfg.clientRetryMs})`);
  }
  if (isInt(cfg.batchBytesMax) && isInt(cfg.requestBytesMax) && cfg.requestBytesMax > cfg.batchBytesMax) {
    bad('requestBytesMax', `must be <= batchBytesMax (${cfg.batchBytesMax}) so every request fits a batch`);
  }
  const nodes: readonly unknown[] | undefined = Array.isArray(cfg.nodes) ? (cfg.nodes as readonly unknown[]) : undefined;
  if (nodes === undefined || nodes.length === 0) {
    bad('nodes', 'must list at least one node');
  } else {
    if (nodes.length > nodesMax) bad('nodes', `at most ${nodesMax} nodes, got ${nodes.length}`);
    const seen = new Set<number>();
    const stagesOf: StageName[][] = [];
    nodes.forEach((raw, i) => {
      const node = (typeof raw === 'object' && raw !== null ? raw : {}) as { id?: unknown; stages?: unknown };
      if (!isInt(node.id) || node.id < 0 || node.id > nodeIdMax) bad(`nodes[${i}].id`, `must be an integer in [0, ${nodeIdMax}]`);
      else if (seen.has(node.id)) bad(`nodes[${i}].id`, `duplicate node id ${node.id}`);
      else seen.add(node.id);
      const valid: StageName[] = [];
      if (!Array.isArray(node.stages) || node.stages.length === 0) {
        bad(`nodes[${i}].stages`, 'must list at least one of auth, order, exec');
      } else {
        for (const st of node.stages as unknown[]) {
          if (typeof st !== 'string' || !(stageNames as readonly string[]).includes(st)) {
            bad(`nodes[${i}].stages`, `unknown stage "${show(st)}" (expected auth, order or exec)`);
          } else if (valid.includes(st as StageName)) bad(`nodes[${i}].stages`, `stage ${st} listed twice`);
          else valid.push(st as StageName);
        }
      }
      stagesOf.push(valid);
    });
    if (isInt(cfg.u) && isInt(cfg.r) && cfg.u >= 0 && cfg.r >= 0) {
      const need = stageCounts(cfg.u, cfg.r);
      for (const st of stageNames) {
        const have = stagesOf.filter((ss) => ss.includes(st)).length;
        if (have < need[st]) {
          bad(`nodes`, `stage ${st} needs at least ${need[st]} replicas for u=${cfg.u} r=${cfg.r}, config has ${have}`);
        }
      }
    }
  }
  if (!Array.isArray(cfg.clients)) {
    bad('clients', 'must be a list of client ids');
  } else {
    const seen = new Set<number>();
    cfg.clients.forEach((c, i) => {
      if (!isInt(c) || c < 0 || c > clientIdMax) bad(`clients[${i}]`, `must be an integer in [0, ${clientIdMax}]`);
      else if (seen.has(c)) bad(`clients[${i}]`, `duplicate client id ${c}`);
      else seen.add(c);
    });
  }
  return problems;
}

/** Throws a ConfigError listing every problem of `cfg`, or returns it unchanged. */
export function validateConfig(cfg: ProtocolConfig): ProtocolConfig {
  const problems = checkConfig(cfg);
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg;
}

/** Membership of one stage. */
export interface StageMembers {
  /** Node ids hosting this stage, in replica-index order. */
  readonly nodes: readonly number[];
  /** Replica index of a node id, or undefined when the node does not host the stage. */
  readonly indexOf: ReadonlyMap<number, number>;
  readonly quorum: Quorums;
}

/** A validated configuration with derived membership tables. */
export interface Cluster {
  readonly config: ProtocolConfig;
  /** The configured durability mode (default resolved). */
  readonly durability: DurabilityMode;
  /** The configured checkpoint mode (default resolved). */
  readonly checkpoints: CheckpointMode;
  /** The configured state transfer mode (default resolved). */
  readonly stateTransfer: StateTransferMode;
  /** Whether clients sign their ordered requests (default resolved: false). */
  readonly clientSignatures: boolean;
  readonly u: number;
  readonly r: number;
  readonly auth: StageMembers;
  readonly order: StageMembers;
  readonly exec: StageMembers;
  /** Authorised clients. */
  readonly clients: ReadonlySet<number>;
  /**
   * Matching AUTH-REQ rows the order primary collects before batching a request: max(u,r)+r+1,
   * or 1 when r = 0. Also the size of a client's preferred auth quorum.
   */
  readonly authRowsPrimary: number;
  /** Valid rows (for itself) an order backup requires per request: max(u,r)+1, or 1 when r = 0. */
  readonly authRowsBackup: number;
  /** Matching CP-TOKENs the order stage needs to adopt an execution checkpoint: max(u,r)+1. */
  readonly cpTokenQuorum: number;
}

/** Validates `cfg` and derives the membership tables. */
export function deriveCluster(cfg: ProtocolConfig): Cluster {
  validateConfig(cfg);
  const members = (st: StageName): StageMembers => {
    const nodes = cfg.nodes.filter((n) => n.stages.includes(st)).map((n) => n.id);
    const indexOf = new Map(nodes.map((id, i) => [id, i] as const));
    return { nodes, indexOf, quorum: quorums(nodes.length, cfg.u, cfg.r) };
  };
  const m = Math.max(cfg.u, cfg.r);
  return {
    config: cfg,
    durability: cfg.durability ?? 'parallel',
    checkpoints: cfg.checkpoints ?? 'sequential',
    stateTransfer: cfg.stateTransfer ?? 'collaborative',
    clientSignatures: cfg.clientSignatures ?? false,
    u: cfg.u,
    r: cfg.r,
    auth: members('auth'),
    order: members('order'),
    exec: members('exec'),
    clients: new Set(cfg.clients),
    // UpRight sizes these for fetchability too (§6.4: max(u,r)+1 holders, so a live one can hand
    // the body over); bulwark orders bodies inline, so a row only has to prove that the client
    // sent the request, and at r = 0 no auth replica lies: one row proves it.
    authRowsPrimary: cfg.r === 0 ? 1 : m + cfg.r + 1,
    authRowsBackup: cfg.r === 0 ? 1 : m + 1,
    cpTokenQuorum: m + 1,
  };
}

/** Primary order replica (node id) of `view`: the order replica with index view mod n. */
export function primaryOf(cluster: Cluster, view: number): number {
  const nodes = cluster.order.nodes;
  const id = nodes[view % nodes.length];
  if (id === undefined) throw new ConfigError([{ path: 'nodes', message: 'order stage is empty' }]);
  return id;
}
