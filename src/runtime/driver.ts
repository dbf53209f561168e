/**
 * The Node driver of one replica node: the pure stage machines (stages/node.ts) wired to real
 * TCP (transport.ts), real files (file-store.ts), the real clock and the OS random source.
 *
 * One event loop; every input (message, tick) is one synchronous `step`; its effects run in
 * order. Messages do not reach the stages in arrival order: the transport pushes each decoded
 * message into the inbox (inbox.ts: a bounded queue per replica, one for all clients, catch-up
 * requests when idle, flood cut-off), and a drain loop, scheduled with setImmediate, steps at
 * most `drainBatch` messages per turn in the inbox's round-robin order before yielding to I/O.
 * Messages between co-located stages go through the inbox's own lane: first, never dropped.
 * A replica the inbox finds flooding is disconnected by the transport for
 * `runtime.floodCutOffMs`. A `persist` effect is a barrier: the effects behind it wait until the write is durable.
 * Persists queued while an fdatasync is in flight join the next group commit (one fdatasync for
 * all of them), so barriers cost one sync per group, not per write.
 *
 * A storage failure or a broken invariant (AssertionError) stops the process: a replica that
 * cannot keep its promises must not go on answering (fail stop).
 */
import { join } from 'node:path';
import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { deriveCluster, primaryOf, type Cluster } from '../core/config.ts';
import { KeyRing, nodePrincipal, principalKey, clientPrincipal, type CryptoProvider, type Principal } from '../crypto/provider.ts';
import { DerivedKeys } from '../crypto/pairing.ts';
import { ReplicaNode } from '../stages/node.ts';
import type { Effect, Note } from '../stages/types.ts';
import type { AppFactory } from '../app/contract.ts';
import { isAuthRow, type Message } from '../codec/messages.ts';
import { hex } from '../stages/common.ts';
import { ConfigError } from '../core/errors.ts';
import { FileStore, SplitStore, VolatileStore } from './file-store.ts';
import { EffectRunner } from './effects.ts';
import { Transport } from './transport.ts';
import { Inbox, type LaneDepth } from './inbox.ts';
import { NodeAttack, parseAttackSpec } from './attack.ts';
import { forgedAuthReq } from '../stages/adversary.ts';
import { NodeMetrics, serveMetrics } from './metrics.ts';
import { OsRandom, monotonicClock } from './random.ts';
import type { ClusterFile } from './cluster-file.ts';
import { isExecCheckpointKey } from '../stages/exec/exec.ts';

/** Everything a node needs to run. */
export interface NodeDriverOptions {
  readonly cluster: ClusterFile;
  readonly nodeId: number;
  /** The node's Ed25519 seed (from its key file). */
  readonly privateKey: Uint8Array;
  readonly dataDir: string;
  readonly crypto: CryptoProvider;
  readonly appFactory: AppFactory;
  readonly logger: Logger;
  /**
   * Accept `POST /attack` on the metrics port (attack.ts): for `bench --attack` on a throwaway
   * local cluster only. Default false (the endpoint answers 403).
   */
  readonly attacksAllowed?: boolean;
}

/** Public keys of every principal in a cluster file, keyed by principal name. */
export function publicKeysOf(cf: ClusterFile): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const n of cf.nodes) m.set(principalKey(nodePrincipal(n.id)), n.publicKey);
  for (const c of cf.clients) m.set(principalKey(clientPrincipal(c.id)), c.publicKey);
  return m;
}

