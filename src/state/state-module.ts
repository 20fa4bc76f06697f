import type { Logger } from 'pino';
import { checkKnownKeys, describeValue, knownKeys } from '../config/validate.js';
import { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { KVStoreService } from '../kv/kv-store-service.js';
import { validateBucket } from '../kv/names.js';
import type { ServiceModule } from '../lifecycle/module.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { NatsStateBackend } from './nats-backend.js';
import { SqliteStateBackend } from './sqlite-backend.js';
import { StateStoreService } from './state-store-service.js';
import {
  type NatsStateOptions,
  type SqliteStateOptions,
  STATE_STORE,
  type StateOptions,
} from './types.js';

const NATS_KEYS = knownKeys<NatsStateOptions>({ backend: true, bucket: true, bucketConfig: true });
const SQLITE_KEYS = knownKeys<SqliteStateOptions>({
  backend: true,
  path: true,
  synchronous: true,
  maxValueBytes: true,
});

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `options.state.${field} ${why}`, {
    details: { field: `state.${field}` },
  });
}

/** Throws `INVALID_OPTIONS` unless `options` is a valid {@link StateOptions}. */
export function checkStateOptions(options: unknown): asserts options is StateOptions {
  if (typeof options !== 'object' || options === null) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `options.state must be { backend: 'nats' | 'sqlite', ... }, got ${describeValue(options)}`,
      { details: { field: 'state' } },
    );
  }
  const o = options as Record<string, unknown>;
  if (o.backend === 'nats' || o.backend === 'sqlite')
    checkKnownKeys('options.state', o, o.backend === 'nats' ? NATS_KEYS : SQLITE_KEYS);
  if (o.backend === 'nats') {
    if (o.bucket !== undefined) validateBucket(o.bucket);
    if (
      o.bucketConfig !== undefined &&
      (typeof o.bucketConfig !== 'object' || o.bucketConfig === null)
    )
      throw invalid('bucketConfig', 'must be a bucket config object');
    return;
  }
  if (o.backend !== 'sqlite')
    throw invalid('backend', `must be 'nats' or 'sqlite', got ${describeValue(o.backend)}`);
  if (typeof o.path !== 'string' || o.path === '')
    throw invalid('path', `must be a file path (or ':memory:'), got ${describeValue(o.path)}`);
  if (o.synchronous !== undefined && o.synchronous !== 'normal' && o.synchronous !== 'full')
    throw invalid('synchronous', `must be 'normal' or 'full', got ${describeValue(o.synchronous)}`);
  if (
    o.maxValueBytes !== undefined &&
    !(Number.isInteger(o.maxValueBytes) && (o.maxValueBytes as number) > 0)
  ) {
    throw invalid(
      'maxValueBytes',
      `must be a positive integer, got ${describeValue(o.maxValueBytes)}`,
    );
  }
}

/**
 * The state store as a module: `STATE_STORE` bound to the backend `options` names, started after
 * what it needs (the KV service for `nats`, nothing for `sqlite`) and stopped before it.
 * `ServiceManager.start({ state })` adds it for you (with `nats`, the NATS backend by default).
 */
export function stateModule(options: StateOptions): ServiceModule {
  checkStateOptions(options);
  const o = options;
  return {
    name: 'state',
    services: [
      o.backend === 'nats'
        ? {
            token: STATE_STORE,
            useFactory: (ctx) =>
              new StateStoreService(
                new NatsStateBackend(ctx.get(KVStoreService), ctx.get(ConnectionService), o),
                ctx.get<Logger>(LOGGER),
              ),
            dependsOn: [KVStoreService, ConnectionService],
          }
        : {
            token: STATE_STORE,
            useFactory: (ctx) => {
              const logger = ctx.get<Logger>(LOGGER);
              return new StateStoreService(new SqliteStateBackend(o, logger), logger);
            },
          },
    ],
  };
}
