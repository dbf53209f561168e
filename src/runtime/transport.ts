/**
 * Authenticated TCP transport between nodes and clients.
 *
 * Connections: node i dials node j when i < j; clients dial nodes; nodes never dial clients
 * (replies ride the client's connection). A dialer reconnects with exponential backoff (100 ms
 * doubling to 2 s).
 *
 * Channels (Dura-SMaRt §4.3: state transfer must not block ordering): each pair of nodes has two
 * connections, `main` for the protocol and `bulk` for state transfer (the kinds in `bulkKinds`:
 * order catch-up, checkpoint requests and checkpoint data). Each has its own queue, socket buffer
 * and backpressure, so megabytes of checkpoint chunks waiting for a slow reader never sit in front
 * of a PREPARE. Messages on the two channels may overtake each other; the protocol never relies on
 * order between messages (the simulator reorders everything). Clients have the main channel only.
 *
 * Handshake (length-prefixed frames of at most 256 bytes; 5 s to complete):
 *   D -> L  HELLO      magic | kind u8 | id u32 | target node u32 | nonce_D (32)
 *                      magic "BWK1" opens a main connection, "BWB1" a bulk one (nodes only)
 *   L -> D  CHALLENGE  nonce_L (32) | sig_L("bulwark-hs-v1/L" | transcript)
 *   D -> L  PROOF      sig_D("bulwark-hs-v1/D" | transcript)
 *   transcript = kind | id | target | channel u8 | nonce_D | nonce_L
 * Each side proves its Ed25519 identity over both fresh nonces, so a recorded handshake does
 * not replay. Session keys, one per direction, are SHA-256 of the pair's static MAC key
 * (crypto/pairing.ts) and both nonces.
 *
 * Packets after the handshake: u32 length | u64 counter | frames | MAC(16) where each frame is
 * u32 length | message bytes and the MAC (HMAC-SHA-512/128 under the direction's session key)
 * covers counter and frames. Counters start at 0 and increase by one, so a replayed, dropped
 * or reordered packet breaks the connection. All frames queued for a connection during one
 * event-loop turn leave in one packet and one socket write.
 *
 * Limits: a packet may not exceed frameBytesMax + 32 (a larger length closes the connection
 * before anything is allocated); at most `pendingMax` unauthenticated connections at once
 * (more are closed on accept); each connection's outbound queue is bounded (`queueBytesMax`):
 * when full, the OLDEST queued frames are dropped (the protocol retransmits what matters).
 * Every rejection is counted by reason through `onReject`.
 *
 * Flood cut-off (`disconnectFor`, decided by the node's inbox): the node's connection is closed,
 * its handshakes refused and it is not dialed until the period ends; then it reconnects as usual.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { encodeMessage, tryDecodeMessage, type Message, type MsgKindName } from '../codec/messages.ts';
import { frameBytesMax, macBytes, signatureBytes } from '../codec/limits.ts';
import { bytesEqual, principalKey, type KeyRing, type Principal } from '../crypto/provider.ts';

const magic = Buffer.from('BWK1');
const bulkMagic = Buffer.from('BWB1');

/** Which of a node pair's two connections a message rides (see the header). */
export type Channel = 'main' | 'bulk';

/** Message kinds sent on the bulk channel between nodes: state transfer and catch-up. */
export const bulkKinds: ReadonlySet<MsgKindName> = new Set<MsgKindName>(['catchUp', 'fetchCheckpoint', 'checkpointData']);

/** Key of a peer's connection on a channel ("n3", "n3/bulk", "c17"). */
function connKey(peer: Principal, channel: Channel): string {
  return channel === 'main' ? principalKey(peer) : `${principalKey(peer)}/bulk`;
}

interface DialState {
  backoffMs: number;
  timer: NodeJS.Timeout | undefined;
  conn: Conn | undefined;
  queue: Uint8Array[];
  queueBytes: number;
}
const handshakeFrameMax = 256;
const packetOverhead = 8 + macBytes;

