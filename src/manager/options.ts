import { fromEnv } from '../config/from-env.js';
import { checkKnownKeys, knownKeys } from '../config/validate.js';
import { type ConnectionOptions, resolveConnectionOptions } from '../connection/options.js';
import type { KVStoreOptions } from '../kv/kv-store-service.js';
import { checkKvStoreOptions } from '../kv/options.js';
import {
  HOST_OPTION_KEYS,
  type HostOptions,
  type ResolvedManagerOptions,
  resolveManagerOptions,
} from '../lifecycle/options.js';
import { natsModule } from '../nats/nats-module.js';
import { stateModule } from '../state/state-module.js';
import type { StateOptions } from '../state/types.js';

/** Options of {@link ServiceManager.start}: the lifecycle's, and the NATS conveniences. */
export interface ServiceManagerOptions extends HostOptions {
  /**
   * Connect to NATS: adds the NATS module ({@link natsModule}: ConnectionService, StreamService,
   * KVStoreService, in that dependency order) unless you registered them yourself.
   */
  readonly nats?: ConnectionOptions;
  /** Options of the KVStoreService registered with `nats`. */
  readonly kv?: KVStoreOptions;
  /**
   * The state store (`STATE_STORE`): `{ backend: 'sqlite', path }` for an embedded file, `{
   * backend: 'nats' }` for a KV bucket, `false` for none. @defaultValue the NATS backend with
   * `nats` (on `kv.stateBucket`), none without
   */
  readonly state?: StateOptions | false;
  /**
   * Read `NATS_URL` and the other variables of {@link fromEnv}; explicit options win. With
   * `NATS_URL` set this connects to NATS as `nats` does. @defaultValue false
   */
  readonly env?: boolean;
}

/** The fields of {@link ServiceManagerOptions}, for the unknown-field check. */
const MANAGER_OPTION_KEYS = [
  ...HOST_OPTION_KEYS,
  ...knownKeys<Omit<ServiceManagerOptions, keyof HostOptions>>({
    nats: true,
    kv: true,
    state: true,
    env: true,
  }),
];

/** Validates the options once (before anything starts) and turns `nats` into the NATS module. */
export function resolveOptions(options: ServiceManagerOptions): ResolvedManagerOptions {
  if (typeof options === 'object' && options !== null)
    checkKnownKeys('options', options, MANAGER_OPTION_KEYS);
  const { nats: explicit, kv, env: useEnv, state: stateOption, ...host } = options ?? {};
  checkKvStoreOptions(kv);
  const env = useEnv === true ? fromEnv() : {};
  const nats = explicit || env.nats ? { ...env.nats, ...explicit } : undefined;
  if (nats) resolveConnectionOptions(nats); // fails here, before anything starts
  const state: StateOptions | undefined =
    stateOption === false
      ? undefined
      : (stateOption ??
        (nats
          ? {
              backend: 'nats',
              ...(kv?.stateBucket === undefined ? {} : { bucket: kv.stateBucket }),
              ...(kv?.stateBucketConfig === undefined
                ? {}
                : { bucketConfig: kv.stateBucketConfig }),
            }
          : undefined));
  return resolveManagerOptions({
    ...host,
    ...(host.logger === undefined && env.logger ? { logger: env.logger } : {}),
    modules: [
      ...(host.modules ?? []),
      ...(nats ? [natsModule(nats, kv)] : []),
      ...(state ? [stateModule(state)] : []),
    ],
  });
}
