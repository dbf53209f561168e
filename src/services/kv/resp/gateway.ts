/**
 * The RESP gateway: a TCP server speaking the Redis protocol to any number of connections, in
 * front of ONE bulwark client (an `Invoker`) of the replicated KV store.
 *
 * A bulwark client has one request in flight at a time, so the gateway multiplexes: commands
 * read from every connection while a request is in flight wait in one queue, and the next request
 * carries all of them (up to the cluster's `requestBytesMax`) as a single `multi`, which the store
 * runs atomically, in order, returning one output per command. Every command that reaches the
 * cluster is therefore ordered by the protocol, and the order of commands within a request is
 * the order in which the gateway read them.
 *
 * Invariants:
 * - per connection, replies leave in command order: each command takes a slot in its
 *   connection's FIFO when it is read, and slots are written from the head only once answered.
 *   Local commands (PING, HELLO, ...) are answered at once but still wait behind earlier slots;
 * - at most one request is in flight; the queue holds at most `pendingCommandsMax` commands and
 *   `pendingBytesMax` encoded bytes, and a connection holds at most `connectionSlotsMax`
 *   unanswered commands and `outputBytesMax` unsent reply bytes. When a bound is reached the
 *   gateway stops reading (sockets paused, no more commands parsed) instead of dropping anything,
 *   and resumes when the queue or the connection drains, stalled connections taking turns to go
 *   first so that one busy connection cannot starve the others;
 * - bad input hurts only its connection: a protocol error is answered with Redis' `-ERR Protocol
 *   error: ...` after the replies the connection is owed, then the connection is closed.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { BulwarkError } from '../../../core/errors.ts';
import { opBytesMax } from '../../../codec/limits.ts';
import type { Invoker } from '../client.ts';
import type { KvCommandOutput } from '../model.ts';
import { decodeKvReply, encodeKvRequest, itemsMax, joinKvMulti, multiReplyOverheadBytes } from '../ops.ts';
import { translate, type ServerFacts, type Session } from './commands.ts';
import { RespParser, RespProtocolError, type RespLimits } from './parser.ts';
import { error, replyBytes, type RespProtocol, type RespValue } from './reply.ts';

/** Options of a gateway. */
export interface RespGatewayOptions {
  /** The one client of the cluster that every connection shares. */
  readonly invoker: Invoker;
  /** The cluster's `requestBytesMax`: the largest request (one multi) the gateway sends. */
  readonly requestBytesMax: number;
  /** Parser limits (defaults: `defaultRespLimits`). */
  readonly limits?: Partial<RespLimits>;
  /** Most commands waiting for the next request (default 16384). */
  readonly pendingCommandsMax?: number;
  /** Most encoded bytes waiting for the next request (default 32 MiB). */
  readonly pendingBytesMax?: number;
  /** Most unanswered commands of one connection (default 4096). */
  readonly connectionSlotsMax?: number;
  /** Most reply bytes buffered for one connection before it stops being read (default 8 MiB). */
  readonly outputBytesMax?: number;
  /** Most connections at once (default 4096). */
  readonly connectionsMax?: number;
  /** Version reported by HELLO and INFO. */
  readonly version?: string;
  /** Receives one line per notable event (listening, protocol errors, cluster failures). */
  readonly log?: (line: string) => void;
}

/** Parser limits: bulks up to the codec's op size limit, inline lines up to 64 KiB (as Redis). */
export const defaultRespLimits: RespLimits = {
  bulkBytesMax: opBytesMax,
  argumentsMax: 1024 * 1024,
  lineBytesMax: 64 * 1024,
  commandBytesMax: opBytesMax,
};

/** Counters of a gateway. */
export interface RespGatewayStats {
  connections: number;
  connectionsTotal: number;
  commands: number;
  /** Requests sent to the cluster (each a multi of one or more commands). */
  requests: number;
  /** Commands carried by those requests. */
  clusterCommands: number;
  /** Connections closed for malformed or oversized input. */
  protocolErrors: number;
  /** Requests that failed as a whole (cluster client closed, unreadable reply). */
  requestFailures: number;
  /** Times a connection stopped being read because a bound was reached. */
  stalls: number;
}

/** The gateway could not start (address in use, bad address). */
export class RespGatewayError extends BulwarkError {
  static override readonly name = 'RespGatewayError';
  constructor(message: string, cause?: unknown) {
    super('resp_gateway', message, { cause });
  }
}

/** One command's place in its connection's reply order. */
interface Slot {
  /** The encoded reply once known. */
  bytes: Buffer | undefined;
  /** Close the connection after writing this reply. */
  close: boolean;
}

/** A command waiting for (or carried by) a request. */
interface Pending {
  readonly conn: Connection;
  readonly slot: Slot;
  readonly encoded: Uint8Array;
  readonly proto: RespProtocol;
  readonly answer: (out: KvCommandOutput) => RespValue;
}

