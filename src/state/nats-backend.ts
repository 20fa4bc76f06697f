import type { ConnectionService } from '../connection/connection-service.js';
import type { BucketConfig } from '../kv/bucket-config.js';
import type { KVStoreService } from '../kv/kv-store-service.js';
import type { KvBucket } from '../kv/types.js';
import type { HealthCheckResult } from '../lifecycle/service.js';
import type { RawEntry, StateBackend } from './backend.js';
import type { StateChange, StateWatcher } from './types.js';

/** The default state bucket (also `KVStoreService.setState`'s). */
export const DEFAULT_STATE_BUCKET = 'natskit_state';

/**
 * State in a NATS KV bucket, opened (or provisioned) at the first call. Values are stored as
 * JSON text, so what `kv.get`, the `nats` CLI or another client reads is the JSON a user would
 * expect.
 */
export class NatsStateBackend implements StateBackend {
  readonly name = 'nats' as const;
  readonly keyScope: string;
  readonly #kv: KVStoreService;
  readonly #connection: ConnectionService;
  readonly #config: BucketConfig | undefined;
  #bucket: Promise<KvBucket<string>> | undefined;

  constructor(
    kv: KVStoreService,
    connection: ConnectionService,
    options: { bucket?: string | undefined; bucketConfig?: BucketConfig | undefined },
  ) {
    this.#kv = kv;
    this.#connection = connection;
    this.keyScope = options.bucket ?? DEFAULT_STATE_BUCKET;
    this.#config = options.bucketConfig;
  }

  /**
   * Nothing to do: the bucket is opened at the first call, so an app that never uses state
   * creates no bucket, and one on a server without JetStream still starts.
   */
  async start(): Promise<void> {}

  /** The bucket, opened (or provisioned) once; a failed open is tried again at the next call. */
  #b(): Promise<KvBucket<string>> {
    this.#bucket ??= this.#open().catch((err: unknown) => {
      this.#bucket = undefined;
      throw err;
    });
    return this.#bucket;
  }

  async #open(): Promise<KvBucket<string>> {
    // History 5: a watcher sees every transition (with history 1 a value replaced at once can
    // be gone before it is delivered). Delete markers for a second: expiries reach watchers.
    const config: BucketConfig = this.#config ?? {
      history: 5,
      ...(this.#connection.capabilities.features.perKeyTtl ? { markerTtlMs: 1_000 } : {}),
    };
    return await this.#kv.bucket(this.keyScope, {
      codec: 'string',
      provision: config,
      drift: 'warn',
    });
  }

  async stop(): Promise<void> {
    this.#bucket = undefined;
  }

  async put(
    key: string,
    json: string,
    revision: number | undefined,
    ttlMs: number | undefined,
  ): Promise<number> {
    const ttl = ttlMs === undefined ? {} : { ttlMs };
    if (revision === 0) return await (await this.#b()).create(key, json, ttl);
    return await (await this.#b()).put(key, json, {
      ...ttl,
      ...(revision === undefined ? {} : { revision }),
    });
  }

  async get(key: string): Promise<RawEntry | null> {
    const e = await (await this.#b()).getEntry(key);
    return e ? { json: e.value, revision: e.revision, created: e.created } : null;
  }

  async delete(key: string, revision: number | undefined): Promise<boolean> {
    return await (await this.#b()).delete(key, revision === undefined ? {} : { revision });
  }

  async watch(
    filter: string,
    onChange: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
  ): Promise<StateWatcher> {
    return await (await this.#b()).watch(filter, { onChange, onInitialized });
  }

  async health(): Promise<HealthCheckResult> {
    const state = this.#connection.status.state;
    if (state !== 'connected') return { status: 'warn', output: `NATS connection is ${state}` };
    return {
      status: 'pass',
      output: `bucket ${this.keyScope}${this.#bucket ? '' : ' (opened at first use)'}`,
    };
  }
}
