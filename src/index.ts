/**
 * natskit: a service framework for NATS.
 * @packageDocumentation
 */

// What users would otherwise import from transitive packages.
export type {
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  StreamConfig,
} from '@nats-io/jetstream';
export {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
export type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
export { inject, unmanaged } from 'inversify';
export type { Logger } from 'pino';

export type { EnvConfig, NatsEnvConfig } from './config/from-env.js';
export { fromEnv } from './config/from-env.js';
export type { Capabilities, Feature } from './connection/capabilities.js';
export type {
  CloseResult,
  ConnectionState,
  ConnectionStatus,
} from './connection/connection-service.js';
export { ConnectionService } from './connection/connection-service.js';
export type { ConnectionOptions, ConnectionTlsOptions } from './connection/options.js';
export type {
  EndpointCallOptions,
  EndpointClient,
  EndpointClientOptions,
} from './endpoints/client.js';
export { endpointClient } from './endpoints/client.js';
export type { EndpointsRegistration } from './endpoints/endpoints.js';
export { endpoint, endpoints } from './endpoints/endpoints.js';
export { endpointError } from './endpoints/protocol.js';
export type {
  AnyEndpoint,
  EndpointDefinition,
  EndpointGroupHandle,
  EndpointRequest,
  EndpointServiceOptions,
  EndpointStats,
} from './endpoints/types.js';
export type { NatskitErrorOptions } from './errors/natskit-error.js';
export { ErrorCode, NatskitAggregateError, NatskitError } from './errors/natskit-error.js';
export type {
  HealthCheckEntry,
  HealthCheckFn,
  HealthCheckOptions,
  HealthRegistry,
  HealthReport,
} from './health/health-registry.js';
export type { ProbeServerOptions } from './health/probe-server.js';
export type {
  BucketConfig,
  BucketDifference,
  BucketPlacement,
  DriftPolicy,
} from './kv/bucket-config.js';
export type { BucketMirror, BucketSource } from './kv/bucket-topology.js';
export type { Codec } from './kv/codec.js';
export { bytesCodec, jsonCodec, stringCodec } from './kv/codec.js';
export type { BucketOptions, KVStoreOptions, UntypedValue } from './kv/kv-store-service.js';
export { KVStoreService } from './kv/kv-store-service.js';
export { maxKeyBytes } from './kv/names.js';

export type {
  BulkPutEntry,
  BulkResult,
  KvBucket,
  KvBucketHealth,
  KvCallOptions,
  KvChange,
  KvDeleteOptions,
  KvEntry,
  KvPutOptions,
  KvWatcher,
  KvWatchOptions,
  Tx,
  TxEntry,
  TxIsolation,
  TxOptions,
  TxResult,
} from './kv/types.js';
export type { ManagerState } from './lifecycle/host.js';
export type { ModuleValue, ServiceModule } from './lifecycle/module.js';
export type { HostOptions } from './lifecycle/options.js';
export type { Scope, ScopeOptions, ScopeValue } from './lifecycle/scope.js';
export type {
  HealthCheckResult,
  HealthStatus,
  ScopedRegistration,
  Service,
  ServiceFactoryContext,
  ServiceRegistration,
  ServiceToken,
  Token,
} from './lifecycle/service.js';
export { createToken } from './lifecycle/service.js';
export { LOGGER } from './lifecycle/tokens.js';
export type { LoggerOption, LoggerOptions } from './logging/logger.js';
export type { ServiceManagerOptions } from './manager/options.js';
export { SERVICE_MANAGER, ServiceManager } from './manager/service-manager.js';
export type {
  EndpointMetrics,
  KvMetrics,
  Metrics,
  MetricsOptions,
  WorkerMetrics,
} from './metrics/metrics.js';
export { METRICS } from './metrics/metrics.js';
export { natsModule } from './nats/nats-module.js';
export type {
  AddedJob,
  AddOptions,
  AttemptRecord,
  Backoff,
  BulkJob,
  DeadJob,
  DeadReason,
  EventsOptions,
  JobHandler,
  JobInfo,
  JobOutcome,
  JobState,
  Queue,
  QueueCounts,
  QueueEvent,
  QueueEvents,
  QueueJob,
  QueueOptions,
  QueueRegistration,
  QueueResultOptions,
  QueueWorker,
  QueueWorkerOptions,
  QueueWorkerStats,
  ResultOptions,
  ScheduledJob,
  ScheduleInfo,
  ScheduleOptions,
} from './queue/mod.js';
export { QUEUE_DEFAULTS, queue, unrecoverable } from './queue/mod.js';
export type { RetryOptions } from './retry/retry.js';
export type { StandardSchemaResult, StandardSchemaV1 } from './schema/standard-schema.js';
export { stateModule } from './state/state-module.js';
export type {
  NatsStateOptions,
  SqliteStateOptions,
  StateChange,
  StateDeleteOptions,
  StateEntry,
  StateOptions,
  StateReadOptions,
  StateSetOptions,
  StateStore,
  StateWatcher,
  StateWatchOptions,
} from './state/types.js';
export { STATE_STORE } from './state/types.js';
export type { ConfigDifference, EnsureStreamResult } from './stream/stream-config.js';
export type {
  PublishExpectations,
  PublishOptions,
  StreamHealth,
} from './stream/stream-service.js';
export { StreamService } from './stream/stream-service.js';
export type { Job, Worker, WorkerOptions, WorkerProgress, WorkerStats } from './stream/worker.js';
