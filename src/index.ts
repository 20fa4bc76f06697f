/**
 * natskit: a service framework for NATS.
 * @packageDocumentation
 */

export { inject, injectable } from 'inversify';
export type { EnvConfig, NatsEnvConfig } from './config/from-env.js';
export { fromEnv } from './config/from-env.js';
export type { NatskitErrorOptions } from './errors/natskit-error.js';
export { ErrorCode, NatskitAggregateError, NatskitError } from './errors/natskit-error.js';
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
export { LOGGER, SERVICE_MANAGER, ServiceManager } from './lifecycle/service-manager.js';
export type { LoggerOption, LoggerOptions } from './logging/logger.js';
export { REDACT_PATHS } from './logging/logger.js';
