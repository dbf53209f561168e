/** The Node runtime: run nodes and clients over TCP with real files (`bulwark/runtime`). */
export { TcpClient, ClientBusyError, type TcpClientOptions } from './client.ts';
export { NodeDriver, type NodeDriverOptions, type NodeStatus } from './driver.ts';
export { FileStore, StorageFailedError } from './file-store.ts';
export { Transport, type TransportOptions } from './transport.ts';
export { initCluster, loadClusterFile, loadKeyFile, parseClusterFile, formatClusterFile, clusterPaths, type ClusterFile, type KeyFile, type NodeEntry, type ClientEntry, type InitOptions } from './cluster-file.ts';
export { defaultCrypto, SodiumCrypto } from '../crypto/sodium.ts';
export { RespGateway, RespGatewayError, defaultRespLimits, type RespGatewayOptions, type RespGatewayStats } from '../services/kv/resp/gateway.ts';
export { RespProtocolError, type RespLimits } from '../services/kv/resp/parser.ts';
