/**
 * Cluster commands: `bulwark init`, `node`, `up`, `down`, `status`.
 *
 * `up` starts every node of the cluster in --dir as its own detached process on this host,
 * writes their pids to run/node-<id>.pid and their logs to logs/node-<id>.log, waits until each
 * answers /status, prints a status table and returns. `down` stops them (SIGTERM, then SIGKILL).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ConfigError } from '../core/errors.ts';
import type { DurabilityMode } from '../core/config.ts';
import { clusterPaths, formatClusterFile, initCluster, loadClusterFile, loadKeyFile, type ClusterFile, type InitOptions } from '../runtime/cluster-file.ts';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { NodeDriver, type NodeStatus } from '../runtime/driver.ts';
import { alive, untilStopRequested } from '../runtime/client.ts';

export { alive } from '../runtime/client.ts';
import { defaultCrypto } from '../crypto/sodium.ts';
import { KvStore } from '../services/kv/store.ts';

/** Absolute path of the bin script (to spawn nodes). */
export const binPath = fileURLToPath(new URL('../../bin/bulwark.js', import.meta.url));

/** `bulwark init`. */
export function initCommand(o: InitOptions, print: (s: string) => void = console.log): ClusterFile {
  const cf = initCluster(o);
  const p = clusterPaths(o.dir);
  print(`initialised a u=${o.u} r=${o.r} cluster (durability ${cf.protocol.durability ?? 'parallel'}${cf.protocol.clientSignatures === true ? ', signed client requests' : ''}) of ${cf.nodes.length} nodes and ${cf.clients.length} client identities in ${o.dir}`);
  print(`  cluster file: ${p.file}`);
  print(`  keys (0600):  ${p.keys}/node-<id>.key, ${p.keys}/client-<id>.key`);
  return cf;
}

/** `bulwark node`: one node in the foreground until SIGINT/SIGTERM. */
export async function nodeCommand(o: { config: string; id: number; key?: string; data?: string; logLevel?: string }): Promise<void> {
  const cf = loadClusterFile(o.config);
  const dir = resolve(o.config, '..');
  const keyPath = o.key ?? clusterPaths(dir).nodeKey(o.id);
  const key = loadKeyFile(keyPath);
  if (key.kind !== 'node' || key.id !== o.id) throw new ConfigError([{ path: keyPath, message: `is the key of ${key.kind} ${key.id}, not node ${o.id}` }]);
  const logger = pino({ level: o.logLevel ?? process.env.BULWARK_LOG_LEVEL ?? cf.runtime.logLevel, base: { node: o.id } });
  const driver = await NodeDriver.start({
    cluster: cf,
    nodeId: o.id,
    privateKey: key.privateKey,
    dataDir: o.data ?? join(clusterPaths(dir).data, `node-${o.id}`),
    crypto: await defaultCrypto(),
    appFactory: () => new KvStore(),
    logger,
    attacksAllowed: process.env.BULWARK_ATTACKS === '1',
  });
  await untilStopRequested();
  logger.info('stopping');
  await driver.stop();
}

/** `count` distinct TCP ports that are free on loopback at the moment of asking. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<Server>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
          resolve(s);
        });
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Initialises a cluster in `dir` whose nodes listen on loopback ports that are free now. */
export async function initLoopbackCluster(o: InitOptions): Promise<ClusterFile> {
  const base = initCluster(o);
  const ports = await freePorts(base.nodes.length * 2);
  const cf = { ...base, nodes: base.nodes.map((n, i) => ({ ...n, port: ports[2 * i]!, metricsPort: ports[2 * i + 1]! })) };
  writeFileSync(clusterPaths(o.dir).file, formatClusterFile(cf));
  return cf;
}

/** Pid file of a node. */
export function pidFile(dir: string, id: number): string {
  return join(clusterPaths(dir).run, `node-${id}.pid`);
}

/** The pid in a node's pid file, if the file exists and holds one. */
export function readPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    // No pid file: the node was never started (or was stopped cleanly).
    return undefined;
  }
}


/** Starts one node of the cluster in `dir` as a detached process; returns its pid. */
export function spawnNode(dir: string, id: number, extraEnv: Record<string, string> = {}): number {
  const p = clusterPaths(dir);
  mkdirSync(p.logs, { recursive: true });
  mkdirSync(p.run, { recursive: true });
  const out = openSync(join(p.logs, `node-${id}.log`), 'a');
  // BULWARK_NODE_ARGS passes extra Node flags to nodes (e.g. --cpu-prof for diagnosis).
  const nodeArgs = (process.env.BULWARK_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0);
  const child = spawn(process.execPath, [...nodeArgs, binPath, 'node', '--config', p.file, '--id', String(id)], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...extraEnv },
  });
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start node ${id}`);
  writeFileSync(pidFile(dir, id), String(child.pid));
  return child.pid;
}

/** Fetches a node's /status JSON, or undefined when it does not answer. */
export async function fetchStatus(cf: ClusterFile, id: number, digest = false, timeoutMs = 1000): Promise<NodeStatus | undefined> {
  const n = cf.nodes.find((x) => x.id === id);
  if (n === undefined || n.metricsPort === 0) return undefined;
  try {
    const host = n.host === '0.0.0.0' ? '127.0.0.1' : n.host;
    const res = await fetch(`http://${host}:${n.metricsPort}/status${digest ? '?digest=1' : ''}`, { signal: AbortSignal.timeout(timeoutMs) });
    return (await res.json()) as NodeStatus;
  } catch {
    // Not answering (starting, stopped, paused): reported as down.
    return undefined;
  }
}

