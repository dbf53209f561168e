/**
 * Order stage (UpRight §5.1.3, §6.2; PBFT normal case and view change with MAC
 * authenticators, Castro & Liskov TOCS 2002).
 *
 * Normal case, view v, primary = order[v mod n]:
 *   AUTH-REQ and AUTH-DIGEST rows -> the primary batches requests holding >= max(u,r)+r+1 rows
 *   and a body (AUTH-DIGEST rows come without one; at most one
 *   request per client, FIFO by readiness) -> PRE-PREPARE(v, seq, time, seed, requests+rows)
 *   -> each backup checks the batch (>= max(u,r)+1 rows valid for itself per request, distinct
 *   clients, limits, time) and sends PREPARE(v, seq, d) -> prepared with the pre-prepare and
 *   n-u-1 PREPAREs from backups -> COMMIT -> committed with n-u COMMITs.
 *   Crash-only clusters (r = 0) skip the PREPARE round (UpRight §6.2.1: at r = 0 the quorums
 *   are Paxos majorities): a primary that cannot lie never sends two batches for one (view,
 *   seq), so accepting its PRE-PREPARE is being prepared. Each replica, the primary included,
 *   sends COMMIT once its pre-prepare record is durable, and n-u COMMITs commit, as in
 *   Multi-Paxos (accept, then n-u accepted). The view change is unchanged: a replica's P entry
 *   is the pre-prepare it accepted, and decide.ts's argument holds with "prepared" read that way
 *   (n-u replicas durably accepted (v, d), so every n-u view changes include one of them).
 *   Committed batches are applied in sequence order: history H_n = hash(H_{n-1}, n, d_n),
 *   per-client last ordered request id, and NEXT-BATCH(n, H_n, batch) to every executor.
 *
 * Checkpoints (§5.3.1, the interlock): after committing seq s with s mod CP_int = 0 the replica
 * snapshots its order state and waits for max(u,r)+1 matching CP-TOKENs from executors (the
 * execution checkpoint hash at s); the order checkpoint digest covers that token. It then
 * sends CHECKPOINT(s, D); D is stable with n-u matching. Nothing above stable + 2*CP_int is
 * proposed or accepted, so ordering never runs more than two intervals ahead of execution.
 *
 * View change (decide.ts): on timeout of a waiting request, an invalid pre-prepare, or r+1
 * replicas asking for a higher view. VIEW-CHANGE messages are signed and carry P (prepared) and
 * Q (pre-prepared) sets; the new primary decides and sends NEW-VIEW with the view changes;
 * backups verify signatures and recompute the decision.
 *
 * Suspicions: a backup whose monitor (monitor.ts) finds the primary of view v too slow, silent
 * (heartbeat) or unfair, or whose request timer expires, sends SUSPECT(v) and stays in v (the
 * request timer restarts). A SUSPECT heard within suspectTtlMs (its own included, the
 * primary's not) counts in the join rule (maybeJoinViewChange) as a request for v+1, beside
 * the VIEW-CHANGEs of others: min(u,r)+1 replicas wanting v's primary out start the view change,
 * so at least one correct replica suspects whenever u >= r. A lone suspicion used to take a
 * correct replica out of the view for as long as the others stayed in it (0.94 s measured for
 * throughput), and for good when nothing else made the others change views: PBFT lets no replica
 * return to a lower view once its VIEW-CHANGE for a higher one is out. Invalid and equivocating
 * pre-prepares, which prove the primary faulty, still act alone, and so does a primary's own
 * request timer (its VIEW-CHANGE makes the backups follow at once).
 *
 * Catch-up: STATUS gossip every statusIntervalMs. A replica ahead answers with its stable
 * checkpoint and committed batches; the lagging replica adopts a checkpoint or batch once r+1
 * distinct replicas vouch for the same digest (one of them is correct).
 *
 * Invariants (checkInvariants):
 * - stableSeq <= committedSeq; every slot has stableSeq < seq <= stableSeq + 2*CP_int;
 * - committed slots above stableSeq form a contiguous prefix up to committedSeq... plus
 *   possibly committed slots further up that wait for a gap to fill;
 * - a slot holds at most one pre-prepare per view; once committed its digest never changes;
 * - the view never decreases.
 */
import { assert } from '../../core/assert.ts';
import { primaryOf, type Cluster } from '../../core/config.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import { bytesEqual, nodePrincipal } from '../../crypto/provider.ts';
import {
  encodeBatch,
  fetchBatchesMax,
  orderCheckpointCodec,
  viewChangeBodyCodec,
  type AuthRowMsg,
  type Batch,
  type Message,
  type MsgOf,
  type OrderCheckpoint,
  type ProposedRequest,
  type SignedViewChange,
  type ViewChangeBody,
} from '../../codec/messages.ts';
import { encodeWith } from '../../codec/schema.ts';
import { batchesPerMessageMax } from '../../codec/limits.ts';
import type { Canaries, Effect, RandomSource, ScopedEffect, StageEvent } from '../types.ts';
import { batchDigestOf, hex, membersOf, Outbox, requestCoreDigest, u64Bytes } from '../common.ts';
import { decideNewView } from './decide.ts';
import { VoteTable } from '../votes.ts';
import { PrimaryMonitor, sampleMaxMs, type SuspicionReason } from './monitor.ts';
import { cpRecordCodec, decodeBatchRecord, decodeRecord, metaCodec, slotCodec, type SlotRecord } from './records.ts';

/** How long a SUSPECT counts: two of the monitor's longest samples. */
export const suspectTtlMs = 2 * sampleMaxMs;

/** Largest BATCH-BODIES message (a batch of up to 16 MiB still fits one, within a frame). */
const batchBodiesBytesMax = 32 << 20;

const zeroDigest = new Uint8Array(32);
/** The null batch: fills a sequence number nobody prepared, delivers nothing. */
export const nullBatch: Batch = { time: 0, seed: 0, requests: [] };

interface ViewDigest {
  view: number;
  digest: Uint8Array;
}

/** Per-sequence-number protocol state. */
interface Slot {
  readonly seq: number;
  /** Pre-prepare accepted in the current view. Invariant: pp.view === view when set. */
  pp: (ViewDigest & { batch: Batch; msg?: MsgOf<'prePrepare'> }) | undefined;
  /** PREPARE per sender, current view (sender node id -> digest hex). */
  prepares: Map<number, string>;
  /**
   * Latest COMMIT vote per sender, of any view: "view:digest hex". n-u votes for the same
   * (view, digest) commit the slot whatever view this replica is in (a commit certificate: at
   * least u+1 correct replicas prepared it), so a replica that missed the COMMITs of a past view
   * can still commit when they are retransmitted.
   */
  commitVotes: Map<number, string>;
  /** Whether this replica sent COMMIT in the current view. */
  sentCommit: boolean;
  /** P: latest prepared (any view). */
  prepared: ViewDigest | undefined;
  /** Q: pre-prepared (view, digest), latest view per digest. */
  q: ViewDigest[];
  /** Committed batch; final. */
  committed: { digest: Uint8Array; batch: Batch } | undefined;
  /** History hash after this batch; set when applied. */
  history: Uint8Array | undefined;
  /** Bodies known for this slot by digest hex (pp, P, committed). */
  bodies: Map<string, Batch>;
}

interface Candidate {
  readonly reqId: number;
  /**
   * The body, once an AUTH-REQ brought one with this core digest (rows may come first, as
   * AUTH-DIGESTs). Invariant: set whenever readySince is.
   */
  op: Uint8Array | undefined;
  readonly coreDigest: Uint8Array;
  /** Valid rows by auth node id. */
  readonly rows: Map<number, Uint8Array[]>;
  /** When it first held enough rows; undefined until then. */
  readySince: number | undefined;
  /**
   * Fairness (backups): the view this request was forwarded to the primary in (-1: not yet),
   * the seq of the pre-prepare that made it forward, and the later pre-prepares with room that
   * passed it over all the same.
   */
  forwardedIn: number;
  forwardedAt: number;
  passedOver: number;
}

/** One auth replica's row for a client's request. */
/** The body of a ready candidate (readiness needs one). */
function bodyOf(c: Candidate): Uint8Array {
  assert(c.op !== undefined, 'a ready candidate has its body');
  return c.op;
}

interface Claim {
  readonly reqId: number;
  /** The body, when this claim or the candidate it joined had one. */
  readonly op: Uint8Array | undefined;
  readonly coreDigest: Uint8Array;
  readonly row: Uint8Array[];
}

interface Snapshot {
  readonly history: Uint8Array;
  readonly time: number;
  readonly lastOrdered: [number, number][];
}

interface MyCheckpoint {
  readonly content: OrderCheckpoint;
  readonly digest: Uint8Array;
}

/** Order replica state machine. */
export class OrderCore {
  private readonly out = new Outbox();
  private readonly n: number;
  private readonly medium: number;
  private readonly small: number;
  /**
   * Replicas in higher views that pull this one along: min(u, r) + 1. Joining a view is never
   * unsafe, so the threshold only has to keep liars from forcing view changes: with r <= u at
   * most r replicas lie (r+1 includes an honest one); with u < r liveness is only promised while
   * at most u replicas are faulty (u+1 includes an honest one). r+1 alone would let one lying
   * primary split the correct replicas for good when u < r (simulator seed 188, u=1 r=2).
   */
  private readonly joinQuorum: number;
  private readonly cpInt: number;
  private readonly index: number;
  private readonly peers: Principal[];
  /** The peers and this replica's own node: where its votes go in `parallel` mode (see scopedVotes). */
  private readonly peersAndSelf: Principal[];
  private readonly execPeers: Principal[];
  /**
   * Executors that learn committed batches from this replica's NEXT-BATCH in the normal case:
   * the co-located one and those on nodes without an order replica. An executor that shares its
   * node with an order replica takes its batches from that replica (same fault domain), so the
   * others do not send it NEXT-BATCH unless it asks (LAST-EXEC).
   */
  private readonly batchPeers: Principal[];
  private readonly authPeers: Principal[];
  private readonly nullDigest: Uint8Array;

  // ---- view state ----
  /** Current view. Invariant: never decreases. */
  private view = 0;
  /** False while a view change to `view` is in progress. */
  private normal = true;
  /**
   * The last view in which this replica committed something while active; view-change timeouts
   * grow with the distance to it. Entering a view is not enough: a lying primary may send its
   * NEW-VIEW to some replicas only, and they must not get a different timeout schedule from it.
   */
  private lastProgressView = 0;
  /** Deadline of the current view change. */
  private vcDeadline = 0;
  /**
   * The view-change timer runs only once n-u VIEW-CHANGEs for the current view are known
   * (PBFT §4.5.2): a replica that alone, or with a few others, suspects the primary waits for
   * the rest instead of running ahead through views it cannot complete (seed 674: a Byzantine
   * primary that showed its NEW-VIEW to two replicas only split them from the others for good).
   */
  private vcTimerArmed = false;
  /** Latest VIEW-CHANGE per sender (any view). */
  private readonly viewChanges = new Map<number, { signed: SignedViewChange }>();
  /** My VIEW-CHANGE for the current view, for retransmission. */
  private myViewChange: MsgOf<'viewChange'> | undefined;
  /** Per peer: its committed seq when catch-up was last sent to it, and when. */
  private readonly catchUpSent = new Map<number, { committed: number; at: number }>();
  /** When the current VIEW-CHANGE is resent next, and the interval after that (doubling). */
  private vcResendAt = 0;
  private vcResendEveryMs = 0;
  /** NEW-VIEW of the current view (primary only), for retransmission. */
  private myNewView: MsgOf<'newView'> | undefined;
  /** Batch bodies fetched for the view change in progress, by digest hex. */
  private readonly vcBodies = new Map<string, Batch>();
  /** Bodies the view change in progress needs and this replica lacks: digest hex -> digest. */
  private readonly fetching = new Map<string, Uint8Array>();
  /** A NEW-VIEW received whose batches are still being fetched (backups). */
  private pendingNewView: MsgOf<'newView'> | undefined;
  /** The stable checkpoint moved while new-view bodies were missing: decide again at the next tick. */
  private recheckNewView = false;
  /** When a batch body last went to a peer ("peer:digest" -> time), to answer each at most once per status interval. */
  private readonly bodiesSent = new Map<string, number>();
  /** Replicas to ask for the missing bodies, and when to ask again. */
  private fetchFrom = new Set<number>();
  private fetchAgainAt = 0;

