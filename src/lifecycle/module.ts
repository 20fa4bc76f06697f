import type { ServiceRegistration, ServiceToken } from './service.js';

/** A value a module binds in the container (its options, say). */
export interface ModuleValue {
  readonly token: ServiceToken;
  readonly value: unknown;
}

/**
 * Services that plug into the ServiceManager as one unit, the way a NestJS module or an avvio
 * plugin does: the NATS built-ins (connection, streams, KV) are one. The manager knows nothing of
 * what a module does; it registers its services in the one dependency graph, binds its values,
 * and asks it whether the app is ready.
 */
export interface ServiceModule {
  /** For logs and errors. */
  readonly name: string;
  /** Services the module registers. A token the user registered too keeps the user's registration. */
  readonly services?: readonly ServiceRegistration[];
  /** Values bound in the container, valid dependencies for every service. */
  readonly values?: readonly ModuleValue[];
  /**
   * Asked by `/readyz` while the app runs: why it is not ready (the NATS connection is down, say),
   * or `undefined` when it is. `get` returns a started service, or undefined.
   */
  notReady?(get: <T>(token: ServiceToken<T>) => T | undefined): string | undefined;
}
