/**
 * `bulwark demo`: the README's main job. Starts a local u = r = 1 cluster (four nodes, each its
 * own process), runs a key-value workload with a live throughput line, and on the way:
 *   1. SIGKILLs a replica: the service goes on;
 *   2. restarts it: it catches up and ends with the same state digest as the others;
 *   3. stops the primary (SIGSTOP, a silent primary): the others change view, the service goes on;
 * then reads back every key and checks that each acknowledged write is there. Ends with a
 * summary of what was shown; exit code 0 only when all of it held.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterFile } from '../runtime/cluster-file.ts';
import type { TcpClient } from '../runtime/client.ts';
import type { NodeStatus } from '../runtime/driver.ts';
import { KvClient } from '../services/kv/client.ts';
import { connectClient } from './kv.ts';
import { downCommand, fetchStatus, initLoopbackCluster, pidFile, spawnNode, waitServing } from './cluster.ts';

/** Options of `bulwark demo`. */
export interface DemoOptions {
  /** Keep the cluster directory here (default: a temporary one, removed at the end). */
  readonly dir?: string;
  /** Concurrent clients of the workload. */
  readonly clients?: number;
  /** Seconds of each phase. */
  readonly phaseS?: number;
  /** Redraw the throughput line in place (a terminal); otherwise print one line per second. */
  readonly live?: boolean;
}

