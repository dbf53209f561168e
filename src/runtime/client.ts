/**
 * A bulwark client over TCP: the client stage machine (stages/client/client.ts) driven by real
 * sockets and timers. It implements `Invoker`, so `KvClient` (or any typed API) runs on it.
 *
 * Request-id reservations are durable in `stateDir` (a lock file keeps two processes from
 * sharing one client identity). Without a state directory the client starts its request ids at
 * the current time in microseconds, which keeps them increasing across restarts as long as the
 * clock does not go back.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { deriveCluster, type Cluster } from '../core/config.ts';
import { BulwarkError } from '../core/errors.ts';
import { KeyRing, clientPrincipal, type CryptoProvider } from '../crypto/provider.ts';
import { DerivedKeys } from '../crypto/pairing.ts';
import { ClientCore, type ClientEvent } from '../stages/client/client.ts';
import type { Invoker } from '../services/kv/client.ts';
import { u64Bytes } from '../stages/common.ts';
import { EffectRunner, MemoryWriter, type DurableWriter } from './effects.ts';
import { FileStore } from './file-store.ts';
import { Transport } from './transport.ts';
import { monotonicClock } from './random.ts';
import { publicKeysOf } from './driver.ts';
import type { ClusterFile } from './cluster-file.ts';

/** Options of a TCP client. */
export interface TcpClientOptions {
  readonly cluster: ClusterFile;
  readonly clientId: number;
  readonly privateKey: Uint8Array;
  readonly crypto: CryptoProvider;
  /** Durable directory for request-id reservations; omitted: ids from the clock. */
  readonly stateDir?: string;
  /** Ticker period in ms (default: the cluster's tickMs). */
  readonly tickMs?: number;
}

/** The client identity is in use by another live process. */
export class ClientBusyError extends BulwarkError {
  static override readonly name = 'ClientBusyError';
  constructor(id: number, pid: number) {
    super('client_busy', `client ${id} is in use by process ${pid}`);
  }
}

/** One ticker for every client of the process. */
const clients = new Set<TcpClient>();
let ticker: NodeJS.Timeout | undefined;
function register(c: TcpClient, tickMs: number): void {
  clients.add(c);
  ticker ??= setInterval(() => {
    for (const x of clients) x.tick();
  }, tickMs);
}
function unregister(c: TcpClient): void {
  clients.delete(c);
  if (clients.size === 0 && ticker !== undefined) {
    clearInterval(ticker);
    ticker = undefined;
  }
}

/** Whether a process is alive (signal 0 reaches it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    // ESRCH: no such process.
    return false;
  }
}

/**
 * Resolves once on SIGINT or SIGTERM, or when the process named by BULWARK_EXIT_WITH_PID is
 * gone (test harnesses set it so a node or gateway never outlives a killed test run).
 */
export function untilStopRequested(): Promise<void> {
  return new Promise((resolve) => {
    const owner = Number(process.env.BULWARK_EXIT_WITH_PID ?? 0);
    const watch = owner > 0 ? setInterval(() => {
      if (!alive(owner)) stop();
    }, 1000).unref() : undefined;
    function stop(): void {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (watch !== undefined) clearInterval(watch);
      resolve();
    }
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** Takes the lock of a client's state directory, breaking a stale one. */
function lockStateDir(dir: string, id: number): () => void {
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        rmSync(lock, { force: true });
      };
    } catch {
      // The lock exists: it is ours to break only if its process is gone.
      let pid = 0;
      try {
        pid = Number(readFileSync(lock, 'utf8'));
      } catch {
        pid = 0;
      }
      if (pid > 0 && alive(pid)) throw new ClientBusyError(id, pid);
      rmSync(lock, { force: true });
    }
  }
  throw new ClientBusyError(id, -1);
}

