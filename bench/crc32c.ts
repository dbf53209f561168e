/**
 * CRC-32C throughput of `src/storage/crc32c.ts` on a 24 KB buffer (about one log frame of six
 * 4 KiB writes), against its byte-load path (`crc32cBytes`, the implementation before the word
 * path) measured in the same run. Prints MB/s for each, medians of five rounds.
 *
 *   npx tsx bench/crc32c.ts
 */
import { median } from '../src/core/median.ts';
import { crc32c, crc32cBytes as bytewise } from '../src/storage/crc32c.ts';

const buf = new Uint8Array(24_000).map((_, i) => (i * 31 + (i >> 7)) & 0xff);
if (bytewise(buf) !== crc32c(buf)) throw new Error('the two implementations disagree');
const rate = (f: (d: Uint8Array) => number): number => {
  const n = 4000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f(buf);
  return (buf.length * n) / (performance.now() - t0) / 1e3;
};
const base: number[] = [];
const head: number[] = [];
for (let r = 0; r < 5; r++) {
  base.push(rate(bytewise));
  head.push(rate((d) => crc32c(d)));
}
const b = median(base)!;
const h = median(head)!;
console.log(`crc32c: bytewise_mb_s=${b.toFixed(0)} words_mb_s=${h.toFixed(0)} ratio=${(h / b).toFixed(2)}`);
