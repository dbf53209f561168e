/**
 * Execution stage (UpRight §5.1.4, §5.3.2, §6.3).
 *
 * Runs committed batches in sequence order through the application and replies to clients.
 * Execution replicas never talk to each other in the normal case.
 *
 * - NEXT-BATCH(n, H_n, batch) from order replicas: accepted once r+1 distinct order replicas
 *   sent the same (H_n, digest) for n, or the order replica on this same node sent it (a node
 *   is one fault domain: if that replica lies, this executor is faulty too), and
 *   H_n = hash(H_{n-1}, n, digest(batch)) extends this replica's own history. In the normal
 *   case an executor co-located with an order replica hears only from it; the others resend
 *   batches when it asks with LAST-EXEC. Requests already answered for their client (id <= cached id) are
 *   skipped, so a request ordered twice runs once. Only non-empty batches reach the app; the
 *   delivered time is max(batch time, last delivered time + 1), so it strictly increases.
 * - Replies carry this executor's MAC for the client. In the normal case only the client's r+1
 *   responders (exec replicas from index client mod n_exec onwards) answer, through the first of
 *   them, the client's home, which sends the r+1 matching replies together; after a
 *   retransmission every executor answers the client directly for a while (`directReplyMs`).
 * - Read-only requests (§7.4.3) usually reach only the client's home, with `fanout`: it passes
 *   them on to every other executor, which answers with RELAY-READ-REPLY (its MAC is for the
 *   client, so the home cannot forge it), and sends the client all n_exec answers together once
 *   they are in (a refusal at once). A read sent to every executor directly is answered directly.
 * - Reply cache: the last reply per client, resent directly when the order stage reports a
 *   retransmission (RETRANSMIT).
 * - Checkpoints (Dura-SMaRt §4.2, REFIT's idea of checkpointing while requests run): after
 *   every multiple s of checkpointInterval the state is frozen (`app.snapshot()`,
 *   copy-on-write; `checkpoint()` bytes for apps without it) together with the reply cache,
 *   history and time. The frozen state is then serialised one chunk (checkpointChunkBytes) per
 *   checkpointSliceMs between events, each chunk hashed and written lazily. The MANIFEST (seq,
 *   history, time, replies, app size, chunk hashes) is what the token hashes; it is written
 *   after the chunks, and CP-TOKEN leaves only once it is durable (a scoped barrier: nothing
 *   else waits). Sequential mode: replica group g of G (at most max(u,1) replicas per group)
 *   starts serialising only after batch s + g*floor(checkpointInterval/G) executed (or the
 *   replica is idle), so at most u replicas are busy at a time; coordinated mode: all at once.
 *   Snapshots still unfinished when the next is due stay open and are serialised in order
 *   (ordering waits for tokens, so the backlog is bounded). The last three
 *   checkpoints are kept, so any checkpoint the order stage may still name is available.
 * - Catch-up: on a gap (later batches buffered, or a retransmission for a request not yet
 *   executed), and as a heartbeat after 4 x execRetryMs without progress, send LAST-EXEC(next)
 *   to the order stage, which resends batches or answers LOAD-CP with its stable checkpoints.
 * - State transfer (Dura-SMaRt §4.3 adapted to UpRight's split of order and execution): a
 *   checkpoint named by r+1 matching LOAD-CPs is the agreed one. Its manifest is fetched from a
 *   peer and accepted only if it hashes to the token; then its chunks, each accepted only if it
 *   hashes to its manifest entry. `collaborative`: chunks spread over every execution peer
 *   (two in flight per peer); `single`: all from one peer. A peer that sends a bad part is
 *   skipped for the rest of the transfer, one that times out loses its outstanding parts to the
 *   others; the batches after the checkpoint come from the order stage as usual (buffered while
 *   the transfer runs).
 * - Read-only requests are answered from the current state (client needs all executors to agree).
 * - Read fence: a unanimous read is linearizable only if no executor that executed a completed
 *   write (or showed it to a read) answers later from a state without it. Execution state lives
 *   in memory, so a restart rolls it back to the last checkpoint until the order stage resends
 *   the rest; after a whole-cluster crash every executor is behind at once and they would agree
 *   on a stale answer. So the executor keeps a durable fence `x/fence`: before it executes batch
 *   s (or installs a checkpoint at s) with s above the fence, it writes fence = s +
 *   checkpointInterval - 1 with a barrier (every reply of that step waits for it; one write
 *   per interval). After a restart it refuses read-only requests (a READ-REPLY with seq 0,
 *   which sends the client to the ordered path) until it has executed through the recovered
 *   fence.
 *
 * Invariants:
 * - nextSeq only grows; `history` is the chain hash through nextSeq - 1;
 * - a batch runs only when its chain hash extends `history` and r+1 order replicas, or the
 *   co-located one, sent it;
 * - the reply cache holds, per client, the reply of its highest executed request id;
 * - no reply or read reply leaves for a state beyond the durable fence; read-only requests are
 *   answered only when nextSeq - 1 >= readsFencedThrough.
 */
import { assert } from '../../core/assert.ts';
import type { Cluster } from '../../core/config.ts';
import type { KeyRing, Principal } from '../../crypto/provider.ts';
import { bytesEqual, clientPrincipal, nodePrincipal } from '../../crypto/provider.ts';
import { type Batch, type Message, type MsgOf } from '../../codec/messages.ts';
import { array, bytes, encodeWith, fixed, Reader, struct, tryDecodeWith, u32, uint, type Infer } from '../../codec/schema.ts';
import { checkpointBytesMax, checkpointChunksMax, clientsMax, digestBytes, opBytesMax } from '../../codec/limits.ts';
import { bytesSnapshot, type AppPagedSnapshot, type AppRequest, type AppSnapshot, type ReplicatedApp } from '../../app/contract.ts';
import type { Canaries, Effect, StageEvent } from '../types.ts';
import { batchDigestOf, hex, homeExecOf, isResponder, membersOf, Outbox, readU64Durable, replyCoreBytes, requestCoreDigest, u64Bytes } from '../common.ts';
import { VoteTable } from '../votes.ts';

/**
 * Execution checkpoint manifest: what the token hashes. The application's checkpoint bytes are
 * cut into chunks: the app's pages (`pagedSnapshot`), or pieces of checkpointChunkBytes;
 * `chunks` holds their hashes and `sizes` their lengths (summing to `appBytes`).
 */
export const execManifestCodec = struct({
  seq: uint,
  history: fixed(digestBytes),
  lastTime: uint,
  replies: array(struct({ client: u32, reqId: uint, result: bytes(opBytesMax) }), clientsMax),
  appBytes: uint,
  sizes: array(u32, checkpointChunksMax),
  chunks: array(fixed(digestBytes), checkpointChunksMax),
});
/** A decoded manifest. */
export type ExecManifest = Infer<typeof execManifestCodec>;

/** Durable key of the executor's read fence (8-byte seq; see the module header). */
export const execFenceKey = 'x/fence';

/**
 * Durable key prefix of execution checkpoints: `x/cp/<seq>` (manifest), `x/cp/p/<id>` (a pack:
 * the chunks one checkpoint or transfer added, in one file; see `encodePack`).
 */
export const execCheckpointPrefix = 'x/cp/';

