/**
 * Entry point of the `bulwark` command (commander@14). Each subcommand lives in its own
 * module; this file only wires options to them.
 */
import { Command, InvalidArgumentError } from 'commander';
import { simCommand } from './sim.ts';

function int(name: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
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
    .action(async (opts: { seeds?: number; seed?: number; u?: number; r?: number; canaries?: boolean; history?: string; workers?: number; determinism: boolean; verbose?: boolean }) => {
      process.exitCode = await simCommand(opts);
    });
  return program;
}

/** Runs the command line. */
export async function main(argv: readonly string[]): Promise<void> {
  await buildProgram().parseAsync([...argv]);
}
