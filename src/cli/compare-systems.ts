/**
 * The systems of `bulwark compare`: how each is started on loopback with its data on disk, how
 * its readiness is checked, how it is stopped, and the client adapter the load generator drives
 * it through. Peers run from their Debian packages (etcd-server, zookeeper, redis-server); bulwark
 * runs from this checkout through the same helpers as `bulwark up`.
 *
 * Every process started here is tracked: {@link RunningSystem.stop} stops a system's processes
 * (SIGTERM, then SIGKILL after 5 s), and {@link killAllNow} kills whatever is left (on a second
 * Ctrl-C and at process exit).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { BulwarkError } from '../core/errors.ts';
import { alive } from '../runtime/client.ts';
import { KvClient } from '../services/kv/client.ts';
import { downCommand, freePorts, initLoopbackCluster, spawnNode, waitServing } from './cluster.ts';
import { connectClient } from './kv.ts';
import type { Exception as ZkException, Stat as ZkStat } from 'node-zookeeper-client';
import { zookeeperJar, type EtcdClientKind, type KvAdapter, type SystemName } from './compare.ts';

/** A system that is up and serving. */
export interface RunningSystem {
  /** One line for the report: topology, version, durability settings, client. */
  readonly setup: string;
  /** A new connection for loader client `i` (spread over the members by `i`). */
  connect(i: number): Promise<KvAdapter>;
  /** Stops every process of the system. */
  stop(): Promise<void>;
  /** Process ids of the system's servers (for CPU accounting). */
  pids(): number[];
}

/** Where and how to start a system. */
export interface StartContext {
  /** Empty directory for the system's data, configuration and logs. */
  readonly dir: string;
  readonly etcdClient: EtcdClientKind;
  /** Loader clients that will connect (bulwark creates that many client identities). */
  readonly clients: number;
  /** Aborts waiting for readiness. */
  readonly signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Processes.

const liveChildren = new Set<ChildProcess>();
const liveNodePids = new Set<number>();
let exitHookInstalled = false;

/** Kills (SIGKILL) every process this module started that is still running. Synchronous. */
export function killAllNow(): void {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  liveChildren.clear();
  for (const pid of liveNodePids) {
    if (!alive(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone between the check and the kill.
    }
  }
  liveNodePids.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllNow);
}

/** A started server process. */
interface Proc {
  readonly name: string;
  readonly log: string;
  readonly child: ChildProcess;
  /** Set once the process has exited. */
  exitCode: number | string | undefined;
  stop(): Promise<void>;
}

function tail(path: string, lines = 12): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    // No log written.
    return '(no log)';
  }
}