/** Whether a durable key holds part of an execution checkpoint (what a replica can refetch from peers). */
export function isExecCheckpointKey(key: string): boolean {
  return key.startsWith(execCheckpointPrefix);
}

function manifestKey(seq: number): string {
  return `${execCheckpointPrefix}${seq}`;
}

function packKey(id: number): string {
  return `${execCheckpointPrefix}p/${id}`;
}

/** Parses a checkpoint key: a manifest's seq, or a pack's id. */
function parseCheckpointKey(key: string): { seq: number } | { pack: number } | undefined {
  const m = /^x\/cp\/(?:(\d{1,15})|p\/(\d{1,15}))$/.exec(key);
  if (m === null) return undefined;
  return m[1] !== undefined ? { seq: Number(m[1]) } : { pack: Number(m[2]) };
}

/**
 * A pack: u16 n, n x (hash, u32 length), then the n chunks back to back. Chunks are named by
 * their hash, so any copy of a chunk serves every checkpoint that lists it.
 */
const packHeadCodec = array(struct({ hash: fixed(digestBytes), length: u32 }), checkpointChunksMax);

/** Encodes a pack of distinct chunks; returns it and each chunk's offset in it. */
function encodePack(chunks: readonly { hash: Uint8Array; bytes: Uint8Array }[]): { pack: Uint8Array; offsets: number[] } {
  const head = encodeWith(packHeadCodec, chunks.map((c) => ({ hash: c.hash, length: c.bytes.length })));
  let total = head.length;
  for (const c of chunks) total += c.bytes.length;
  const pack = new Uint8Array(total);
  pack.set(head, 0);
  const offsets: number[] = [];
  let off = head.length;
  for (const c of chunks) {
    pack.set(c.bytes, off);
    offsets.push(off);
    off += c.bytes.length;
  }
  return { pack, offsets };
}

/** The chunks of a pack (views into it), or undefined if it does not parse. */
export function decodePack(pack: Uint8Array): { hash: Uint8Array; bytes: Uint8Array }[] | undefined {
  const r = new Reader(pack);
  let head: Infer<typeof packHeadCodec>;
  try {
    head = packHeadCodec.decode(r);
  } catch {
    return undefined;
  }
  let off = pack.length - r.remaining;
  const out: { hash: Uint8Array; bytes: Uint8Array }[] = [];
  for (const e of head) {
    if (off + e.length > pack.length) return undefined;
    out.push({ hash: e.hash, bytes: pack.subarray(off, off + e.length) });
    off += e.length;
  }
  return off === pack.length ? out : undefined;
}

/** A pack whose live chunks fill less than this share of it has them rewritten into the next pack. */
const packLiveShareMin = 0.5;
/**
 * Largest pack. A checkpoint with more fresh bytes writes a pack each time this much is ready,
 * so the store's CRC and copy of a pack stay short (about 13 ms here) instead of one long stop.
 */
const packBytesMax = 4 << 20;
/** Live chunks of sparse packs rewritten per checkpoint at most (the rest waits for the next). */
const relocateBytesMax = 4 * packBytesMax;

/**
 * Parts of a checkpoint in flight per peer during a transfer: at least 2, and as many as make
 * about 1 MiB (small pages would otherwise make a transfer a long series of round trips), at most 32.
 */
function partsInFlight(m: ExecManifest | undefined): number {
  if (m === undefined || m.chunks.length === 0) return 2;
  const average = Math.max(1, m.appBytes / m.chunks.length);
  return Math.max(2, Math.min(32, Math.floor((1 << 20) / average)));
}

const zeroDigest = new Uint8Array(32);
/** How long replies to a retransmitting client bypass its home node. */
const directReplyMs = 10_000;

/** Answers being gathered at a client's home for one request of that client. */
interface Gathering<T> {
  readonly reqId: number;
  /** By executor node id. */
  readonly answers: Map<number, T>;
  sent: boolean;
}

/**
 * Adds an executor's answer to the client's gathering (a later request id replaces an older
 * one); returns the gathering when the answer was new, undefined when it was stale, repeated or
 * came after the answers were sent.
 */
function addAnswer<T extends { readonly reqId: number; readonly exec: number }>(table: Map<number, Gathering<T>>, client: number, a: T): Gathering<T> | undefined {
  let g = table.get(client);
  if (g === undefined || g.reqId < a.reqId) {
    g = { reqId: a.reqId, answers: new Map(), sent: false };
    table.set(client, g);
  }
  if (g.reqId !== a.reqId || g.sent || g.answers.has(a.exec)) return undefined;
  g.answers.set(a.exec, a);
  return g;
}

/** One executor's answer to a read-only request, with its MAC for the client. */
interface ReadAnswer {
  readonly reqId: number;
  readonly result: Uint8Array;
  /** The executor's next batch number; 0: it refuses (restarted, before its read fence). */
  readonly seq: number;
  readonly exec: number;
  readonly mac: Uint8Array;
}

interface Claim {
  readonly history: Uint8Array;
  readonly digest: Uint8Array;
  readonly batch: Batch;
}

/** A checkpoint this replica holds (its own or fetched), as served to peers. */
interface Held {
  readonly token: Uint8Array;
  readonly manifestBytes: Uint8Array;
  readonly manifest: ExecManifest;
  readonly chunks: readonly Uint8Array[];
  /** Hex of each chunk's hash (manifest.chunks), computed once: pack bookkeeping keys on it. */
  readonly names: readonly string[];
}

/** A checkpoint being serialised from a frozen state. */
interface CheckpointJob {
  readonly seq: number;
  readonly history: Uint8Array;
  readonly lastTime: number;
  readonly replies: ExecManifest['replies'];
  /** The frozen state: paged (incremental) when the app has `pagedSnapshot`. */
  readonly source: { readonly paged: AppPagedSnapshot } | { readonly whole: AppSnapshot };
  /** Serialising starts once this batch executed (sequential mode), or when idle. */
  readonly startAfter: number;
  /** Bytes read from a whole snapshot and not yet cut into a chunk. */
  pending: Uint8Array[];
  pendingBytes: number;
  exhausted: boolean;
  readonly chunks: Uint8Array[];
  readonly hashes: Uint8Array[];
  /** `hashes` in hex, the key packs are indexed by (converted once per chunk). */
  readonly names: string[];
  /** Chunks taken over unchanged from the previous checkpoint (status). */
  reused: number;
  /** Chunks before this index are stored (in packs written while serialising). */
  packed: number;
  /** Bytes of the fresh chunks from `packed` on (reused ones are stored already). */
  unpackedBytes: number;
  appBytes: number;
}

/** A state transfer in progress. */
interface Loading {
  readonly seq: number;
  readonly token: Uint8Array;
  manifestBytes: Uint8Array | undefined;
  manifest: ExecManifest | undefined;
  /** Hex of each chunk's hash in `manifest`, computed once when it arrives. */
  names: readonly string[];
  readonly chunks: (Uint8Array | undefined)[];
  received: number;
  /** Part -> (peer asked, deadline). Part 0 is the manifest, part i+1 chunk i. */
  readonly outstanding: Map<number, { peer: number; deadline: number }>;
  /** Every chunk below this index is in (chunks only fill during a transfer), so scans start here. */
  cursor: number;
  /** Peers skipped for the rest of this transfer (sent a bad part or timed out). */
  readonly skipped: Set<number>;
  /** Rotation position over the peers. */
  turn: number;
}

