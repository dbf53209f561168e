/**
 * `bulwark kv put|get|del|cas|incr`: the key-value client on the command line. Each run takes
 * a free client identity of the cluster (a lock file per identity) and keeps its request-id
 * reservation in <dir>/clients/<id>.
 */
import { join } from 'node:path';
import { BulwarkError } from '../core/errors.ts';
import { clusterPaths, loadClusterFile, loadKeyFile, type ClusterFile } from '../runtime/cluster-file.ts';
import { ClientBusyError, TcpClient } from '../runtime/client.ts';
import { defaultCrypto } from '../crypto/sodium.ts';
import { KvClient } from '../services/kv/client.ts';

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