/** Transport settings. */
export interface TransportOptions {
  /** This endpoint's identity and keys. */
  readonly keys: KeyRing;
  /** Where to listen (nodes only). */
  readonly listen?: { readonly host: string; readonly port: number };
  /** Addresses of the nodes this endpoint dials. */
  readonly dial: ReadonlyMap<number, { readonly host: string; readonly port: number }>;
  /** Whether a principal belongs to the cluster (has a key in the cluster file). */
  readonly known: (p: Principal) => boolean;
  /** A message arrived from an authenticated peer; `bytes` is its encoded size (the frame). */
  readonly onMessage: (from: Principal, msg: Message, bytes: number) => void;
  /** An input was rejected (reason, and the peer when known). */
  readonly onReject: (reason: string, peer: string | undefined) => void;
  /** A connection was established or lost. */
  readonly onPeer?: (peer: Principal, up: boolean) => void;
  readonly handshakeTimeoutMs?: number;
  readonly pendingMax?: number;
  readonly queueBytesMax?: number;
  readonly clientQueueBytesMax?: number;
}

interface Session {
  readonly peer: Principal;
  readonly sendKey: Uint8Array;
  readonly recvKey: Uint8Array;
  sendCounter: bigint;
  recvCounter: bigint;
}

/** One TCP connection and its state. */
class Conn {
  session: Session | undefined;
  private buf: Buffer = Buffer.alloc(0);
  /** Frames waiting for the next flush. */
  queue: Uint8Array[] = [];
  queueBytes = 0;
  private flushScheduled = false;
  closed = false;
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Handshake progress: dialer waits for CHALLENGE, listener for HELLO then PROOF. */
  stage: 'hello' | 'challenge' | 'proof' | 'open' = 'hello';
  nonceD: Uint8Array = new Uint8Array(0);
  nonceL: Uint8Array = new Uint8Array(0);
  claimed: Principal | undefined;
  /** The dialer's choice; a listener learns it from the HELLO's magic. */
  channel: Channel = 'main';

  constructor(
    readonly socket: Socket,
    readonly dialer: boolean,
    private readonly t: Transport,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.onData(chunk);
    });
    socket.on('error', () => {
      // Reported through 'close', which follows.
    });
    socket.on('close', () => {
      this.onClose();
    });
  }

  private awaitingDrain = false;

  /** Queues an encoded message; flushed once per event-loop turn. */
  enqueue(frame: Uint8Array, limit: number): void {
    if (this.closed) return;
    this.queue.push(frame);
    this.queueBytes += frame.length + 4;
    while (this.queueBytes > limit && this.queue.length > 1) {
      const old = this.queue.shift()!;
      this.queueBytes -= old.length + 4;
      this.t.reject('queue_full_dropped_oldest', this.peerName());
    }
    if (this.session !== undefined && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    const s = this.session;
    if (s === undefined || this.closed || this.queue.length === 0) return;
    // Respect socket backpressure: hold the queue while the kernel buffer is full.
    if (this.socket.writableNeedDrain) {
      // One waiter at a time: every enqueue while the buffer is full lands here again.
      if (!this.awaitingDrain) {
        this.awaitingDrain = true;
        this.socket.once('drain', () => {
          this.awaitingDrain = false;
          this.flush();
        });
      }
      return;
    }
    let frames = this.queue;
    let bytes = this.queueBytes;
    // Keep packets below the limit: take a prefix if the queue is very large.
    if (bytes > frameBytesMax) {
      let n = 0;
      bytes = 0;
      while (n < frames.length && bytes + frames[n]!.length + 4 <= frameBytesMax) bytes += frames[n++]!.length + 4;
      if (n === 0) {
        n = 1;
        bytes = frames[0]!.length + 4;
      }
      this.queue = frames.slice(n);
      this.queueBytes -= bytes;
      frames = frames.slice(0, n);
      setImmediate(() => {
        this.flush();
      });
    } else {
      this.queue = [];
      this.queueBytes = 0;
    }
    const packet = Buffer.allocUnsafe(4 + 8 + bytes + macBytes);
    packet.writeUInt32BE(8 + bytes + macBytes, 0);
    packet.writeBigUInt64BE(s.sendCounter, 4);
    s.sendCounter += 1n;
    let off = 12;
    for (const f of frames) {
      packet.writeUInt32BE(f.length, off);
      packet.set(f, off + 4);
      off += 4 + f.length;
    }
    const mac = this.t.keys.provider.mac(s.sendKey, packet.subarray(4, off));
    packet.set(mac, off);
    this.socket.write(packet);
    this.t.stats.packetsSent += 1;
    this.t.stats.framesSent += frames.length;
    this.t.stats.bytesSent += packet.length;
  }

  peerName(): string | undefined {
    const p = this.session?.peer ?? this.claimed;
    return p === undefined ? undefined : connKey(p, this.channel);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (!this.closed) {
      if (this.buf.length < 4) return;
      const len = this.buf.readUInt32BE(0);
      const max = this.stage === 'open' ? frameBytesMax + packetOverhead : handshakeFrameMax;
      if (len > max || (this.stage === 'open' && len < packetOverhead)) {
        // Decided from the 4-byte header alone: nothing of the claimed size is allocated.
        this.fail(this.stage === 'open' ? 'oversized_packet' : 'oversized_handshake_frame');
        return;
      }
      if (this.buf.length < 4 + len) return;
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      if (this.stage === 'open') this.onPacket(body);
      else this.t.onHandshakeFrame(this, body);
    }
  }

  private onPacket(body: Buffer): void {
    const s = this.session!;
    const counter = body.readBigUInt64BE(0);
    const framesEnd = body.length - macBytes;
    const mac = body.subarray(framesEnd);
    if (!bytesEqual(this.t.keys.provider.mac(s.recvKey, body.subarray(0, framesEnd)), mac)) {
      this.fail('bad_packet_mac');
      return;
    }
    if (counter !== s.recvCounter) {
      this.fail('packet_out_of_order');
      return;
    }
    s.recvCounter += 1n;
    let off = 8;
    while (off < framesEnd) {
      if (framesEnd - off < 4) {
        this.t.reject('bad_frame_length', principalKey(s.peer));
        return;
      }
      const len = body.readUInt32BE(off);
      if (len > framesEnd - off - 4) {
        this.t.reject('bad_frame_length', principalKey(s.peer));
        return;
      }
      const res = tryDecodeMessage(body.subarray(off + 4, off + 4 + len));
      off += 4 + len;
      if (!res.ok) {
        this.t.reject('undecodable_message', principalKey(s.peer));
        continue;
      }
      this.t.deliver(s.peer, res.value, len);
    }
  }

  /** Closes the connection, counting why. */
  fail(reason: string): void {
    this.t.reject(reason, this.peerName());
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.socket.destroy();
  }

  private onClose(): void {
    this.closed = true;
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.t.onConnClosed(this);
  }

  sendHandshake(b: Uint8Array): void {
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(b.length, 0);
    this.socket.write(Buffer.concat([head, b]));
  }
}

