/**
 * The cluster file (YAML) and key files of a real deployment.
 *
 * cluster.yaml:
 *   u: 1
 *   r: 1
 *   durability: parallel                           # optional: none | sync | batch | parallel
 *   checkpoints: sequential                        # optional: sequential | coordinated
 *   stateTransfer: collaborative                   # optional: collaborative | single
 *   clientSignatures: false                        # optional: clients sign ordered requests
 *   tunables: { checkpointInterval: 64, ... }      # optional; defaults in core/config.ts
 *   runtime: { tickMs: 2, logLevel: info, floodCutOffMs: 60000 }   # optional
 *   nodes:
 *     - { id: 0, host: 127.0.0.1, port: 7100, metricsPort: 9100, stages: [auth, order, exec], publicKey: <base64> }
 *   clients:
 *     - { id: 0, publicKey: <base64> }
 *
 * keys/node-<id>.key and keys/client-<id>.key (mode 0600):
 *   { kind: node|client, id, privateKey: <base64 Ed25519 seed>, publicKey: <base64> }
 *
 * No shared secret appears anywhere: pair MAC keys are derived from the identity keys
 * (crypto/pairing.ts). Loading validates every field and names each bad one in one ConfigError.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { checkConfig, defaultTunables, stageNames, type CheckpointMode, type DurabilityMode, type ProtocolConfig, type StateTransferMode, type StageName, type Tunables } from '../core/config.ts';
import { stageCounts } from '../core/quorum.ts';
import { ConfigError, type ConfigProblem } from '../core/errors.ts';
import { ed25519PublicOf, generateEd25519 } from '../crypto/node.ts';

/** Runtime settings that are not part of the protocol. */
export interface RuntimeSettings {
  /** Period of the stage tick, milliseconds. */
  readonly tickMs: number;
  /** pino log level of the nodes. */
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * How long a replica found flooding (more than 20x the messages of every other replica) stays
   * disconnected, milliseconds (runtime/inbox.ts). Aardvark uses 10 minutes; the default, 60 s,
   * is long against the flood (a flooder reconnects and is measured again, so it does at most
   * one window's damage per period) and short enough that a false alarm costs a minute of one
   * replica, which the cluster tolerates (u), and that tests can watch the reconnection.
   */
  readonly floodCutOffMs: number;
}

/** Defaults of the runtime settings. */
export const defaultRuntime: RuntimeSettings = { tickMs: 2, logLevel: 'info', floodCutOffMs: 60_000 };

/** A node of a deployment. */
export interface NodeEntry {
  readonly id: number;
  readonly host: string;
  readonly port: number;
  /** HTTP port of /metrics and /status; 0 disables it. */
  readonly metricsPort: number;
  readonly stages: readonly StageName[];
  readonly publicKey: Uint8Array;
}

/** A client identity. */
export interface ClientEntry {
  readonly id: number;
  readonly publicKey: Uint8Array;
}

/** A loaded, validated cluster file. */
export interface ClusterFile {
  readonly protocol: ProtocolConfig;
  readonly runtime: RuntimeSettings;
  readonly nodes: readonly NodeEntry[];
  readonly clients: readonly ClientEntry[];
}

/** A loaded key file. */
export interface KeyFile {
  readonly kind: 'node' | 'client';
  readonly id: number;
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const topFields = new Set(['u', 'r', 'durability', 'checkpoints', 'stateTransfer', 'clientSignatures', 'tunables', 'runtime', 'nodes', 'clients']);

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function decodeKey(x: unknown, path: string, problems: ConfigProblem[]): Uint8Array {
  if (typeof x !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(x)) {
    problems.push({ path, message: 'must be a base64 Ed25519 public key (32 bytes)' });
    return new Uint8Array(32);
  }
  return new Uint8Array(Buffer.from(x, 'base64'));
}

/** Parses and validates a cluster file's text; `source` names it in errors. */
export function parseClusterFile(text: string, source = 'cluster file'): ClusterFile {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new ConfigError([{ path: source, message: `not valid YAML: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  const problems: ConfigProblem[] = [];
  if (!isObject(doc)) throw new ConfigError([{ path: source, message: 'must be a YAML mapping with u, r, nodes, clients' }]);
  for (const k of Object.keys(doc)) if (!topFields.has(k)) problems.push({ path: k, message: `unknown field (expected one of ${[...topFields].join(', ')})` });
  const tunablesRaw = doc.tunables ?? {};
  if (!isObject(tunablesRaw)) problems.push({ path: 'tunables', message: 'must be a mapping' });
  const tunables: Record<string, unknown> = { ...defaultTunables, ...(isObject(tunablesRaw) ? tunablesRaw : {}) };
  for (const k of Object.keys(isObject(tunablesRaw) ? tunablesRaw : {})) {
    if (!(k in defaultTunables)) problems.push({ path: `tunables.${k}`, message: 'unknown tunable' });
  }
  const runtimeRaw = doc.runtime ?? {};
  const runtime: Record<string, unknown> = { ...defaultRuntime, ...(isObject(runtimeRaw) ? runtimeRaw : {}) };
  if (!isObject(runtimeRaw)) problems.push({ path: 'runtime', message: 'must be a mapping' });
  if (typeof runtime.tickMs !== 'number' || !Number.isInteger(runtime.tickMs) || runtime.tickMs < 1 || runtime.tickMs > 1000) {
    problems.push({ path: 'runtime.tickMs', message: 'must be an integer in [1, 1000]' });
  }
  if (typeof runtime.floodCutOffMs !== 'number' || !Number.isInteger(runtime.floodCutOffMs) || runtime.floodCutOffMs < 100 || runtime.floodCutOffMs > 86_400_000) {
    problems.push({ path: 'runtime.floodCutOffMs', message: 'must be an integer in [100, 86400000]' });
  }
  if (!logLevels.includes(runtime.logLevel as (typeof logLevels)[number])) problems.push({ path: 'runtime.logLevel', message: `must be one of ${logLevels.join(', ')}` });

  const nodes: NodeEntry[] = [];
  const endpoints = new Set<string>();
  if (!Array.isArray(doc.nodes)) problems.push({ path: 'nodes', message: 'must be a list' });
  else {
    (doc.nodes as unknown[]).forEach((raw, i) => {
      const path = `nodes[${i}]`;
      if (!isObject(raw)) {
        problems.push({ path, message: 'must be a mapping with id, host, port, metricsPort, stages, publicKey' });
        return;
      }
      const host = raw.host;
      if (typeof host !== 'string' || host.length === 0 || host.length > 253) problems.push({ path: `${path}.host`, message: 'must be a host name or IP address' });
      for (const f of ['port', 'metricsPort'] as const) {
        const v = raw[f];
        const min = f === 'metricsPort' ? 0 : 1;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) problems.push({ path: `${path}.${f}`, message: `must be an integer in [${min}, 65535]` });
      }
      if (typeof host === 'string') {
        for (const f of ['port', 'metricsPort'] as const) {
          const v = raw[f];
          if (typeof v === 'number' && v > 0) {
            const ep = `${host}:${v}`;
            if (endpoints.has(ep)) problems.push({ path: `${path}.${f}`, message: `endpoint ${ep} is used twice` });
            endpoints.add(ep);
          }
        }
      }
      const publicKey = decodeKey(raw.publicKey, `${path}.publicKey`, problems);
      nodes.push({
        id: raw.id as number,
        host: String(host),
        port: raw.port as number,
        metricsPort: raw.metricsPort as number,
        stages: raw.stages as StageName[],
        publicKey,
      });
    });
  }
  const clients: ClientEntry[] = [];
  if (!Array.isArray(doc.clients)) problems.push({ path: 'clients', message: 'must be a list' });
  else {
    (doc.clients as unknown[]).forEach((raw, i) => {
      const path = `clients[${i}]`;
      if (!isObject(raw)) {
        problems.push({ path, message: 'must be a mapping with id, publicKey' });
        return;
      }
      clients.push({ id: raw.id as number, publicKey: decodeKey(raw.publicKey, `${path}.publicKey`, problems) });
    });
  }
  const durability = doc.durability ?? 'parallel';
  const protocol = {
    ...(tunables as unknown as Tunables),
    durability: durability as DurabilityMode,
    checkpoints: (doc.checkpoints ?? 'sequential') as CheckpointMode,
    stateTransfer: (doc.stateTransfer ?? 'collaborative') as StateTransferMode,
    clientSignatures: (doc.clientSignatures ?? false) as boolean,
    u: doc.u as number, r: doc.r as number, nodes: nodes.map((n) => ({ id: n.id, stages: n.stages })), clients: clients.map((c) => c.id) };
  problems.push(...checkConfig(protocol));
  if (problems.length > 0) throw new ConfigError(problems);
  return { protocol, runtime: runtime as unknown as RuntimeSettings, nodes, clients };
}

/** Reads and validates a cluster file. */
export function loadClusterFile(path: string): ClusterFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError([{ path, message: `cannot read: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  return parseClusterFile(text, path);
}

/** Serialises a cluster file to YAML. */
export function formatClusterFile(cf: ClusterFile): string {
  const tunables: Record<string, number> = {};
  for (const k of Object.keys(defaultTunables) as (keyof Tunables)[]) tunables[k] = cf.protocol[k];
  const doc = {
    u: cf.protocol.u,
    r: cf.protocol.r,
    durability: cf.protocol.durability ?? 'parallel',
    checkpoints: cf.protocol.checkpoints ?? 'sequential',
    stateTransfer: cf.protocol.stateTransfer ?? 'collaborative',
    clientSignatures: cf.protocol.clientSignatures ?? false,
    tunables,
    runtime: cf.runtime,
    nodes: cf.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, metricsPort: n.metricsPort, stages: [...n.stages], publicKey: Buffer.from(n.publicKey).toString('base64') })),
    clients: cf.clients.map((c) => ({ id: c.id, publicKey: Buffer.from(c.publicKey).toString('base64') })),
  };
  return `# bulwark cluster file: u faults tolerated while live, r commission faults while safe.\n# Generated by "bulwark init"; edit hosts and ports for a multi-host deployment.\n${stringify(doc, { flow: false })}`;
}

/** Reads a key file; errors name the file and the field. */
export function loadKeyFile(path: string): KeyFile {
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError([{ path, message: `cannot read key file: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  const problems: ConfigProblem[] = [];
  if (!isObject(doc)) throw new ConfigError([{ path, message: 'key file must be a mapping with kind, id, privateKey, publicKey' }]);
  if (doc.kind !== 'node' && doc.kind !== 'client') problems.push({ path: `${path}: kind`, message: 'must be node or client' });
  if (typeof doc.id !== 'number' || !Number.isInteger(doc.id) || doc.id < 0) problems.push({ path: `${path}: id`, message: 'must be a non-negative integer' });
  const publicKey = decodeKey(doc.publicKey, `${path}: publicKey`, problems);
  const privateKey = decodeKey(doc.privateKey, `${path}: privateKey`, problems);
  if (problems.length === 0 && !Buffer.from(ed25519PublicOf(privateKey)).equals(Buffer.from(publicKey))) {
    problems.push({ path: `${path}: publicKey`, message: 'does not match privateKey' });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { kind: doc.kind as 'node' | 'client', id: doc.id as number, privateKey, publicKey };
}

function writeKeyFile(path: string, k: KeyFile): void {
  const text = stringify({ kind: k.kind, id: k.id, privateKey: Buffer.from(k.privateKey).toString('base64'), publicKey: Buffer.from(k.publicKey).toString('base64') });
  writeFileSync(path, `# bulwark ${k.kind} ${k.id} identity key: keep private.\n${text}`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** Options of `bulwark init`. */
export interface InitOptions {
  readonly dir: string;
  readonly u: number;
  readonly r: number;
  /** Node count; at least the largest stage's minimum. */
  readonly nodes?: number;
  readonly clients?: number;
  readonly host?: string;
  readonly basePort?: number;
  readonly baseMetricsPort?: number;
  readonly tunables?: Partial<Tunables>;
  readonly runtime?: Partial<RuntimeSettings>;
  /** How the order log reaches the disk (default parallel). */
  readonly durability?: DurabilityMode;
  /** When execution replicas checkpoint (default sequential). */
  readonly checkpoints?: CheckpointMode;
  /** How execution replicas fetch checkpoints (default collaborative). */
  readonly stateTransfer?: StateTransferMode;
  /** Whether clients sign their ordered requests (default false). */
  readonly clientSignatures?: boolean;
}

/** Paths inside a cluster directory. */
export function clusterPaths(dir: string): { file: string; keys: string; data: string; logs: string; run: string; nodeKey: (id: number) => string; clientKey: (id: number) => string } {
  const keys = join(dir, 'keys');
  return {
    file: join(dir, 'cluster.yaml'),
    keys,
    data: join(dir, 'data'),
    logs: join(dir, 'logs'),
    run: join(dir, 'run'),
    nodeKey: (id) => join(keys, `node-${id}.key`),
    clientKey: (id) => join(keys, `client-${id}.key`),
  };
}

/** Writes a new cluster: cluster.yaml and one key file per node and client. */
export function initCluster(o: InitOptions): ClusterFile {
  const counts = stageCounts(o.u, o.r);
  const need = Math.max(counts.auth, counts.order, counts.exec);
  const n = o.nodes ?? need;
  if (n < need) throw new ConfigError([{ path: '--nodes', message: `u=${o.u} r=${o.r} needs at least ${need} nodes (auth stage ${counts.auth}, order ${counts.order}, exec ${counts.exec}), got ${n}` }]);
  const paths = clusterPaths(o.dir);
  if (existsSync(paths.file)) throw new ConfigError([{ path: paths.file, message: 'already exists; remove the directory or choose another --dir' }]);
  mkdirSync(paths.keys, { recursive: true, mode: 0o700 });
  const host = o.host ?? '127.0.0.1';
  const basePort = o.basePort ?? 7100;
  const baseMetrics = o.baseMetricsPort ?? 9100;
  const nodes: NodeEntry[] = [];
  for (let id = 0; id < n; id++) {
    const kp = generateEd25519();
    writeKeyFile(paths.nodeKey(id), { kind: 'node', id, privateKey: kp.privateKey, publicKey: kp.publicKey });
    const stages = stageNames.filter((s) => id < counts[s]);
    nodes.push({ id, host, port: basePort + id, metricsPort: baseMetrics + id, stages: stages.length > 0 ? stages : ['exec'], publicKey: kp.publicKey });
  }
  const clients: ClientEntry[] = [];
  for (let id = 0; id < (o.clients ?? 128); id++) {
    const kp = generateEd25519();
    writeKeyFile(paths.clientKey(id), { kind: 'client', id, privateKey: kp.privateKey, publicKey: kp.publicKey });
    clients.push({ id, publicKey: kp.publicKey });
  }
  const protocol: ProtocolConfig = { ...defaultTunables, ...o.tunables, durability: o.durability ?? 'parallel', checkpoints: o.checkpoints ?? 'sequential', stateTransfer: o.stateTransfer ?? 'collaborative', clientSignatures: o.clientSignatures ?? false, u: o.u, r: o.r, nodes: nodes.map((x) => ({ id: x.id, stages: x.stages })), clients: clients.map((c) => c.id) };
  const cf: ClusterFile = { protocol, runtime: { ...defaultRuntime, ...o.runtime }, nodes, clients };
  writeFileSync(paths.file, formatClusterFile(cf));
  return parseClusterFile(formatClusterFile(cf), paths.file);
}