  // ---- log state ----
  private readonly slots = new Map<number, Slot>();
  /** Highest seq with a pre-prepare in the current view (0 if none). */
  private highestPP = 0;
  /** Highest seq the NEW-VIEW of the current view assigned (0 outside a view it began). */
  private newViewTop = 0;
  /** Assignments of the current view's NEW-VIEW that lay beyond this replica's window. */
  private readonly deferredChoices = new Map<number, { digest: Uint8Array; batch: Batch }>();
  private stableSeq = 0;
  private stable: MyCheckpoint;
  private prevStable: { seq: number; token: Uint8Array } | undefined;
  /** Highest seq with every batch up to it committed and applied. */
  private committedSeq = 0;
  private history: Uint8Array = zeroDigest;
  private lastTime = 0;
  private readonly lastOrdered = new Map<number, number>();
  /** Order snapshots at checkpoint seqs, awaiting their execution token. */
  private readonly snapshots = new Map<number, Snapshot>();
  /** Checkpoints this replica computed above stableSeq. */
  private readonly mine = new Map<number, MyCheckpoint>();
  /** CHECKPOINT votes per seq. */
  private readonly cpVotes = new VoteTable<Uint8Array>();
  /** CP-TOKEN votes per seq (executors). */
  private readonly tokenVotes = new VoteTable<Uint8Array>();
  /** Agreed execution tokens by seq. */
  private readonly tokens = new Map<number, Uint8Array>();

  // ---- primary state ----
  /** Requests waiting to be ordered, per client. */
  private readonly candidates = new Map<number, Candidate>();
  /** Per client, each auth replica's latest row: what it vouches for (addRow). */
  private readonly claims = new Map<number, Map<number, Claim>>();
  /** The request timer: the waiting request it runs for, and since when (requestTimerExpired). */
  private requestTimer: { client: number; reqId: number; since: number } | undefined;
  /** Last time RETRANSMIT was sent per client (rate limit). */
  private readonly retransmitAt = new Map<number, number>();

  // ---- catch-up ----
  private readonly statuses = new Map<number, MsgOf<'status'>>();
  private nextStatusAt = 0;
  /** Catch-up claims of committed batches per seq. */
  private readonly batchClaims = new VoteTable<Batch>();
  private readonly cpClaims = new Map<string, { senders: Set<number>; content: OrderCheckpoint }>();

  private started = false;
  /**
   * Durability `parallel`: the pre-prepare and prepared records are scoped barriers. The vote
   * each backs (PRE-PREPARE, PREPARE, COMMIT) waits for it; nothing else does (execution,
   * replies and other slots' votes go on while it is written). This replica's own COMMIT counts
   * towards its commit certificate only when it comes back from the in-memory hop, that is once
   * its prepared record is durable, so a certificate never holds a vote that a crash could
   * erase. In the other modes each record is a barrier for every later effect of its step.
   */
  private readonly scopedVotes: boolean;
  /** r = 0: no PREPARE round; a replica is prepared once it accepts the pre-prepare (see header). */
  private readonly twoPhase: boolean;
  /** Time of the event being handled. */
  private lastNow = 0;
  /** Judges the primary (heartbeat, throughput); see monitor.ts. */
  private readonly monitor: PrimaryMonitor;
  /** A reason found while applying batches, acted on at the next tick. */
  private suspicion: SuspicionReason | undefined;
  /** Latest SUSPECT per replica (this one included): the view and when it was heard. */
  private readonly suspects = new Map<number, { view: number; at: number }>();

  constructor(
    private readonly cluster: Cluster,
    private readonly nodeId: number,
    private readonly keys: KeyRing,
    durable: ReadonlyMap<string, Uint8Array>,
    private readonly random: RandomSource,
    private readonly canaries: Canaries = new Set(),
    private readonly verify = true,
  ) {
    const idx = cluster.order.indexOf.get(nodeId);
    assert(idx !== undefined, `node ${nodeId} hosts no order replica`);
    this.index = idx;
    this.n = cluster.order.nodes.length;
    this.medium = cluster.order.quorum.medium;
    this.twoPhase = cluster.r === 0;
    this.small = cluster.order.quorum.small;
    this.joinQuorum = Math.min(cluster.u, cluster.r) + 1;
    this.cpInt = cluster.config.checkpointInterval;
    this.peers = membersOf(cluster.order).filter((p) => p.kind === 'node' && p.id !== nodeId);
    this.peersAndSelf = [...this.peers, nodePrincipal(nodeId)];
    this.execPeers = membersOf(cluster.exec);
    this.batchPeers = this.execPeers.filter((p) => p.id === nodeId || !cluster.order.indexOf.has(p.id));
    this.authPeers = membersOf(cluster.auth);
    this.nullDigest = this.batchDigest(nullBatch);
    const genesis: OrderCheckpoint = { seq: 0, history: zeroDigest, time: 0, execToken: zeroDigest, lastOrdered: [] };
    this.stable = { content: genesis, digest: this.cpDigest(genesis) };
    this.scopedVotes = cluster.durability === 'parallel';
    this.monitor = new PrimaryMonitor({ heartbeatMs: cluster.config.heartbeatMs, throughputGraceMs: cluster.config.throughputGraceMs, viewsRemembered: this.n, rampMs: cluster.config.clientRetryMs });
    this.recover(durable);
    this.checkInvariants();
  }

  // =========================================================================================
  // Public surface
  // =========================================================================================

  /** Current view and whether it is active. */
  get status(): { view: number; normal: boolean; primary: number; committedSeq: number; stableSeq: number; waiting: number; candidates: number; bodiesMissing: number } {
    return {
      view: this.view,
      normal: this.normal,
      bodiesMissing: this.normal ? 0 : this.fetching.size,
      primary: primaryOf(this.cluster, this.view),
      committedSeq: this.committedSeq,
      stableSeq: this.stableSeq,
      waiting: this.waitingCandidates().length,
      candidates: this.candidates.size,
    };
  }

  step(ev: StageEvent): Effect[] {
    this.lastNow = ev.now;
    if (!this.started) {
      this.started = true;
      this.onStart(ev.now);
    }
    if (ev.kind === 'tick') this.onTick(ev.now);
    else this.onMessage(ev.from, ev.msg, ev.now);
    this.checkInvariants();
    return this.out.drain();
  }