/** What /status reports about a node. */
export interface NodeStatus {
  readonly node: number;
  readonly view: number | undefined;
  readonly primary: number | undefined;
  readonly normal: boolean | undefined;
  readonly committedSeq: number | undefined;
  readonly stableSeq: number | undefined;
  readonly executedSeq: number | undefined;
  /** An execution state transfer in progress: agreed seq, chunks (once the manifest is in), received, in flight, peers skipped. */
  readonly transfer: { seq: number; chunks: number | undefined; received: number; outstanding: number; skipped: number[] } | undefined;
  /** Execution checkpoints frozen and not yet serialised. */
  readonly checkpointsPending: number | undefined;
  /** Execution checkpoints held (seqs). */
  readonly checkpointsHeld: number[] | undefined;
  /** Checkpoint parts sent to peers, and requests for parts not held. */
  readonly checkpointPartsServed: { parts: number; missed: number } | undefined;
  /** Chunks of the last checkpoint serialised: written fresh, and taken over unchanged (incremental checkpoints). */
  readonly lastCheckpointChunks: { fresh: number; reused: number } | undefined;
  /** SHA-256 of the application state (only when asked for: it serialises the whole state). */
  readonly stateDigest: string | undefined;
  readonly peers: readonly string[];
  readonly clients: number;
  readonly queueBytes: Readonly<Record<string, number>>;
  readonly pendingHandshakes: number;
  readonly rejected: Readonly<Record<string, number>>;
  readonly storage: { readonly durability: string; readonly syncs: number; readonly logBytes: number; readonly keys: number };
  readonly rssBytes: number;
  /** Highest resident set size of the process so far. */
  readonly rssPeakBytes: number;
  readonly uptimeMs: number;
  /** Packets, frames and bytes sent so far. */
  readonly traffic: { readonly packets: number; readonly frames: number; readonly bytes: number };
  /**
   * The inbox: messages and bytes waiting per lane (`self`, `n<id>`, `n<id>/low`, `clients`;
   * empty lanes left out), messages dropped per source and reason, and the replicas cut off for
   * flooding with the ms left.
   */
  readonly inbox: {
    readonly depth: Readonly<Record<string, LaneDepth>>;
    readonly dropped: Readonly<Record<string, Readonly<Record<string, number>>>>;
    readonly cutOff: Readonly<Record<string, number>>;
    /** Most bytes peers and clients can make the inbox hold (Inbox.bytesBound). */
    readonly boundBytes: number;
  };
}

/** Most messages the drain loop steps before yielding to I/O. */
const drainBatch = 256;
/**
 * How long the order log holds a lazy write (a committed record, which nothing waits for) for
 * the next write that is waited for. Under load the next batch's pre-prepare record comes
 * within a few milliseconds and carries it, which saves one sync per batch.
 */
const lazyHoldMs = 20;

/** `lazyHoldMs`, or the BULWARK_LAZY_HOLD_MS environment variable (for A/B measurements). */
export function lazyHoldFromEnv(): number {
  const raw = process.env['BULWARK_LAZY_HOLD_MS'];
  if (raw === undefined || raw === '') return lazyHoldMs;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms < 0 || ms > 1000) throw new ConfigError([{ path: 'env.BULWARK_LAZY_HOLD_MS', message: `expected milliseconds from 0 to 1000, got "${raw}"` }]);
  return ms;
}

/** A running node. */
export class NodeDriver {
  readonly cluster: Cluster;
  readonly metrics: NodeMetrics;
  private readonly node: ReplicaNode;
  private readonly store: SplitStore | VolatileStore;
  private readonly transport: Transport;
  private readonly now = monotonicClock();
  private readonly effects: EffectRunner;
  private ticker: NodeJS.Timeout | undefined;
  private gauges: NodeJS.Timeout | undefined;
  private http: Server | undefined;
  private readonly firstSeen = new Map<string, number>();
  private readonly rejectedCounts = new Map<string, number>();
  private readonly startedAt = Date.now();
  private stopped = false;
  /** The attack this node plays, if told to (attack.ts); none by default. */
  private readonly attack: NodeAttack;
  private floodTimer: NodeJS.Timeout | undefined;
  /** Every message waits here between the transport (or a co-located stage) and `step`. */
  private readonly inbox: Inbox;
  private drainScheduled = false;
  /** Inbox drops already added to bulwark_inbox_dropped_total, by `source|reason`. */
  private readonly droppedReported = new Map<string, number>();
  private readonly self: Principal;

