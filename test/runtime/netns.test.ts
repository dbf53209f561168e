/**
 * Multi-host: four nodes in four Linux network namespaces, each with its own address
 * (10.77.x.1-4) on a bridge, every node listening on the SAME port numbers. The client runs
 * in the root namespace. Nothing may assume one host: the cluster must serve, survive a dead
 * node, and stay linearizable.
 *
 * Needs root and iproute2 (`.ci/run` installs iproute2; CI runs as root). Elsewhere the test
 * reports itself skipped with the reason, unless BULWARK_REQUIRE_NETNS=1 demands it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatClusterFile, initCluster, clusterPaths } from '../../src/runtime/cluster-file.ts';
import { binPath } from '../../src/cli/cluster.ts';
import { connectClient } from '../../src/cli/kv.ts';
import { fetchStatus, waitServing } from '../../src/cli/cluster.ts';
import { RecordingWorkload, eventually } from './harness.ts';
import { checkLinearizable } from '../../src/sim/checkers/linearizability.ts';
import type { TcpClient } from '../../src/runtime/client.ts';

function canRun(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for ip netns';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    // iproute2 is missing: nothing to run the namespaces with.
    return 'needs iproute2 (ip)';
  }
  return undefined;
}

const reason = canRun();
const required = process.env.BULWARK_REQUIRE_NETNS === '1';
const tag = `${process.pid % 200}`;
const subnet = `10.77.${tag}`;
const ns = (i: number): string => `bwns${tag}x${i}`;
const bridge = `bwbr${tag}`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

function setUp(n: number): void {
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${subnet}.254/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  for (let i = 0; i < n; i++) {
    ip('netns', 'add', ns(i));
    ip('link', 'add', `bwv${tag}x${i}`, 'type', 'veth', 'peer', 'name', `bwp${tag}x${i}`);
    ip('link', 'set', `bwp${tag}x${i}`, 'netns', ns(i));
    ip('link', 'set', `bwv${tag}x${i}`, 'master', bridge);
    ip('link', 'set', `bwv${tag}x${i}`, 'up');
    ip('netns', 'exec', ns(i), 'ip', 'link', 'set', 'lo', 'up');
    ip('netns', 'exec', ns(i), 'ip', 'link', 'set', `bwp${tag}x${i}`, 'name', 'eth0');
    ip('netns', 'exec', ns(i), 'ip', 'addr', 'add', `${subnet}.${i + 1}/24`, 'dev', 'eth0');
    ip('netns', 'exec', ns(i), 'ip', 'link', 'set', 'eth0', 'up');
  }
}

function tearDown(n: number): void {
  for (let i = 0; i < n; i++) {
    try {
      ip('netns', 'pids', ns(i));
      for (const pid of execFileSync('ip', ['netns', 'pids', ns(i)]).toString().split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Namespace already gone.
    }
    try {
      ip('netns', 'del', ns(i));
    } catch {
      // Already removed.
    }
  }
  try {
    ip('link', 'del', bridge);
  } catch {
    // Already removed.
  }
}

test('four nodes in four network namespaces (own addresses, same ports) serve a linearizable workload', { skip: reason !== undefined && !required ? reason : false, timeout: 180_000 }, async () => {
  assert.equal(reason, undefined, reason);
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-netns-'));
  const n = 4;
  let clients: TcpClient[] = [];
  try {
    setUp(n);
    const cf0 = initCluster({ dir, u: 1, r: 1, clients: 8 });
    // Every node on its own host address, all with the same ports.
    const cf = { ...cf0, nodes: cf0.nodes.map((x, i) => ({ ...x, host: `${subnet}.${i + 1}`, port: 7100, metricsPort: 9100 })) };
    writeFileSync(clusterPaths(dir).file, formatClusterFile(cf));
    mkdirSync(clusterPaths(dir).logs, { recursive: true });
    for (let i = 0; i < n; i++) {
      const out = openSync(join(clusterPaths(dir).logs, `node-${i}.log`), 'a');
      const child = spawn('ip', ['netns', 'exec', ns(i), process.execPath, binPath, 'node', '--config', clusterPaths(dir).file, '--id', String(i)], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, BULWARK_EXIT_WITH_PID: String(process.pid) } });
      child.unref();
    }
    await waitServing(cf, [0, 1, 2, 3], 60_000);
    for (let i = 0; i < 3; i++) clients.push(await connectClient({ dir }));
    const w = new RecordingWorkload(clients);
    assert.ok((await w.progressOver(2000)) > 0, 'the cluster serves across namespaces');
    // Take node 3's host off the network entirely: the others go on.
    ip('netns', 'exec', ns(3), 'ip', 'link', 'set', 'eth0', 'down');
    assert.ok((await w.progressOver(3000)) > 0, 'the service continues with one host unreachable');
    ip('netns', 'exec', ns(3), 'ip', 'link', 'set', 'eth0', 'up');
    await eventually('node 3 reconnects to its peers', async () => ((await fetchStatus(cf, 3))?.peers.length ?? 0) === 3, 30_000);
    await w.progressOver(1000);
    await w.stop();
    const lin = checkLinearizable(w.history);
    assert.equal(lin.ok, true, lin.ok === false ? lin.reason : 'undecided');
    assert.ok(lin.checked > 20);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    tearDown(n);
    rmSync(dir, { recursive: true, force: true });
  }
});
