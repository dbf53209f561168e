/**
 * Where one request's time goes: four nodes and one client in this process (loopback TCP, real
 * files under /tmp/bulwark-trace), 300 warm-up puts, 300 timed puts (p50 printed), then two
 * traced puts: every message a node receives and every durable write, in milliseconds from the
 * client's call.
 *
 *   npx tsx bench/trace-request.ts
 *
 * All nodes share one event loop here, so hops cost less than between processes and nothing
 * runs in parallel; the order of events and the length of each log write are what it shows.
 */
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { initCluster, clusterPaths, loadKeyFile } from '../src/runtime/cluster-file.ts';
import { NodeDriver } from '../src/runtime/driver.ts';
import { TcpClient } from '../src/runtime/client.ts';
import { defaultCrypto } from '../src/crypto/sodium.ts';
import { KvStore } from '../src/services/kv/store.ts';
import { KvClient } from '../src/services/kv/client.ts';
import { FileStore } from '../src/runtime/file-store.ts';
import type { Message } from '../src/codec/messages.ts';
import type { Principal } from '../src/crypto/provider.ts';

const dir = '/tmp/bulwark-trace';
rmSync(dir, { recursive: true, force: true });
const cf = initCluster({ dir, u: 1, r: 1, clients: 4, basePort: 17600, baseMetricsPort: 19600 });
const paths = clusterPaths(dir);
const crypto = await defaultCrypto();
const logger = pino({ level: 'warn' });

let tracing = false;
let t0 = 0;
const events: [number, string][] = [];
const ms = (t: number): string => (t - t0).toFixed(3);

// Wrap the driver's message entry point and the store's write to timestamp them.
const proto = NodeDriver.prototype as unknown as { onMessage: (this: { o: { nodeId: number } }, from: Principal, msg: Message, bytes: number) => void };
const onMessage = proto.onMessage;
proto.onMessage = function (from, msg, bytes) {
  if (tracing) {
    const seq = 'seq' in msg ? ` seq=${String(msg.seq)}` : '';
    events.push([performance.now(), `${ms(performance.now())} n${this.o.nodeId} <- ${from.kind[0]}${from.id} ${msg.kind}${seq}`]);
  }
  onMessage.call(this, from, msg, bytes);
};
// eslint-disable-next-line @typescript-eslint/unbound-method -- the original, called with .call(this) below
const write = FileStore.prototype.write;
FileStore.prototype.write = function (this: FileStore, puts, deletes, lazy = false) {
  const start = performance.now();
  const done = write.call(this, puts, deletes, lazy);
  if (tracing) {
    const where = (this as unknown as { dir: string }).dir.split('/').slice(-2).join('/');
    void done.then(() => {
      events.push([start, `${ms(start)}..${ms(performance.now())} ${where} write${lazy ? ' (lazy)' : ''} ${puts.map(([k]) => k).join(',')}`]);
    });
  }
  return done;
};

const nodes: NodeDriver[] = [];
for (const n of cf.nodes) {
  nodes.push(await NodeDriver.start({ cluster: cf, nodeId: n.id, privateKey: loadKeyFile(paths.nodeKey(n.id)).privateKey, dataDir: `${dir}/data/node-${n.id}`, crypto, appFactory: () => new KvStore(), logger }));
}
const client = await TcpClient.connect({ cluster: cf, clientId: 1, privateKey: loadKeyFile(paths.clientKey(1)).privateKey, crypto });
const kv = new KvClient(client);
for (let i = 0; i < 300; i++) await kv.put('k', 'v');
const lat: number[] = [];
for (let i = 0; i < 300; i++) {
  const t = performance.now();
  await kv.put('k', `v${i}`);
  lat.push(performance.now() - t);
}
lat.sort((a, b) => a - b);
console.log(`p50 of 300 puts, all in one process: ${lat[150]!.toFixed(2)} ms`);
for (let k = 0; k < 2; k++) {
  events.length = 0;
  tracing = true;
  t0 = performance.now();
  await kv.put('k', 'x');
  console.log(`\ntraced put: ${(performance.now() - t0).toFixed(2)} ms`);
  tracing = false;
  await new Promise((r) => setTimeout(r, 30)); // let the lazy writes land
  for (const [, line] of events.sort((a, b) => a[0] - b[0])) console.log(line);
}
await client.close();
for (const n of nodes) await n.stop();
rmSync(dir, { recursive: true, force: true });