  private constructor(private readonly o: NodeDriverOptions) {
    this.cluster = deriveCluster(o.cluster.protocol);
    const self = nodePrincipal(o.nodeId);
    this.self = self;
    const keys = new KeyRing(self, o.crypto, new DerivedKeys(self, o.privateKey, publicKeysOf(o.cluster)));
    const orderPeers = this.cluster.order.nodes.map(nodePrincipal);
    this.attack = new NodeAttack((msg, later) => forgedAuthReq(msg, keys, orderPeers, later));
    this.metrics = new NodeMetrics(o.nodeId);
    // Execution checkpoints are the one thing a replica can refetch from its peers (verified
    // against the agreed token), so a damaged checkpoint file is dropped rather than fatal.
    const durability = this.cluster.durability;
    this.store =
      durability === 'none'
        ? new VolatileStore()
        : new SplitStore(
            FileStore.open(o.dataDir, { groupCommit: durability !== 'sync', deferLazyMs: lazyHoldFromEnv() }),
            FileStore.open(join(o.dataDir, 'checkpoints'), { repairable: isExecCheckpointKey, ownFile: isExecCheckpointKey }),
            isExecCheckpointKey,
          );
    if (this.store.stats.tornTailBytes > 0) o.logger.warn({ bytes: this.store.stats.tornTailBytes }, 'zeroed a torn tail of the write-ahead log');
    if (this.store.repaired.length > 0) o.logger.error({ keys: this.store.repaired }, 'dropped damaged checkpoint files; the replica fetches checkpoints from its peers');
    this.effects = new EffectRunner(
      this.store,
      (e) => {
        this.execute(e);
      },
      (err) => {
        this.fatal('storage failed', err);
      },
    );
    this.node = new ReplicaNode({ cluster: this.cluster, nodeId: o.nodeId, keys, appFactory: o.appFactory, durable: this.store.map, random: new OsRandom(), verify: false });
    const entry = o.cluster.nodes.find((n) => n.id === o.nodeId);
    if (entry === undefined) throw new Error(`node ${o.nodeId} is not in the cluster file`);
    const dial = new Map<number, { host: string; port: number }>();
    for (const n of o.cluster.nodes) if (n.id > o.nodeId) dial.set(n.id, { host: n.host, port: n.port });
    const knownNodes = new Set(o.cluster.nodes.map((n) => n.id));
    const knownClients = new Set(o.cluster.clients.map((c) => c.id));
    // Flood cut-off only where replicas may lie (r >= 1): at most r cut off at once, and never
    // so many that cut-off and silent peers reach u (inbox.ts).
    const { u, r } = o.cluster.protocol;
    this.inbox = new Inbox({
      replicas: o.cluster.nodes.filter((n) => n.id !== o.nodeId).map((n) => n.id),
      floodCutOffMs: o.cluster.runtime.floodCutOffMs,
      cutOffMax: r >= 1 ? Math.min(u, r) : 0,
      silentMax: u,
    });
    this.transport = new Transport({
      keys,
      listen: { host: bindHost(entry.host), port: entry.port },
      dial,
      known: (p) => (p.kind === 'node' ? knownNodes.has(p.id) : knownClients.has(p.id)),
      onMessage: (from, msg, bytes) => {
        this.onMessage(from, msg, bytes);
      },
      onReject: (reason, peer) => {
        this.countReject(reason);
        o.logger.debug({ reason, peer }, 'rejected input');
      },
      onPeer: (peer, up) => {
        if (peer.kind === 'node') o.logger.info({ peer: principalKey(peer), up }, up ? 'peer connected' : 'peer disconnected');
      },
    });
  }

