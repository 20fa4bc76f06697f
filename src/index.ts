/**
 * natskit: a service framework for NATS.
 * @packageDocumentation
 */

export { inject, injectable } from 'inversify';
export type { EnvConfig, NatsEnvConfig } from './config/from-env.js';
export { fromEnv } from './config/from-env.js';
export type { Capabilities, Feature } from './connection/capabilities.js';
export { FEATURES } from './connection/capabilities.js';
export type {
  CloseResult,
  ConnectionState,
  ConnectionStatus,
} from './connection/connection-service.js';
export { ConnectionService } from './connection/connection-service.js';
export type { ConnectionOptions, ConnectionTlsOptions } from './connection/options.js';
export { CONNECTION_DEFAULTS, CONNECTION_OPTIONS } from './connection/options.js';
export type { NatskitErrorOptions } from './errors/natskit-error.js';
export { ErrorCode, NatskitAggregateError, NatskitError } from './errors/natskit-error.js';
export type {
  HealthCheckEntry,
  HealthCheckFn,
  HealthCheckOptions,
  HealthReport,
} from './health/health-registry.js';
export { HealthRegistry } from './health/health-registry.js';
export type { ProbeServerOptions } from './health/probe-server.js';
export type {
  BucketConfig,
  BucketDifference,
  BucketPlacement,
  DriftPolicy,
} from './kv/bucket-config.js';
export type { Codec, StandardSchemaResult, StandardSchemaV1 } from './kv/codec.js';
export { bytesCodec, jsonCodec, stringCodec } from './kv/codec.js';
export type { BucketOptions, KVStoreOptions } from './kv/kv-store-service.js';
export { KV_OPTIONS, KVStoreService } from './kv/kv-store-service.js';
export type { Tx, TxEntry, TxIsolation, TxOptions, TxResult } from './kv/transaction.js';
export type {
  BulkPutEntry,
  BulkResult,
  KvBucket,
  KvBucketHealth,
  KvCallOptions,
  KvDeleteOptions,
  KvEntry,
  KvPutOptions,
} from './kv/types.js';
export type { KvChange, KvWatcher, KvWatchOptions } from './kv/watch.js';
export type { ServiceManagerOptions } from './lifecycle/options.js';
export { MANAGER_DEFAULTS } from './lifecycle/options.js';
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
export type { ManagerState } from './lifecycle/service-manager.js';
export { ServiceManager } from './lifecycle/service-manager.js';
export { LOGGER, SERVICE_MANAGER } from './lifecycle/tokens.js';
export type { LoggerOption, LoggerOptions } from './logging/logger.js';
export { REDACT_PATHS } from './logging/logger.js';
export type { RetryOptions } from './retry/retry.js';
export { isTransient, RETRY_DEFAULTS } from './retry/retry.js';
export type { ConfigDifference } from './stream/stream-config.js';
export type {
  EnsureStreamResult,
  PublishExpectations,
  PublishOptions,
  StreamHealth,
} from './stream/stream-service.js';
export { StreamService } from './stream/stream-service.js';
export type { Job, Worker, WorkerOptions, WorkerProgress, WorkerStats } from './stream/worker.js';
