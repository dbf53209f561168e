/**
 * What the order log costs one node per batch, without a cluster: the write pattern of a backup
 * in durability `parallel` at r >= 1, replayed against a `FileStore` in one process. Per batch:
 * the pre-prepare record with its body (awaited: PREPARE waits for it), the prepared record
 * (awaited: COMMIT waits for it), then the committed record and the delete of the body that left
 * the window, both lazy (held for the next frame, as the node's store does).
 *
 *   npx tsx bench/store-cost.ts [--dir /tmp] [--batches 3000] [--body 49152] [--pattern two|one|small]
 *
 * `--pattern one` writes the body and both records as one awaited write (one log append per
 * batch), `small` only a prepared-size record (the fixed cost of an append). Prints wall time and
 * process CPU (user, system) per batch, and log appends (syncs) per batch. The CPU includes the
 * libuv thread that runs the O_DSYNC write. `--dir /dev/shm` takes the device out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileStore } from '../src/runtime/file-store.ts';
import { crc32cBackend } from '../src/storage/crc32c.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/tmp' },
    batches: { type: 'string', default: '3000' },
    body: { type: 'string', default: String(48 << 10) },
    pattern: { type: 'string', default: 'two' },
  },
});
const batches = Number(values.batches);
const bodyBytes = Number(values.body);
const pattern = values.pattern;
if (!['two', 'one', 'small'].includes(pattern)) throw new Error(`--pattern: two, one or small, got ${pattern}`);
if (!Number.isSafeInteger(batches) || batches < 1) throw new Error(`--batches: a positive integer, got ${values.batches}`);

const dir = mkdtempSync(join(values.dir, 'bulwark-store-cost-'));
const store = FileStore.open(dir, { deferLazyMs: 20 });
const body = new Uint8Array(bodyBytes).map((_, i) => i & 0xff);
const record = new Uint8Array(120).fill(1);
/** Slots in the window (two checkpoint intervals of 64). */
const window = 128;

const cpu0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 1; i <= batches; i++) {
  const slot = `o/s/${i}`;
  if (pattern === 'small') await store.write([[slot, record.slice()]], []);
  else if (pattern === 'one') await store.write([[`o/b/${i}`, body.slice()], [slot, record.slice()]], []);
  else {
    await store.write([[`o/b/${i}`, body.slice()], [slot, record.slice()]], []);
    await store.write([[slot, record.slice()]], []);
  }
  void store.write([[slot, record.slice()]], [], true);
  if (i > window) void store.write([], [`o/b/${i - window}`, `o/s/${i - window}`], true);
}
const wallUs = ((performance.now() - t0) * 1000) / batches;
const cpu = process.cpuUsage(cpu0);
const syncs = store.stats.syncs / batches;
await store.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  `store-cost: pattern=${pattern} dir=${values.dir} body=${bodyBytes} crc32c=${crc32cBackend} wall_us=${wallUs.toFixed(0)} ` +
    `cpu_user_us=${(cpu.user / batches).toFixed(0)} cpu_sys_us=${(cpu.system / batches).toFixed(0)} appends_per_batch=${syncs.toFixed(2)}`,
);