  /** Opens storage, starts listening and dialing, starts the ticker and the metrics server. */
  static async start(o: NodeDriverOptions): Promise<NodeDriver> {
    const d = new NodeDriver(o);
    await d.transport.start();
    const entry = o.cluster.nodes.find((n) => n.id === o.nodeId)!;
    if (entry.metricsPort > 0) {
      d.http = await serveMetrics({
        host: bindHost(entry.host),
        port: entry.metricsPort,
        metrics: d.metrics,
        status: (url) => d.status(url.searchParams.has('digest')),
        attack: (body) => d.setAttack(body),
      });
    }
    d.ticker = setInterval(() => {
      d.step({ kind: 'tick', now: d.now() });
    }, o.cluster.runtime.tickMs);
    // How long the event loop was blocked at most in each second (a stalled node's first suspect).
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    d.gauges = setInterval(() => {
      d.refreshGauges();
      const loopDelayMaxMs = loopDelay.max / 1e6;
      loopDelay.reset();
      d.metrics.loopDelayMax.set(loopDelayMaxMs / 1000);
      // A line per second at debug level: what a stuck node is waiting for.
      if (o.logger.isLevelEnabled('debug')) {
        const order = d.node.order?.status;
        o.logger.debug({ order, executed: d.node.exec === undefined ? undefined : d.node.exec.next - 1, loopDelayMaxMs: Math.round(loopDelayMaxMs), inbox: d.inbox.depths(), dropped: d.inbox.dropped(), cutOff: d.inbox.cutOffs(d.now()), rejected: Object.fromEntries(d.rejectedCounts) }, 'status');
      }
    }, 1000);
    d.gauges.unref();
    d.step({ kind: 'tick', now: d.now() });
    o.logger.info({ node: o.nodeId, port: entry.port, metricsPort: entry.metricsPort, crypto: o.crypto.name, recovered: d.store.map.size, durability: d.cluster.durability }, 'node started');
    return d;
  }

  /** Stops everything; pending durable writes complete first. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    if (this.gauges !== undefined) clearInterval(this.gauges);
    if (this.floodTimer !== undefined) clearInterval(this.floodTimer);
    await this.transport.stop();
    if (this.http !== undefined) await new Promise<void>((r) => this.http!.close(() => r()));
    await this.store.close();
  }

  private countReject(reason: string): void {
    this.metrics.rejected.inc({ reason });
    this.rejectedCounts.set(reason, (this.rejectedCounts.get(reason) ?? 0) + 1);
  }

  /** A message from the network: into the inbox (fair, bounded); stepped by `drain`. */
  private onMessage(from: Principal, msg: Message, bytes: number): void {
    if (this.stopped) return;
    const now = this.now();
    this.noteArrival(msg, now);
    const outcome = this.inbox.push(from, msg, bytes, now);
    switch (outcome) {
      case 'queued':
        this.scheduleDrain();
        return;
      case 'replaced':
        return;
      case 'flood':
        if (from.kind === 'node') {
          const ms = this.o.cluster.runtime.floodCutOffMs;
          this.o.logger.warn({ peer: principalKey(from), cutOffMs: ms }, 'replica flooding (20x every other replica): disconnected');
          this.transport.disconnectFor(from.id, ms);
        }
        return;
      default:
        // Dropped: counted by the inbox per source and reason (/status inbox.dropped, and
        // bulwark_inbox_dropped_total from refreshGauges).
        return;
    }
  }

  /** `POST /attack`: sets the attack this node plays (403 unless attacksAllowed). */
  private setAttack(body: unknown): { status: number; text: string } {
    if (this.o.attacksAllowed !== true) return { status: 403, text: 'attacks are off (start the node with BULWARK_ATTACKS=1)\n' };
    const spec = parseAttackSpec(body);
    if ('error' in spec) return { status: 400, text: `bad attack: ${spec.error}\n` };
    this.attack.set(spec);
    this.o.logger.warn({ attack: spec }, 'attack set');
    if (this.floodTimer !== undefined) clearInterval(this.floodTimer);
    this.floodTimer = undefined;
    if (spec.name === 'replica-flood') {
      const tickMs = 10;
      const peers = this.o.cluster.nodes.filter((n) => n.id !== this.o.nodeId).map((n) => nodePrincipal(n.id));
      this.floodTimer = setInterval(() => {
        for (const m of this.attack.floodBatch(tickMs)) this.transport.send(peers, m);
      }, tickMs);
    }
    return { status: 200, text: `attack: ${spec.name}\n` };
  }