/** The TCP transport of one node or client. */
export class Transport {
  readonly keys: KeyRing;
  private server: Server | undefined;
  /** Authenticated connection per peer and channel (connKey). */
  private readonly conns = new Map<string, Conn>();
  /** Connections still in their handshake. */
  private readonly pending = new Set<Conn>();
  /**
   * Per node and channel (connKey): dial state (for the nodes this endpoint dials) and the
   * bounded queue of frames waiting for a connection (for every node).
   */
  private readonly dialers = new Map<string, DialState>();
  private stopped = false;
  /** Nodes disconnected for flooding, until when (performance.now()). */
  private readonly cutOffUntil = new Map<number, number>();
  /** Traffic counters. */
  readonly stats = { packetsSent: 0, framesSent: 0, bytesSent: 0 };
  private readonly handshakeTimeoutMs: number;
  private readonly pendingMax: number;
  private readonly queueBytesMax: number;
  private readonly clientQueueBytesMax: number;

  constructor(private readonly o: TransportOptions) {
    this.keys = o.keys;
    this.handshakeTimeoutMs = o.handshakeTimeoutMs ?? 5000;
    this.pendingMax = o.pendingMax ?? 256;
    this.queueBytesMax = o.queueBytesMax ?? 32 << 20;
    this.clientQueueBytesMax = o.clientQueueBytesMax ?? 4 << 20;
  }

  /** Starts listening (if configured) and dialing. Resolves once listening. */
  async start(): Promise<void> {
    const listen = this.o.listen;
    if (listen !== undefined) {
      this.server = createServer((socket) => {
        this.onAccept(socket);
      });
      this.server.maxConnections = this.pendingMax + 1024;
      await new Promise<void>((resolve, reject) => {
        this.server!.once('error', reject);
        this.server!.listen(listen.port, listen.host, () => {
          this.server!.off('error', reject);
          resolve();
        });
      });
    }
    for (const id of this.o.dial.keys()) {
      this.dial(id, 'main');
      if (this.keys.self.kind === 'node') this.dial(id, 'bulk');
    }
  }