/** A connected client. */
export class TcpClient implements Invoker {
  readonly cluster: Cluster;
  private readonly core: ClientCore;
  private readonly transport: Transport;
  private readonly effects: EffectRunner;
  private readonly now = monotonicClock();
  private readonly calls = new Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void }>();
  private nextCall = 1;
  private closed = false;

  private constructor(
    readonly id: number,
    o: TcpClientOptions,
    store: DurableWriter & { map: ReadonlyMap<string, Uint8Array> },
    private readonly unlock: () => void,
    private readonly closeStore: () => Promise<void>,
  ) {
    this.cluster = deriveCluster(o.cluster.protocol);
    const self = clientPrincipal(o.clientId);
    const keys = new KeyRing(self, o.crypto, new DerivedKeys(self, o.privateKey, publicKeysOf(o.cluster)));
    this.core = new ClientCore(this.cluster, o.clientId, keys, store.map);
    this.effects = new EffectRunner(
      store,
      (e) => {
        if (e.kind === 'send') this.transport.send(e.to, e.msg);
        else if (e.kind === 'result') {
          const call = this.calls.get(e.callId);
          this.calls.delete(e.callId);
          if (e.refused === undefined) call?.resolve(e.result);
          else {
            const why = e.refused === 'op_too_large' ? `operation larger than requestBytesMax (${this.cluster.config.requestBytesMax} bytes)` : 'too many calls queued on this client';
            call?.reject(new BulwarkError(`client_${e.refused}`, `call refused: ${why}`));
          }
        }
      },
      (err) => {
        for (const c of this.calls.values()) c.reject(err instanceof Error ? err : new Error(String(err)));
        this.calls.clear();
      },
    );
    const dial = new Map<number, { host: string; port: number }>();
    const needed = new Set([...this.cluster.auth.nodes, ...this.cluster.exec.nodes]);
    for (const n of o.cluster.nodes) if (needed.has(n.id)) dial.set(n.id, { host: n.host, port: n.port });
    const knownNodes = new Set(o.cluster.nodes.map((n) => n.id));
    this.transport = new Transport({
      keys,
      dial,
      known: (p) => p.kind === 'node' && knownNodes.has(p.id),
      onMessage: (from, msg) => {
        this.step({ kind: 'message', from, msg, now: this.now() });
      },
      onReject: () => undefined,
    });
  }

  /** Connects a client (dialing happens in the background; requests wait in queues). */
  static async connect(o: TcpClientOptions): Promise<TcpClient> {
    let store: DurableWriter & { map: ReadonlyMap<string, Uint8Array> };
    let unlock = (): void => undefined;
    let closeStore = (): Promise<void> => Promise.resolve();
    if (o.stateDir !== undefined) {
      unlock = lockStateDir(o.stateDir, o.clientId);
      // A client writes a few reservations a minute: no segment preallocation, no zero fill.
      const fs = FileStore.open(o.stateDir, { preallocate: false });
      store = fs;
      closeStore = () => fs.close();
    } else {
      const mem = new MemoryWriter();
      mem.map.set('c/reserved', u64Bytes(Date.now() * 1000));
      store = mem;
    }
    const c = new TcpClient(o.clientId, o, store, unlock, closeStore);
    await c.transport.start();
    register(c, o.tickMs ?? o.cluster.runtime.tickMs);
    return c;
  }

  /** Runs one operation; resolves with the reply agreed by r+1 executors (or all, for reads). */
  invoke(op: Uint8Array, readOnly: boolean): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new BulwarkError('client_closed', 'client is closed'));
    const callId = this.nextCall++;
    return new Promise((resolve, reject) => {
      this.calls.set(callId, { resolve, reject });
      this.step({ kind: 'invoke', callId, op, readOnly, now: this.now() });
    });
  }

  /** Called by the shared ticker. */
  tick(): void {
    if (!this.core.idle) this.step({ kind: 'tick', now: this.now() });
  }

  private step(ev: ClientEvent): void {
    if (this.closed) return;
    this.effects.run(this.core.step(ev));
  }

  /** Connected nodes. */
  connectedNodes(): string[] {
    return this.transport.connectedPeers();
  }

  /** Closes connections; outstanding calls are rejected. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    unregister(this);
    for (const c of this.calls.values()) c.reject(new BulwarkError('client_closed', 'client closed with the operation outstanding'));
    this.calls.clear();
    await this.transport.stop();
    await this.closeStore();
    this.unlock();
  }
}