  /** Latency is measured from the first AUTH-REQ to execution, so only executors keep it. */
  private noteArrival(msg: Message, now: number): void {
    if (isAuthRow(msg) && this.node.exec !== undefined) {
      const k = `${msg.client}:${msg.reqId}`;
      if (!this.firstSeen.has(k)) {
        if (this.firstSeen.size > 100_000) this.firstSeen.clear();
        this.firstSeen.set(k, now);
      }
    }
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  /** Steps up to `drainBatch` messages in the inbox's order, then yields to I/O. */
  private drain(): void {
    for (let i = 0; i < drainBatch && !this.stopped; i++) {
      const now = this.now();
      const item = this.inbox.take(now);
      if (item === undefined) return;
      if (!this.attack.accepts(item.msg)) continue;
      this.step({ kind: 'message', from: item.from, msg: item.msg, now });
    }
    if (this.inbox.size > 0 && !this.stopped) this.scheduleDrain();
  }

  private step(ev: Parameters<ReplicaNode['step']>[0]): void {
    if (this.stopped) return;
    let effects: Effect[];
    try {
      effects = this.node.step(ev);
    } catch (e) {
      this.fatal('a protocol invariant broke', e);
      return;
    }
    this.effects.run(effects);
  }

  private execute(e: Exclude<Effect, { kind: 'persist' }>): void {
    switch (e.kind) {
      case 'send': {
        // Co-located stages talk through an in-memory hop, on the next turn (no re-entrancy).
        const remote = e.to.filter((p) => p.kind !== 'node' || p.id !== this.o.nodeId);
        if (remote.length !== e.to.length) {
          const now = this.now();
          const msg = this.attack.local(e.msg);
          this.noteArrival(msg, now);
          this.inbox.pushLocal(this.self, msg, now);
          this.scheduleDrain();
        }
        if (remote.length > 0) {
          if (this.attack.current.name === 'none') this.transport.send(remote, e.msg);
          else {
            for (const a of this.attack.rewrite(remote, e.msg)) {
              if (a.delayMs > 0) setTimeout(() => this.transport.send(a.to, a.msg), a.delayMs);
              else this.transport.send(a.to, a.msg);
            }
          }
        }
        return;
      }
      case 'note':
        this.onNote(e.note);
        return;
      case 'result':
        return;
    }
  }

  private onNote(n: Note): void {
    const log = this.o.logger;
    switch (n.type) {
      case 'executed': {
        this.metrics.batches.inc();
        this.metrics.executed.inc(n.results.length);
        this.metrics.executedSeq.set(n.seq);
        const now = this.now();
        for (const r of n.results) {
          const k = `${r.client}:${r.reqId}`;
          const t = this.firstSeen.get(k);
          if (t !== undefined) {
            this.metrics.latency.observe((now - t) / 1000);
            this.firstSeen.delete(k);
          }
        }
        return;
      }
      case 'committed':
        this.metrics.committedSeq.set(n.seq);
        return;
      case 'stable':
        this.metrics.stableCheckpoint.set(n.seq);
        log.debug({ seq: n.seq }, 'checkpoint stable');
        return;
      case 'viewChangeStarted':
        this.metrics.viewChanges.inc({ reason: n.reason });
        log.info({ view: n.view, reason: n.reason }, 'view change started');
        return;
      case 'primarySuspected':
        log.info({ view: n.view, reason: n.reason, suspects: n.suspects, needed: n.needed }, 'suspected the primary; staying in the view until enough replicas agree');
        return;
      case 'viewEntered':
        this.metrics.view.set(n.view);
        log.info({ view: n.view, primary: n.primary }, 'entered view');
        return;
      case 'checkpointTaken':
        log.debug({ seq: n.seq, token: hex(n.token).slice(0, 16) }, 'checkpoint taken');
        return;
      case 'checkpointLoaded':
        log.info({ seq: n.seq, token: hex(n.token).slice(0, 16) }, 'loaded an agreed checkpoint');
        return;
      case 'rejected':
        this.countReject(n.reason);
        log.debug({ reason: n.reason, from: principalKey(n.from) }, 'rejected input');
        return;
      case 'safetyAlarm':
        log.error({ detail: n.detail }, 'SAFETY ALARM');
        return;
    }
  }

  private fatal(what: string, e: unknown): void {
    this.o.logger.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, `${what}: stopping this node`);
    this.stopped = true;
    // Fail stop: exit so a supervisor restarts the node from its durable state.
    setImmediate(() => process.exit(70));
  }

