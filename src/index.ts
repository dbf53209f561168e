/**
 * bulwark: state machine replication with the fault model chosen by configuration.
 *
 * The public surface: configuration and quorum math, the application contract, the replicated
 * key-value store and its typed client, the pure stage state machines, and the crypto
 * interfaces. The simulator is exported separately from `bulwark/sim`.
 */
export { stageCounts, quorums, type Quorums, type StageCounts } from './core/quorum.ts';
export {
  defaultConfig,
  defaultTunables,
  checkConfig,
  validateConfig,
  deriveCluster,
  primaryOf,
  checkpointModes,
  durabilityModes,
  stateTransferModes,
  type CheckpointMode,
  type Cluster,
  type DurabilityMode,
  type NodeSpec,
  type StateTransferMode,
  type ProtocolConfig,
  type StageName,
  type Tunables,
} from './core/config.ts';
export { BulwarkError, ConfigError, DecodeError, StorageCorruptError, type ConfigProblem } from './core/errors.ts';
export type { AppBatch, AppFactory, AppPagedSnapshot, AppRequest, AppSnapshot, ReplicatedApp } from './app/contract.ts';
export { bytesSnapshot } from './app/contract.ts';
export { KvCheckpointError, KvStore } from './services/kv/store.ts';
export { KvClient, KvError, type Invoker } from './services/kv/client.ts';
export type { KvOp, KvOutput, KvCommand, KvCommandOutput, KvExpiry, KvFailCode, KvRequest, KvReply } from './services/kv/model.ts';
export { encodeKvOp, decodeKvOp, encodeKvOutput, decodeKvOutput, encodeKvRequest, decodeKvRequest, encodeKvReply, decodeKvReply } from './services/kv/ops.ts';
export { ReplicaNode, type NodeDeps } from './stages/node.ts';
export { ClientCore, type ClientEvent, type ClientOptions } from './stages/client/client.ts';
export type { Effect, Note, StageEvent, RandomSource } from './stages/types.ts';
export { KeyRing, nodePrincipal, clientPrincipal, type CryptoProvider, type KeyMaterial, type Principal } from './crypto/provider.ts';
export { NodeCrypto, generateEd25519 } from './crypto/node.ts';
export { encodeMessage, tryDecodeMessage, type Message } from './codec/messages.ts';