function startProcess(name: string, cmd: string, args: readonly string[], log: string, cwd: string): Proc {
  installExitHook();
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  liveChildren.add(child);
  const p: Proc = {
    name,
    log,
    child,
    exitCode: undefined,
    async stop() {
      if (p.exitCode !== undefined) return;
      const gone = new Promise<void>((r) => child.once('exit', () => {
        r();
      }));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
  child.on('exit', (code, sig) => {
    p.exitCode = code ?? sig ?? 'exited';
    liveChildren.delete(child);
  });
  child.on('error', (e) => {
    p.exitCode = `failed to start: ${e.message}`;
    liveChildren.delete(child);
  });
  return p;
}

function pidsOf(procs: readonly Proc[]): number[] {
  return procs.map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined);
}

/** Polls `ready` until it holds; fails with the log of a process that exited meanwhile, or after `timeoutMs`. */
async function waitReady(what: string, procs: readonly Proc[], ready: () => Promise<boolean>, signal: AbortSignal | undefined, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((p) => p.exitCode !== undefined);
    if (dead !== undefined) throw new BulwarkError('peer_failed', `${dead.name} exited (${String(dead.exitCode)}) while starting; last lines of ${dead.log}:\n${tail(dead.log)}`);
    if (signal?.aborted === true) throw new BulwarkError('interrupted', `interrupted while waiting for ${what}`);
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new BulwarkError('peer_failed', `${what} not ready after ${timeoutMs} ms; last lines of ${procs[0]?.log ?? '?'}:\n${procs[0] === undefined ? '' : tail(procs[0].log)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function versionOf(cmd: string, args: readonly string[], pattern: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    return pattern.exec(out)?.[1] ?? '?';
  } catch {
    // The binary ran before (it is on PATH); a version that cannot be read is reported as '?'.
    return '?';
  }
}

/** Sends a ZooKeeper four-letter command and returns the answer. */
function fourLetter(port: number, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.setTimeout(2000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write(cmd));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// etcd: three members.

async function startEtcd(ctx: StartContext): Promise<RunningSystem> {
  const ports = await freePorts(6);
  const members = [0, 1, 2].map((i) => ({ name: `m${i}`, client: `http://127.0.0.1:${ports[2 * i]!}`, peer: `http://127.0.0.1:${ports[2 * i + 1]!}` }));
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(',');
  const procs = members.map((m) => {
    const data = join(ctx.dir, m.name);
    return startProcess(`etcd ${m.name}`, 'etcd', [
      '--name', m.name, '--data-dir', data,
      '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'bulwark-compare',
      '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
    ], join(ctx.dir, `${m.name}.log`), ctx.dir);
  });
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  try {
    await waitReady('etcd', procs, async () => {
      const h = await Promise.all(members.map(async (m) => {
        const res = await fetch(`${m.client}/health`, { signal: AbortSignal.timeout(2000) });
        return ((await res.json()) as { health?: string }).health === 'true';
      }));
      return h.every(Boolean);
    }, ctx.signal);
  } catch (e) {
    await stop();
    throw e;
  }
  const version = versionOf('etcd', ['--version'], /etcd Version: (\S+)/);
  const client = ctx.etcdClient === 'grpc'
    ? `the etcd3 npm package (gRPC), one client (channel) per loader client, pinned to member i mod 3`
    : `etcd's v3 JSON gateway over HTTP/1.1 keep-alive, one connection per loader client, to member i mod 3`;
  return {
    setup: `etcd ${version}, 3 members, default durability (WAL fsync per commit), linearizable reads (the default); client: ${client}`,
    connect: (i) => (ctx.etcdClient === 'grpc' ? etcdGrpc(members[i % 3]!.client) : etcdHttp(members[i % 3]!.client)),
    stop,
    pids: () => pidsOf(procs),
  };
}

async function etcdGrpc(url: string): Promise<KvAdapter> {
  const { Etcd3 } = await import('etcd3');
  const c = new Etcd3({ hosts: url });
  return {
    get: async (k) => (await c.get(k).string()) !== null,
    put: async (k, v) => {
      await c.put(k).value(v);
    },
    close: () => {
      c.close();
      return Promise.resolve();
    },
  };
}

async function etcdHttp(url: string): Promise<KvAdapter> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(url);
  const post = (path: string, body: unknown): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const j = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
            if (res.statusCode !== 200) reject(new Error(`etcd gateway ${path}: ${String(res.statusCode)} ${JSON.stringify(j)}`));
            else resolve(j);
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  // Check the connection once, as the gRPC client does on its first call.
  await post('/v3/kv/range', { key: b64('k0000') });
  return {
    get: async (k) => {
      const j = await post('/v3/kv/range', { key: b64(k) });
      return Array.isArray(j.kvs) && j.kvs.length > 0;
    },
    put: async (k, v) => {
      await post('/v3/kv/put', { key: b64(k), value: b64(v) });
    },
    close: () => {
      agent.destroy();
      return Promise.resolve();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper: three servers from Debian's package layout.

async function startZooKeeper(ctx: StartContext): Promise<RunningSystem> {
  const ports = await freePorts(9);
  const servers = [1, 2, 3].map((id, i) => ({ id, client: ports[3 * i]!, quorum: ports[3 * i + 1]!, election: ports[3 * i + 2]! }));
  // slf4j-simple (from libslf4j-java, a dependency of the package) sends the server's log to
  // stderr; without a binding it would be silent.
  const cp = [zookeeperJar, '/usr/share/java/slf4j-simple.jar'].join(':');
  const procs = servers.map((s) => {
    const data = join(ctx.dir, `zk${s.id}`);
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'myid'), `${s.id}\n`);
    const cfg = join(ctx.dir, `zoo${s.id}.cfg`);
    writeFileSync(
      cfg,
      [
        'tickTime=2000',
        'initLimit=10',
        'syncLimit=5',
        `dataDir=${data}`,
        `clientPort=${s.client}`,
        'clientPortAddress=127.0.0.1',
        'maxClientCnxns=0',
        'forceSync=yes',
        'admin.enableServer=false',
        '4lw.commands.whitelist=srvr,ruok',
        ...servers.map((x) => `server.${x.id}=127.0.0.1:${x.quorum}:${x.election}`),
        '',
      ].join('\n'),
    );
    return startProcess(`zookeeper ${s.id}`, 'java', ['-Xms512m', '-Xmx1g', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', cp, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', cfg], join(ctx.dir, `zk${s.id}.log`), ctx.dir);
  });
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  let version = '?';
  try {
    await waitReady('zookeeper', procs, async () => {
      const answers = await Promise.all(servers.map((s) => fourLetter(s.client, 'srvr')));
      version = /Zookeeper version: ([0-9.]+)/.exec(answers[0] ?? '')?.[1] ?? version;
      const modes = answers.map((a) => /Mode: (\w+)/.exec(a)?.[1]);
      return modes.filter((m) => m === 'leader').length === 1 && modes.filter((m) => m === 'follower').length === 2;
    }, ctx.signal, 90_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    setup: `ZooKeeper ${version} (Debian package, OpenJDK ${javaVersion()}), 3 servers, forceSync=yes (transaction log fsynced before acknowledging); reads served by the connected server (ZooKeeper's sequential consistency, not linearizable); client: node-zookeeper-client, one session per loader client on server i mod 3, znodes /compare/<key>`,
    connect: (i) => zkAdapter(servers[i % 3]!.client),
    stop,
    pids: () => pidsOf(procs),
  };
}

function javaVersion(): string {
  // `java -version` writes to stderr.
  const r = spawnSync('java', ['-version'], { encoding: 'utf8', timeout: 10_000 });
  return /version "([^"]+)"/.exec(`${r.stderr}${r.stdout}`)?.[1] ?? '?';
}

async function zkAdapter(port: number): Promise<KvAdapter> {
  const zk = (await import('node-zookeeper-client')).default;
  const c = zk.createClient(`127.0.0.1:${port}`, { sessionTimeout: 30_000, spinDelay: 200, retries: 2 });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      reject(new BulwarkError('peer_failed', `no ZooKeeper session on port ${port} within 15 s`));
    }, 15_000);
    c.once('connected', () => {
      clearTimeout(t);
      resolve();
    });
    c.connect();
  });
  const call = <T>(f: (cb: (e: Error | ZkException | null, x?: T) => void) => void): Promise<T | undefined> =>
    new Promise((resolve, reject) => {
      f((e, x) => {
        if (e) reject(e instanceof Error ? e : new Error(String(e)));
        else resolve(x);
      });
    });
  const path = (k: string): string => `/compare/${k}`;
  const exists = (e: Error | ZkException | null): boolean => e instanceof zk.Exception && e.getCode() === zk.Exception.NODE_EXISTS;
  // The parent of every key (mkdirp: whichever client comes first creates it).
  await call<string>((cb) => {
    c.mkdirp('/compare', cb);
  });
  return {
    get: async (k) => (await call<Buffer>((cb) => {
      c.getData(path(k), (e, data) => {
        cb(e, data);
      });
    })) !== undefined,
    put: async (k, v) => {
      await call<ZkStat>((cb) => {
        c.setData(path(k), Buffer.from(v), -1, cb);
      });
    },
    insert: async (k, v) => {
      const data = Buffer.from(v);
      await call<string>((cb) => {
        c.create(path(k), data, (e, p) => {
          if (exists(e)) c.setData(path(k), data, -1, (e2) => {
            cb(e2, p);
          });
          else cb(e, p);
        });
      });
    },
    close: () => {
      c.close();
      return Promise.resolve();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Redis: one node, append-only file.

async function startRedis(ctx: StartContext, fsync: 'always' | 'everysec'): Promise<RunningSystem> {
  const [port] = await freePorts(1);
  const p = startProcess(`redis-server (${fsync})`, 'redis-server', [
    '--port', String(port!), '--bind', '127.0.0.1', '--dir', ctx.dir,
    '--appendonly', 'yes', '--appendfsync', fsync, '--save', '',
    '--protected-mode', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--logfile', '',
  ], join(ctx.dir, 'redis.log'), ctx.dir);
  const stop = async (): Promise<void> => {
    await p.stop();
  };
  try {
    await waitReady('redis', [p], async () => {
      const a = await new Promise<string>((resolve, reject) => {
        const s = netConnect(port!, '127.0.0.1');
        s.setTimeout(1000, () => s.destroy(new Error('timeout')));
        s.on('connect', () => s.write('PING\r\n'));
        s.on('data', (d: Buffer) => {
          resolve(d.toString());
          s.destroy();
        });
        s.on('error', reject);
      });
      return a.startsWith('+PONG');
    }, ctx.signal);
  } catch (e) {
    await stop();
    throw e;
  }
  const version = versionOf('redis-server', ['--version'], /v=(\S+)/);
  return {
    setup: `Redis ${version}, one node (no replication: the ceiling), appendonly yes, appendfsync ${fsync}, RDB snapshots off; client: ioredis, one connection per loader client, no pipelining`,
    connect: () => redisAdapter(port!),
    stop,
    pids: () => pidsOf([p]),
  };
}

async function redisAdapter(port: number): Promise<KvAdapter> {
  const { Redis } = await import('ioredis');
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  await r.connect();
  return {
    get: async (k) => (await r.get(k)) !== null,
    put: async (k, v) => {
      await r.set(k, v);
    },
    close: async () => {
      try {
        await r.quit();
      } catch {
        // Already closed: disconnect below is enough.
      }
      r.disconnect();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// bulwark: the nodes of this checkout.

async function startBulwark(ctx: StartContext, u: number, r: number): Promise<RunningSystem> {
  const cf = await initLoopbackCluster({ dir: ctx.dir, u, r, durability: 'parallel', clients: Math.max(1, ctx.clients) });
  // Nodes exit by themselves if this process dies without stopping them.
  const pids = cf.nodes.map((n) => spawnNode(ctx.dir, n.id, { BULWARK_EXIT_WITH_PID: String(process.pid) }));
  for (const pid of pids) liveNodePids.add(pid);
  installExitHook();
  const stop = async (): Promise<void> => {
    await downCommand({ dir: ctx.dir }, () => undefined);
    for (const pid of pids) liveNodePids.delete(pid);
  };
  try {
    await waitServing(cf, cf.nodes.map((n) => n.id), 60_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    setup: `bulwark (this checkout), u=${u} r=${r} on ${cf.nodes.length} nodes (each node its own process, every stage on every node), durability parallel, default tunables; reads on the read-only path (every executor must agree: linearizable); client: KvClient over TcpClient, one client identity per loader client`,
    connect: async () => {
      const c = await connectClient({ dir: ctx.dir });
      const kv = new KvClient(c);
      return {
        get: async (k) => (await kv.get(k)) !== null,
        put: (k, v) => kv.put(k, v),
        close: () => c.close(),
      };
    },
    stop,
    pids: () => [...pids],
  };
}

/** Starts `system` in `ctx.dir` and waits until it serves; on failure nothing is left running. */
export function startSystem(system: SystemName, ctx: StartContext): Promise<RunningSystem> {
  mkdirSync(ctx.dir, { recursive: true });
  switch (system) {
    case 'etcd':
      return startEtcd(ctx);
    case 'zookeeper':
      return startZooKeeper(ctx);
    case 'redis-always':
      return startRedis(ctx, 'always');
    case 'redis-everysec':
      return startRedis(ctx, 'everysec');
    case 'bulwark-cft':
      return startBulwark(ctx, 1, 0);
    case 'bulwark-bft':
      return startBulwark(ctx, 1, 1);
  }
}