  // =========================================================================================
  // Dispatch
  // =========================================================================================

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (from.kind !== 'node') {
      this.reject('client_to_order', from);
      return;
    }
    const sender = from.id;
    const isOrder = this.cluster.order.indexOf.has(sender);
    switch (msg.kind) {
      case 'authReq':
      case 'authDigest':
        if (!this.cluster.auth.indexOf.has(sender)) return this.reject('authreq_from_non_auth', from);
        return this.onAuthRow(sender, msg, now);
      case 'cpToken':
        if (!this.cluster.exec.indexOf.has(sender)) return this.reject('token_from_non_exec', from);
        return this.onCpToken(sender, msg.seq, msg.token);
      case 'lastExec':
        if (!this.cluster.exec.indexOf.has(sender)) return this.reject('lastexec_from_non_exec', from);
        return this.onLastExec(from, msg.next);
      case 'prePrepare':
      case 'prepare':
      case 'commit':
      case 'checkpoint':
      case 'viewChange':
      case 'newView':
      case 'status':
      case 'catchUp':
      case 'forward':
      case 'fetchBatches':
      case 'batchBodies':
      case 'suspect':
        // A replica's own PREPARE and COMMIT come back to it through the in-memory hop once the
        // record behind each is durable (durability parallel, see scopedVotes); nothing else
        // may come from itself.
        if (!isOrder || (sender === this.nodeId && msg.kind !== 'commit' && msg.kind !== 'prepare')) return this.reject('order_msg_from_non_order', from);
        switch (msg.kind) {
          case 'forward':
            return this.onForward(sender, msg, now);
          case 'prePrepare':
            return this.onPrePrepare(sender, msg, now);
          case 'prepare':
            return this.onPrepare(sender, msg.view, msg.seq, msg.digest);
          case 'commit':
            return this.onCommit(sender, msg.view, msg.seq, msg.digest);
          case 'checkpoint':
            return this.onCheckpoint(sender, msg.seq, msg.digest);
          case 'viewChange':
            return this.onViewChange(sender, msg, now);
          case 'newView':
            return this.onNewView(sender, msg, now);
          case 'status':
            return this.onStatus(sender, msg, now);
          case 'catchUp':
            return this.onCatchUp(sender, msg);
          case 'fetchBatches':
            return this.onFetchBatches(from, msg.digests, now);
          case 'batchBodies':
            return this.onBatchBodies(msg.batches, now);
          case 'suspect':
            return this.onSuspect(sender, msg.view, now);
        }
      // falls through (unreachable: inner switch returns on every case)
      default:
        return this.reject('unexpected_kind', from);
    }
  }

  private reject(reason: string, from: Principal): void {
    this.out.note({ type: 'rejected', reason, from });
  }

  private onStart(now: number): void {
    this.nextStatusAt = now;
    this.monitor.enterView(now);
    if (!this.normal) {
      // Recovered in the middle of a view change: resume it; the timer arms once n-u view
      // changes for this view are known again.
      this.vcTimerArmed = false;
      this.sendViewChange();
      this.armViewChangeTimer(now);
    } else if (this.isPrimary() && ((this.twoPhase && this.view > 0) || [...this.slots.values()].some((sl) => sl.pp !== undefined && sl.pp.msg === undefined && sl.committed === undefined && sl.pp.view === this.view))) {
      // Restarted as the primary with proposals in flight: their PRE-PREPAREs are gone (the
      // authenticator rows are not stored), so a backup that missed one can never prepare it.
      // Hand the view on at once; the backups join when their primary asks (maybeJoinViewChange)
      // instead of waiting for their timers with a full pipeline. A crash-only primary also
      // hands on any view a NEW-VIEW began: which seqs that NEW-VIEW assigned beyond its window
      // (newViewTop) is not stored, and it votes on its own proposals.
      this.startViewChange(this.view + 1, now, 'restarted');
    }
    for (const c of this.candidates.values()) if (c.readySince !== undefined) c.readySince = now;
    this.requestTimer = undefined;
  }

  private onTick(now: number): void {
    if (now >= this.nextStatusAt) {
      this.nextStatusAt = now + this.cluster.config.statusIntervalMs;
      this.broadcastStatus();
      if (!this.normal && this.myViewChange !== undefined && now >= this.vcResendAt) {
        // Keep every peer informed until the view starts: the new primary needs n-u of them,
        // and each replica's timer arms only when it has seen n-u. The interval doubles.
        this.out.send(this.peers, this.myViewChange);
        this.vcResendEveryMs = Math.min(2 * this.vcResendEveryMs, Math.max(this.cluster.config.statusIntervalMs, this.cluster.config.viewChangeTimeoutMs));
        this.vcResendAt = now + this.vcResendEveryMs;
      }
    }
    if (!this.normal && this.recheckNewView) {
      this.recheckNewView = false;
      this.retryNewView(now);
    }
    if (!this.normal) {
      if (this.vcTimerArmed && now >= this.vcDeadline) {
        if (this.viewActiveAtPeers()) {
          // The view started without us (its NEW-VIEW was lost, or could not be installed
          // yet): ask its primary again rather than leave alone for a view nobody follows.
          if (this.myViewChange !== undefined) this.out.send([nodePrincipal(primaryOf(this.cluster, this.view))], this.myViewChange);
          this.vcDeadline = now + this.vcTimeout(this.view);
        } else this.startViewChange(this.view + 1, now, 'new_view_timeout');
      }
      else if (this.fetching.size > 0 && now >= this.fetchAgainAt) this.requestBodies(now, true);
      return;
    }
    const timeout = this.cluster.config.viewChangeTimeoutMs;
    // The interlock: this replica committed everything up to two intervals past its stable
    // checkpoint, so no primary could order more until execution's tokens make a newer one
    // stable. Waiting requests are not the primary's fault then: their timers restart.
    const interlocked = this.committedSeq >= this.stableSeq + 2 * this.cpInt;
    if (interlocked) {
      for (const c of this.candidates.values()) if (c.readySince !== undefined) c.readySince = now;
      this.requestTimer = undefined;
    } else if (this.requestTimerExpired(now, timeout)) {
      if (this.isPrimary()) {
        // A primary that cannot order what waits hands the view on (its VIEW-CHANGE makes the
        // backups follow at once: primary_left).
        this.startViewChange(this.view + 1, now, 'request_timeout');
        return;
      }
      // A backup suspects, like on the monitor's rules, and times the request again.
      this.requestTimer = { ...this.requestTimer!, since: now };
      if (this.suspectPrimary(now, 'request_timeout')) return;
    }
    let suspicion = this.suspicion;
    this.suspicion = undefined;
    if (!this.isPrimary() && !interlocked) {
      if ((suspicion === undefined || suspicion === 'throughput') && this.monitor.heartbeatExpired(now, () => this.oldestWaiting(), () => this.inflight() >= this.cluster.config.pipelineMax)) {
        // First give the primary what waits here (Aardvark: a backup forwards a request once
        // per view); suspect it only when the heartbeat expires with nothing left to forward.
        if (this.forwardWaiting() > 0) this.monitor.rearm(now);
        else {
          this.monitor.suspected();
          suspicion = 'heartbeat';
        }
      }
      if (suspicion !== undefined && this.suspectPrimary(now, suspicion)) return;
    }
    this.maybePropose(now);
  }

  /**
   * How long a view change to `target` waits for its NEW-VIEW: the base timeout doubled per view
   * since the last active one. Depending on the view number (not on this replica's history) makes
   * correct replicas that fell behind in views step through the lower views faster than the
   * leaders wait at the higher one, so they meet (PBFT §4.5.2's liveness condition).
   */
  private vcTimeout(target: number): number {
    return this.cluster.config.viewChangeTimeoutMs * 2 ** Math.min(Math.max(0, target - this.lastProgressView - 1), 10);
  }

  /**
   * The request timer (PBFT §4.5.2): it runs for one waiting request, the oldest ready one not
   * yet ordered, from when that became ready. When the timed request is ordered and another
   * waits, the timer restarts, for the then oldest, from that moment. So a correct primary must
   * order one waiting request per timeout, not every waiting request within one timeout: under
   * load a request queues behind one batch per client ahead of it, and with small batches and
   * pipeline that alone outlasted the timeout, so every primary was replaced (seed 62113, u=1
   * r=2). A primary that starves one request still fails: the starved request becomes the oldest
   * and is timed in its turn.
   */
  private requestTimerExpired(now: number, timeout: number): boolean {
    let restartAt: number | undefined;
    const t = this.requestTimer;
    if (t !== undefined) {
      const c = this.candidates.get(t.client);
      if (c !== undefined && c.reqId === t.reqId && c.readySince !== undefined && t.reqId > (this.lastOrdered.get(t.client) ?? 0)) return now - t.since >= timeout;
      this.requestTimer = undefined;
      restartAt = now;
    }
    let oldest: { client: number; c: Candidate } | undefined;
    for (const [client, c] of this.candidates) {
      if (c.readySince === undefined || c.reqId <= (this.lastOrdered.get(client) ?? 0)) continue;
      if (oldest === undefined || c.readySince < oldest.c.readySince! || (c.readySince === oldest.c.readySince && client < oldest.client)) oldest = { client, c };
    }
    if (oldest === undefined) return false;
    const since = Math.max(oldest.c.readySince!, restartAt ?? -Infinity);
    this.requestTimer = { client: oldest.client, reqId: oldest.c.reqId, since };
    return now - since >= timeout;
  }

  private isPrimary(): boolean {
    return primaryOf(this.cluster, this.view) === this.nodeId;
  }

  // =========================================================================================
  // Requests and batching
  // =========================================================================================

  /**
   * AUTH-REQ, or AUTH-DIGEST: an auth replica's row without the body (it got the request as its
   * relay's REQUEST-DIGEST). Either row counts towards the request; only a body that hashes to
   * the vouched core digest (an AUTH-REQ's) makes it ready.
   */
  private onAuthRow(authNode: number, msg: AuthRowMsg, now: number): void {
    const from = nodePrincipal(authNode);
    if (!this.cluster.clients.has(msg.client)) return this.reject('unknown_client', from);
    const op = msg.kind === 'authReq' ? msg.op : undefined;
    if (op !== undefined && op.length > this.cluster.config.requestBytesMax) return this.reject('op_too_large', from);
    const ordered = this.lastOrdered.get(msg.client) ?? 0;
    if (msg.reqId <= ordered && (op === undefined || !this.canaries.has('duplicateExecution'))) {
      // Already ordered: have the executors resend the reply (thesis OL2), rate-limited. Left to
      // the AUTH-REQs: a client's retransmission always brings its body.
      const last = this.retransmitAt.get(msg.client) ?? -Infinity;
      if (op !== undefined && now - last >= this.cluster.config.authResendMs / 2) {
        this.retransmitAt.set(msg.client, now);
        this.out.send(this.execPeers, { kind: 'retransmit', client: msg.client, reqId: msg.reqId });
      }
      return;
    }
    const c = this.candidates.get(msg.client);
    // Every auth replica forwards the same request: digest its core once.
    let coreDigest: Uint8Array;
    if (msg.kind === 'authDigest') coreDigest = msg.coreDigest;
    else if (c?.reqId === msg.reqId && c.op !== undefined && bytesEqual(c.op, msg.op)) coreDigest = c.coreDigest;
    else coreDigest = requestCoreDigest(this.keys, msg.client, msg.reqId, msg.op);
    if (!this.keys.verifyAuthenticatorDigest(from, coreDigest, msg.row, this.index)) return this.reject('bad_auth_row', from);
    this.addRow(msg.client, msg.reqId, op, coreDigest, authNode, msg.row, now, from);
  }

  /**
   * Records what one auth replica vouches for (its latest row for the client) and keeps the
   * client's candidate on the request most auth replicas vouch for. A row only shows that its
   * own auth replica vouches: a faulty one can make a valid row over a body the client never
   * sent, under the client's current id or a far later one. So no single row may displace what
   * others vouch for: each auth replica holds one claim per client, a claim only moves to a
   * later id, and a request is a candidate by the count of claims behind it. Fewer than
   * max(u,r)+1 rows never make a request ready, and at most r auth replicas lie. `from` is who
   * delivered the row (the auth replica, or a backup's FORWARD), for the rejection count.
   */
  private addRow(client: number, reqId: number, op: Uint8Array | undefined, coreDigest: Uint8Array, authNode: number, row: Uint8Array[], now: number, from: Principal): void {
    let claims = this.claims.get(client);
    if (claims === undefined) {
      claims = new Map();
      this.claims.set(client, claims);
    }
    const prev = claims.get(authNode);
    // A correct auth replica never vouches for two bodies under one id, nor goes back in ids.
    if (prev !== undefined && (reqId < prev.reqId || (reqId === prev.reqId && !bytesEqual(prev.coreDigest, coreDigest)))) {
      return this.reject('conflicting_auth_row', from);
    }
    const same = (x: { readonly reqId: number; readonly coreDigest: Uint8Array }): boolean => x.reqId === reqId && bytesEqual(x.coreDigest, coreDigest);
    let c = this.candidates.get(client);
    if (c !== undefined && same(c)) {
      // The usual case: one more row for the candidate (whose body every claim on it shares),
      // maybe the one that brings the body.
      c.op ??= op;
      claims.set(authNode, { reqId, op: c.op, coreDigest: c.coreDigest, row });
      c.rows.set(authNode, row);
    } else {
      // Another request than the candidate: gather the claims on it (sharing their body, so memory
      // goes per distinct request, not per row). It takes the candidate's place only with at least
      // as many claims behind it; a ready candidate gives way only to a later request ready too.
      const rows = new Map<number, Uint8Array[]>();
      for (const [a, cl] of claims) {
        if (a === authNode || !same(cl)) continue;
        rows.set(a, cl.row);
        op ??= cl.op;
      }
      rows.set(authNode, row);
      claims.set(authNode, { reqId, op, coreDigest, row });
      if (c !== undefined && (c.readySince !== undefined ? reqId <= c.reqId || rows.size < this.cluster.authRowsPrimary || op === undefined : rows.size < c.rows.size)) return;
      c = { reqId, op, coreDigest, rows, readySince: undefined, forwardedIn: -1, forwardedAt: 0, passedOver: 0 };
      this.candidates.set(client, c);
    }
    if (c.readySince === undefined && c.op !== undefined && c.rows.size >= this.cluster.authRowsPrimary) {
      c.readySince = now;
      this.maybePropose(now);
    }
  }

  /** Forgets the candidate and the claims of a client up to an ordered request id. */
  private dropOrdered(client: number, reqId: number): void {
    const cand = this.candidates.get(client);
    if (cand !== undefined && cand.reqId <= reqId) this.candidates.delete(client);
    const claims = this.claims.get(client);
    if (claims === undefined) return;
    for (const [a, cl] of claims) if (cl.reqId <= reqId) claims.delete(a);
    // Claims on a later request stay: the next claim on it makes it the candidate with all of them.
    if (claims.size === 0) this.claims.delete(client);
  }

  /**
   * FORWARD from a backup (Aardvark §3.4.1 (f)): the primary takes each row whose MAC for it
   * checks, as if it came from that auth replica. A row it cannot check is dropped; the backup
   * cannot forge one.
   */
  private onForward(sender: number, msg: MsgOf<'forward'>, now: number): void {
    const r = msg.request;
    const from = nodePrincipal(sender);
    if (msg.view !== this.view || !this.normal || !this.isPrimary()) return;
    if (!this.cluster.clients.has(r.client)) return this.reject('unknown_client', from);
    if (r.op.length > this.cluster.config.requestBytesMax) return this.reject('op_too_large', from);
    if (r.reqId <= (this.lastOrdered.get(r.client) ?? 0)) return;
    const c = this.candidates.get(r.client);
    if (c !== undefined && c.readySince !== undefined && r.reqId <= c.reqId) return;
    const coreDigest = requestCoreDigest(this.keys, r.client, r.reqId, r.op);
    for (const row of r.rows) {
      if (!this.cluster.auth.indexOf.has(row.auth)) continue;
      if (!this.keys.verifyAuthenticatorDigest(nodePrincipal(row.auth), coreDigest, row.macs, this.index)) {
        this.reject('forwarded_bad_row', from);
        continue;
      }
      this.addRow(r.client, r.reqId, r.op, coreDigest, row.auth, row.macs, now, from);
    }
  }

  /** FORWARDs every waiting request not yet forwarded in this view to the primary; returns how many. */
  private forwardWaiting(): number {
    let n = 0;
    for (const [client, c] of this.waitingCandidates()) {
      if (c.forwardedIn === this.view) continue;
      this.forward(client, c, this.highestPP);
      n++;
    }
    return n;
  }

  private forward(client: number, c: Candidate, atSeq: number): void {
    c.forwardedIn = this.view;
    c.forwardedAt = atSeq;
    c.passedOver = 0;
    const rows = [...c.rows.entries()].sort((a, b) => a[0] - b[0]).map(([auth, macs]) => ({ auth, macs }));
    this.out.send([nodePrincipal(primaryOf(this.cluster, this.view))], { kind: 'forward', view: this.view, request: { client, reqId: c.reqId, op: bodyOf(c), rows } });
  }

  /**
   * Fairness (Aardvark §3.4.3), at a backup, for the pre-prepare of `seq` in this view: every
   * waiting request it passed over although it had room is forwarded to the primary the first
   * time. Pre-prepares up to pipelineMax - 1 numbers later may have left before the primary got
   * it; once `fairnessOvertakes` pre-prepares with room beyond those pass it over too, the
   * primary is unfair. Only a replica that has every batch below `seq` judges.
   */
  private checkFairness(seq: number, batch: Batch, now: number): void {
    const limit = this.cluster.config.fairnessOvertakes;
    if (limit <= 0 || this.isPrimary()) return;
    // Judge only with every batch before this one in view: a request that looks passed over may
    // sit in a batch this replica has not seen (it lags, or it just rejoined the view).
    for (let t = this.committedSeq + 1; t < seq; t++) if (this.slots.get(t)?.pp === undefined) return;
    const cfg = this.cluster.config;
    const inBatch = new Set(batch.requests.map((r) => r.client));
    let bytes = 0;
    for (const r of batch.requests) bytes += r.op.length;
    for (const [client, c] of this.waitingCandidates()) {
      if (inBatch.has(client) || c.readySince! >= now) continue;
      if (batch.requests.length >= cfg.batchSizeMax || bytes + bodyOf(c).length > cfg.batchBytesMax) continue;
      if (c.forwardedIn !== this.view) this.forward(client, c, seq);
      else if (seq > c.forwardedAt + cfg.pipelineMax - 1 && ++c.passedOver >= limit) {
        this.suspicion = 'unfair';
      }
    }
  }

  /** Per client, the highest request id in a pre-prepared batch not yet committed. */
  private inPendingBatches(): Map<number, number> {
    const inBatches = new Map<number, number>();
    for (let s = this.committedSeq + 1; s <= this.highestPP; s++) {
      const slot = this.slots.get(s);
      if (slot?.pp === undefined || slot.committed !== undefined) continue;
      for (const r of slot.pp.batch.requests) inBatches.set(r.client, Math.max(inBatches.get(r.client) ?? 0, r.reqId));
    }
    return inBatches;
  }

  /** Ready requests no batch carries yet (not ordered, not pre-prepared). */
  private waitingCandidates(): [number, Candidate][] {
    const inBatches = this.inPendingBatches();
    const out: [number, Candidate][] = [];
    for (const [client, c] of this.candidates) {
      if (c.readySince === undefined) continue;
      if (c.reqId <= (this.lastOrdered.get(client) ?? 0) || c.reqId <= (inBatches.get(client) ?? 0)) continue;
      out.push([client, c]);
    }
    return out;
  }

  /** When the oldest waiting request became ready (undefined: none waits). */
  private oldestWaiting(): number | undefined {
    let oldest: number | undefined;
    for (const [, c] of this.waitingCandidates()) if (oldest === undefined || c.readySince! < oldest) oldest = c.readySince;
    return oldest;
  }

  /** Sequence numbers proposed in this view and not yet committed. */
  private inflight(): number {
    let k = 0;
    for (let seq = this.committedSeq + 1; seq <= this.highestPP; seq++) {
      const s = this.slots.get(seq);
      if (s?.pp !== undefined && s.committed === undefined) k++;
    }
    return k;
  }

  private highestProposed(): number {
    return Math.max(this.committedSeq, this.highestPP, this.newViewTop);
  }

  private maybePropose(now: number): void {
    if (!this.normal || !this.isPrimary()) return;
    const cfg = this.cluster.config;
    for (;;) {
      const seq = this.highestProposed() + 1;
      if (seq > this.stableSeq + 2 * this.cpInt) return; // interlock: wait for a stable checkpoint
      const inflight = this.inflight();
      if (inflight >= cfg.pipelineMax) return;
      const inBatches = this.inPendingBatches();
      const ready: [number, Candidate][] = [];
      for (const [client, c] of this.candidates) {
        if (c.readySince === undefined) continue;
        if (!this.canaries.has('duplicateExecution')) {
          if (c.reqId <= (this.lastOrdered.get(client) ?? 0)) continue;
          if (c.reqId <= (inBatches.get(client) ?? 0)) continue;
        } else if (inBatches.has(client)) continue;
        ready.push([client, c]);
      }
      if (ready.length === 0) return;
      ready.sort((a, b) => a[1].readySince! - b[1].readySince! || a[0] - b[0]);
      const oldest = ready[0]![1].readySince!;
      const full = ready.length >= cfg.batchSizeMax;
      if (!(inflight === 0 || full || now - oldest >= cfg.batchTimeoutMs)) return;
      const requests: ProposedRequest[] = [];
      let bytes = 0;
      for (const [client, c] of ready) {
        if (requests.length >= cfg.batchSizeMax) break;
        const op = bodyOf(c);
        if (bytes + op.length > cfg.batchBytesMax) break;
        bytes += op.length;
        const rows = [...c.rows.entries()]
          .sort((a, b) => a[0] - b[0])
          .slice(0, this.cluster.authRowsPrimary)
          .map(([auth, macs]) => ({ auth, macs }));
        requests.push({ client, reqId: c.reqId, op, rows });
      }
      this.propose(seq, requests, now);
    }
  }

  private propose(seq: number, requests: ProposedRequest[], now: number): void {
    const prevTime = Math.max(this.lastTime, ...[...this.slots.values()].map((s) => (s.pp ? s.pp.batch.time : 0)));
    const time = Math.max(Math.floor(now), prevTime + 1);
    const seed = (this.random.nextU32() & 0x1f_ffff) * 0x1_0000_0000 + this.random.nextU32();
    const msg: MsgOf<'prePrepare'> = { kind: 'prePrepare', view: this.view, seq, time, seed, requests };
    const batch: Batch = { time, seed, requests: requests.map((r) => ({ client: r.client, reqId: r.reqId, op: r.op })) };
    const slot = this.slotFor(seq);
    assert(slot !== undefined, 'proposal within the window');
    assert(slot.pp === undefined, 'one pre-prepare per (view, seq)');
    const digest = this.batchDigest(batch);
    // In `parallel` the PRE-PREPARE leaves at once (backups write their records while this one
    // is written) and the primary's vote is the PREPARE behind its durable record; otherwise the
    // record is a barrier for the PRE-PREPARE itself.
    this.acceptPrePrepare(slot, digest, batch, msg, this.scopedVotes ? [this.voteFor(seq, digest)] : undefined);
    this.out.send(this.peers, msg);
    // Other modes: a crash-only primary's COMMIT follows its durable record and its PRE-PREPARE.
    if (!this.scopedVotes) this.castVote(slot, digest);
  }

  /**
   * The vote a durable pre-prepare record backs in `parallel` mode: PREPARE, or COMMIT when
   * crash-only (r = 0). It goes to the peers and, through the in-memory hop, to this replica, so
   * its own vote counts (and is resent) only once the record behind it is durable.
   */
  private voteFor(seq: number, digest: Uint8Array): ScopedEffect {
    if (this.twoPhase) return { kind: 'send', to: this.peersAndSelf, msg: { kind: 'commit', view: this.view, seq, digest } };
    return this.prepareVote(seq, digest);
  }

  /**
   * Modes other than `parallel`: the vote behind the pre-prepare record's barrier, COMMIT when
   * crash-only, else a backup's PREPARE (a three-phase primary's vote is its PRE-PREPARE).
   */
  private castVote(slot: Slot, digest: Uint8Array): void {
    if (this.twoPhase) {
      slot.commitVotes.set(this.nodeId, `${this.view}:${hex(digest)}`);
      this.out.send(this.peers, { kind: 'commit', view: this.view, seq: slot.seq, digest });
    } else if (!this.isPrimary()) {
      slot.prepares.set(this.nodeId, hex(digest));
      this.out.send(this.peers, { kind: 'prepare', view: this.view, seq: slot.seq, digest });
    }
  }

  /**
   * This replica's PREPARE in `parallel` mode: to its peers and, through the in-memory hop, to
   * itself, so its own vote counts (and is resent) only once the record behind it is durable.
   */
  private prepareVote(seq: number, digest: Uint8Array): ScopedEffect {
    return { kind: 'send', to: this.peersAndSelf, msg: { kind: 'prepare', view: this.view, seq, digest } };
  }

  // =========================================================================================
  // Normal case: pre-prepare, prepare, commit
  // =========================================================================================

  private onPrePrepare(sender: number, msg: MsgOf<'prePrepare'>, now: number): void {
    const from = nodePrincipal(sender);
    if (msg.view !== this.view || !this.normal) return; // not for this view
    if (sender !== primaryOf(this.cluster, msg.view)) return this.reject('preprepare_from_backup', from);
    if (msg.seq <= this.committedSeq) return;
    const slot = this.slotFor(msg.seq);
    if (slot === undefined) return this.reject('preprepare_outside_window', from);
    const problem = this.checkProposal(msg, now);
    if (problem !== undefined) {
      // The primary proposed something no correct primary proposes: replace it.
      this.reject(problem, from);
      this.startViewChange(this.view + 1, now, 'invalid_preprepare');
      return;
    }
    const batch: Batch = { time: msg.time, seed: msg.seed, requests: msg.requests.map((r) => ({ client: r.client, reqId: r.reqId, op: r.op })) };
    const digest = this.batchDigest(batch);
    if (slot.pp !== undefined) {
      if (!bytesEqual(slot.pp.digest, digest)) {
        this.reject('equivocating_primary', from);
        this.startViewChange(this.view + 1, now, 'equivocation');
      }
      return;
    }
    if (this.scopedVotes) this.acceptPrePrepare(slot, digest, batch, undefined, [this.voteFor(msg.seq, digest)]);
    else {
      this.acceptPrePrepare(slot, digest, batch, undefined);
      this.castVote(slot, digest);
    }
    this.monitor.onPrePrepare(now);
    this.checkFairness(msg.seq, batch, now);
    this.checkSlot(slot);
  }

  /** Returns why a proposed batch is invalid, or undefined when it is acceptable. */
  private checkProposal(msg: MsgOf<'prePrepare'>, now: number): string | undefined {
    const cfg = this.cluster.config;
    if (msg.requests.length === 0) return 'empty_batch';
    if (msg.requests.length > cfg.batchSizeMax) return 'batch_too_large';
    if (msg.time > now + cfg.clockSkewMaxMs) return 'batch_time_in_future';
    const prev = this.slots.get(msg.seq - 1);
    const prevBatch = prev?.committed?.batch ?? prev?.pp?.batch;
    if (prevBatch !== undefined && prevBatch.requests.length > 0 && msg.time <= prevBatch.time) return 'batch_time_not_increasing';
    const clients = new Set<number>();
    let bytes = 0;
    for (const r of msg.requests) {
      if (clients.has(r.client)) return 'duplicate_client_in_batch';
      clients.add(r.client);
      if (!this.cluster.clients.has(r.client)) return 'unknown_client_in_batch';
      if (r.op.length > cfg.requestBytesMax) return 'op_too_large';
      bytes += r.op.length;
      if (!this.rowsValid(r)) return 'bad_matrix_signature';
    }
    if (bytes > cfg.batchBytesMax) return 'batch_bytes_too_large';
    return undefined;
  }

  /** At least max(u,r)+1 rows from distinct auth replicas carry a valid MAC for this replica. */
  private rowsValid(r: ProposedRequest): boolean {
    const coreDigest = requestCoreDigest(this.keys, r.client, r.reqId, r.op);
    const seen = new Set<number>();
    let valid = 0;
    for (const row of r.rows) {
      if (seen.has(row.auth) || !this.cluster.auth.indexOf.has(row.auth)) continue;
      seen.add(row.auth);
      if (this.keys.verifyAuthenticatorDigest(nodePrincipal(row.auth), coreDigest, row.macs, this.index)) valid++;
      if (valid >= this.cluster.authRowsBackup) return true;
    }
    return false;
  }

  /**
   * Records a pre-prepare. With `then` (durability parallel) the record is a scoped barrier:
   * only `then` (the PREPARE, or at the primary the PRE-PREPARE) waits for it to be durable.
   * Without, it is a barrier for every later effect of the step.
   */
  private acceptPrePrepare(slot: Slot, digest: Uint8Array, batch: Batch, msg: MsgOf<'prePrepare'> | undefined, then?: readonly ScopedEffect[]): void {
    slot.pp = msg === undefined ? { view: this.view, digest, batch } : { view: this.view, digest, batch, msg };
    if (this.twoPhase) {
      // Crash-only: accepting is being prepared; the same record makes both durable, and the
      // COMMIT it backs is the caller's to cast.
      slot.prepared = { view: this.view, digest };
      slot.sentCommit = true;
    }
    if (slot.seq > this.highestPP) this.highestPP = slot.seq;
    slot.bodies.set(hex(digest), batch);
    const q = slot.q.find((e) => bytesEqual(e.digest, digest));
    if (q !== undefined) q.view = Math.max(q.view, this.view);
    else {
      slot.q.push({ view: this.view, digest });
      if (slot.q.length > 8) {
        slot.q.sort((a, b) => b.view - a.view);
        slot.q.length = 8;
      }
    }
    this.saveSlot(slot, then ?? 'barrier');
  }

  private onPrepare(sender: number, view: number, seq: number, digest: Uint8Array): void {
    if (view !== this.view || !this.normal) return;
    if (!this.scopedVotes && sender === primaryOf(this.cluster, view)) return this.reject('prepare_from_primary', nodePrincipal(sender));
    const slot = this.slotFor(seq);
    if (slot === undefined) return;
    if (!slot.prepares.has(sender)) slot.prepares.set(sender, hex(digest));
    this.checkSlot(slot);
  }

  private onCommit(sender: number, view: number, seq: number, digest: Uint8Array): void {
    // Votes of the current or an earlier view count, in normal operation or in a view change.
    if (view > this.view) return;
    const slot = this.slotFor(seq);
    if (slot === undefined || slot.committed !== undefined) return;
    const prev = slot.commitVotes.get(sender);
    if (prev !== undefined && Number(prev.slice(0, prev.indexOf(':'))) >= view) return;
    slot.commitVotes.set(sender, `${view}:${hex(digest)}`);
    this.checkCommitCertificate(slot);
    if (this.normal) this.checkSlot(slot);
  }

  /** Commits `slot` if n-u votes agree on a (view, digest) whose batch this replica holds. */
  private checkCommitCertificate(slot: Slot): void {
    if (slot.committed !== undefined) return;
    const counts = new Map<string, number>();
    for (const v of slot.commitVotes.values()) counts.set(v, (counts.get(v) ?? 0) + 1);
    for (const [vd, count] of counts) {
      if (count < this.quorumMedium()) continue;
      const dh = vd.slice(vd.indexOf(':') + 1);
      const batch = slot.bodies.get(dh);
      if (batch === undefined) continue; // the content arrives with catch-up
      this.markCommitted(slot, Buffer.from(dh, 'hex'), batch);
      return;
    }
  }

  private quorumMedium(): number {
    return this.canaries.has('commitQuorumSmall') ? this.medium - 1 : this.medium;
  }

  private checkSlot(slot: Slot): void {
    const pp = slot.pp;
    if (pp === undefined) return;
    // A replica that already committed this seq still votes in the current view: after a view
    // change the others may need its COMMIT to reach the quorum.
    const d = hex(pp.digest);
    const primary = primaryOf(this.cluster, this.view);
    if (!slot.sentCommit && !this.twoPhase) {
      // Prepared: n-u replicas vouch for (view, seq, digest). In `batch` and `sync` the
      // PRE-PREPARE is the primary's durable vote and n-u-1 backups' PREPAREs complete it; in
      // `parallel` the PRE-PREPARE leaves before the primary's record is durable, so n-u
      // PREPAREs are needed, the primary's counting like any other.
      let prepares = 0;
      for (const [sender, dh] of slot.prepares) if ((this.scopedVotes || sender !== primary) && dh === d) prepares++;
      if (prepares + (this.scopedVotes ? 0 : 1) < this.quorumMedium()) return;
      slot.sentCommit = true;
      slot.prepared = { view: this.view, digest: pp.digest };
      const commit: MsgOf<'commit'> = { kind: 'commit', view: this.view, seq: slot.seq, digest: pp.digest };
      if (this.scopedVotes) this.saveSlot(slot, [{ kind: 'send', to: this.peersAndSelf, msg: commit }]);
      else {
        this.saveSlot(slot);
        slot.commitVotes.set(this.nodeId, `${this.view}:${d}`);
        this.out.send(this.peers, commit);
      }
    }
    this.checkCommitCertificate(slot);
  }

  private markCommitted(slot: Slot, digest: Uint8Array, batch: Batch): void {
    assert(slot.committed === undefined, 'a slot commits once');
    slot.committed = { digest, batch };
    slot.bodies.set(hex(digest), batch);
    // Lazy: nothing sent depends on it; after a crash the prepared record and the peers
    // (catch-up, view change) re-establish the commit.
    this.saveSlot(slot, 'lazy');
    this.out.note({ type: 'committed', seq: slot.seq, view: this.view, digest });
    this.applyCommitted();
  }

  /** Applies committed slots in sequence order. */
  private applyCommitted(): void {
    let progressed = false;
    for (;;) {
      const slot = this.slots.get(this.committedSeq + 1);
      if (slot?.committed === undefined) break;
      this.apply(slot, true);
      progressed = true;
    }
    if (progressed && this.normal) {
      this.lastProgressView = this.view;
      // Commits in this view prove the primary is at work, whether this replica saw the
      // pre-prepares or caught up on them (a replica that just rejoined the view).
      this.monitor.onPrePrepare(this.lastNow);
    }
    // A commit frees a pipeline slot: the primary may propose what is waiting right away.
    if (progressed) this.maybePropose(this.lastNow);
  }

  private apply(slot: Slot, send: boolean): void {
    const c = slot.committed;
    assert(c !== undefined, 'apply a committed slot');
    assert(slot.seq === this.committedSeq + 1, 'apply in order');
    this.history = this.keys.digest(this.history, u64Bytes(slot.seq), c.digest);
    slot.history = this.history;
    if (c.batch.requests.length > 0) this.lastTime = Math.max(this.lastTime, c.batch.time);
    for (const r of c.batch.requests) {
      if (r.reqId > (this.lastOrdered.get(r.client) ?? 0)) this.lastOrdered.set(r.client, r.reqId);
      this.dropOrdered(r.client, r.reqId);
    }
    this.committedSeq = slot.seq;
    // Throughput monitor: samples only batches committed in normal operation as a backup.
    if (send && this.normal && !this.isPrimary()) {
      // A pending reason that acts alone (unfair) is not demoted to one that needs company.
      if (this.monitor.onCommitted(slot.seq, c.batch.requests.length, this.cpInt, this.lastNow)) this.suspicion ??= 'throughput';
    }
    if (send) this.out.send(this.batchPeers, { kind: 'nextBatch', seq: slot.seq, history: this.history, batch: c.batch });
    if (slot.seq % this.cpInt === 0) {
      this.snapshots.set(slot.seq, {
        history: this.history,
        time: this.lastTime,
        lastOrdered: [...this.lastOrdered.entries()].sort((a, b) => a[0] - b[0]),
      });
      this.maybeCheckpoint(slot.seq);
    }
  }

  // =========================================================================================
  // Checkpoints
  // =========================================================================================

  private onCpToken(execNode: number, seq: number, token: Uint8Array): void {
    if (seq % this.cpInt !== 0 || seq <= this.stableSeq || seq > this.stableSeq + 3 * this.cpInt) return;
    if (this.tokens.has(seq)) return;
    const tally = this.tokenVotes.add(seq, hex(token), token, execNode);
    const need = this.canaries.has('cpTokenWithoutQuorum') ? 1 : this.cluster.cpTokenQuorum;
    if (tally.voters.size >= need) {
      this.tokens.set(seq, tally.value);
      this.tokenVotes.delete(seq);
      this.maybeCheckpoint(seq);
    }
  }

  private maybeCheckpoint(seq: number): void {
    const snap = this.snapshots.get(seq);
    const token = this.tokens.get(seq);
    if (snap === undefined || token === undefined || this.mine.has(seq)) return;
    const content: OrderCheckpoint = {
      seq,
      history: snap.history,
      time: snap.time,
      execToken: token,
      lastOrdered: snap.lastOrdered.map(([client, reqId]) => ({ client, reqId })),
    };
    const digest = this.cpDigest(content);
    this.mine.set(seq, { content, digest });
    this.snapshots.delete(seq);
    this.out.send(this.peers, { kind: 'checkpoint', seq, digest });
    this.addCheckpointVote(this.nodeId, seq, digest);
  }

  private onCheckpoint(sender: number, seq: number, digest: Uint8Array): void {
    if (seq <= this.stableSeq || seq % this.cpInt !== 0) return;
    if (seq > this.stableSeq + 4 * this.cpInt) {
      // Far ahead of us: remember nothing, but the status gossip will bring us up to date.
      return;
    }
    this.addCheckpointVote(sender, seq, digest);
  }

  private addCheckpointVote(sender: number, seq: number, digest: Uint8Array): void {
    this.cpVotes.add(seq, hex(digest), digest, sender);
    const mine = this.mine.get(seq);
    if (mine === undefined) return;
    const tally = this.cpVotes.get(seq, hex(mine.digest));
    if (tally !== undefined && tally.voters.size >= this.medium) this.makeStable(mine);
  }

  private makeStable(cp: MyCheckpoint): void {
    const seq = cp.content.seq;
    if (seq <= this.stableSeq) return;
    assert(seq <= this.committedSeq, 'a stable checkpoint covers committed batches only');
    this.prevStable = { seq: this.stable.content.seq, token: this.stable.content.execToken };
    this.stable = cp;
    this.stableSeq = seq;
    this.out.write('o/cp', encodeWith(cpRecordCodec, { checkpoint: cp.content, prev: this.prevStable }));
    this.garbageCollect();
    this.out.note({ type: 'stable', seq });
    this.adoptDeferredChoices();
    // Waiting for new-view bodies: some may be below the new checkpoint now (see needBodies).
    if (!this.normal && this.fetching.size > 0) this.recheckNewView = true;
  }

  /** Drops everything at or below the stable checkpoint. */
  private garbageCollect(): void {
    for (const [seq, slot] of this.slots) {
      if (seq > this.stableSeq) continue;
      this.slots.delete(seq);
      this.out.remove(`o/s/${seq}`);
      for (const dh of slot.bodies.keys()) {
        this.out.remove(`o/b/${seq}/${dh}`);
        this.persistedBodies.delete(`${seq}/${dh}`);
      }
    }
    for (const m of [this.snapshots, this.mine, this.tokens] as Map<number, unknown>[]) {
      for (const seq of m.keys()) if (seq <= this.stableSeq) m.delete(seq);
    }
    for (const v of [this.cpVotes, this.tokenVotes, this.batchClaims] as VoteTable<unknown>[]) v.deleteUpTo(this.stableSeq);
    for (const [k, claim] of this.cpClaims) if (claim.content.seq <= this.stableSeq) this.cpClaims.delete(k);
  }

  // =========================================================================================
  // Executors: LAST-EXEC
  // =========================================================================================

  private onLastExec(from: Principal, next: number): void {
    if (next > this.committedSeq) return; // nothing newer here
    if (next > this.stableSeq) {
      const until = Math.min(this.committedSeq, next + 2 * this.cpInt);
      for (let seq = next; seq <= until; seq++) {
        const s = this.slots.get(seq);
        if (s?.committed === undefined || s.history === undefined) break;
        this.out.send([from], { kind: 'nextBatch', seq, history: s.history, batch: s.committed.batch });
      }
      return;
    }
    const checkpoints = [{ seq: this.stableSeq, token: this.stable.content.execToken }];
    if (this.prevStable !== undefined && this.prevStable.seq > 0) checkpoints.push(this.prevStable);
    this.out.send([from], { kind: 'loadCheckpoint', checkpoints });
  }

  // =========================================================================================
  // View change
  // =========================================================================================

  /**
   * This backup suspects the primary (its monitor, or its request timer): tell the others and
   * apply the join rule (see "Suspicions" in the header). With a join quorum of one the
   * suspicion acts alone. Returns whether the view change started.
   */
  private suspectPrimary(now: number, reason: SuspicionReason | 'request_timeout'): boolean {
    this.suspects.set(this.nodeId, { view: this.view, at: now });
    if (this.joinQuorum > 1) this.out.send(this.peers, { kind: 'suspect', view: this.view });
    const wanting = this.maybeJoinViewChange(now, reason);
    if (this.normal) this.out.note({ type: 'primarySuspected', view: this.view, reason, suspects: wanting, needed: this.joinQuorum });
    return !this.normal;
  }

  private onSuspect(sender: number, view: number, now: number): void {
    // Only the current, active view's primary can be suspected; a primary's word on itself
    // does not count (it leaves with a VIEW-CHANGE if it wants to). With a join quorum of one no
    // correct replica sends SUSPECT, so none is heeded.
    if (view !== this.view || !this.normal || sender === primaryOf(this.cluster, view) || this.joinQuorum <= 1) return;
    this.suspects.set(sender, { view, at: now });
    this.maybeJoinViewChange(now, 'suspected_by_peers');
  }

  private startViewChange(view: number, now: number, reason: string = 'joined'): void {
    assert(view > this.view || (view === this.view && this.normal), 'view changes move forward');
    this.view = view;
    this.normal = false;
    this.vcTimerArmed = false;
    this.myNewView = undefined;
    this.pendingNewView = undefined;
    this.recheckNewView = false;
    this.fetching.clear();
    // A suspicion of the old primary found while applying batches is moot now, and so are the
    // SUSPECTs of the old view.
    this.suspicion = undefined;
    this.suspects.clear();
    for (const slot of this.slots.values()) {
      slot.pp = undefined;
      slot.prepares.clear();
      slot.sentCommit = false;
    }
    this.highestPP = 0;
    this.newViewTop = 0;
    this.deferredChoices.clear();
    this.out.write('o/meta', encodeWith(metaCodec, { view, normal: false }));
    this.out.note({ type: 'viewChangeStarted', view, reason });
    this.sendViewChange();
    this.armViewChangeTimer(now);
    this.maybeDecideNewView(now);
  }

  /**
   * Starts the view-change timer once n-u replicas are known to have left the previous views:
   * a VIEW-CHANGE for this view or a later one (a sender's later request replaces its earlier
   * one, and still says it wants out; seed 338 at u=1 r=2 stalled when it did not count).
   */
  /**
   * r+1 peers report (STATUS) that they are in normal operation in the view this replica is
   * changing to, so at least one correct replica installed its NEW-VIEW: the view exists.
   */
  private viewActiveAtPeers(): boolean {
    let active = 0;
    for (const [sender, st] of this.statuses) if (sender !== this.nodeId && st.view === this.view && st.normal) active++;
    return active >= this.small;
  }

  private armViewChangeTimer(now: number): void {
    if (this.normal || this.vcTimerArmed) return;
    let known = 0;
    for (const vc of this.viewChanges.values()) if (vc.signed.body.view >= this.view) known++;
    if (known < this.medium) return;
    this.vcTimerArmed = true;
    this.vcDeadline = now + this.vcTimeout(this.view);
  }

  private sendViewChange(): void {
    const prepared: ViewChangeBody['prepared'] = [];
    const prePrepared: ViewChangeBody['prePrepared'] = [];
    const seqs = [...this.slots.keys()].sort((a, b) => a - b);
    for (const seq of seqs) {
      const slot = this.slots.get(seq)!;
      if (slot.prepared !== undefined) prepared.push({ seq, view: slot.prepared.view, digest: slot.prepared.digest });
      for (const q of slot.q) prePrepared.push({ seq, view: q.view, digest: q.digest });
    }
    const checkpoints = [{ seq: this.stableSeq, digest: this.stable.digest }];
    for (const [seq, cp] of [...this.mine.entries()].sort((a, b) => a[0] - b[0])) {
      if (seq > this.stableSeq && checkpoints.length < 4) checkpoints.push({ seq, digest: cp.digest });
    }
    const body: ViewChangeBody = { view: this.view, sender: this.nodeId, lowWater: this.stableSeq, checkpoints, prepared, prePrepared };
    const signature = this.keys.sign(encodeWith(viewChangeBodyCodec, body));
    const msg: MsgOf<'viewChange'> = { kind: 'viewChange', signed: { body, signature } };
    this.myViewChange = msg;
    this.vcResendEveryMs = this.cluster.config.statusIntervalMs;
    this.vcResendAt = 0;
    this.viewChanges.set(this.nodeId, { signed: msg.signed });
    this.out.send(this.peers, msg);
  }

  private verifyViewChange(signed: SignedViewChange): boolean {
    const body = signed.body;
    if (!this.cluster.order.indexOf.has(body.sender)) return false;
    return this.keys.verifyFrom(nodePrincipal(body.sender), encodeWith(viewChangeBodyCodec, body), signed.signature);
  }

  private onViewChange(sender: number, msg: MsgOf<'viewChange'>, now: number): void {
    const body = msg.signed.body;
    const from = nodePrincipal(sender);
    if (body.sender !== sender) return this.reject('viewchange_sender_mismatch', from);
    if (!this.verifyViewChange(msg.signed)) return this.reject('viewchange_bad_signature', from);
    const prev = this.viewChanges.get(sender);
    if (prev !== undefined && prev.signed.body.view > body.view) return;
    // The new primary of our current, active view answers a late view change with NEW-VIEW.
    if (body.view === this.view && this.normal) {
      if (this.myNewView !== undefined) this.out.send([from], this.myNewView);
      return;
    }
    if (body.view < this.view) return;
    this.viewChanges.set(sender, { signed: msg.signed });
    this.armViewChangeTimer(now);
    this.maybeJoinViewChange(now);
    this.maybeDecideNewView(now);
  }

  /**
   * Joins a view change once joinQuorum replicas ask for views above ours (PBFT liveness rule),
   * or at once when the primary of our active view asks for the next one: it will propose no
   * more in this view, and a faulty primary can stall its view anyway. Only the next view: a
   * faulty primary must not make everyone skip to a view it leads again. In an active view a
   * SUSPECT of it heard within suspectTtlMs asks for the next view. Returns how many replicas
   * ask for a view above ours.
   */
  private maybeJoinViewChange(now: number, reason = 'joined'): number {
    const primary = primaryOf(this.cluster, this.view);
    const fromPrimary = primary !== this.nodeId ? this.viewChanges.get(primary)?.signed.body.view : undefined;
    if (this.normal && fromPrimary === this.view + 1) {
      this.startViewChange(fromPrimary, now, 'primary_left');
      return 0;
    }
    const wants = new Map<number, number>();
    for (const [sender, vc] of this.viewChanges) {
      if (sender !== this.nodeId && vc.signed.body.view > this.view) wants.set(sender, vc.signed.body.view);
    }
    if (this.normal) {
      for (const [id, e] of this.suspects) if (e.view === this.view && now - e.at <= suspectTtlMs && !wants.has(id)) wants.set(id, this.view + 1);
    }
    if (wants.size < this.joinQuorum) return wants.size;
    const higher = [...wants.values()].sort((a, b) => b - a);
    const target = higher[this.joinQuorum - 1]!;
    if (target > this.view) this.startViewChange(target, now, reason);
    return wants.size;
  }

  private maybeDecideNewView(now: number): void {
    if (this.normal || primaryOf(this.cluster, this.view) !== this.nodeId) return;
    const vcs = [...this.viewChanges.values()].filter((v) => v.signed.body.view === this.view);
    if (vcs.length < this.medium) return;
    const bodies = vcs.map((v) => v.signed.body);
    const decision = this.decide(bodies);
    if (decision === undefined) return;
    // A3: every chosen batch at hand before the NEW-VIEW goes out. A2 put at least one correct
    // replica among those that pre-prepared it, so asking them finds it.
    if (this.needBodies(decision, bodies, now)) return;
    const nv: MsgOf<'newView'> = { kind: 'newView', view: this.view, viewChanges: vcs.map((v) => v.signed) };
    this.installNewView(nv, decision, now);
    this.myNewView = nv;
    this.out.send(this.peers, nv);
  }

  /**
   * Whether some batch the decision chose is missing here; if so, asks for it: the primary of
   * the view (it had every body before sending NEW-VIEW) and the replicas whose view changes
   * name the digest.
   */
  private needBodies(decision: NonNullable<ReturnType<typeof decideNewView>>, bodies: readonly ViewChangeBody[], now: number): boolean {
    const asked = new Set(this.fetching.keys());
    this.fetching.clear();
    const h = decision.checkpoint.seq;
    for (const [i, d] of decision.choices.entries()) {
      // At or below this replica's stable checkpoint a choice is settled (installNewView skips
      // it), and its body may be gone everywhere: a NEW-VIEW that reaches a replica late (it was
      // paused, or cut off) names batches the others have since checkpointed and dropped.
      if (h + 1 + i <= this.stableSeq || bytesEqual(d, this.nullDigest)) continue;
      const dh = hex(d);
      if (this.bodyFor(dh) === undefined) this.fetching.set(dh, d);
    }
    if (this.fetching.size === 0) return false;
    this.fetchFrom = new Set([primaryOf(this.cluster, this.view)]);
    for (const b of bodies) {
      const names = (e: { digest: Uint8Array }): boolean => this.fetching.has(hex(e.digest));
      if (b.prepared.some(names) || b.prePrepared.some(names)) this.fetchFrom.add(b.sender);
    }
    this.fetchFrom.delete(this.nodeId);
    // Every VIEW-CHANGE that arrives re-runs the decision: ask only when something new is missing
    // (the periodic resend in onTick covers the rest).
    if ([...this.fetching.keys()].some((h) => !asked.has(h))) this.requestBodies(now, false);
    return true;
  }

  /** Asks for the missing bodies: first the view's primary only (if that is not us), then everyone who named them. */
  private requestBodies(now: number, widely: boolean): void {
    const digests = [...this.fetching.values()];
    const primary = primaryOf(this.cluster, this.view);
    const to = [...this.fetchFrom].filter((id) => widely || id === primary || primary === this.nodeId).map((id) => nodePrincipal(id));
    for (let i = 0; i < digests.length; i += fetchBatchesMax) this.out.send(to, { kind: 'fetchBatches', digests: digests.slice(i, i + fetchBatchesMax) });
    this.fetchAgainAt = now + this.cluster.config.statusIntervalMs;
  }

  /**
   * FETCH-BATCHES: answers with the bodies held, in messages of at most batchBodiesBytesMax. A
   * body goes to the same peer at most once per status interval (a correct replica asks again
   * only that often), so a faulty one cannot turn small requests into a stream of large answers.
   */
  private onFetchBatches(from: Principal, digests: readonly Uint8Array[], now: number): void {
    let batches: Batch[] = [];
    let bytes = 0;
    const every = this.cluster.config.statusIntervalMs;
    if (this.bodiesSent.size > 4096) for (const [k, at] of this.bodiesSent) if (now - at >= every) this.bodiesSent.delete(k);
    for (const d of digests) {
      const dh = hex(d);
      const key = `${from.id}:${dh}`;
      const last = this.bodiesSent.get(key);
      if (last !== undefined && now - last < every) continue; // sent lately: a repeat (or a flood) gets nothing
      const b = this.bodyFor(dh);
      if (b === undefined) continue;
      this.bodiesSent.set(key, now);
      const size = encodeBatch(b).length; // exact: rows can make a batch much larger than its ops (only during view changes)
      if (batches.length > 0 && bytes + size > batchBodiesBytesMax) {
        this.out.send([from], { kind: 'batchBodies', batches });
        batches = [];
        bytes = 0;
      }
      batches.push(b);
      bytes += size;
    }
    if (batches.length > 0) this.out.send([from], { kind: 'batchBodies', batches });
  }

  /** BATCH-BODIES: keeps the bodies this replica is fetching (checked by digest), then retries the view change. */
  private onBatchBodies(batches: readonly Batch[], now: number): void {
    let got = false;
    for (const b of batches) {
      const dh = hex(this.batchDigest(b));
      if (!this.fetching.has(dh)) continue;
      this.fetching.delete(dh);
      this.vcBodies.set(dh, b);
      got = true;
    }
    if (!got || this.fetching.size > 0 || this.normal) return;
    this.retryNewView(now);
  }

  /** Decides the view change again: the NEW-VIEW waiting for bodies (backup), or our own (new primary). */
  private retryNewView(now: number): void {
    const pending = this.pendingNewView;
    if (pending !== undefined) {
      this.pendingNewView = undefined;
      this.onNewView(primaryOf(this.cluster, pending.view), pending, now);
    } else this.maybeDecideNewView(now);
  }

  private bodyFor(dh: string): Batch | undefined {
    const fromVc = this.vcBodies.get(dh);
    if (fromVc !== undefined) return fromVc;
    for (const s of this.slots.values()) {
      const b = s.bodies.get(dh);
      if (b !== undefined) return b;
    }
    return undefined;
  }

  /**
   * The new-view decision from view-change bodies alone (A3, having the batches, is settled
   * afterwards by fetching them), so the primary and every backup compute the same one.
   */
  private decide(bodies: ViewChangeBody[]): ReturnType<typeof decideNewView> {
    return decideNewView(bodies, {
      medium: this.medium,
      small: this.small,
      windowMax: 2 * this.cpInt,
      nullDigest: this.nullDigest,
      hasBatch: () => true,
      ignorePrepared: this.canaries.has('viewChangeIgnoresPrepared'),
    });
  }

  private onNewView(sender: number, msg: MsgOf<'newView'>, now: number): void {
    const from = nodePrincipal(sender);
    if (msg.view < this.view || (msg.view === this.view && this.normal)) return;
    if (sender !== primaryOf(this.cluster, msg.view)) return this.reject('newview_from_non_primary', from);
    const senders = new Set<number>();
    for (const vc of msg.viewChanges) {
      if (vc.body.view !== msg.view || senders.has(vc.body.sender) || !this.verifyViewChange(vc)) {
        return this.reject('newview_bad_viewchange', from);
      }
      senders.add(vc.body.sender);
    }
    if (senders.size < this.medium) return this.reject('newview_too_few_viewchanges', from);
    const bodies = msg.viewChanges.map((v) => v.body);
    const decision = this.decide(bodies);
    if (decision === undefined) return this.reject('newview_undecidable', from);
    if (this.needBodies(decision, bodies, now)) {
      this.pendingNewView = msg;
      return;
    }
    this.installNewView(msg, decision, now);
  }

  /**
   * Pre-prepares a batch the current view's NEW-VIEW assigned to `slot` and casts the vote it
   * backs (the primary's too, except its PREPARE in the three-phase modes other than `parallel`).
   */
  private acceptChoice(slot: Slot, digest: Uint8Array, batch: Batch): void {
    const seq = slot.seq;
    if (slot.committed !== undefined && !bytesEqual(slot.committed.digest, digest)) {
      this.out.note({ type: 'safetyAlarm', detail: `new view ${this.view} assigns a different batch to committed seq ${seq}` });
    }
    this.acceptPrePrepare(slot, digest, batch, undefined);
    if (this.scopedVotes) this.out.push(this.voteFor(seq, digest));
    else this.castVote(slot, digest);
  }

  /** After the window moved up: the NEW-VIEW's assignments that now fit it. */
  private adoptDeferredChoices(): void {
    if (!this.normal) return;
    for (const [seq, c] of this.deferredChoices) {
      if (seq <= this.stableSeq) {
        this.deferredChoices.delete(seq);
        continue;
      }
      const slot = this.slotFor(seq);
      if (slot === undefined) continue;
      this.deferredChoices.delete(seq);
      if (slot.pp === undefined) this.acceptChoice(slot, c.digest, c.batch);
    }
  }

  private installNewView(nv: MsgOf<'newView'>, decision: NonNullable<ReturnType<typeof decideNewView>>, now: number): void {
    if (nv.view > this.view || this.normal) {
      // Entering a view we had not started changing to: reset the per-view slot state.
      for (const slot of this.slots.values()) {
        slot.pp = undefined;
        slot.prepares.clear();
          slot.sentCommit = false;
      }
    }
    this.view = nv.view;
    this.normal = true;
    this.vcDeadline = 0;
    this.vcTimerArmed = false;
    this.myViewChange = undefined;
    this.out.write('o/meta', encodeWith(metaCodec, { view: this.view, normal: true }));
    // The new view starts from checkpoint h (held by r+1 replicas, with n-u at or below it): it
    // becomes this replica's stable checkpoint if it computed the same one (PBFT §4.5: the new
    // view's checkpoint is every replica's low water mark). Replicas that lack it fetch it.
    const chosen = this.mine.get(decision.checkpoint.seq);
    if (decision.checkpoint.seq > this.stableSeq && chosen !== undefined && bytesEqual(chosen.digest, decision.checkpoint.digest)) this.makeStable(chosen);
    const h = decision.checkpoint.seq;
    // The primary proposes only above every seq this NEW-VIEW assigned, whether or not they fit
    // its window now (seed 790 at u=1 r=0: a new primary behind the chosen checkpoint proposed
    // fresh batches at two assigned seqs beyond its window, and crash-only replicas vote COMMIT
    // on their own proposal).
    this.newViewTop = h + decision.choices.length;
    this.deferredChoices.clear();
    decision.choices.forEach((digest, i) => {
      const seq = h + 1 + i;
      if (seq <= this.stableSeq) return;
      const batch = bytesEqual(digest, this.nullDigest) ? nullBatch : this.bodyFor(hex(digest));
      const slot = this.slotFor(seq);
      if (slot === undefined) {
        // Beyond the window until this replica's stable checkpoint catches up: taken then.
        if (batch !== undefined) this.deferredChoices.set(seq, { digest, batch });
        return;
      }
      assert(batch !== undefined, 'new-view batches are available');
      this.acceptChoice(slot, digest, batch);
    });
    for (const c of this.candidates.values()) {
      if (c.readySince !== undefined) c.readySince = now;
      c.passedOver = 0;
    }
    this.requestTimer = undefined;
    this.monitor.enterView(now);
    this.vcBodies.clear();
    this.fetching.clear();
    this.pendingNewView = undefined;
    this.out.note({ type: 'viewEntered', view: this.view, primary: primaryOf(this.cluster, this.view) });
    this.out.send(this.authPeers, { kind: 'viewHint', view: this.view });
    // A backup tells its peers at once that it is in the view: a PRE-PREPARE or PREPARE of this
    // view that reached it before the NEW-VIEW was dropped, and the STATUS makes the primary and
    // the others resend them now rather than at the next status round (with one silent
    // replica, one backup leaving a view for want of them stalled it: seed 62113's views 15-16).
    if (!this.isPrimary()) this.sendStatus();
    for (const slot of this.slots.values()) this.checkSlot(slot);
    this.maybePropose(now);
  }

  // =========================================================================================
  // Status gossip and catch-up
  // =========================================================================================

  private broadcastStatus(): void {
    this.sendStatus();
    if (this.normal) this.out.send(this.authPeers, { kind: 'viewHint', view: this.view });
  }

  private sendStatus(): void {
    this.out.send(this.peers, { kind: 'status', view: this.view, normal: this.normal, committed: this.committedSeq, stable: this.stableSeq });
  }

  private onStatus(sender: number, msg: MsgOf<'status'>, now: number): void {
    this.statuses.set(sender, msg);
    const to = [nodePrincipal(sender)];
    if (msg.committed < this.committedSeq && this.catchUpDue(sender, msg.committed, now)) this.sendCatchUp(to, msg.committed);
    this.resendCommitVotes(to, msg.committed);
    // Re-send our CHECKPOINT votes the peer may have missed (it cannot advance its window
    // without n-u of them).
    if (msg.stable < this.stableSeq || msg.stable < this.committedSeq) {
      if (msg.stable < this.stableSeq && this.stableSeq > 0) this.out.send(to, { kind: 'checkpoint', seq: this.stableSeq, digest: this.stable.digest });
      for (const [seq, cp] of this.mine) if (seq > msg.stable) this.out.send(to, { kind: 'checkpoint', seq, digest: cp.digest });
    }
    // View synchronisation: r+1 replicas in higher views pull us along.
    const higher = [...this.statuses.values()].map((s) => s.view).filter((v) => v > this.view);
    if (higher.length >= this.joinQuorum) {
      higher.sort((a, b) => b - a);
      this.startViewChange(higher[this.joinQuorum - 1]!, now);
      return;
    }
    if (msg.view === this.view && this.normal) {
      if (!msg.normal && this.myNewView !== undefined) this.out.send(to, this.myNewView);
      if (msg.normal) this.retransmitVotes(to, msg.committed);
    }
  }

  /** Resends this view's pre-prepares (primary) and our PREPARE/COMMIT for seqs the peer lacks. */
  private retransmitVotes(to: Principal[], peerCommitted: number): void {
    const primary = this.isPrimary();
    for (const slot of this.slots.values()) {
      if (slot.seq <= peerCommitted || slot.pp === undefined) continue;
      if (primary && slot.pp.msg !== undefined) this.out.send(to, slot.pp.msg);
      if ((this.scopedVotes || !primary) && slot.prepares.has(this.nodeId)) this.out.send(to, { kind: 'prepare', view: this.view, seq: slot.seq, digest: slot.pp.digest });
    }
  }

  /**
   * Resends this replica's COMMIT votes (of whatever view it cast them in) for seqs the peer has
   * not committed: a commit certificate from an earlier view still commits at a replica that has
   * moved on to a view change (see commitVotes).
   */
  private resendCommitVotes(to: Principal[], peerCommitted: number): void {
    for (const slot of this.slots.values()) {
      if (slot.seq <= peerCommitted) continue;
      const mine = slot.commitVotes.get(this.nodeId);
      if (mine === undefined) continue;
      const i = mine.indexOf(':');
      this.out.send(to, { kind: 'commit', view: Number(mine.slice(0, i)), seq: slot.seq, digest: Buffer.from(mine.slice(i + 1), 'hex') });
    }
  }

  /**
   * Catch-up goes at the receiver's pace: a peer that reports the same committed seq as when it
   * was last sent catch-up has not consumed it yet (a replica restarting from an empty disk reads
   * slowly); it gets another only after 4 status intervals. Each answer is up to 4 batch sizes,
   * so answering every STATUS filled the connection's queue, and the oldest frames queued behind
   * it (checkpoint transfer among them) were dropped.
   */
  private catchUpDue(peer: number, peerCommitted: number, now: number): boolean {
    const last = this.catchUpSent.get(peer);
    if (last !== undefined && peerCommitted <= last.committed && now - last.at < 4 * this.cluster.config.statusIntervalMs) return false;
    this.catchUpSent.set(peer, { committed: peerCommitted, at: now });
    return true;
  }

  private sendCatchUp(to: Principal[], peerCommitted: number): void {
    const checkpoint = peerCommitted < this.stableSeq ? this.stable.content : undefined;
    const from = Math.max(peerCommitted, this.stableSeq) + 1;
    const batches: { seq: number; batch: Batch }[] = [];
    let bytes = 0;
    for (let seq = from; seq <= this.committedSeq && batches.length < batchesPerMessageMax; seq++) {
      const s = this.slots.get(seq);
      if (s?.committed === undefined) break;
      const size = s.committed.batch.requests.reduce((a, r) => a + r.op.length + 24, 32);
      if (batches.length > 0 && bytes + size > this.cluster.config.batchBytesMax * 4) break;
      bytes += size;
      batches.push({ seq, batch: s.committed.batch });
    }
    if (checkpoint !== undefined || batches.length > 0) this.out.send(to, { kind: 'catchUp', checkpoint, batches });
  }

  private onCatchUp(sender: number, msg: MsgOf<'catchUp'>): void {
    if (msg.checkpoint !== undefined && msg.checkpoint.seq > this.committedSeq && msg.checkpoint.seq > this.stableSeq) {
      const digest = this.cpDigest(msg.checkpoint);
      const key = `${msg.checkpoint.seq}:${hex(digest)}`;
      let claim = this.cpClaims.get(key);
      if (claim === undefined) {
        // Bound the claims: one pending checkpoint claim per (seq, digest), few seqs.
        if (this.cpClaims.size >= 4 * this.n) this.cpClaims.clear();
        claim = { senders: new Set(), content: msg.checkpoint };
        this.cpClaims.set(key, claim);
      }
      claim.senders.add(sender);
      if (claim.senders.size >= this.small) this.installCheckpoint(claim.content, digest);
    }
    for (const { seq, batch } of msg.batches) {
      if (seq <= this.committedSeq || seq > this.stableSeq + 2 * this.cpInt) continue;
      const slot = this.slots.get(seq);
      if (slot?.committed !== undefined) continue;
      const dh = hex(this.batchDigest(batch));
      this.batchClaims.add(seq, dh, batch, sender);
      // The content a commit certificate of this slot names, whoever sent it.
      if (slot !== undefined && [...slot.commitVotes.values()].some((v) => v.endsWith(dh))) {
        slot.bodies.set(dh, batch);
        this.checkCommitCertificate(slot);
      }
    }
    // Adopt vouched-for batches in order.
    for (;;) {
      const seq = this.committedSeq + 1;
      const vouched = this.batchClaims.tallies(seq).find((t) => t.voters.size >= this.small);
      if (vouched === undefined) break;
      const slot = this.slotFor(seq);
      if (slot === undefined) break;
      if (slot.committed === undefined) {
        const digest = this.batchDigest(vouched.value);
        slot.committed = { digest, batch: vouched.value };
        slot.bodies.set(hex(digest), vouched.value);
        this.saveSlot(slot);
        this.out.note({ type: 'committed', seq, view: this.view, digest });
      }
      this.apply(slot, true);
      this.batchClaims.delete(seq);
    }
    this.applyCommitted();
  }

  /** Installs an order checkpoint vouched for by r+1 replicas (we are behind it). */
  private installCheckpoint(content: OrderCheckpoint, digest: Uint8Array): void {
    if (content.seq <= this.committedSeq) return;
    this.committedSeq = content.seq;
    this.history = content.history;
    this.lastTime = content.time;
    this.lastOrdered.clear();
    for (const { client, reqId } of content.lastOrdered) this.lastOrdered.set(client, reqId);
    // Every candidate's client has claims (addRow records the claim first), so this covers both.
    for (const client of [...this.claims.keys()]) this.dropOrdered(client, this.lastOrdered.get(client) ?? 0);
    this.makeStable({ content, digest });
    this.out.note({ type: 'checkpointLoaded', seq: content.seq, token: content.execToken });
    this.applyCommitted();
  }

  // =========================================================================================
  // Slots, digests, durability
  // =========================================================================================

  /** Slot for `seq` inside the window, created on demand; undefined outside the window. */
  private slotFor(seq: number): Slot | undefined {
    if (seq <= this.stableSeq || seq > this.stableSeq + 2 * this.cpInt) return undefined;
    let s = this.slots.get(seq);
    if (s === undefined) {
      s = {
        seq,
        pp: undefined,
        prepares: new Map(),
        commitVotes: new Map(),
        sentCommit: false,
        prepared: undefined,
        q: [],
        committed: undefined,
        history: undefined,
        bodies: new Map(),
      };
      this.slots.set(seq, s);
    }
    return s;
  }

  private batchDigest(b: Batch): Uint8Array {
    return batchDigestOf(this.keys, b);
  }

  private cpDigest(c: OrderCheckpoint): Uint8Array {
    return this.keys.digest(encodeWith(orderCheckpointCodec, c));
  }

  /**
   * Writes a slot's record and the bodies it names: `barrier` holds back every later effect of
   * the step, `lazy` nothing, a list of effects (a scoped barrier) only those.
   */
  private saveSlot(slot: Slot, how: 'barrier' | 'lazy' | readonly ScopedEffect[] = 'barrier'): void {
    const lazy = how === 'lazy';
    const scoped = typeof how === 'object' ? { puts: [] as [string, Uint8Array][], deletes: [] as string[], then: how } : undefined;
    const put = (k: string, v: Uint8Array): void => {
      if (scoped !== undefined) scoped.puts.push([k, v]);
      else if (lazy) this.out.writeLazy(k, v);
      else this.out.write(k, v);
    };
    const needed = new Set<string>();
    if (slot.pp !== undefined) needed.add(hex(slot.pp.digest));
    if (slot.prepared !== undefined) needed.add(hex(slot.prepared.digest));
    if (slot.committed !== undefined) needed.add(hex(slot.committed.digest));
    // Bodies first, then the record that names them; bodies no longer named go in the same
    // persist as the record, so a crash never leaves a record naming a deleted body.
    for (const [dh, b] of slot.bodies) {
      const key = `o/b/${slot.seq}/${dh}`;
      if (!needed.has(dh)) {
        slot.bodies.delete(dh);
        this.persistedBodies.delete(`${slot.seq}/${dh}`);
        if (scoped !== undefined) scoped.deletes.push(key);
        else if (lazy) this.out.removeLazy(key);
        else this.out.remove(key);
      } else if (!this.persistedBodies.has(`${slot.seq}/${dh}`)) {
        this.persistedBodies.add(`${slot.seq}/${dh}`);
        put(key, encodeBatch(b));
      }
    }
    const rec: SlotRecord = {
      seq: slot.seq,
      pp: slot.pp === undefined ? undefined : { view: slot.pp.view, digest: slot.pp.digest },
      prepared: slot.prepared,
      q: slot.q,
      committed: slot.committed?.digest,
    };
    put(`o/s/${slot.seq}`, encodeWith(slotCodec, rec));
    if (scoped !== undefined) this.out.persistThen(scoped.puts, scoped.deletes, scoped.then);
  }
  /** Bodies already written, "seq/digesthex". */
  private readonly persistedBodies = new Set<string>();

  private recover(durable: ReadonlyMap<string, Uint8Array>): void {
    const meta = durable.get('o/meta');
    if (meta !== undefined) {
      const m = decodeRecord(metaCodec, 'o/meta', meta);
      this.view = m.view;
      this.normal = m.normal;
      // View-change timeouts grow with the distance from the last view with progress, and
      // correct replicas must agree on it roughly (vcTimeout). A replica that restarts knows
      // only its durable view: counting from 0 would make its timeouts far longer than its
      // peers' and let them leapfrog forever (seed 674 at u=2 r=2 with storage faults).
      this.lastProgressView = m.normal ? m.view : Math.max(0, m.view - 1);
    }
    const cp = durable.get('o/cp');
    if (cp !== undefined) {
      const rec = decodeRecord(cpRecordCodec, 'o/cp', cp);
      this.stable = { content: rec.checkpoint, digest: this.cpDigest(rec.checkpoint) };
      this.stableSeq = rec.checkpoint.seq;
      this.prevStable = rec.prev;
      this.committedSeq = this.stableSeq;
      this.history = rec.checkpoint.history;
      this.lastTime = rec.checkpoint.time;
      for (const { client, reqId } of rec.checkpoint.lastOrdered) this.lastOrdered.set(client, reqId);
    }
    for (const [key, value] of durable) {
      if (!key.startsWith('o/s/')) continue;
      const rec = decodeRecord(slotCodec, key, value);
      const slot = this.slotFor(rec.seq);
      if (slot === undefined) continue; // below the stable checkpoint: garbage not yet removed
      const body = (d: Uint8Array): Batch => {
        const k = `o/b/${rec.seq}/${hex(d)}`;
        const b = durable.get(k);
        if (b === undefined) throw new Error(`durable slot ${rec.seq} names a batch body that is missing (${k})`);
        this.persistedBodies.add(`${rec.seq}/${hex(d)}`);
        const batch = decodeBatchRecord(k, b);
        slot.bodies.set(hex(d), batch);
        return batch;
      };
      slot.q = rec.q.map((e) => ({ view: e.view, digest: e.digest }));
      if (rec.prepared !== undefined) {
        slot.prepared = { view: rec.prepared.view, digest: rec.prepared.digest };
        body(rec.prepared.digest);
      }
      if (rec.pp !== undefined && rec.pp.view === this.view) {
        slot.pp = { view: rec.pp.view, digest: rec.pp.digest, batch: body(rec.pp.digest) };
        this.highestPP = Math.max(this.highestPP, slot.seq);
      }
      if (rec.committed !== undefined) slot.committed = { digest: rec.committed, batch: body(rec.committed) };
      if (slot.prepared?.view === this.view && slot.pp !== undefined && bytesEqual(slot.prepared.digest, slot.pp.digest)) {
        slot.sentCommit = true;
        slot.commitVotes.set(this.nodeId, `${this.view}:${hex(slot.pp.digest)}`);
      }
      if (slot.pp !== undefined && !this.twoPhase && (this.scopedVotes || primaryOf(this.cluster, this.view) !== this.nodeId)) slot.prepares.set(this.nodeId, hex(slot.pp.digest));
    }
    // Replay committed batches above the checkpoint to rebuild the order state.
    for (;;) {
      const slot = this.slots.get(this.committedSeq + 1);
      if (slot?.committed === undefined) break;
      this.apply(slot, false);
    }
  }

  private checkInvariants(): void {
    assert(this.stableSeq <= this.committedSeq, 'stable <= committed');
    // The per-slot scan is O(window) per step: only when verifying (simulator, tests).
    if (!this.verify) return;
    for (const s of this.slots.values()) {
      assert(s.seq > this.stableSeq && s.seq <= this.stableSeq + 2 * this.cpInt, 'slots stay inside the window');
      if (s.pp !== undefined) assert(s.pp.view === this.view, 'pre-prepares belong to the current view');
      if (s.seq <= this.committedSeq) assert(s.committed !== undefined, 'slots up to committedSeq are committed');
    }
  }
}
