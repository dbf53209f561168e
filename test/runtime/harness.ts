/**
 * Process-level test harness: a real cluster of node processes on loopback (or on the given
 * hosts), real TCP clients recording a KV history, and helpers to signal and inspect nodes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterPaths, type ClusterFile, type InitOptions } from '../../src/runtime/cluster-file.ts';
import { downCommand, fetchStatus, initLoopbackCluster, pidFile, spawnNode, waitServing } from '../../src/cli/cluster.ts';
import { connectClient } from '../../src/cli/kv.ts';
import type { TcpClient } from '../../src/runtime/client.ts';
import type { NodeStatus } from '../../src/runtime/driver.ts';
import { encodeKvOp, decodeKvOutput } from '../../src/services/kv/ops.ts';
import type { KvOp } from '../../src/services/kv/model.ts';
import type { HistoryOp } from '../../src/sim/checkers/linearizability.ts';

/** The last lines of a log file (for failure messages). */
function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-8).join('\n');
  } catch {
    // No log: the node never started.
    return '(no log)';
  }
}

/** Nodes started by tests exit when the test process is gone (see nodeCommand). */
const ownerEnv = { BULWARK_EXIT_WITH_PID: String(process.pid) };

/** A running test cluster. */
export class ProcessCluster {
  readonly dir: string;
  readonly cf: ClusterFile;
  private constructor(dir: string, cf: ClusterFile) {
    this.dir = dir;
    this.cf = cf;
  }

  /** Initialises and starts a cluster; ports are randomised to avoid collisions. */
  static async start(o: Partial<InitOptions> & { u: number; r: number }): Promise<ProcessCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-it-'));
    // Ports the OS says are free right now (tests run in parallel; fixed ranges collide).
    const cf = await initLoopbackCluster({ dir, clients: 24, ...o });
    for (const n of cf.nodes) spawnNode(dir, n.id, ownerEnv);
    try {
      await waitServing(cf, cf.nodes.map((n) => n.id), 60_000);
    } catch (e) {
      const logs = cf.nodes.map((n) => `--- node ${n.id}\n${tail(join(clusterPaths(dir).logs, `node-${n.id}.log`))}`).join('\n');
      throw new Error(`${e instanceof Error ? e.message : String(e)}\n${logs}`);
    }
    return new ProcessCluster(dir, cf);
  }

  pid(id: number): number {
    return Number(readFileSync(pidFile(this.dir, id), 'utf8'));
  }

  signal(id: number, sig: NodeJS.Signals): void {
    process.kill(this.pid(id), sig);
  }

  restart(id: number): void {
    spawnNode(this.dir, id, ownerEnv);
  }

  async waitServing(ids: readonly number[]): Promise<void> {
    await waitServing(this.cf, ids, 60_000);
  }

  status(id: number, digest = false): Promise<NodeStatus | undefined> {
    return fetchStatus(this.cf, id, digest, 2000);
  }

  async statuses(digest = false): Promise<(NodeStatus | undefined)[]> {
    return Promise.all(this.cf.nodes.map((n) => this.status(n.id, digest)));
  }

  client(): Promise<TcpClient> {
    return connectClient({ dir: this.dir });
  }

  async stop(): Promise<void> {
    for (const n of this.cf.nodes) {
      try {
        process.kill(this.pid(n.id), 'SIGCONT');
      } catch {
        // Already gone.
      }
    }
    await downCommand({ dir: this.dir }, () => undefined);
    if (process.env.BULWARK_KEEP_TEST_DIRS !== "1") rmSync(this.dir, { recursive: true, force: true });
    else console.error(`kept ${this.dir}`);
  }
}

/** Closed-loop clients over shared keys, recording a history for the linearizability checker. */
export class RecordingWorkload {
  readonly history: HistoryOp[] = [];
  private stopped = false;
  private readonly done: Promise<void>;
  completed = 0;
  private readonly origin = performance.now();

  constructor(clients: readonly TcpClient[], keys = 4) {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    this.done = Promise.all(
      clients.map(async (c) => {
        let i = 0;
        while (!this.stopped) {
          const key = `k${rand(keys)}`;
          const pick = rand(10);
          const op: KvOp =
            pick < 3 ? { kind: 'get', key } : pick < 7 ? { kind: 'put', key, value: `${c.id}.${i++}` } : pick < 9 ? { kind: 'incr', key: `n${rand(keys)}`, delta: 1 } : { kind: 'cas', key, expected: null, next: `${c.id}.${i++}` };
          const index = this.history.length;
          this.history.push({ client: c.id, op, output: undefined, invoke: this.now(), complete: undefined });
          try {
            const reply = await c.invoke(encodeKvOp(op), op.kind === 'get');
            const out = decodeKvOutput(reply) ?? { kind: 'error' as const, code: 'bad_request' as const };
            this.history[index] = { ...this.history[index]!, output: out, complete: this.now() };
            this.completed++;
          } catch {
            // The client closed with this operation outstanding: it stays pending in the history.
            return;
          }
        }
      }),
    ).then(() => undefined);
  }

  private now(): number {
    return Math.round((performance.now() - this.origin) * 1e6);
  }

  /** Completed operations during the next `ms` milliseconds. */
  async progressOver(ms: number): Promise<number> {
    const before = this.completed;
    await new Promise((r) => setTimeout(r, ms));
    return this.completed - before;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** Waits until `cond` holds (polling), or throws with `what` after `timeoutMs`. */
export async function eventually(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