  /** Status for `bulwark status` and tests; `digest` adds the hash of the app state. */
  /** Updates the gauges that are read from the transport rather than from notes. */
  private refreshGauges(): { depths: Record<string, number>; peers: string[]; inbox: Record<string, LaneDepth> } {
    const depths = Object.fromEntries(this.transport.queueDepths());
    for (const [peer, bytes] of Object.entries(depths)) this.metrics.queueDepth.set({ peer }, bytes);
    const inbox = this.inbox.depths();
    this.metrics.inboxMessages.reset();
    this.metrics.inboxBytes.reset();
    for (const [lane, d] of Object.entries(inbox)) {
      this.metrics.inboxMessages.set({ lane }, d.messages);
      this.metrics.inboxBytes.set({ lane }, d.bytes);
    }
    this.metrics.inboxCutOff.set(Object.keys(this.inbox.cutOffs(this.now())).length);
    for (const [source, reasons] of Object.entries(this.inbox.dropped())) {
      for (const [reason, n] of Object.entries(reasons)) {
        const k = `${source}|${reason}`;
        const seen = this.droppedReported.get(k) ?? 0;
        if (n > seen) this.metrics.inboxDropped.inc({ source, reason }, n - seen);
        this.droppedReported.set(k, n);
      }
    }
    const peers = this.transport.connectedPeers();
    this.metrics.connectedPeers.set(peers.length);
    this.metrics.storageSyncs.set(this.store.stats.syncs);
    return { depths, peers, inbox };
  }

  status(digest = false): NodeStatus {
    const order = this.node.order?.status;
    const exec = this.node.exec;
    const { depths, peers, inbox } = this.refreshGauges();
    return {
      node: this.o.nodeId,
      view: order?.view,
      primary: order === undefined ? undefined : primaryOf(this.cluster, order.view),
      normal: order?.normal,
      committedSeq: order?.committedSeq,
      stableSeq: order?.stableSeq,
      executedSeq: exec === undefined ? undefined : exec.next - 1,
      transfer: exec?.transfer,
      checkpointsPending: exec?.checkpointsPending,
      checkpointsHeld: exec?.checkpointSeqs,
      checkpointPartsServed: exec === undefined ? undefined : { ...exec.served },
      lastCheckpointChunks: exec === undefined ? undefined : { ...exec.lastCheckpointChunks },
      stateDigest: digest && exec !== undefined ? hex(this.o.crypto.digest(exec.appCheckpoint())) : undefined,
      peers: peers.filter((p) => p.startsWith('n')),
      clients: peers.filter((p) => p.startsWith('c')).length,
      queueBytes: depths,
      pendingHandshakes: this.transport.pendingCount,
      rejected: Object.fromEntries(this.rejectedCounts),
      storage: { durability: this.cluster.durability, syncs: this.store.stats.syncs, logBytes: this.store.logSize, keys: this.store.map.size },
      rssBytes: process.memoryUsage().rss,
      rssPeakBytes: process.resourceUsage().maxRSS * 1024,
      uptimeMs: Date.now() - this.startedAt,
      traffic: { packets: this.transport.stats.packetsSent, frames: this.transport.stats.framesSent, bytes: this.transport.stats.bytesSent },
      inbox: { depth: inbox, dropped: this.inbox.dropped(), cutOff: this.inbox.cutOffs(this.now()), boundBytes: this.inbox.bytesBound },
    };
  }
}

/** Address to bind for a configured host: names bind on all interfaces of their family. */
function bindHost(host: string): string {
  if (host === 'localhost') return '127.0.0.1';
  return /^[0-9.]+$/.test(host) || host.includes(':') ? host : '0.0.0.0';
}