interface Connection {
  readonly socket: Socket;
  readonly parser: RespParser;
  readonly session: Session;
  /** Invariant: replies are written from the head only; a slot without bytes blocks the rest. */
  readonly slots: Slot[];
  /** No more commands are read (QUIT or protocol error); the socket ends after the last slot. */
  closing: boolean;
  closed: boolean;
  stalled: boolean;
}

/** A RESP server in front of one bulwark client. */
export class RespGateway {
  /** Counters (read them, do not change them). */
  readonly stats: RespGatewayStats = { connections: 0, connectionsTotal: 0, commands: 0, requests: 0, clusterCommands: 0, protocolErrors: 0, requestFailures: 0, stalls: 0 };
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private readonly stalled = new Set<Connection>();
  private queue: Pending[] = [];
  private queueBytes = 0;
  private inFlight = false;
  private nextId = 1;
  /** Rotates which stalled connection resumes first. */
  private resumeTurn = 0;
  private readonly limits: RespLimits;
  private readonly facts: ServerFacts;
  private readonly pendingCommandsMax: number;
  private readonly pendingBytesMax: number;
  private readonly connectionSlotsMax: number;
  private readonly outputBytesMax: number;
  private readonly requestBytesMax: number;
  private readonly log: (line: string) => void;

  constructor(private readonly o: RespGatewayOptions) {
    this.limits = { ...defaultRespLimits, ...o.limits };
    this.pendingCommandsMax = o.pendingCommandsMax ?? 16_384;
    this.pendingBytesMax = o.pendingBytesMax ?? 32 << 20;
    this.connectionSlotsMax = o.connectionSlotsMax ?? 4096;
    this.outputBytesMax = o.outputBytesMax ?? 8 << 20;
    this.requestBytesMax = Math.min(o.requestBytesMax, opBytesMax);
    if (this.requestBytesMax <= multiReplyOverheadBytes) throw new RangeError(`requestBytesMax ${o.requestBytesMax} leaves no room for a command`);
    this.log = o.log ?? (() => undefined);
    this.facts = {
      version: o.version ?? '0.1.0',
      stats: () => ({ ...this.stats, queued_commands: this.queue.length, queued_bytes: this.queueBytes }),
    };
    this.server = createServer((socket) => {
      this.accept(socket);
    });
    this.server.maxConnections = o.connectionsMax ?? 4096;
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => {
        reject(new RespGatewayError(`cannot listen on ${host}:${port}: ${e.message}`, e));
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const a = this.server.address() as AddressInfo;
        this.log(`resp: listening on ${a.address}:${a.port}`);
        resolve(a);
      });
    });
  }

  /** Stops listening and closes every connection (replies still owed are dropped). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
    for (const c of this.connections) c.socket.destroy();
    await closed;
  }

  // -------------------------------------------------------------------------------------
  // Connections

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      parser: new RespParser(this.limits),
      session: { proto: 2, name: null, id: this.nextId++ },
      slots: [],
      closing: false,
      closed: false,
      stalled: false,
    };
    this.connections.add(conn);
    this.stats.connections++;
    this.stats.connectionsTotal++;
    socket.on('data', (chunk: Buffer) => {
      conn.parser.push(chunk);
      this.pump(conn);
      this.send();
    });
    socket.on('drain', () => {
      this.resumeStalled();
    });
    socket.on('error', () => {
      // A reset or broken pipe ends this connection only; 'close' follows and cleans up.
    });
    socket.on('close', () => {
      conn.closed = true;
      this.connections.delete(conn);
      this.stalled.delete(conn);
      this.stats.connections--;
    });
  }

  /** True when the queue cannot take more commands. */
  private queueFull(): boolean {
    return this.queue.length >= this.pendingCommandsMax || this.queueBytes >= this.pendingBytesMax;
  }

  /** Reads and handles the connection's complete commands until none is left or a bound is hit. */
  private pump(conn: Connection): void {
    const blocked = (): boolean => this.queueFull() || conn.slots.length >= this.connectionSlotsMax || conn.socket.writableLength > this.outputBytesMax;
    while (!conn.closing && !conn.closed) {
      // Answered slots at the head free room (a pipeline of local commands needs no cluster reply).
      if (blocked()) this.flush(conn);
      if (blocked()) {
        if (!conn.stalled) {
          conn.stalled = true;
          this.stalled.add(conn);
          this.stats.stalls++;
          conn.socket.pause();
        }
        return;
      }
      let args: Buffer[] | undefined;
      try {
        args = conn.parser.next();
      } catch (e) {
        if (!(e instanceof RespProtocolError)) throw e;
        this.stats.protocolErrors++;
        this.log(`resp: connection ${conn.session.id} closed: ${e.message}`);
        conn.slots.push({ bytes: replyBytes(error(`ERR ${e.message}`), conn.session.proto), close: true });
        conn.closing = true;
        conn.socket.pause();
        break;
      }
      if (args === undefined) break;
      this.handle(conn, args);
    }
    this.flush(conn);
  }

  /** Connections that stopped being read get another chance (after any queue or socket change). */
  private resumeStalled(): void {
    const waiting = [...this.stalled];
    this.stalled.clear();
    // Round robin: a different connection goes first each time, or the first one to stall would
    // refill the queue on every round and starve the others.
    const first = waiting.length === 0 ? 0 : this.resumeTurn++ % waiting.length;
    for (let i = 0; i < waiting.length; i++) {
      const conn = waiting[(first + i) % waiting.length]!;
      conn.stalled = false;
      conn.socket.resume();
      this.pump(conn);
    }
    this.send();
  }

  private handle(conn: Connection, args: Buffer[]): void {
    this.stats.commands++;
    const slot: Slot = { bytes: undefined, close: false };
    conn.slots.push(slot);
    let action: ReturnType<typeof translate>;
    let encoded: Uint8Array | undefined;
    try {
      action = translate(args, conn.session, this.facts);
      if (action.kind === 'cluster') encoded = encodeKvRequest(action.command);
    } catch (e) {
      // translate checks every limit first, so this is a gateway bug: answer it, keep serving.
      this.log(`resp: internal error on a command of connection ${conn.session.id}: ${String(e)}`);
      slot.bytes = replyBytes(error('ERR internal error in the gateway'), conn.session.proto);
      return;
    }
    // Encoded with the protocol in force after the command (HELLO 3 answers in RESP3).
    const proto = conn.session.proto;
    if (action.kind === 'local') {
      slot.bytes = replyBytes(action.reply, proto);
      if (action.close === true) {
        slot.close = true;
        conn.closing = true;
      }
      return;
    }
    // Set in the try above for every cluster action.
    const request = encoded!;
    if (request.length + multiReplyOverheadBytes > this.requestBytesMax) {
      slot.bytes = replyBytes(error(`ERR command too large for the cluster: ${request.length} bytes encoded, requestBytesMax is ${this.requestBytesMax}`), proto);
      return;
    }
    this.queue.push({ conn, slot, encoded: request, proto, answer: action.answer });
    this.queueBytes += request.length;
  }

  /** Writes the answered replies at the head of the connection's FIFO. */
  private flush(conn: Connection): void {
    if (conn.closed) return;
    const out: Buffer[] = [];
    let close = false;
    while (conn.slots.length > 0 && conn.slots[0]!.bytes !== undefined) {
      const slot = conn.slots.shift()!;
      out.push(slot.bytes!);
      if (slot.close) {
        close = true;
        break;
      }
    }
    if (out.length > 0) conn.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (close) {
      conn.slots.length = 0;
      conn.socket.end();
    }
  }

  // -------------------------------------------------------------------------------------
  // Requests

  /** Sends the queued commands as one multi when no request is in flight. */
  private send(): void {
    if (this.inFlight || this.queue.length === 0) return;
    let bytes = multiReplyOverheadBytes;
    let n = 0;
    while (n < this.queue.length && n < itemsMax && bytes + this.queue[n]!.encoded.length <= this.requestBytesMax) bytes += this.queue[n++]!.encoded.length;
    const batch = this.queue.slice(0, n);
    this.queue = this.queue.slice(n);
    this.queueBytes -= bytes - multiReplyOverheadBytes;
    this.inFlight = true;
    this.stats.requests++;
    this.stats.clusterCommands += batch.length;
    const request = joinKvMulti(batch.map((p) => p.encoded));
    this.o.invoker.invoke(request, false).then(
      (reply) => {
        this.deliver(batch, reply);
      },
      (e: unknown) => {
        this.fail(batch, `ERR the cluster client failed: ${e instanceof Error ? e.message : String(e)}`);
      },
    ).finally(() => {
      this.inFlight = false;
      this.resumeStalled();
      this.send();
    });
    // Room was made in the queue: connections waiting on it may read again.
    if (this.stalled.size > 0) queueMicrotask(() => {
      this.resumeStalled();
    });
  }

  private deliver(batch: readonly Pending[], reply: Uint8Array): void {
    const decoded = decodeKvReply(reply);
    if (decoded?.kind !== 'multi' || decoded.outputs.length !== batch.length) {
      this.fail(batch, 'ERR the cluster sent a reply the gateway cannot read');
      return;
    }
    const touched = new Set<Connection>();
    batch.forEach((p, i) => {
      p.slot.bytes = replyBytes(p.answer(decoded.outputs[i]!), p.proto);
      touched.add(p.conn);
    });
    for (const c of touched) this.flush(c);
  }

  private fail(batch: readonly Pending[], message: string): void {
    this.stats.requestFailures++;
    this.log(`resp: a request of ${batch.length} commands failed: ${message}`);
    const touched = new Set<Connection>();
    for (const p of batch) {
      p.slot.bytes = replyBytes(error(message), p.proto);
      touched.add(p.conn);
    }
    for (const c of touched) this.flush(c);
  }
}
