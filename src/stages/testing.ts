/**
 * Helpers for stage unit tests: a cluster with simulated keys, and accessors for effects.
 * Test-only; not exported from the package.
 */
import { defaultConfig, deriveCluster, type Cluster, type Tunables } from '../core/config.ts';
import { KeyRing, type Principal } from '../crypto/provider.ts';
import { SimCrypto, SimKeys } from '../crypto/sim.ts';
import type { Message } from '../codec/messages.ts';
import type { Effect } from './types.ts';

/** A cluster for (u, r) with `clients` clients and simulated keys. */
export function testCluster(u: number, r: number, clients = 4, tunables: Partial<Tunables> = {}): { cluster: Cluster; ring: (p: Principal) => KeyRing } {
  const cluster = deriveCluster(defaultConfig({ u, r, clients, tunables }));
  const keys = new SimKeys('unit');
  const crypto = new SimCrypto();
  return { cluster, ring: (p) => new KeyRing(p, crypto, keys.materialFor(p)) };
}

/** The messages sent by `effects`, flattened to (to, msg). */
export function sends(effects: readonly Effect[]): { to: Principal; msg: Message }[] {
  return effects.flatMap((e) => (e.kind === 'send' ? e.to.map((to) => ({ to, msg: e.msg })) : []));
}

/** Index of the first effect of a kind, or -1. */
export function firstIndex(effects: readonly Effect[], kind: Effect['kind']): number {
  return effects.findIndex((e) => e.kind === kind);
}
