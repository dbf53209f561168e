/**
 * Entry point of the `bulwark` command (commander@14). Each subcommand lives in its own
 * module; this file only wires options to them.
 */
import { Command, InvalidArgumentError } from 'commander';
import { BulwarkError } from '../core/errors.ts';
import { checkpointModes, durabilityModes, stateTransferModes, type CheckpointMode, type DurabilityMode, type StateTransferMode } from '../core/config.ts';
import { simCommand } from './sim.ts';
import { attackNames, type AttackName } from '../sim/run.ts';
import { downCommand, initCommand, nodeCommand, statusCommand, upCommand } from './cluster.ts';
import { kvCommand, kvServeCommand } from './kv.ts';
import { benchCommand } from './bench.ts';
import { demoCommand } from './demo.ts';
import { compareCommand, parseSystems, parseWorkloads, systemNames, workloadNames, type EtcdClientKind, type SystemName, type WorkloadName } from './compare.ts';

/** A parser for an option that takes one of `values`. */
function choice<T extends string>(name: string, values: readonly T[]): (v: string) => T {
  return (v: string) => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(', ')}, got "${v}"`);
    return v as T;
  };
}

const durability = choice('--durability', durabilityModes);
const checkpointMode = choice('--checkpoints', checkpointModes);
const stateTransferMode = choice('--state-transfer', stateTransferModes);
const scenarioName = choice('--scenario', ['recovery'] as const);
const attackName = choice('--attack', attackNames);

function int(name: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

function ratio(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`${name} must be a number in [0, 1], got "${v}"`);
    return n;
  };
}

function etcdClient(v: string): EtcdClientKind {
  if (v !== 'grpc' && v !== 'http') throw new InvalidArgumentError(`--etcd-client must be grpc or http, got "${v}"`);
  return v;
}

/** Builds the command tree. */
export function buildProgram(): Command {
  const program = new Command('bulwark')
    .description('State machine replication with crash or Byzantine fault tolerance chosen by configuration (u, r).')
    .showHelpAfterError();
  program
    .command('sim')
    .description('Run the deterministic simulator: seeded faults, Byzantine replicas, checkers.')
    .option('--seeds <n>', 'number of seeds to run (default 100; canary mode: most seeds per canary, default 500)', int('--seeds', 1))
    .option('--seed <s>', 'first (or only) seed', int('--seed', 0))
    .option('--u <u>', 'faults tolerated while live (with --r; default: cycle through 5 models)', int('--u', 0))
    .option('--r <r>', 'commission faults tolerated while safe (with --u)', int('--r', 0))
    .option('--canaries', 'run the planted-bug canaries; each must be caught')
    .option('--history <file>', 'write the client history of --seed as JSON lines')
    .option('--workers <w>', 'worker threads (default: one per core)', int('--workers', 1))
    .option('--no-determinism', 'run each seed once instead of twice (skips the trace-hash comparison)')
    .option('--verbose', 'print every stage note of --seed')
    .option('--storage-faults', 'add whole-cluster crashes: every replica at once, writes in flight lost, restart from disk')
    .option('--attack <name>', `run every seed under an attack: ${attackNames.join(', ')}`, attackName)
    .action(async (opts: { seeds?: number; seed?: number; u?: number; r?: number; canaries?: boolean; history?: string; workers?: number; determinism: boolean; verbose?: boolean; storageFaults?: boolean; attack?: AttackName }) => {
      process.exitCode = await simCommand(opts);
    });
  program
    .command('init')
    .description('Write a cluster file and one key file per node and client.')
    .option('--u <u>', 'faults tolerated while live', int('--u', 0), 1)
    .option('--r <r>', 'commission faults tolerated while safe', int('--r', 0), 1)
    .option('--nodes <n>', 'number of nodes (default: the minimum for u and r)', int('--nodes', 1))
    .option('--clients <n>', 'client identities to create', int('--clients', 1), 128)
    .option('--dir <dir>', 'cluster directory', 'cluster')
    .option('--host <host>', 'address of every node', '127.0.0.1')
    .option('--base-port <port>', 'first node port (metrics ports start 2000 higher)', int('--base-port', 1), 7100)
    .option('--durability <mode>', 'none | sync | batch | parallel', durability, 'parallel')
    .option('--client-signatures', 'clients sign every ordered request (Ed25519); a bad signature blacklists its client')
    .action((o: { u: number; r: number; nodes?: number; clients: number; dir: string; host: string; basePort: number; durability: DurabilityMode; clientSignatures?: boolean }) => {
      initCommand({ dir: o.dir, u: o.u, r: o.r, clients: o.clients, host: o.host, basePort: o.basePort, baseMetricsPort: o.basePort + 2000, durability: o.durability, clientSignatures: o.clientSignatures === true, ...(o.nodes === undefined ? {} : { nodes: o.nodes }) });
    });
  program
    .command('node')
    .description('Run one node in the foreground (one per host in a real deployment).')
    .requiredOption('--config <file>', 'cluster file')
    .requiredOption('--id <n>', 'node id', int('--id', 0))
    .option('--key <file>', 'key file (default: keys/node-<id>.key next to the cluster file)')
    .option('--data <dir>', 'data directory (default: data/node-<id> next to the cluster file)')
    .option('--log-level <level>', 'pino log level (default: from the cluster file)')
    .action(async (o: { config: string; id: number; key?: string; data?: string; logLevel?: string }) => {
      await nodeCommand(o);
    });
  program
    .command('up')
    .description('Start every node of the cluster in --dir on this host (creating the cluster if needed), then return.')
    .option('--u <u>', 'faults tolerated while live (new clusters only; default 1)', int('--u', 0))
    .option('--r <r>', 'commission faults tolerated while safe (new clusters only; default 1)', int('--r', 0))
    .option('--nodes <n>', 'number of nodes (new clusters only)', int('--nodes', 1))
    .option('--dir <dir>', 'cluster directory', 'cluster')
    .option('--durability <mode>', 'none | sync | batch | parallel (new clusters only; default parallel)', durability)
    .option('--client-signatures', 'clients sign every ordered request (new clusters only)')
    .action(async (o: { u?: number; r?: number; nodes?: number; dir: string; durability?: DurabilityMode; clientSignatures?: boolean }) => {
      await upCommand(o);
    });
  program
    .command('down')
    .description('Stop the nodes that `bulwark up` started in --dir.')
    .option('--dir <dir>', 'cluster directory', 'cluster')
    .action(async (o: { dir: string }) => {
      await downCommand(o);
    });
  program
    .command('status')
    .description('Per node: view, primary, executed and committed seq, stable checkpoint, peers, queues.')
    .option('--dir <dir>', 'cluster directory', 'cluster')
    .option('--config <file>', 'cluster file (instead of --dir)')
    .option('--digest', 'also fetch each node\'s state digest')
    .action(async (o: { dir: string; config?: string; digest?: boolean }) => {
      await statusCommand(o);
    });
  program
    .command('kv')
    .description('Key-value client: kv put KEY VALUE | get KEY | del KEY | cas KEY EXPECTED|- NEW | incr KEY [DELTA] | serve --resp HOST:PORT (Redis protocol gateway)')
    .argument('<op>', 'put, get, del, cas, incr, or serve')
    .argument('[args...]', 'arguments of the operation')
    .option('--dir <dir>', 'cluster directory', 'cluster')
    .option('--config <file>', 'cluster file (instead of --dir)')
    .option('--client <id>', 'client identity to use (default: the first free one)', int('--client', 0))
    .option('--timeout <ms>', 'give up after this long', int('--timeout', 1), 10_000)
    .option('--resp <host:port>', 'with serve: address to serve the Redis protocol on, e.g. 127.0.0.1:6380')
    .action(async (op: string, args: string[], o: { dir: string; config?: string; client?: number; timeout: number; resp?: string }) => {
      if (op === 'serve') {
        if (o.resp === undefined || args.length > 0) throw new BulwarkError('usage', 'usage: bulwark kv serve --resp HOST:PORT [--dir D | --config F] [--client ID]');
        process.exitCode = await kvServeCommand({ dir: o.dir, resp: o.resp, ...(o.config === undefined ? {} : { config: o.config }), ...(o.client === undefined ? {} : { client: o.client }) });
        return;
      }
      process.exitCode = await kvCommand(op, args, { dir: o.dir, timeoutMs: o.timeout, ...(o.config === undefined ? {} : { config: o.config }), ...(o.client === undefined ? {} : { client: o.client }) });
    });
  program
    .command('bench')
    .description('Closed-loop clients against a cluster; ends with one "bench:" line.')
    .option('--clients <c>', 'concurrent clients', int('--clients', 1), 32)
    .option('--duration <s>', 'measured seconds (after the warm-up)', int('--duration', 1), 10)
    .option('--warmup <s>', 'seconds of load before measuring, not counted', int('--warmup', 0), 1)
    .option('--size <b>', 'value bytes of each put', int('--size', 0), 0)
    .option('--read-ratio <x>', 'fraction of gets', ratio('--read-ratio'), 0)
    .option('--json', 'also print the result as JSON')
    .option('--dir <dir>', 'cluster directory (default: the one bulwark up made)', 'cluster')
    .option('--config <file>', 'cluster file (instead of --dir)')
    .option('--spawn', 'start a temporary local cluster for the run, stop it afterwards')
    .option('--u <u>', 'with --spawn: faults tolerated while live', int('--u', 0), 1)
    .option('--r <r>', 'with --spawn: commission faults tolerated while safe', int('--r', 0), 1)
    .option('--durability <mode>', 'with --spawn: none | sync | batch | parallel', durability, 'parallel')
    .option('--checkpoints <mode>', 'with --spawn: sequential | coordinated', checkpointMode)
    .option('--state-transfer <mode>', 'with --spawn: collaborative | single', stateTransferMode)
    .option('--checkpoint-interval <n>', 'with --spawn: batches between checkpoints', int('--checkpoint-interval', 2))
    .option('--client-signatures', 'with --spawn: clients sign every ordered request (Ed25519)')
    .option('--preload-mb <m>', 'write this many MiB of state (4 KiB values) before measuring', int('--preload-mb', 0))
    .option('--timeline', 'print ops per 1-second window and the lowest window / median')
    .option('--chart <file>', 'write the per-second throughput as an SVG chart (implies --timeline)')
    .option('--scenario <name>', 'with --spawn: recovery (wipe and restart execution replica 2 a third of the way in)', scenarioName)
    .option('--attack <name>', `with --spawn: a fault-free phase, then this attack for as long: ${attackNames.join(', ')}`, attackName)
    .option('--attack-delay-ms <ms>', 'slow-primary: delay of each pre-prepare', int('--attack-delay-ms', 0), 10)
    .action(
      async (o: {
        clients: number;
        duration: number;
        warmup: number;
        size: number;
        readRatio: number;
        json?: boolean;
        dir: string;
        config?: string;
        spawn?: boolean;
        u: number;
        r: number;
        durability: DurabilityMode;
        checkpoints?: CheckpointMode;
        stateTransfer?: StateTransferMode;
        checkpointInterval?: number;
        clientSignatures?: boolean;
        preloadMb?: number;
        timeline?: boolean;
        chart?: string;
        scenario?: 'recovery';
        attack?: AttackName;
        attackDelayMs: number;
      }) => {
        await benchCommand({
          clients: o.clients,
          durationS: o.duration,
          warmupS: o.warmup,
          size: o.size,
          readRatio: o.readRatio,
          json: o.json === true,
          dir: o.dir,
          spawn: o.spawn === true,
          u: o.u,
          r: o.r,
          durability: o.durability,
          timeline: o.timeline === true,
          ...(o.config === undefined ? {} : { config: o.config }),
          ...(o.checkpoints === undefined ? {} : { checkpoints: o.checkpoints }),
          ...(o.stateTransfer === undefined ? {} : { stateTransfer: o.stateTransfer }),
          ...(o.checkpointInterval === undefined ? {} : { checkpointInterval: o.checkpointInterval }),
          ...(o.clientSignatures === true ? { clientSignatures: true } : {}),
          ...(o.preloadMb === undefined ? {} : { preloadMb: o.preloadMb }),
          ...(o.chart === undefined ? {} : { chart: o.chart }),
          ...(o.scenario === undefined ? {} : { scenario: o.scenario }),
          ...(o.attack === undefined ? {} : { attack: o.attack, attackDelayMs: o.attackDelayMs }),
        });
      },
    );
  program
    .command('compare')
    .description('Start etcd, ZooKeeper, Redis and bulwark on loopback, drive each with the same YCSB-like workloads, print a table and write a report with a chart (docs/compare.md).')
    .option('--systems <list>', `comma-separated: ${systemNames.join(', ')} (or redis, bulwark)`, parseSystems, [...systemNames])
    .option('--workloads <list>', 'comma-separated: A (50/50 read/update), B (95/5), C (read-only), W (4 KiB writes)', parseWorkloads, [...workloadNames])
    .option('--clients <n>', 'closed-loop clients', int('--clients', 1), 32)
    .option('--duration <s>', 'measured seconds per run (after 1 s of warm-up)', int('--duration', 1), 10)
    .option('--runs <n>', 'runs per cell (rounds); each cell is the median', int('--runs', 1), 3)
    .option('--warmup <s>', 'seconds of workload A after loading each system, not counted', int('--warmup', 0), 10)
    .option('--etcd-client <kind>', 'grpc (the etcd3 package) or http (etcd\'s JSON gateway)', etcdClient, 'grpc')
    .option('--out <file>', 'report file; the chart and raw JSON go next to it (.svg, .json)', 'docs/compare.md')
    .option('--keep', 'keep the temporary directory with every system\'s data and logs')
    .action(async (o: { systems: SystemName[]; workloads: WorkloadName[]; clients: number; duration: number; runs: number; warmup: number; etcdClient: EtcdClientKind; out: string; keep?: boolean }) => {
      const command = ['npx bulwark', ...process.argv.slice(2)].join(' ');
      await compareCommand({ systems: o.systems, workloads: o.workloads, clients: o.clients, durationS: o.duration, runs: o.runs, warmupS: o.warmup, etcdClient: o.etcdClient, out: o.out, keep: o.keep === true, command });
    });
  program
    .command('demo')
    .description('Start a local u=1 r=1 cluster, run a workload, kill and restart a replica, silence the primary, check every acknowledged write.')
    .option('--dir <dir>', 'keep the cluster in this directory (default: a temporary one, removed afterwards)')
    .option('--clients <c>', 'concurrent clients', int('--clients', 1), 8)
    .option('--phase <s>', 'seconds per phase', int('--phase', 1), 4)
    .action(async (o: { dir?: string; clients: number; phase: number }) => {
      process.exitCode = await demoCommand({ clients: o.clients, phaseS: o.phase, live: process.stdout.isTTY, ...(o.dir === undefined ? {} : { dir: o.dir }) });
    });
  return program;
}

/** Runs the command line. */
export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync([...argv]);
  } catch (e) {
    // Operating errors (bad config, unreachable cluster) get one clear line, not a stack.
    if (e instanceof BulwarkError) {
      console.error(`bulwark: ${e.message}`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}
