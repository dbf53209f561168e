/**
 * Client-side attack drivers for `bulwark bench --attack` (issue 5), the real-process
 * counterparts of the simulator's faulty clients:
 * - `bad-client`: a cluster client identity that sends requests whose authenticator is valid
 *   only for its relay auth replica (which forwards it to the others, where it fails), at a
 *   fixed rate with fresh request ids: Aardvark's "valid MAC for the primary, bad for others";
 * - `client-flood`: many TCP connections to every node that send random bytes (most die at the
 *   handshake) and are opened again when closed, plus connections held idle in the handshake:
 *   the junk-frame and connection floods of the thesis' table 3.4.
 *
 * Both run at bounded rates: the load generator shares the machine with the cluster.
 */
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Transport } from '../runtime/transport.ts';
import { DerivedKeys } from '../crypto/pairing.ts';
import { publicKeysOf } from '../runtime/driver.ts';
import type { ClusterFile } from '../runtime/cluster-file.ts';
import { clusterPaths, loadKeyFile } from '../runtime/cluster-file.ts';
import { clientPrincipal, KeyRing, nodePrincipal } from '../crypto/provider.ts';
import { deriveCluster } from '../core/config.ts';
import { defaultCrypto } from '../crypto/sodium.ts';
import { requestCoreBytes, requestSignedBytes, relayIndexOf } from '../stages/common.ts';
import { encodeKvOp } from '../services/kv/ops.ts';

/** A running attack; `stop` ends it and closes its connections. */
export interface RunningAttack {
  stop(): Promise<void>;
  /** Messages or connections sent so far. */
  readonly sent: () => number;
}

/**
 * `bad-client`: client `clientId` of the cluster in `dir` sends `ratePerS` requests per second.
 * Without client signatures each is MAC'd correctly for its relay auth replica only (Aardvark's
 * "valid MAC for the primary, bad for the others"). With `clientSignatures` on, each carries
 * MACs valid for every auth replica and a broken signature, sent to every auth replica: the
 * cheap checks pass, the expensive one fails, and each auth replica blacklists the client.
 */
export async function startBadClient(dir: string, cf: ClusterFile, clientId: number, ratePerS: number): Promise<RunningAttack> {
  const cluster = deriveCluster(cf.protocol);
  const self = clientPrincipal(clientId);
  const key = loadKeyFile(clusterPaths(dir).clientKey(clientId));
  const crypto = await defaultCrypto();
  const keys = new KeyRing(self, crypto, new DerivedKeys(self, key.privateKey, publicKeysOf(cf)));
  const auth = cluster.auth.nodes.map((id) => nodePrincipal(id));
  const relay = auth[relayIndexOf(clientId, auth.length)]!;
  const dial = new Map(cf.nodes.filter((n) => cluster.auth.nodes.includes(n.id)).map((n) => [n.id, { host: n.host, port: n.port }] as const));
  const transport = new Transport({ keys, dial, known: (p) => p.kind === 'node', onMessage: () => undefined, onReject: () => undefined });
  await transport.start();
  let reqId = Date.now() * 1000;
  let sent = 0;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((ratePerS * tickMs) / 1000));
  const timer = setInterval(() => {
    for (let i = 0; i < perTick; i++) {
      const op = encodeKvOp({ kind: 'put', key: `bad${clientId}`, value: String(reqId) });
      const id = ++reqId;
      const core = requestCoreBytes(clientId, id, op);
      if (cluster.clientSignatures) {
        const sig = keys.sign(requestSignedBytes(core));
        sig[0]! ^= 0xff;
        transport.send(auth, { kind: 'request', client: clientId, reqId: id, op, macs: keys.authenticate(auth, core), fanout: false, sig });
      } else {
        const macs = keys.authenticate(auth, core).map((m, j) => (auth[j]!.id === relay.id ? m : m.map((x) => x ^ 0xff)));
        transport.send([relay], { kind: 'request', client: clientId, reqId: id, op, macs, fanout: true, sig: undefined });
      }
      sent++;
    }
  }, tickMs);
  return {
    sent: () => sent,
    stop: async () => {
      clearInterval(timer);
      await transport.stop();
    },
  };
}

/**
 * `client-flood`: `connections` sockets spread over the cluster's nodes, each writing `bytesPerS`
 * random bytes per second and reopened when the node closes it, plus `idle` connections that
 * never finish the handshake.
 */
export function startClientFlood(cf: ClusterFile, o: { connections: number; bytesPerS: number; idle: number }): RunningAttack {
  let stopped = false;
  let sent = 0;
  const sockets = new Set<Socket>();
  const targets = cf.nodes.map((n) => ({ host: n.host === '0.0.0.0' ? '127.0.0.1' : n.host, port: n.port }));
  const open = (i: number, junk: boolean): void => {
    if (stopped) return;
    const t = targets[i % targets.length]!;
    const s = connect(t.port, t.host);
    sockets.add(s);
    sent++;
    let timer: NodeJS.Timeout | undefined;
    s.on('connect', () => {
      if (!junk) return;
      const chunk = Math.max(1, Math.round(o.bytesPerS / 20));
      timer = setInterval(() => {
        if (s.writable) s.write(randomBytes(chunk));
      }, 50);
    });
    const again = (): void => {
      if (timer !== undefined) clearInterval(timer);
      sockets.delete(s);
      if (!stopped) setTimeout(() => open(i, junk), 20);
    };
    s.on('error', () => undefined);
    s.on('close', again);
  };
  for (let i = 0; i < o.connections; i++) open(i, true);
  for (let i = 0; i < o.idle; i++) open(i, false);
  return {
    sent: () => sent,
    stop: async () => {
      stopped = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => setTimeout(r, 50));
    },
  };
}
