/**
 * CRC-32C cost per call of `src/storage/crc32c.ts` at several input sizes, for its three paths
 * measured in the same run: byte loads (`crc32cBytes`), the TypeScript implementation
 * (`crc32cJs`: words from 512 bytes on) and `crc32c` as the store calls it (the native module
 * from 256 bytes on, when it is loaded). Inputs are unaligned slices of one buffer, as log records
 * are. Prints ns per call and MB/s, medians of five rounds, and the ratio of `crc32c` to
 * `crc32cJs`.
 *
 *   npx tsx bench/crc32c.ts
 */
import { median } from '../src/core/median.ts';
import { crc32c, crc32cBackend, crc32cBytes, crc32cJs } from '../src/storage/crc32c.ts';

const sizes = [32, 256, 4096, 24_000, 49_152];
const buf = new Uint8Array(49_152 + 8).map((_, i) => (i * 31 + (i >> 7)) & 0xff);
const paths: [string, (d: Uint8Array, start: number, end: number) => number][] = [
  ['bytes', (d, s, e) => crc32cBytes(d, 0, s, e)],
  ['js', (d, s, e) => crc32cJs(d, 0, s, e)],
  ['crc32c', (d, s, e) => crc32c(d, 0, s, e)],
];

/** Nanoseconds per call over about 20 ms of calls. */
const nsPerCall = (f: (d: Uint8Array, start: number, end: number) => number, size: number): number => {
  const n = Math.max(200, Math.floor(20e6 / (size + 100)));
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sink ^= f(buf, 3, 3 + size);
  const ns = ((performance.now() - t0) * 1e6) / n;
  if (sink === 0.5) console.log(sink); // keeps the calls from being optimised away
  return ns;
};

console.log(`crc32c: backend=${crc32cBackend}`);
for (const size of sizes) {
  const values = new Set(paths.map(([, f]) => f(buf, 3, 3 + size)));
  if (values.size !== 1) throw new Error(`the paths disagree at ${size} bytes`);
  const runs = paths.map(() => [] as number[]);
  for (let r = 0; r < 5; r++) paths.forEach(([, f], k) => runs[k]!.push(nsPerCall(f, size)));
  const ns = runs.map((xs) => median(xs)!);
  const cols = paths.map(([name], k) => `${name}_ns=${ns[k]!.toFixed(0)} ${name}_mb_s=${((size / ns[k]!) * 1e3).toFixed(0)}`);
  console.log(`crc32c: size=${size} ${cols.join(' ')} speedup_vs_js=${(ns[1]! / ns[2]!).toFixed(2)}`);
}
