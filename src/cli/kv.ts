/**
 * `bulwark kv put|get|del|cas|incr`: the key-value client on the command line, and `bulwark kv
 * serve --resp HOST:PORT`, the Redis-protocol gateway. Each run takes
 * a free client identity of the cluster (a lock file per identity) and keeps its request-id
 * reservation in <dir>/clients/<id>.
 */
import { join } from 'node:path';
import { BulwarkError } from '../core/errors.ts';
import { clusterPaths, loadClusterFile, loadKeyFile, type ClusterFile } from '../runtime/cluster-file.ts';
import { ClientBusyError, TcpClient, untilStopRequested } from '../runtime/client.ts';
import { defaultCrypto } from '../crypto/sodium.ts';
import { KvClient } from '../services/kv/client.ts';
import { RespGateway } from '../services/kv/resp/gateway.ts';

/** Where the cluster is: `--config F` wins over `--dir D`. */
export interface ClusterRef {
  readonly dir?: string;
  readonly config?: string;
}

/** Resolves the cluster file and the directory holding keys and client state. */
export function resolveCluster(ref: ClusterRef): { cf: ClusterFile; dir: string } {
  if (ref.config !== undefined) return { cf: loadClusterFile(ref.config), dir: join(ref.config, '..') };
  const dir = ref.dir ?? 'cluster';
  return { cf: loadClusterFile(clusterPaths(dir).file), dir };
}

/** Connects the first free client identity (from `first`), with durable state in the cluster dir. */
export async function connectClient(ref: ClusterRef, o: { first?: number; id?: number } = {}): Promise<TcpClient> {
  const { cf, dir } = resolveCluster(ref);
  const crypto = await defaultCrypto();
  const ids = o.id !== undefined ? [o.id] : cf.clients.map((c) => c.id).filter((id) => id >= (o.first ?? 0));
  for (const id of ids) {
    try {
      const key = loadKeyFile(clusterPaths(dir).clientKey(id));
      return await TcpClient.connect({ cluster: cf, clientId: id, privateKey: key.privateKey, crypto, stateDir: join(dir, 'clients', String(id)) });
    } catch (e) {
      if (e instanceof ClientBusyError && o.id === undefined) continue;
      throw e;
    }
  }
  throw new BulwarkError('no_free_client', `every client identity of the cluster is in use (${ids.length} tried)`);
}

/** Runs one KV command and prints its answer. */
export async function kvCommand(op: string, args: readonly string[], ref: ClusterRef & { client?: number; timeoutMs?: number }, print: (s: string) => void = console.log): Promise<number> {
  const need: Record<string, number> = { put: 2, get: 1, del: 1, cas: 3, incr: 1 };
  const n = need[op];
  if (n === undefined) {
    print(`unknown kv command "${op}" (put, get, del, cas, incr)`);
    return 2;
  }
  if (args.length < n || args.length > (op === 'incr' ? 2 : n)) {
    print(`usage: bulwark kv ${op} ${{ put: 'KEY VALUE', get: 'KEY', del: 'KEY', cas: 'KEY EXPECTED|- NEW', incr: 'KEY [DELTA]' }[op]}`);
    return 2;
  }
  const client = await connectClient(ref, ref.client === undefined ? {} : { id: ref.client });
  const kv = new KvClient(client);
  const timeout = new Promise<never>((_, reject) => {
    setTimeout(() => {
      reject(new BulwarkError('timeout', `no answer within ${ref.timeoutMs ?? 10_000} ms (is the cluster up? try bulwark status)`));
    }, ref.timeoutMs ?? 10_000).unref();
  });
  try {
    const [a = '', b = '', c = ''] = args;
    switch (op) {
      case 'put':
        await Promise.race([kv.put(a, b), timeout]);
        print('OK');
        break;
      case 'get': {
        const v = await Promise.race([kv.get(a), timeout]);
        print(v === null ? '(nil)' : v);
        break;
      }
      case 'del':
        print(String(await Promise.race([kv.del(a), timeout])));
        break;
      case 'cas':
        print(String(await Promise.race([kv.cas(a, b === '-' ? null : b, c), timeout])));
        break;
      case 'incr': {
        const delta = b === '' ? 1 : Number(b);
        if (!Number.isSafeInteger(delta)) {
          print(`DELTA must be an integer, got "${b}"`);
          return 2;
        }
        print(String(await Promise.race([kv.incr(a, delta), timeout])));
        break;
      }
    }
    return 0;
  } finally {
    await client.close();
  }
}

/** Splits `HOST:PORT` (or `[V6]:PORT`) into its parts. */
export function parseListenAddress(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):([0-9]{1,5})$/.exec(s);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) throw new BulwarkError('bad_address', `--resp wants HOST:PORT (for example 127.0.0.1:6380), got "${s}"`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * `bulwark kv serve --resp HOST:PORT`: one client of the cluster serving the Redis protocol
 * (see docs/resp.md) until SIGINT or SIGTERM.
 */
export async function kvServeCommand(ref: ClusterRef & { client?: number; resp: string }, print: (s: string) => void = console.log): Promise<number> {
  const { host, port } = parseListenAddress(ref.resp);
  const client = await connectClient(ref, ref.client === undefined ? {} : { id: ref.client });
  const gateway = new RespGateway({ invoker: client, requestBytesMax: client.cluster.config.requestBytesMax, log: print });
  try {
    await gateway.listen(host, port);
  } catch (e) {
    await client.close();
    throw e;
  }
  print(`resp: serving as client ${client.id}; stop with Ctrl-C or SIGTERM`);
  await untilStopRequested();
  await gateway.close();
  await client.close();
  const s = gateway.stats;
  print(`resp: stopped after ${s.commands} commands (${s.clusterCommands} in ${s.requests} cluster requests), ${s.protocolErrors} protocol errors`);
  return 0;
}
