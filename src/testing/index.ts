/**
 * `natskit/testing`: real nats-server processes for tests, single node or a cluster, and a
 * fault proxy for network faults.
 * @packageDocumentation
 */
export type {
  FaultProxyConnection,
  FaultProxyHandle,
  FaultProxyOptions,
  FaultProxyScope,
} from './fault-proxy.js';
export { startFaultProxy } from './fault-proxy.js';
export type {
  NatsClusterHandle,
  NatsClusterOptions,
} from './nats-cluster.js';
export { startNatsCluster } from './nats-cluster.js';
export type {
  NatsServerAuth,
  NatsServerHandle,
  NatsServerOptions,
  NatsServerStopOptions,
  NatsServerTls,
} from './nats-server.js';
export { startNatsServer } from './nats-server.js';
export { freePort } from './ports.js';
export type { NatsServerBinary, NatsServerVersion } from './server-binary.js';
export { findNatsServerBinary } from './server-binary.js';