/** Execution replica state machine. */
export class ExecCore {
  private readonly out = new Outbox();
  private readonly index: number;
  private readonly small: number;
  /** An order replica shares this node: its NEXT-BATCH alone is enough (one fault domain). */
  private readonly localOrder: boolean;
  private readonly cpInt: number;
  private readonly orderPeers: Principal[];
  /** The other execution replicas, to which a client's home passes its reads on. */
  private readonly otherExecs: Principal[];
  private readonly execPeerIds: number[];

  /** Next batch to execute. Invariant: only grows. */
  private nextSeq = 1;
  /** Highest seq covered by the fence written (or being written); replies wait for it. */
  private fence = 0;
  /** Read-only requests are refused until this seq has executed (the fence found at restart). */
  private readsFencedThrough = 0;
  /** Chain hash through nextSeq - 1. */
  private history: Uint8Array = zeroDigest;
  /** Time delivered with the last non-empty batch. */
  private lastTime = 0;
  private readonly replyCache = new Map<number, { reqId: number; result: Uint8Array }>();
  /** Checkpoints held (seq -> manifest and chunks), the latest three. */
  private readonly checkpoints = new Map<number, Held>();
  /** Checkpoints frozen and not yet serialised, oldest first. */
  private jobs: CheckpointJob[] = [];
  /**
   * The last paged checkpoint serialised (held: it is the newest), which the next one's
   * unchanged pages are taken from; cleared when the app's state is replaced.
   */
  private lastPages: { readonly seq: number; readonly names: readonly string[] } | undefined;
  /** Packs on disk: id -> the chunks (hash hex) written in it and their bytes in total. */
  private readonly packs = new Map<number, { readonly hashes: readonly string[]; readonly bytes: number }>();
  /** Where a stored chunk is read from: hash hex -> pack id (its newest copy). */
  private readonly chunkPack = new Map<string, number>();
  private nextPackId = 1;
  /** Chunks of the last checkpoint serialised: fresh, and reused from the one before (status). */
  lastCheckpointChunks = { fresh: 0, reused: 0 };
  private nextSliceAt = 0;
  /** Batches after a checkpoint seq this replica waits before serialising it (sequential mode). */
  private readonly cpDelay: number;
  private readonly chunkBytes: number;
  /** NEXT-BATCH claims per seq, keyed by history hex + digest hex; one per order replica. */
  private readonly claims = new VoteTable<Claim>();
  /** LOAD-CP claims: "seq:token" -> order senders. */
  private readonly loadClaims = new Map<string, Set<number>>();
  private loading: Loading | undefined;
  /**
   * Chunks of a transfer that a newer one replaced, by hash: a chunk whose bytes did not change
   * between two checkpoints is not fetched again.
   */
  private stash = new Map<string, Uint8Array>();
  private lastProgressAt = 0;
  private lastExecSentAt = -Infinity;
  private lastTokenSentAt = 0;
  private readonly replyResentAt = new Map<number, number>();
  /** Clients whose replies go out directly (not through their home node) until a time. */
  private readonly directUntil = new Map<number, number>();
  /** Read answers being gathered for clients homed here (one read per client). */
  private readonly readGathering = new Map<number, Gathering<ReadAnswer>>();
  /** Replies being gathered for clients homed here (one request per client). */
  private readonly gathering = new Map<number, Gathering<{ reqId: number; result: Uint8Array; exec: number; mac: Uint8Array }>>();
  private started = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly nodeId: number,
    private readonly keys: KeyRing,
    private readonly app: ReplicatedApp,
    durable: ReadonlyMap<string, Uint8Array>,
    private readonly canaries: Canaries = new Set(),
  ) {
    const idx = cluster.exec.indexOf.get(nodeId);
    assert(idx !== undefined, `node ${nodeId} hosts no execution replica`);
    this.index = idx;
    this.small = cluster.r + 1;
    this.localOrder = cluster.order.indexOf.has(nodeId);
    this.cpInt = cluster.config.checkpointInterval;
    this.orderPeers = membersOf(cluster.order);
    this.execPeerIds = cluster.exec.nodes.filter((id) => id !== nodeId);
    this.otherExecs = this.execPeerIds.map(nodePrincipal);
    this.chunkBytes = cluster.config.checkpointChunkBytes;
    const perGroup = Math.max(1, cluster.u);
    const groups = Math.ceil(cluster.exec.nodes.length / perGroup);
    this.cpDelay = cluster.checkpoints === 'sequential' ? Math.floor(idx / perGroup) * Math.floor(this.cpInt / groups) : 0;
    this.recover(durable);
  }

  /** Next batch this replica will execute. */
  get next(): number {
    return this.nextSeq;
  }

  /** The application's checkpoint of its current state (status pages, checkers). */
  appCheckpoint(): Uint8Array {
    return this.app.checkpoint();
  }

  /** The state transfer in progress, if any (status pages). */
  get transfer(): { seq: number; chunks: number | undefined; received: number; outstanding: number; skipped: number[] } | undefined {
    const l = this.loading;
    if (l === undefined) return undefined;
    return { seq: l.seq, chunks: l.manifest?.chunks.length, received: l.received, outstanding: l.outstanding.size, skipped: [...l.skipped] };
  }

  /** Checkpoint parts sent to peers, and requests for parts this replica does not hold (status pages). */
  readonly served = { parts: 0, missed: 0 };

  /** Checkpoints held, by seq (status pages). */
  get checkpointSeqs(): number[] {
    return [...this.checkpoints.keys()].sort((a, b) => a - b);
  }

  /** Checkpoints waiting to be serialised (status pages). */
  get checkpointsPending(): number {
    return this.jobs.length;
  }

  /** History hash through next - 1. */
  get historyHash(): Uint8Array {
    return this.history;
  }

  step(ev: StageEvent): Effect[] {
    if (!this.started) {
      this.started = true;
      this.lastProgressAt = ev.now;
      // After a (re)start, ask the order stage for whatever we missed.
      this.sendLastExec(ev.now);
    }
    if (ev.kind === 'tick') this.onTick(ev.now);
    else this.onMessage(ev.from, ev.msg, ev.now);
    this.pumpCheckpoint(ev.now);
    return this.out.drain();
  }

  private reject(reason: string, from: Principal): void {
    this.out.note({ type: 'rejected', reason, from });
  }

  private onMessage(from: Principal, msg: Message, now: number): void {
    if (msg.kind === 'readRequest') return this.onReadRequest(from, msg);
    if (from.kind !== 'node') return this.reject('client_to_exec', from);
    switch (msg.kind) {
      case 'nextBatch':
      case 'loadCheckpoint':
      case 'retransmit':
        if (!this.cluster.order.indexOf.has(from.id)) return this.reject('order_msg_from_non_order', from);
        if (msg.kind === 'nextBatch') return this.onNextBatch(from.id, msg, now);
        if (msg.kind === 'loadCheckpoint') return this.onLoadCheckpoint(from.id, msg, now);
        return this.onRetransmit(msg.client, msg.reqId, now);
      case 'fetchCheckpoint':
      case 'checkpointData':
      case 'relayReply':
      case 'relayReadReply':
        if (!this.cluster.exec.indexOf.has(from.id) || from.id === this.nodeId) return this.reject('exec_msg_from_non_exec', from);
        if (msg.kind === 'fetchCheckpoint') return this.onFetchCheckpoint(from, msg.seq, msg.part);
        if (msg.kind === 'relayReply') return this.onRelayReply(from.id, msg);
        if (msg.kind === 'relayReadReply') return this.onRelayReadReply(from.id, msg);
        return this.onCheckpointData(from.id, msg.seq, msg.part, msg.data, now);
      default:
        return this.reject('unexpected_kind', from);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Ordered execution
  // ---------------------------------------------------------------------------------------

  private onNextBatch(sender: number, msg: MsgOf<'nextBatch'>, now: number): void {
    if (msg.seq < this.nextSeq || msg.seq >= this.nextSeq + 4 * this.cpInt) return;
    const digest = batchDigestOf(this.keys, msg.batch);
    const key = this.canaries.has('skipHistoryCheck') ? hex(msg.history) : hex(msg.history) + hex(digest);
    this.claims.add(msg.seq, key, { history: msg.history, digest, batch: msg.batch }, sender);
    this.executeReady(now);
  }

  private executeReady(now: number): void {
    for (;;) {
      if (this.loading !== undefined) return;
      let chosen: Claim | undefined;
      for (const { value: claim, voters } of this.claims.tallies(this.nextSeq)) {
        if (voters.size < this.small && !(this.localOrder && voters.has(this.nodeId))) continue;
        if (!this.canaries.has('skipHistoryCheck')) {
          const expected = this.keys.digest(this.history, u64Bytes(this.nextSeq), claim.digest);
          if (!bytesEqual(expected, claim.history)) {
            this.out.note({ type: 'safetyAlarm', detail: `exec ${this.nodeId}: agreed batch ${this.nextSeq} does not extend local history` });
            continue;
          }
        }
        chosen = claim;
        break;
      }
      if (chosen === undefined) return;
      this.execute(chosen, now);
    }
  }

  /**
   * Before this replica's state reaches `seq`: if the durable fence is below it, move the fence
   * one checkpoint interval ahead, as a barrier write (so every reply of this step waits for it).
   */
  private raiseFence(seq: number): void {
    if (seq <= this.fence) return;
    this.fence = seq + this.cpInt - 1;
    this.out.write(execFenceKey, u64Bytes(this.fence));
  }

  private execute(claim: Claim, now: number): void {
    const seq = this.nextSeq;
    this.raiseFence(seq);
    const dedup = !this.canaries.has('duplicateExecution');
    const run: AppRequest[] = [];
    for (const r of claim.batch.requests) {
      const cached = this.replyCache.get(r.client);
      if (dedup && cached !== undefined && r.reqId <= cached.reqId) continue;
      run.push(r);
    }
    const executed: { client: number; reqId: number; result: Uint8Array }[] = [];
    const time = Math.max(claim.batch.time, this.lastTime + 1);
    if (run.length > 0) {
      const results = this.app.execute({ seq, time, seed: claim.batch.seed, requests: run });
      assert(results.length === run.length, 'the application returns one reply per request');
      this.lastTime = time;
      run.forEach((r, i) => {
        const result = results[i]!;
        this.replyCache.set(r.client, { reqId: r.reqId, result });
        executed.push({ client: r.client, reqId: r.reqId, result });
        this.sendReply(r.client, r.reqId, result, now, false);
      });
    }
    this.history = claim.history;
    this.nextSeq = seq + 1;
    this.claims.delete(seq);
    this.lastProgressAt = now;
    this.out.note({ type: 'executed', seq, history: claim.history, batchDigest: claim.digest, batch: claim.batch, time, results: executed });
    if (seq % this.cpInt === 0) this.takeCheckpoint(seq);
  }

  // ---------------------------------------------------------------------------------------
  // Checkpoints
  // ---------------------------------------------------------------------------------------

  /** Freezes the state after batch `seq` and queues its serialisation. */
  private takeCheckpoint(seq: number): void {
    // An unfinished snapshot stays open and is serialised first (the app keeps one set of
    // pre-images per open snapshot). Finishing it at once would stop this node for as long as
    // serialising the rest takes; a backlog is bounded because ordering waits for tokens.
    const replies = [...this.replyCache.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([client, r]) => ({ client, reqId: r.reqId, result: r.result }));
    const paged = this.app.pagedSnapshot?.();
    const source = paged !== undefined ? { paged } : { whole: this.app.snapshot?.() ?? bytesSnapshot(this.app.checkpoint()) };
    this.jobs.push({
      seq,
      history: this.history,
      lastTime: this.lastTime,
      replies,
      source,
      startAfter: seq + this.cpDelay,
      pending: [],
      pendingBytes: 0,
      exhausted: false,
      chunks: [],
      hashes: [],
      names: [],
      reused: 0,
      packed: 0,
      unpackedBytes: 0,
      appBytes: 0,
    });
  }

  /** Serialises one chunk of the oldest pending checkpoint if its turn came and the slice interval passed. */
  private pumpCheckpoint(now: number): void {
    const job = this.jobs[0];
    if (job === undefined) return;
    const turn = this.nextSeq - 1 >= job.startAfter || now - this.lastProgressAt >= this.cluster.config.execRetryMs;
    if (!turn || now < this.nextSliceAt) return;
    this.nextSliceAt = now + this.cluster.config.checkpointSliceMs;
    this.sliceCheckpoint(job, now);
  }

  private sliceCheckpoint(job: CheckpointJob, now: number): void {
    if ('paged' in job.source) this.slicePages(job, job.source.paged);
    else this.sliceWhole(job, job.source.whole);
    if (job.unpackedBytes >= packBytesMax) {
      this.storeChunks(job.chunks, job.hashes, job.names, job.packed, false);
      job.packed = job.chunks.length;
      job.unpackedBytes = 0;
    }
    if (job.exhausted && job.pendingBytes === 0) this.finishCheckpoint(job, now);
  }

  /** One chunk of checkpointChunkBytes from a whole snapshot. */
  private sliceWhole(job: CheckpointJob, snapshot: AppSnapshot): void {
    const size = this.chunkBytes;
    while (!job.exhausted && job.pendingBytes < size) {
      const piece = snapshot.read(size - job.pendingBytes);
      if (piece === undefined) {
        job.exhausted = true;
        snapshot.close();
      } else if (piece.length > 0) {
        job.pending.push(piece);
        job.pendingBytes += piece.length;
      }
    }
    if (job.pendingBytes > 0) this.addChunk(job, takeBytes(job, Math.min(size, job.pendingBytes)));
  }

  /**
   * Pages of a paged snapshot until about checkpointChunkBytes of changed ones were serialised:
   * an unchanged page (null) is the previous checkpoint's page, with its hash and file.
   */
  private slicePages(job: CheckpointJob, paged: AppPagedSnapshot): void {
    let fresh = 0;
    while (!job.exhausted && fresh < this.chunkBytes) {
      const page = paged.nextPage();
      if (page === undefined) {
        job.exhausted = true;
        paged.close();
      } else if (page === null) {
        const i = job.chunks.length;
        const prev = this.lastPages === undefined ? undefined : this.checkpoints.get(this.lastPages.seq);
        assert(prev !== undefined && this.lastPages!.seq < job.seq && i < prev.chunks.length, 'the app reports an unchanged page only when the previous checkpoint has it');
        job.chunks.push(prev.chunks[i]!);
        job.hashes.push(prev.manifest.chunks[i]!);
        job.names.push(this.lastPages!.names[i]!);
        job.appBytes += prev.chunks[i]!.length;
        job.reused++;
      } else {
        this.addChunk(job, page);
        fresh += page.length;
      }
    }
  }

  /** A freshly serialised chunk: hashed and kept (written with the others when the checkpoint ends). */
  private addChunk(job: CheckpointJob, chunk: Uint8Array): void {
    const hash = this.keys.digest(chunk);
    job.appBytes += chunk.length;
    job.unpackedBytes += chunk.length;
    job.hashes.push(hash);
    job.names.push(hex(hash));
    job.chunks.push(chunk);
  }

  /**
   * Writes the chunks from index `from` on that no pack holds yet, in packs of at most
   * packBytesMax. With `compact`, also (up to relocateBytesMax) the chunks of this checkpoint
   * stored in a pack of which this checkpoint names less than half, so that pack can go once
   * older checkpoints do (disk use stays within about twice the state). Stored chunks become
   * views into their pack: one copy in memory.
   */
  private storeChunks(chunks: Uint8Array[], hashes: readonly Uint8Array[], names: readonly string[], from: number, compact: boolean): void {
    const sparse = new Set<number>();
    if (compact) {
      const live = new Map<number, number>();
      const seen = new Set<string>();
      names.forEach((h, i) => {
        const at = this.chunkPack.get(h);
        if (at === undefined || seen.has(h)) return;
        seen.add(h);
        live.set(at, (live.get(at) ?? 0) + chunks[i]!.length);
      });
      for (const [id, pk] of this.packs) if ((live.get(id) ?? 0) < packLiveShareMin * pk.bytes) sparse.add(id);
    }
    const add: { hash: Uint8Array; name: string; bytes: Uint8Array }[] = [];
    const adding = new Set<string>();
    let relocated = 0;
    // Only chunks from `from` on can be new; earlier ones matter only when compacting. (Scanning
    // every chunk at each pack written mid-serialisation was quadratic in the page count.)
    const start = sparse.size > 0 ? 0 : from;
    for (let i = start; i < names.length; i++) {
      const h = names[i]!;
      if (adding.has(h)) continue;
      const at = this.chunkPack.get(h);
      if (at === undefined ? i < from : !sparse.has(at) || relocated >= relocateBytesMax) continue;
      if (at !== undefined) relocated += chunks[i]!.length;
      adding.add(h);
      add.push({ hash: hashes[i]!, name: h, bytes: chunks[i]! });
    }
    const views = new Map<string, Uint8Array>();
    for (let k = 0; k < add.length; ) {
      let end = k + 1;
      let size = add[k]!.bytes.length;
      while (end < add.length && size + add[end]!.bytes.length <= packBytesMax) size += add[end++]!.bytes.length;
      this.writePack(add.slice(k, end), views);
      k = end;
    }
    if (views.size === 0) return;
    for (let i = start; i < names.length; i++) {
      const v = views.get(names[i]!);
      if (v !== undefined) chunks[i] = v;
    }
  }

  /** Writes one pack and records where its chunks are; `views` gets each chunk's view into it. */
  private writePack(add: readonly { hash: Uint8Array; name: string; bytes: Uint8Array }[], views: Map<string, Uint8Array>): void {
    const id = this.nextPackId++;
    const { pack, offsets } = encodePack(add);
    this.out.writeLazy(packKey(id), pack);
    let bytes = 0;
    add.forEach((c, k) => {
      const off = offsets[k]!;
      bytes += c.bytes.length;
      this.chunkPack.set(c.name, id);
      views.set(c.name, pack.subarray(off, off + c.bytes.length));
    });
    this.packs.set(id, { hashes: add.map((c) => c.name), bytes });
  }

  /**
   * Forgets the packs none of whose chunks is still needed where it is stored (by a checkpoint
   * held, one being serialised, or a transfer in progress); returns their keys to delete.
   */
  private collectPacks(): string[] {
    const live = new Set<string>();
    for (const h of this.checkpoints.values()) for (const name of h.names) live.add(name);
    for (const job of this.jobs) for (const name of job.names) live.add(name);
    const l = this.loading;
    if (l !== undefined) l.chunks.forEach((c, i) => c !== undefined && live.add(l.names[i]!));
    const gone: string[] = [];
    for (const [id, pk] of this.packs) {
      if (pk.hashes.some((h) => this.chunkPack.get(h) === id && live.has(h))) continue;
      this.packs.delete(id);
      for (const h of pk.hashes) if (this.chunkPack.get(h) === id) this.chunkPack.delete(h);
      gone.push(packKey(id));
    }
    return gone;
  }

  private finishCheckpoint(job: CheckpointJob, now: number): void {
    assert(this.jobs[0] === job, 'checkpoints finish in order');
    this.jobs.shift();
    const manifest: ExecManifest = {
      seq: job.seq,
      history: job.history,
      lastTime: job.lastTime,
      replies: job.replies,
      appBytes: job.appBytes,
      sizes: job.chunks.map((c) => c.length),
      chunks: job.hashes,
    };
    const manifestBytes = encodeWith(execManifestCodec, manifest);
    const token = this.keys.digest(manifestBytes);
    this.storeChunks(job.chunks, job.hashes, job.names, job.packed, true);
    if ('paged' in job.source) this.lastPages = { seq: job.seq, names: job.names };
    this.lastCheckpointChunks = { fresh: job.chunks.length - job.reused, reused: job.reused };
    const deletes = this.hold(job.seq, { token, manifestBytes, manifest, chunks: job.chunks, names: job.names });
    this.out.note({ type: 'checkpointTaken', seq: job.seq, token });
    // The manifest lands after its chunks (the store keeps order) and CP-TOKEN leaves once it
    // is durable; nothing else of this node waits for the checkpoint.
    this.out.persistThen([[manifestKey(job.seq), manifestBytes]], deletes, [{ kind: 'send', to: this.orderPeers, msg: { kind: 'cpToken', seq: job.seq, token } }]);
    this.lastTokenSentAt = now;
  }

  /** Keeps a checkpoint in memory; returns the durable keys of the ones it pushes out. */
  private hold(seq: number, held: Held): string[] {
    this.checkpoints.set(seq, held);
    const deletes: string[] = [];
    const seqs = [...this.checkpoints.keys()].sort((a, b) => b - a);
    for (const old of seqs.slice(3)) {
      this.checkpoints.delete(old);
      deletes.push(manifestKey(old));
    }
    return deletes.length === 0 ? deletes : [...deletes, ...this.collectPacks()];
  }

  private latestCheckpoint(): { seq: number; token: Uint8Array } | undefined {
    let best: { seq: number; token: Uint8Array } | undefined;
    for (const [seq, c] of this.checkpoints) if (best === undefined || seq > best.seq) best = { seq, token: c.token };
    return best;
  }

  private onLoadCheckpoint(sender: number, msg: MsgOf<'loadCheckpoint'>, now: number): void {
    for (const { seq, token } of msg.checkpoints) {
      if (seq < this.nextSeq || seq % this.cpInt !== 0) continue;
      const key = `${seq}:${hex(token)}`;
      let senders = this.loadClaims.get(key);
      if (senders === undefined) {
        if (this.loadClaims.size >= 8 * this.orderPeers.length) this.loadClaims.clear();
        senders = new Set();
        this.loadClaims.set(key, senders);
      }
      senders.add(sender);
      if (senders.size < this.small) continue;
      if (this.loading !== undefined && this.loading.seq >= seq) continue;
      this.beginLoad(seq, token, now);
    }
  }

  private beginLoad(seq: number, token: Uint8Array, now: number): void {
    const own = this.checkpoints.get(seq);
    if (own !== undefined && bytesEqual(own.token, token)) {
      this.install(seq, own, now);
      return;
    }
    if (this.loading !== undefined) this.abandonLoad();
    this.loading = { seq, token, manifestBytes: undefined, manifest: undefined, names: [], chunks: [], received: 0, outstanding: new Map(), cursor: 0, skipped: new Set(), turn: this.index };
    this.requestParts(now);
  }

  /**
   * Drops a transfer that a newer one replaces, with the chunks it already wrote; the chunks
   * received stay in the stash for the next transfer.
   */
  private abandonLoad(): void {
    const l = this.loading;
    if (l === undefined) return;
    this.loading = undefined;
    this.stash.clear();
    l.chunks.forEach((c, i) => {
      if (c !== undefined) this.stash.set(hex(l.manifest!.chunks[i]!), c);
    });
  }

  /** Fills the chunks of a new transfer that this replica already has (stash or own checkpoints). */
  private reuseChunks(l: Loading, m: ExecManifest): void {
    const known = new Map(this.stash);
    for (const h of this.checkpoints.values()) h.names.forEach((name, i) => known.set(name, h.chunks[i]!));
    l.names.forEach((name, i) => {
      const c = known.get(name);
      if (c === undefined || c.length !== chunkLength(m, i)) return;
      l.chunks[i] = c;
      l.received++;
    });
    this.stash.clear();
  }

  /** Peers that may serve parts now: all unskipped ones (collaborative) or the current one (single). */
  private seeders(l: Loading): number[] {
    const peers = this.execPeerIds;
    if (peers.length === 0) return [];
    if (l.skipped.size >= peers.length) l.skipped.clear(); // everyone failed once: try all again
    const order: number[] = [];
    for (let k = 0; k < peers.length; k++) {
      const p = peers[(l.turn + k) % peers.length]!;
      if (!l.skipped.has(p)) order.push(p);
    }
    return this.cluster.stateTransfer === 'single' || l.manifest === undefined ? order.slice(0, 1) : order;
  }

  /** Fills every seeder's window with parts still missing and not outstanding. */
  private requestParts(now: number): void {
    const l = this.loading;
    if (l === undefined) return;
    const seeders = this.seeders(l);
    if (seeders.length === 0) return;
    const busy = new Map<number, number>();
    for (const { peer } of l.outstanding.values()) busy.set(peer, (busy.get(peer) ?? 0) + 1);
    const missing: number[] = [];
    const window = partsInFlight(l.manifest);
    if (l.manifest === undefined) {
      if (!l.outstanding.has(0)) missing.push(0);
    } else {
      while (l.cursor < l.chunks.length && l.chunks[l.cursor] !== undefined) l.cursor++;
      for (let i = l.cursor; i < l.chunks.length && missing.length < seeders.length * window; i++) {
        if (l.chunks[i] === undefined && !l.outstanding.has(i + 1)) missing.push(i + 1);
      }
    }
    // A chunk takes longer than a small message: allow for a busy seeder before giving up on it.
    const wait = (l.manifest === undefined ? 1 : 4) * this.cluster.config.execRetryMs;
    let k = 0;
    for (const part of missing) {
      let placed = false;
      for (let tries = 0; tries < seeders.length && !placed; tries++) {
        const peer = seeders[k++ % seeders.length]!;
        if ((busy.get(peer) ?? 0) >= window) continue;
        busy.set(peer, (busy.get(peer) ?? 0) + 1);
        l.outstanding.set(part, { peer, deadline: now + wait });
        this.out.send([nodePrincipal(peer)], { kind: 'fetchCheckpoint', seq: l.seq, part });
        placed = true;
      }
      if (!placed) break;
    }
  }

  /** Gives up on a peer for this transfer: its outstanding parts go back to the pool. */
  private skipPeer(l: Loading, peer: number): void {
    l.skipped.add(peer);
    for (const [part, o] of l.outstanding) if (o.peer === peer) l.outstanding.delete(part);
    l.turn++;
  }

  private onFetchCheckpoint(from: Principal, seq: number, part: number): void {
    const c = this.checkpoints.get(seq);
    const data = c === undefined ? undefined : part === 0 ? c.manifestBytes : c.chunks[part - 1];
    if (data === undefined) {
      this.served.missed++;
      return;
    }
    this.served.parts++;
    this.out.send([from], { kind: 'checkpointData', seq, part, data });
  }

  private onCheckpointData(sender: number, seq: number, part: number, data: Uint8Array, now: number): void {
    const l = this.loading;
    if (l?.seq !== seq) return;
    // A part is accepted from whoever sends it, as long as it is still missing and checks out
    // (a late answer from a peer we gave up on is as good as any); a bad part costs the peer
    // its place only if we asked it.
    const asked = l.outstanding.get(part)?.peer === sender;
    const bad = (): void => {
      this.reject('checkpoint_data_mismatch', nodePrincipal(sender));
      if (asked) this.skipPeer(l, sender);
    };
    if (part === 0) {
      if (l.manifest !== undefined) return;
      const res = bytesEqual(this.keys.digest(data), l.token) ? tryDecodeWith(execManifestCodec, data) : undefined;
      if (res === undefined || !res.ok || !manifestIsSane(res.value, seq)) {
        if (res !== undefined && !res.ok) this.out.note({ type: 'safetyAlarm', detail: `exec ${this.nodeId}: agreed checkpoint ${seq} has a manifest that does not decode` });
        bad();
      } else {
        l.outstanding.delete(0);
        l.manifestBytes = data;
        l.manifest = res.value;
        l.names = res.value.chunks.map(hex);
        l.chunks.length = res.value.chunks.length;
        this.reuseChunks(l, res.value);
      }
    } else {
      const i = part - 1;
      const want = l.manifest?.chunks[i];
      if (want === undefined || l.chunks[i] !== undefined) return;
      if (!bytesEqual(this.keys.digest(data), want) || data.length !== chunkLength(l.manifest!, i)) bad();
      else {
        l.outstanding.delete(part);
        l.chunks[i] = data;
        l.received++;
      }
    }
    if (l.manifest !== undefined && l.received === l.manifest.chunks.length) {
      const chunks = l.chunks as Uint8Array[];
      // The chunks this node lacked go to disk as one pack, before the manifest naming them.
      this.storeChunks(chunks, l.manifest.chunks, l.names, 0, false);
      const held: Held = { token: l.token, manifestBytes: l.manifestBytes!, manifest: l.manifest, chunks, names: l.names };
      this.loading = undefined;
      this.out.writeLazy(manifestKey(seq), held.manifestBytes);
      for (const k of this.hold(seq, held)) this.out.removeLazy(k);
      this.install(seq, held, now);
      return;
    }
    this.requestParts(now);
  }

  /** Replaces the state with a verified checkpoint. */
  private install(seq: number, held: Held, now: number): void {
    // Pending checkpoints are older than what we load (seq only grows): never needed.
    for (const job of this.jobs) ('paged' in job.source ? job.source.paged : job.source.whole).close();
    this.jobs = [];
    for (const k of this.collectPacks()) this.out.removeLazy(k);
    this.raiseFence(seq);
    this.applyCheckpoint(seq, held);
    this.claims.deleteBelow(this.nextSeq);
    if (this.loading !== undefined && this.loading.seq <= seq) this.abandonLoad();
    this.stash.clear();
    this.lastProgressAt = now;
    this.out.note({ type: 'checkpointLoaded', seq, token: held.token });
    this.sendLastExec(now);
    this.executeReady(now);
  }

  // ---------------------------------------------------------------------------------------
  // Catch-up, retransmission, read-only
  // ---------------------------------------------------------------------------------------

  private sendLastExec(now: number): void {
    this.lastExecSentAt = now;
    this.out.send(this.orderPeers, { kind: 'lastExec', next: this.nextSeq });
  }

  private onRetransmit(client: number, reqId: number, now: number): void {
    const cached = this.replyCache.get(client);
    if (cached !== undefined && cached.reqId === reqId) {
      const last = this.replyResentAt.get(client) ?? -Infinity;
      if (now - last < this.cluster.config.execRetryMs / 2) return;
      this.replyResentAt.set(client, now);
      // The client is retransmitting: its home node may be down or lying. Reply directly,
      // now and for a while.
      this.directUntil.set(client, now + directReplyMs);
      this.sendReply(client, reqId, cached.result, now, true);
      return;
    }
    if ((cached === undefined || cached.reqId < reqId) && now - this.lastExecSentAt >= this.cluster.config.execRetryMs) {
      // Ordered but not executed here: we are behind.
      this.sendLastExec(now);
    }
  }

  /**
   * Sends a reply with this executor's MAC for the client: directly when this node is the
   * client's home (or the client is in direct mode), else through the home node, which gathers
   * the executors' replies so the client receives them over one connection.
   */
  private sendReply(client: number, reqId: number, result: Uint8Array, now: number, direct: boolean): void {
    const n = this.cluster.exec.nodes.length;
    if (direct || (this.directUntil.get(client) ?? -Infinity) > now) {
      const mac = this.keys.macFor(clientPrincipal(client), replyCoreBytes(this.nodeId, reqId, result));
      this.out.send([clientPrincipal(client)], { kind: 'reply', reqId, result, exec: this.nodeId, mac });
      return;
    }
    if (!isResponder(client, this.index, n, this.cluster.r)) return;
    const mac = this.keys.macFor(clientPrincipal(client), replyCoreBytes(this.nodeId, reqId, result));
    const home = homeExecOf(client, this.cluster.exec.nodes);
    if (home === this.nodeId) this.gather(client, { reqId, result, exec: this.nodeId, mac });
    else this.out.send([nodePrincipal(home)], { kind: 'relayReply', client, reqId, result, exec: this.nodeId, mac });
  }

  /**
   * Home-node gathering: replies for a client homed here are held until r+1 of them match, then
   * sent together (one packet to the client). A home that never sees r+1 matching replies sends
   * nothing; the client's retransmission then switches every executor to direct replies.
   */
  private gather(client: number, reply: { reqId: number; result: Uint8Array; exec: number; mac: Uint8Array }): void {
    const g = addAnswer(this.gathering, client, reply);
    if (g === undefined) return;
    const matching = [...g.answers.values()].filter((x) => bytesEqual(x.result, reply.result));
    if (matching.length < this.small) return;
    g.sent = true;
    g.answers.clear();
    for (const x of matching) this.out.send([clientPrincipal(client)], { kind: 'reply', reqId: x.reqId, result: x.result, exec: x.exec, mac: x.mac });
  }

  private onRelayReply(sender: number, m: MsgOf<'relayReply'>): void {
    if (this.relayedHere(sender, m)) this.gather(m.client, { reqId: m.reqId, result: m.result, exec: m.exec, mac: m.mac });
  }

  /** Checks an answer relayed to this node as a client's home: its own sender's, for a known client homed here. */
  private relayedHere(sender: number, m: { readonly exec: number; readonly client: number }): boolean {
    if (m.exec !== sender) this.reject('relay_reply_exec_mismatch', nodePrincipal(sender));
    else if (homeExecOf(m.client, this.cluster.exec.nodes) !== this.nodeId) this.reject('relay_reply_not_home', nodePrincipal(sender));
    else if (!this.cluster.clients.has(m.client)) this.reject('unknown_client', nodePrincipal(sender));
    else return true;
    return false;
  }

  /**
   * A read-only request: from the client itself, or passed on by the client's home executor
   * (a node; then the answer goes back to the home as RELAY-READ-REPLY). Either way the client's
   * MAC for this executor must verify, so a home cannot make up reads.
   */
  private onReadRequest(from: Principal, msg: MsgOf<'readRequest'>): void {
    const client = clientPrincipal(msg.client);
    const home = homeExecOf(msg.client, this.cluster.exec.nodes);
    const relayed = from.kind === 'node';
    if (relayed ? from.id !== home || from.id === this.nodeId || msg.fanout : from.id !== msg.client) return this.reject('sender_mismatch', from);
    if (!this.cluster.clients.has(msg.client)) return this.reject('unknown_client', from);
    if (msg.op.length > this.cluster.config.requestBytesMax) return this.reject('op_too_large', from);
    if (!this.keys.verifyAuthenticatorDigest(client, requestCoreDigest(this.keys, msg.client, msg.reqId, msg.op), msg.macs, this.index)) return this.reject('bad_authenticator', from);
    let result: Uint8Array;
    let seq: number;
    if (this.nextSeq - 1 < this.readsFencedThrough) {
      // Restarted, and not yet back to where it may have answered before: refuse (seq 0).
      this.out.note({ type: 'rejected', reason: 'read_fenced', from });
      result = new Uint8Array(0);
      seq = 0;
    } else {
      result = this.app.executeReadOnly(msg.op);
      seq = this.nextSeq;
    }
    const answer: ReadAnswer = { reqId: msg.reqId, result, seq, exec: this.nodeId, mac: this.keys.macFor(client, replyCoreBytes(this.nodeId, msg.reqId, result)) };
    if (relayed) {
      this.out.send([from], { kind: 'relayReadReply', client: msg.client, ...answer });
      return;
    }
    if (msg.fanout && home === this.nodeId && this.otherExecs.length > 0) {
      this.out.send(this.otherExecs, { ...msg, fanout: false });
      this.gatherRead(msg.client, answer);
      return;
    }
    this.out.send([client], { kind: 'readReply', ...answer });
  }

  /**
   * Home-node gathering of read answers: held until every executor answered, then sent together
   * (one packet to the client); a refusal (seq 0) goes at once, as the client then orders the
   * operation. A home that never gets every answer sends nothing: the client's read timeout
   * sends the operation down the ordered path, and its next reads go to every executor directly.
   */
  private gatherRead(client: number, a: ReadAnswer): void {
    const g = addAnswer(this.readGathering, client, a);
    if (g === undefined) return;
    if (a.seq !== 0 && g.answers.size < this.cluster.exec.nodes.length) return;
    g.sent = true;
    for (const x of g.answers.values()) this.out.send([clientPrincipal(client)], { kind: 'readReply', ...x });
    g.answers.clear();
  }

  private onRelayReadReply(sender: number, m: MsgOf<'relayReadReply'>): void {
    if (this.relayedHere(sender, m)) this.gatherRead(m.client, { reqId: m.reqId, result: m.result, seq: m.seq, exec: m.exec, mac: m.mac });
  }

  private onTick(now: number): void {
    const retry = this.cluster.config.execRetryMs;
    const l = this.loading;
    if (l !== undefined) {
      const late = [...l.outstanding.values()].filter((o) => now >= o.deadline).map((o) => o.peer);
      for (const peer of new Set(late)) this.skipPeer(l, peer);
      this.requestParts(now);
    }
    const waiting = this.claims.size > 0;
    if ((waiting || this.loading !== undefined) && now - this.lastProgressAt >= retry && now - this.lastExecSentAt >= retry) {
      this.sendLastExec(now);
    } else if (now - this.lastProgressAt >= 4 * retry && now - this.lastExecSentAt >= 4 * retry) {
      // Heartbeat: an executor that missed every NEXT-BATCH of a stretch sees no gap and no
      // retransmission (the requests waiting may not be ordered yet, because ordering waits for
      // this executor's checkpoint token); asking now and then is what gets it going again.
      this.sendLastExec(now);
    }
    if (now - this.lastTokenSentAt >= 3 * retry) {
      this.lastTokenSentAt = now;
      const latest = this.latestCheckpoint();
      if (latest !== undefined) this.out.send(this.orderPeers, { kind: 'cpToken', seq: latest.seq, token: latest.token });
    }
  }

  /**
   * Loads the newest complete checkpoint on disk. A checkpoint whose manifest does not decode or
   * whose chunks are missing or do not match their hashes (files dropped as damaged, a crash
   * while it was written) is not used and its keys are removed: the replica fetches what it
   * lacks from its peers, verified against agreed tokens.
   */
  private recover(durable: ReadonlyMap<string, Uint8Array>): void {
    const fence = durable.get(execFenceKey);
    if (fence !== undefined) {
      this.fence = readU64Durable(fence, execFenceKey);
      this.readsFencedThrough = this.fence;
    }
    const manifests = new Map<number, Uint8Array>();
    const packs: [number, Uint8Array, string][] = [];
    for (const [key, data] of durable) {
      if (!isExecCheckpointKey(key)) continue;
      const k = parseCheckpointKey(key);
      if (k === undefined) this.out.removeLazy(key);
      else if ('seq' in k) manifests.set(k.seq, data);
      else packs.push([k.pack, data, key]);
    }
    // Oldest pack first, so a chunk's newest copy is the one kept.
    packs.sort((a, b) => a[0] - b[0]);
    const chunks = new Map<string, Uint8Array>();
    for (const [id, data, key] of packs) {
      this.nextPackId = Math.max(this.nextPackId, id + 1);
      const list = decodePack(data);
      if (list === undefined) {
        this.out.removeLazy(key);
        continue;
      }
      let bytes = 0;
      const names = list.map((c) => {
        const h = hex(c.hash);
        chunks.set(h, c.bytes);
        this.chunkPack.set(h, id);
        bytes += c.bytes.length;
        return h;
      });
      this.packs.set(id, { hashes: names, bytes });
    }
    for (const [seq, manifest] of manifests) {
      const held = this.verifyHeld(seq, manifest, chunks);
      if (held === undefined) this.out.removeLazy(manifestKey(seq));
      else this.checkpoints.set(seq, held);
    }
    // Packs no usable checkpoint needs (a crash mid-checkpoint, a damaged checkpoint) go.
    for (const k of this.collectPacks()) this.out.removeLazy(k);
    const latest = this.latestCheckpoint();
    if (latest === undefined) return;
    this.applyCheckpoint(latest.seq, this.checkpoints.get(latest.seq)!);
  }

  /** Sets the app and this executor's state (replies, history, time, next seq) to a verified checkpoint. */
  private applyCheckpoint(seq: number, held: Held): void {
    const m = held.manifest;
    this.app.restore(held.chunks.length === 1 ? held.chunks[0]! : Buffer.concat(held.chunks, m.appBytes));
    this.lastPages = undefined; // the app's next paged snapshot has every page
    this.replyCache.clear();
    for (const r of m.replies) this.replyCache.set(r.client, { reqId: r.reqId, result: r.result });
    this.history = m.history;
    this.lastTime = m.lastTime;
    this.nextSeq = seq + 1;
  }

  /** A checkpoint read back from disk, if its manifest decodes and every chunk matches it. */
  private verifyHeld(seq: number, manifestBytes: Uint8Array, chunks: ReadonlyMap<string, Uint8Array>): Held | undefined {
    const res = tryDecodeWith(execManifestCodec, manifestBytes);
    if (!res.ok || !manifestIsSane(res.value, seq)) return undefined;
    const m = res.value;
    const list: Uint8Array[] = [];
    const names: string[] = [];
    for (let i = 0; i < m.chunks.length; i++) {
      const name = hex(m.chunks[i]!);
      const c = chunks.get(name);
      if (c === undefined || c.length !== chunkLength(m, i) || !bytesEqual(this.keys.digest(c), m.chunks[i]!)) return undefined;
      list.push(c);
      names.push(name);
    }
    return { token: this.keys.digest(manifestBytes), manifestBytes, manifest: m, chunks: list, names };
  }
}

/** Whether a manifest is self-consistent for `seq`: one size per chunk, each within a frame, adding up. */
function manifestIsSane(m: ExecManifest, seq: number): boolean {
  if (m.seq !== seq || m.sizes.length !== m.chunks.length) return false;
  let total = 0;
  for (const n of m.sizes) {
    if (n > checkpointBytesMax) return false;
    total += n;
  }
  return total === m.appBytes;
}

/** Length of chunk `i` under manifest `m`. */
function chunkLength(m: ExecManifest, i: number): number {
  return m.sizes[i]!;
}

/** Removes the first `n` pending bytes of a checkpoint job as one chunk. */
function takeBytes(job: CheckpointJob, n: number): Uint8Array {
  const first = job.pending[0]!;
  if (first.length === n) {
    job.pending.shift();
    job.pendingBytes -= n;
    return first;
  }
  if (first.length > n) {
    job.pending[0] = first.subarray(n);
    job.pendingBytes -= n;
    return first.slice(0, n);
  }
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const p = job.pending[0]!;
    const take = Math.min(p.length, n - off);
    out.set(p.subarray(0, take), off);
    off += take;
    if (take === p.length) job.pending.shift();
    else job.pending[0] = p.subarray(take);
  }
  job.pendingBytes -= n;
  return out;
}
