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
 * State in a NATS KV bucket, provisioned at start. Values are stored as JSON text, so what
 * `kv.get`, the `nats` CLI or another client reads is the JSON a user would expect.
 */
export class NatsStateBackend implements StateBackend {
  readonly name = 'nats' as const;
  readonly keyScope: string;
  readonly #kv: KVStoreService;
  readonly #connection: ConnectionService;
  readonly #config: BucketConfig | undefined;
  #bucket: KvBucket<string> | undefined;

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

  async start(): Promise<void> {
    // History 5: a watcher sees every transition (with history 1 a value replaced at once can
    // be gone before it is delivered). Delete markers for a second: expiries reach watchers.
    const config: BucketConfig = this.#config ?? {
      history: 5,
      ...(this.#connection.capabilities.features.perKeyTtl ? { markerTtlMs: 1_000 } : {}),
    };
    this.#bucket = await this.#kv.bucket(this.keyScope, {
      codec: 'string',
      provision: config,
      drift: 'warn',
    });
  }

  get #b(): KvBucket<string> {
    // start() ran: the front refuses calls before it.
    return this.#bucket as KvBucket<string>;
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
    if (revision === 0) return await this.#b.create(key, json, ttl);
    return await this.#b.put(key, json, {
      ...ttl,
      ...(revision === undefined ? {} : { revision }),
    });
  }

  async get(key: string): Promise<RawEntry | null> {
    const e = await this.#b.getEntry(key);
    return e ? { json: e.value, revision: e.revision, created: e.created } : null;
  }

  async delete(key: string, revision: number | undefined): Promise<boolean> {
    return await this.#b.delete(key, revision === undefined ? {} : { revision });
  }

  async watch(
    filter: string,
    onChange: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
  ): Promise<StateWatcher> {
    return await this.#b.watch(filter, { onChange, onInitialized });
  }

  async health(): Promise<HealthCheckResult> {
    const state = this.#connection.status.state;
    return state === 'connected'
      ? { status: 'pass', output: `bucket ${this.keyScope}` }
      : { status: 'warn', output: `NATS connection is ${state}` };
  }
}
