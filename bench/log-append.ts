/**
 * What an O_DSYNC log append costs on this machine's file system, growing the file against
 * overwriting zeros that were written and synced before (the log's fill-ahead, src/runtime/wal.ts).
 *
 *   npx tsx bench/log-append.ts [--writers 4] [--size 1024] [--writes 2000] [--dir /tmp]
 *
 * For each mode in turn, `writers` processes append `writes` frames of `size` bytes at once (as
 * the four nodes of a local cluster do), each to its own file, one O_DSYNC `write` per frame.
 * Each writer prints its p50, p90 and mean wall time per write and its CPU time per write (user
 * and system, from process.cpuUsage); the last line per mode is the median over the writers.
 */
import { fork } from 'node:child_process';
import { closeSync, constants, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface Result {
  readonly p50: number;
  readonly p90: number;
  readonly mean: number;
  readonly user: number;
  readonly sys: number;
}

const modes = ['append', 'overwrite'] as const;
type Mode = (typeof modes)[number];

/** One writer: prepares its file, then times `writes` O_DSYNC writes. */
function writer(mode: Mode, path: string, size: number, writes: number): Result {
  const zeros = new Uint8Array(1 << 20);
  let fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
  writeSync(fd, zeros, 0, 4096, 0);
  if (mode === 'overwrite') for (let off = 0; off < 4096 + size * writes; off += zeros.length) writeSync(fd, zeros, 0, zeros.length, off);
  fsyncSync(fd);
  closeSync(fd);
  fd = openSync(path, constants.O_RDWR | constants.O_DSYNC);
  const frame = new Uint8Array(size).fill(7);
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < writes; i++) {
    const t = process.hrtime.bigint();
    writeSync(fd, frame, 0, size, 4096 + i * size);
    times.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  closeSync(fd);
  rmSync(path, { force: true });
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / writes;
  return { p50: times[writes >> 1]!, p90: times[Math.floor(writes * 0.9)]!, mean, user: cpu.user / writes, sys: cpu.system / writes };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const fmt = (r: Result): string => `p50 ${r.p50.toFixed(0)} us, p90 ${r.p90.toFixed(0)} us, mean ${r.mean.toFixed(0)} us, cpu user ${r.user.toFixed(0)} us + sys ${r.sys.toFixed(0)} us per write`;

if (process.env['LOG_APPEND_CHILD'] !== undefined) {
  const [mode, path, size, writes] = JSON.parse(process.env['LOG_APPEND_CHILD']) as [Mode, string, number, number];
  process.send!(writer(mode, path, size, writes));
} else {
  const { values } = parseArgs({
    options: { writers: { type: 'string', default: '4' }, size: { type: 'string', default: '1024' }, writes: { type: 'string', default: '2000' }, dir: { type: 'string', default: '/tmp' } },
  });
  const writers = Number(values.writers);
  const size = Number(values.size);
  const writes = Number(values.writes);
  for (const [name, v] of [['writers', writers], ['size', size], ['writes', writes]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${String(v)}`);
  }
  const dir = mkdtempSync(join(values.dir, 'bulwark-log-append-'));
  try {
    for (const mode of modes) {
      const results = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          new Promise<Result>((resolve, reject) => {
            const child = fork(process.argv[1]!, [], { env: { ...process.env, LOG_APPEND_CHILD: JSON.stringify([mode, join(dir, `w${i}`), size, writes]) }, execArgv: process.execArgv });
            child.once('message', (m) => resolve(m as Result));
            child.once('error', reject);
            child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`writer ${i} exited with ${code}`))));
          }),
        ),
      );
      results.forEach((r, i) => console.log(`${mode} writer ${i}: ${fmt(r)}`));
      const pick = (k: keyof Result): number => median(results.map((r) => r[k]));
      console.log(`${mode}: writers=${writers} size=${size} B: ${fmt({ p50: pick('p50'), p90: pick('p90'), mean: pick('mean'), user: pick('user'), sys: pick('sys') })}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