interface Workload {
  ops: number;
  errors: number;
  paused: boolean;
  stopped: boolean;
  /** Last acknowledged value per key. */
  readonly acked: Map<string, string>;
  readonly done: Promise<void>;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((r) => {
    setTimeout(r, ms);
  });

function startWorkload(clients: readonly TcpClient[]): Workload {
  const w = { ops: 0, errors: 0, paused: false, stopped: false, acked: new Map<string, string>() } as Omit<Workload, 'done'> & { done?: Promise<void> };
  w.done = Promise.all(
    clients.map(async (c) => {
      const kv = new KvClient(c);
      let i = 0;
      while (!w.stopped) {
        if (w.paused) {
          await sleep(20);
          continue;
        }
        i++;
        const key = `demo:${c.id}:${i % 50}`;
        const value = `${c.id}-${i}`;
        try {
          await kv.put(key, value);
          w.acked.set(key, value);
          w.ops++;
        } catch {
          // Counted and reported; the demo's verdict comes from the read-back.
          w.errors++;
        }
      }
    }),
  ).then(() => undefined);
  return w as Workload;
}

/** Runs the demo; returns the process exit code. */
export async function demoCommand(o: DemoOptions = {}, print: (s: string) => void = console.log): Promise<number> {
  const phaseMs = (o.phaseS ?? 4) * 1000;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'bulwark-demo-'));
  const temporary = o.dir === undefined;
  const t0 = Date.now();
  const at = (): string => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
  const say = (s: string): void => {
    if (o.live === true) process.stdout.write('\r\x1b[K');
    print(`${at()}  ${s}`);
  };
  const facts: string[] = [];
  let ok = true;
  let cf: ClusterFile | undefined;
  const clients: TcpClient[] = [];
  let live: NodeJS.Timeout | undefined;
  try {
    cf = await initLoopbackCluster({ dir, u: 1, r: 1, clients: 16, tunables: { viewChangeTimeoutMs: 800, clientRetryMs: 300 } });
    const cluster = cf;
    say(`starting a u=1 r=1 cluster: ${cluster.nodes.length} nodes on 127.0.0.1 ports ${cluster.nodes.map((n) => n.port).join(', ')} (data in ${dir})`);
    for (const n of cluster.nodes) spawnNode(dir, n.id);
    await waitServing(cluster, cluster.nodes.map((n) => n.id));
    const statuses = async (digest = false, nodes = cluster.nodes): Promise<(NodeStatus | undefined)[]> => Promise.all(nodes.map((n) => fetchStatus(cluster, n.id, digest)));
    const primary = async (): Promise<number> => {
      const st = await statuses();
      const views = st.filter((s): s is NodeStatus => s?.primary !== undefined && s.normal === true);
      return views.sort((a, b) => (b.view ?? 0) - (a.view ?? 0))[0]?.primary ?? 0;
    };
    for (let i = 0; i < (o.clients ?? 8); i++) clients.push(await connectClient({ dir }));
    const w = startWorkload(clients);
    let last = 0;
    live = setInterval(() => {
      const rate = w.ops - last;
      last = w.ops;
      const line = `${at()}  ${String(rate).padStart(6)} ops/s   total ${w.ops} acknowledged writes`;
      if (o.live === true) process.stdout.write(`\r\x1b[K${line}`);
      else print(line);
    }, 1000);
    const opsDuring = async (ms: number): Promise<number> => {
      const before = w.ops;
      await sleep(ms);
      return w.ops - before;
    };

    say(`workload: ${clients.length} clients writing their own keys`);
    const warm = await opsDuring(phaseMs);
    say(`fault-free: ${warm} writes in ${phaseMs / 1000}s`);

    // 1. Kill a replica (not the primary) with SIGKILL.
    const p0 = await primary();
    const execNodes = cluster.nodes.filter((n) => n.stages.includes('exec')).map((n) => n.id);
    const victim = execNodes.find((id) => id !== p0) ?? execNodes[0]!;
    const victimPid = Number(readFileSync(pidFile(dir, victim), 'utf8'));
    process.kill(victimPid, 'SIGKILL');
    say(`SIGKILL replica ${victim} (pid ${victimPid})`);
    const afterKill = await opsDuring(phaseMs);
    const killedOk = afterKill > 0;
    ok &&= killedOk;
    say(`with replica ${victim} dead: ${afterKill} writes in ${phaseMs / 1000}s`);
    facts.push(`killed replica ${victim} with SIGKILL: the service continued (${afterKill} writes in the next ${phaseMs / 1000}s)`);

    // 2. Restart it; it catches up; compare state digests at a quiet moment.
    spawnNode(dir, victim);
    await waitServing(cluster, [victim]);
    say(`restarted replica ${victim}`);
    const restartAt = Date.now();
    let caughtUp = false;
    for (let i = 0; i < 300 && !caughtUp; i++) {
      await sleep(100);
      const st = await statuses();
      const others = st.filter((s) => s !== undefined && s.node !== victim && s.executedSeq !== undefined).map((s) => s!.executedSeq!);
      const mine = st.find((s) => s?.node === victim)?.executedSeq;
      caughtUp = mine !== undefined && others.length > 0 && mine >= Math.min(...others) - 2;
    }
    const catchUpS = (Date.now() - restartAt) / 1000;
    w.paused = true;
    let same = false;
    let digests: string[] = [];
    let seq = 0;
    for (let i = 0; i < 100 && !same; i++) {
      await sleep(100);
      const st = (await statuses(true)).filter((s): s is NodeStatus => s?.executedSeq !== undefined);
      const seqs = new Set(st.map((s) => s.executedSeq));
      digests = st.map((s) => `${s.node}:${s.stateDigest?.slice(0, 16) ?? '?'}`);
      same = caughtUp && seqs.size === 1 && new Set(st.map((s) => s.stateDigest)).size === 1 && st.length === execNodes.length;
      seq = st[0]?.executedSeq ?? 0;
    }
    w.paused = false;
    ok &&= same;
    say(`replica ${victim} ${caughtUp ? `caught up in ${catchUpS.toFixed(1)}s` : 'did NOT catch up'}; state digests at seq ${seq}: ${digests.join(' ')} ${same ? '(equal)' : '(DIFFERENT)'}`);
    facts.push(`restarted replica ${victim}: it caught up (${catchUpS.toFixed(1)}s) and its state digest equals the others' at seq ${seq}: ${same ? 'yes' : 'NO'}`);
    await opsDuring(phaseMs / 2);

    // 3. Silence the primary with SIGSTOP: a view change must replace it.
    const p1 = await primary();
    const pPid = Number(readFileSync(pidFile(dir, p1), 'utf8'));
    const viewBefore = Math.max(...(await statuses()).map((s) => s?.view ?? 0));
    process.kill(pPid, 'SIGSTOP');
    const stoppedAt = Date.now();
    say(`SIGSTOP primary ${p1} (pid ${pPid}): it is silent now`);
    let newView: NodeStatus | undefined;
    // Ask only the others: the stopped node never answers, and waiting for its /status to time
    // out (1 s) made every poll, and so the reported time, a second or two late.
    const others = cluster.nodes.filter((n) => n.id !== p1);
    for (let i = 0; i < 300 && newView === undefined; i++) {
      await sleep(100);
      newView = (await statuses(false, others)).find((s) => s !== undefined && (s.view ?? 0) > viewBefore && s.normal === true);
    }
    const vcS = (Date.now() - stoppedAt) / 1000;
    const afterStop = await opsDuring(phaseMs);
    const vcOk = newView !== undefined && afterStop > 0;
    ok &&= vcOk;
    say(newView === undefined ? 'NO view change happened' : `view change to view ${newView.view} (primary ${newView.primary}) after ${vcS.toFixed(1)}s; ${afterStop} writes in the next ${phaseMs / 1000}s`);
    facts.push(
      newView === undefined
        ? `silenced primary ${p1} (SIGSTOP): NO view change`
        : `silenced primary ${p1} (SIGSTOP): view change to view ${newView.view} with primary ${newView.primary} after ${vcS.toFixed(1)}s; the service continued (${afterStop} writes)`,
    );
    process.kill(pPid, 'SIGCONT');
    say(`SIGCONT node ${p1}: it rejoins as a backup`);
    await opsDuring(phaseMs / 2);

    // 4. Stop the workload and read every key back.
    w.stopped = true;
    await w.done;
    clearInterval(live);
    const reader = new KvClient(clients[0]!);
    let lost = 0;
    for (const [key, value] of w.acked) {
      const got = await reader.get(key);
      if (got !== value) {
        lost++;
        if (lost <= 5) say(`LOST: ${key} should be ${value}, reads ${String(got)}`);
      }
    }
    ok &&= lost === 0;
    facts.push(`every acknowledged write is present: ${w.acked.size} keys read back, ${lost} lost (${w.ops} writes acknowledged, ${w.errors} failed calls)`);
    print('');
    print('demo summary:');
    for (const f of facts) print(`  - ${f}`);
    print(`demo: ${ok ? 'OK' : 'FAILED'} writes=${w.ops} lost=${lost} killed=${victim} restarted_same_digest=${same ? 'yes' : 'no'} view_change=${newView === undefined ? 'no' : `yes(view=${newView.view})`}`);
    return ok ? 0 : 1;
  } finally {
    if (live !== undefined) clearInterval(live);
    await Promise.all(clients.map((c) => c.close()));
    if (cf !== undefined) await downCommand({ dir }, () => undefined);
    if (temporary) rmSync(dir, { recursive: true, force: true });
  }
}