/** Waits until every listed node answers /status; throws after `timeoutMs`. */
export async function waitServing(cf: ClusterFile, ids: readonly number[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await Promise.all(ids.map((id) => fetchStatus(cf, id)));
    if (st.every((s) => s !== undefined && s.peers.length >= Math.min(cf.nodes.length - 1, 1))) return;
    if (Date.now() > deadline) throw new Error(`nodes not serving after ${timeoutMs} ms: ${ids.filter((_, i) => st[i] === undefined).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `bulwark up`. */
export async function upCommand(o: { dir: string; u?: number; r?: number; nodes?: number; durability?: DurabilityMode; clientSignatures?: boolean }, print: (s: string) => void = console.log): Promise<ClusterFile> {
  const p = clusterPaths(o.dir);
  if (!existsSync(p.file)) initCommand({ dir: o.dir, u: o.u ?? 1, r: o.r ?? 1, ...(o.nodes === undefined ? {} : { nodes: o.nodes }), ...(o.durability === undefined ? {} : { durability: o.durability }), ...(o.clientSignatures === true ? { clientSignatures: true } : {}) }, print);
  // An existing cluster keeps its settings: u and r fix the replica sets and keys, and a node
  // of a `none` cluster has nothing on disk to come back with.
  else if (o.u !== undefined || o.r !== undefined || o.durability !== undefined || o.clientSignatures === true) print(`using the existing cluster in ${o.dir} (its u, r and durability win; remove the directory to change them)`);
  const cf = loadClusterFile(p.file);
  for (const n of cf.nodes) {
    const pid = readPid(pidFile(o.dir, n.id));
    if (pid !== undefined && alive(pid)) continue;
    spawnNode(o.dir, n.id);
  }
  await waitServing(cf, cf.nodes.map((n) => n.id));
  await statusCommand({ dir: o.dir }, print);
  return cf;
}

/** `bulwark down`. */
export async function downCommand(o: { dir: string }, print: (s: string) => void = console.log): Promise<void> {
  const p = clusterPaths(o.dir);
  const cf = loadClusterFile(p.file);
  const pids: number[] = [];
  for (const n of cf.nodes) {
    const pid = readPid(pidFile(o.dir, n.id));
    if (pid === undefined) continue;
    if (alive(pid)) {
      process.kill(pid, 'SIGCONT'); // a paused node cannot handle SIGTERM
      process.kill(pid, 'SIGTERM');
      pids.push(pid);
    }
    rmSync(pidFile(o.dir, n.id), { force: true });
  }
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  print(`stopped ${pids.length} node(s) of ${o.dir}`);
}

/** `bulwark status`: one row per node. */
export async function statusCommand(o: { dir?: string; config?: string; digest?: boolean }, print: (s: string) => void = console.log): Promise<NodeStatus[]> {
  const file = o.config ?? clusterPaths(o.dir ?? 'cluster').file;
  const cf = loadClusterFile(file);
  const rows = await Promise.all(cf.nodes.map((n) => fetchStatus(cf, n.id, o.digest === true)));
  const head = ['node', 'state', 'view', 'primary', 'executed', 'committed', 'stable cp', 'peers', 'clients', 'queued B', 'rss MB'];
  const table: string[][] = [head];
  rows.forEach((s, i) => {
    const n = cf.nodes[i]!;
    if (s === undefined) {
      table.push([String(n.id), 'down', '-', '-', '-', '-', '-', '-', '-', '-', '-']);
      return;
    }
    const queued = Object.values(s.queueBytes).reduce((a, b) => a + b, 0);
    const show = (x: number | undefined): string => (x === undefined ? '-' : String(x));
    table.push([
      String(n.id),
      s.normal === false ? 'view-change' : 'serving',
      show(s.view),
      show(s.primary),
      show(s.executedSeq),
      show(s.committedSeq),
      show(s.stableSeq),
      `${s.peers.length}/${cf.nodes.length - 1}`,
      String(s.clients),
      String(queued),
      (s.rssBytes / 1048576).toFixed(0),
    ]);
  });
  const widths = head.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const r of table) print(r.map((x, c) => x.padEnd(widths[c]!)).join('  '));
  return rows.filter((r): r is NodeStatus => r !== undefined);
}