  /** Stops listening and closes every connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const d of this.dialers.values()) if (d.timer !== undefined) clearTimeout(d.timer);
    for (const c of [...this.conns.values(), ...this.pending]) c.close();
    for (const d of this.dialers.values()) d.conn?.close();
    if (this.server !== undefined) await new Promise<void>((r) => this.server!.close(() => r()));
  }

  /** Sends one message to several peers (encoded once), state transfer on the bulk channel. */
  send(to: readonly Principal[], msg: Message): void {
    const bytes = encodeMessage(msg);
    const bulk = bulkKinds.has(msg.kind) && this.keys.self.kind === 'node';
    for (const p of to) this.sendEncoded(p, bytes, bulk && p.kind === 'node' ? 'bulk' : 'main');
  }

  /** Sends pre-encoded message bytes on a channel. Unknown or unreachable clients: dropped. */
  sendEncoded(to: Principal, bytes: Uint8Array, channel: Channel = 'main'): void {
    const k = connKey(to, channel);
    const conn = this.conns.get(k);
    const limit = to.kind === 'client' ? this.clientQueueBytesMax : this.queueBytesMax;
    if (conn !== undefined && !conn.closed) {
      conn.enqueue(bytes, limit);
      return;
    }
    if (to.kind === 'node') {
      // Not connected yet: hold it (bounded) for the dialer, or for the peer dialing us.
      const d = this.dialerState(to.id, channel);
      d.queue.push(bytes);
      d.queueBytes += bytes.length + 4;
      while (d.queueBytes > limit && d.queue.length > 1) {
        d.queueBytes -= d.queue.shift()!.length + 4;
        this.reject('queue_full_dropped_oldest', k);
      }
    }
  }

  /** Queue depth (bytes) per connected or awaited peer and channel ("n1", "n1/bulk", "c4"). */
  queueDepths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, c] of this.conns) out.set(k, c.queueBytes);
    for (const [k, d] of this.dialers) if (!this.conns.has(k)) out.set(k, d.queueBytes);
    return out;
  }

  /** Connected peers (their main connections). */
  connectedPeers(): string[] {
    return [...this.conns.entries()].filter(([, c]) => c.channel === 'main').map(([k]) => k);
  }

  /** Peers whose bulk connection is up ("n1"...). */
  bulkPeers(): string[] {
    return [...this.conns.entries()].filter(([, c]) => c.channel === 'bulk').map(([k]) => k.slice(0, -'/bulk'.length));
  }

  /** Number of connections still in their handshake. */
  get pendingCount(): number {
    return this.pending.size;
  }

  reject(reason: string, peer: string | undefined): void {
    this.o.onReject(reason, peer);
  }

  deliver(from: Principal, msg: Message, bytes: number): void {
    this.o.onMessage(from, msg, bytes);
  }

  /**
   * Disconnects node `id` for `ms` (a flooding replica, inbox.ts): closes its connection and
   * any handshake in progress, refuses its handshakes (`handshake_peer_cut_off`) and does not
   * dial it until the time has passed; counted as `peer_flood_disconnected`. Frames for it wait
   * in its bounded dial queue meanwhile.
   */
  disconnectFor(id: number, ms: number): void {
    const until = performance.now() + ms;
    this.cutOffUntil.set(id, until);
    const peer: Principal = { kind: 'node', id };
    this.reject('peer_flood_disconnected', principalKey(peer));
    for (const c of this.pending) if (c.claimed?.kind === 'node' && c.claimed.id === id) c.close();
    for (const channel of ['main', 'bulk'] as const) {
      this.conns.get(connKey(peer, channel))?.close();
      const d = this.dialers.get(connKey(peer, channel));
      if (d !== undefined && this.o.dial.has(id)) {
        d.conn?.close();
        if (d.timer !== undefined) clearTimeout(d.timer);
        d.timer = setTimeout(() => {
          this.dial(id, channel);
        }, ms);
      }
    }
  }

  /** Whether node `id` is cut off now (see disconnectFor). */
  isCutOff(id: number): boolean {
    const until = this.cutOffUntil.get(id);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.cutOffUntil.delete(id);
    return false;
  }

  private dialerState(id: number, channel: Channel): DialState {
    const k = connKey({ kind: 'node', id }, channel);
    let d = this.dialers.get(k);
    if (d === undefined) {
      d = { backoffMs: 100, timer: undefined, conn: undefined, queue: [], queueBytes: 0 };
      this.dialers.set(k, d);
    }
    return d;
  }

  private dial(id: number, channel: Channel): void {
    if (this.stopped) return;
    const addr = this.o.dial.get(id);
    if (addr === undefined) return;
    const d = this.dialerState(id, channel);
    d.timer = undefined;
    if (this.isCutOff(id)) {
      d.timer = setTimeout(() => {
        this.dial(id, channel);
      }, this.cutOffUntil.get(id)! - performance.now());
      return;
    }
    const socket = connect({ host: addr.host, port: addr.port });
    const conn = new Conn(socket, true, this);
    d.conn = conn;
    conn.claimed = { kind: 'node', id };
    conn.channel = channel;
    socket.once('connect', () => {
      conn.nonceD = randomBytes(32);
      const hello = Buffer.allocUnsafe(4 + 1 + 4 + 4 + 32);
      (channel === 'main' ? magic : bulkMagic).copy(hello, 0);
      const self = this.keys.self;
      hello.writeUInt8(self.kind === 'node' ? 1 : 2, 4);
      hello.writeUInt32BE(self.id, 5);
      hello.writeUInt32BE(id, 9);
      hello.set(conn.nonceD, 13);
      conn.stage = 'challenge';
      conn.sendHandshake(hello);
    });
    this.armHandshakeTimer(conn);
  }

  private armHandshakeTimer(conn: Conn): void {
    conn.handshakeTimer = setTimeout(() => {
      if (conn.stage !== 'open') conn.fail('handshake_timeout');
    }, this.handshakeTimeoutMs);
  }

  private onAccept(socket: Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    if (this.pending.size >= this.pendingMax) {
      this.reject('too_many_pending_connections', undefined);
      socket.destroy();
      return;
    }
    const conn = new Conn(socket, false, this);
    this.pending.add(conn);
    this.armHandshakeTimer(conn);
  }

  private transcript(kind: number, id: number, target: number, channel: Channel, nonceD: Uint8Array, nonceL: Uint8Array): Buffer {
    const b = Buffer.allocUnsafe(1 + 4 + 4 + 1 + 32 + 32);
    b.writeUInt8(kind, 0);
    b.writeUInt32BE(id, 1);
    b.writeUInt32BE(target, 5);
    b.writeUInt8(channel === 'main' ? 0 : 1, 9);
    b.set(nonceD, 10);
    b.set(nonceL, 42);
    return b;
  }

  /** Handles one handshake frame on `conn`. */
  onHandshakeFrame(conn: Conn, body: Buffer): void {
    const self = this.keys.self;
    if (!conn.dialer && conn.stage === 'hello') {
      const head = body.subarray(0, 4);
      if (body.length !== 45 || (!head.equals(magic) && !head.equals(bulkMagic))) return conn.fail('handshake_bad_hello');
      conn.channel = head.equals(magic) ? 'main' : 'bulk';
      const kind = body.readUInt8(4);
      const id = body.readUInt32BE(5);
      const target = body.readUInt32BE(9);
      if (kind !== 1 && kind !== 2) return conn.fail('handshake_bad_hello');
      if (kind === 2 && conn.channel === 'bulk') return conn.fail('handshake_bad_hello');
      const peer: Principal = kind === 1 ? { kind: 'node', id } : { kind: 'client', id };
      if (self.kind !== 'node' || target !== self.id) return conn.fail('handshake_wrong_target');
      if (!this.o.known(peer) || (peer.kind === 'node' && peer.id === self.id)) return conn.fail('handshake_unknown_peer');
      if (peer.kind === 'node' && this.isCutOff(peer.id)) return conn.fail('handshake_peer_cut_off');
      conn.claimed = peer;
      conn.nonceD = new Uint8Array(body.subarray(13, 45));
      conn.nonceL = randomBytes(32);
      const t = this.transcript(kind, id, target, conn.channel, conn.nonceD, conn.nonceL);
      const sig = this.keys.sign(Buffer.concat([Buffer.from('bulwark-hs-v1/L'), t]));
      conn.stage = 'proof';
      conn.sendHandshake(Buffer.concat([conn.nonceL, sig]));
      return;
    }
    if (!conn.dialer && conn.stage === 'proof') {
      const peer = conn.claimed!;
      if (body.length !== signatureBytes) return conn.fail('handshake_bad_proof');
      const t = this.transcript(peer.kind === 'node' ? 1 : 2, peer.id, self.id, conn.channel, conn.nonceD, conn.nonceL);
      if (!this.keys.verifyFrom(peer, Buffer.concat([Buffer.from('bulwark-hs-v1/D'), t]), body)) return conn.fail('handshake_bad_signature');
      this.open(conn, peer, false);
      return;
    }
    if (conn.dialer && conn.stage === 'challenge') {
      const peer = conn.claimed!;
      if (body.length !== 32 + signatureBytes) return conn.fail('handshake_bad_challenge');
      conn.nonceL = new Uint8Array(body.subarray(0, 32));
      const kind = self.kind === 'node' ? 1 : 2;
      const t = this.transcript(kind, self.id, peer.id, conn.channel, conn.nonceD, conn.nonceL);
      if (!this.keys.verifyFrom(peer, Buffer.concat([Buffer.from('bulwark-hs-v1/L'), t]), body.subarray(32))) return conn.fail('handshake_bad_signature');
      conn.sendHandshake(this.keys.sign(Buffer.concat([Buffer.from('bulwark-hs-v1/D'), t])));
      this.open(conn, peer, true);
      return;
    }
    conn.fail('handshake_unexpected_frame');
  }

  private sessionKey(peer: Principal, dir: 'd2l' | 'l2d', nonceD: Uint8Array, nonceL: Uint8Array): Uint8Array {
    const pair = this.keys.macKeyFor(peer);
    return new Uint8Array(createHash('sha256').update(`bulwark-session-v1|${dir}`).update(pair).update(nonceD).update(nonceL).digest());
  }

  private open(conn: Conn, peer: Principal, dialer: boolean): void {
    if (peer.kind === 'node' && this.isCutOff(peer.id)) {
      conn.fail('handshake_peer_cut_off');
      return;
    }
    const d2l = this.sessionKey(peer, 'd2l', conn.nonceD, conn.nonceL);
    const l2d = this.sessionKey(peer, 'l2d', conn.nonceD, conn.nonceL);
    conn.session = { peer, sendKey: dialer ? d2l : l2d, recvKey: dialer ? l2d : d2l, sendCounter: 0n, recvCounter: 0n };
    conn.stage = 'open';
    if (conn.handshakeTimer !== undefined) clearTimeout(conn.handshakeTimer);
    this.pending.delete(conn);
    const k = connKey(peer, conn.channel);
    const old = this.conns.get(k);
    if (old !== undefined && old !== conn) old.close();
    this.conns.set(k, conn);
    if (peer.kind === 'node') {
      const d = this.dialerState(peer.id, conn.channel);
      d.backoffMs = 100;
      const held = d.queue;
      d.queue = [];
      d.queueBytes = 0;
      for (const f of held) conn.enqueue(f, this.queueBytesMax);
    }
    if (conn.queue.length > 0) conn.flush();
    if (conn.channel === 'main') this.o.onPeer?.(peer, true);
  }

  onConnClosed(conn: Conn): void {
    this.pending.delete(conn);
    const peer = conn.session?.peer;
    if (peer !== undefined && this.conns.get(connKey(peer, conn.channel)) === conn) {
      this.conns.delete(connKey(peer, conn.channel));
      if (conn.channel === 'main') this.o.onPeer?.(peer, false);
    }
    if (conn.dialer && !this.stopped) {
      const id = conn.claimed?.id;
      if (id === undefined) return;
      const d = this.dialerState(id, conn.channel);
      if (d.conn !== conn) return;
      d.conn = undefined;
      // disconnectFor already scheduled the dial for the end of the cut-off.
      if (this.isCutOff(id)) return;
      const wait = d.backoffMs;
      d.backoffMs = Math.min(d.backoffMs * 2, 2000);
      d.timer = setTimeout(() => {
        this.dial(id, conn.channel);
      }, wait);
    }
  }
}
