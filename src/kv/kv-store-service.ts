import { inject } from 'inversify';
import type { Logger } from 'pino';
import { ConnectionService } from '../connection/connection-service.js';
import { NatskitError } from '../errors/natskit-error.js';
import { ApiCode, closedError, isApiError, isConnectionClosed } from '../jetstream/api-errors.js';
import type { HealthCheckResult, Service, Token } from '../lifecycle/service.js';
import { createToken } from '../lifecycle/service.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { countingRetries, METRICS, type Metrics, NO_METRICS } from '../metrics/metrics.js';
import type { RetryCounter } from '../retry/retry.js';
import { StreamService } from '../stream/stream-service.js';
import { KvBucketImpl } from './bucket.js';
import type { BucketConfig, DriftPolicy } from './bucket-config.js';
import { BucketState, type KvContext } from './bucket-state.js';
import { resolveCodec } from './codec.js';
import { streamOf, validateBucket } from './names.js';
import { openMeasured } from './open-measured.js';
import {
  type BucketOptions,
  checkBucketOptions,
  checkKvStoreOptions,
  type KVStoreOptions,
  sameProvision,
} from './options.js';
import { bindBucket, provisionBucket } from './provision.js';
import type {
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
  TxOptions,
  TxResult,
} from './types.js';

/**
 * The value type of a transaction on a bucket opened without a type: `any`, as from `JSON.parse`.
 */
// biome-ignore lint/suspicious/noExplicitAny: an untyped bucket's values, the way JSON.parse types them
export type UntypedValue = any;

export type { BucketOptions, KVStoreOptions } from './options.js';

/** Token of the KV options, bound by the ServiceManager. */
export const KV_OPTIONS: Token<KVStoreOptions> = createToken<KVStoreOptions>('KVStoreOptions');

/** One bucket in the cache: its shared state, and one handle per codec and schema. */
interface CacheEntry {
  readonly state: Promise<BucketState>;
  readonly options: BucketOptions<unknown>;
  /** codec ('json', 'string', 'bytes' or the codec object) -> schema (or NO_SCHEMA) -> handle. */
  readonly handles: Map<unknown, Map<unknown, KvBucketImpl<unknown>>>;
}

const NO_SCHEMA = Symbol('no schema');

/**
 * NATS KV as a service: bound or provisioned buckets with cached handles, typed codecs and
 * schemas, per-key TTL, watches that survive reconnects, bulk operations with a result per key,
 * retries of transient errors, and health checks. Every method takes the bucket first; the same
 * methods without it are on the handle from {@link KVStoreService.bucket}.
 */
export class KVStoreService implements Service {
  readonly #connection: ConnectionService;
  readonly #streams: StreamService;
  readonly #log: Logger;
  readonly #options: KVStoreOptions;
  readonly #cache = new Map<string, CacheEntry>();
  #stopped = false;
  /** Retries of transient errors (also in `natskit_retries_total{component="kv"}`). */
  readonly metrics: RetryCounter;
  readonly #measure: Metrics;

  constructor(
    @inject(ConnectionService) connection: ConnectionService,
    @inject(StreamService) streams: StreamService,
    @inject(LOGGER) logger: Logger,
    @inject(KV_OPTIONS) options: KVStoreOptions,
    @inject(METRICS) metrics: Metrics = NO_METRICS,
  ) {
    this.#connection = connection;
    this.#streams = streams;
    this.#log = logger.child({ service: 'kv' });
    checkKvStoreOptions(options); // natsModule(nats, kv) used without the ServiceManager
    this.#options = options ?? {};
    this.#measure = metrics;
    this.metrics = countingRetries(metrics, 'kv');
  }

  #context(): KvContext {
    return {
      nc: this.#connection.nc,
      js: this.#streams.js,
      jsm: this.#streams.jsm,
      log: this.#log,
      metrics: this.metrics,
      retry: this.#options.retry ?? {},
      requestTimeoutMs: this.#connection.requestTimeoutMs,
      capabilities: () => this.#connection.capabilities,
      gone: (bucket) => {
        this.#cache.delete(bucket);
        this.#log.warn({ bucket }, 'bucket is gone; its cached handles were dropped');
      },
      stopped: () => this.#stopped || this.#connection.stopped,
      measure: (bucket) => (this.#measure.enabled ? this.#measure.kv(bucket) : undefined),
      resilient: (send) => this.#connection.resilient(send),
    };
  }

  /** Throws `INVALID_STATE` once stopped. */
  #assertOpen(what: string): void {
    if (this.#stopped) throw closedError(`KVStoreService ${what}`, true);
  }

  /**
   * A handle to a bucket. Without `provision` it binds an existing bucket and fails fast with
   * `KV_BUCKET_NOT_FOUND`; with it, it creates the bucket, or compares the stored config with the
   * one asked for and applies the drift policy. A bucket is opened once (concurrent first calls
   * share the open) and dropped from the cache when found deleted; each codec and schema gets
   * its own handle, so how one caller decodes a bucket never depends on another's call.
   */
  bucket(
    name: string,
    options: BucketOptions<string> & { readonly codec: 'string' },
  ): Promise<KvBucket<string>>;
  bucket(
    name: string,
    options: BucketOptions<Uint8Array> & { readonly codec: 'bytes' },
  ): Promise<KvBucket<Uint8Array>>;
  /** `T` follows from a codec object or a schema when there is one; JSON (`unknown`) otherwise. */
  bucket<T = unknown>(name: string, options?: BucketOptions<T>): Promise<KvBucket<T>>;
  async bucket<T = unknown>(name: string, options: BucketOptions<T> = {}): Promise<KvBucket<T>> {
    validateBucket(name);
    checkBucketOptions(name, options);
    this.#assertOpen('bucket');
    const asked = options as BucketOptions<unknown>;
    const codecKey = options.codec ?? 'json';
    const codec = resolveCodec(options.codec); // an invalid codec fails before anything opens
    let entry = this.#cache.get(name);
    if (!entry || (asked.provision !== undefined && !sameProvision(asked, entry.options))) {
      const state = this.#open(name, asked);
      entry = { state, options: asked, handles: new Map() };
      this.#cache.set(name, entry);
      const opened = entry;
      state.catch(() => {
        if (this.#cache.get(name) === opened) this.#cache.delete(name);
      });
    }
    const state = await entry.state;
    const bySchema = entry.handles.get(codecKey) ?? new Map<unknown, KvBucketImpl<unknown>>();
    entry.handles.set(codecKey, bySchema);
    const schemaKey = options.schema ?? NO_SCHEMA;
    let handle = bySchema.get(schemaKey) as KvBucketImpl<T> | undefined;
    if (!handle) {
      handle = new KvBucketImpl<T>(state, { codec, schema: options.schema });
      bySchema.set(schemaKey, handle as KvBucketImpl<unknown>);
    }
    return handle;
  }

  async #open(name: string, options: BucketOptions<unknown>): Promise<BucketState> {
    const c = {
      connection: this.#connection,
      jsm: this.#streams.jsm,
      log: this.#log,
      retry: this.#options.retry,
      metrics: this.metrics,
      stopped: () => this.#stopped,
    };
    const drift = options.drift ?? this.#options.drift ?? 'error';
    const config = options.provision
      ? await provisionBucket(c, name, options.provision, drift)
      : await bindBucket(c, name);
    if (!config.allow_direct) {
      this.#log.warn({ bucket: name }, 'bucket has no direct get; reads use the slower stream API');
    }
    return new BucketState(this.#context(), name, config);
  }

  /** Creates a bucket (or checks an existing one against `config` under the drift policy). */
  async createBucket(name: string, config: BucketConfig = {}, drift?: DriftPolicy): Promise<void> {
    validateBucket(name);
    this.#assertOpen('createBucket');
    this.#cache.delete(name);
    await this.bucket(name, { provision: config, ...(drift ? { drift } : {}) });
  }

  /** Deletes a bucket and its data; its cached handle is dropped. */
  async deleteBucket(name: string): Promise<void> {
    validateBucket(name);
    this.#assertOpen('deleteBucket');
    this.#cache.delete(name);
    try {
      await this.#streams.jsm.streams.delete(streamOf(name));
    } catch (err) {
      if (isConnectionClosed(err)) throw closedError(`bucket ${name}`, this.#stopped, err);
      if (isApiError(err, ApiCode.StreamNotFound)) {
        throw new NatskitError('KV_BUCKET_NOT_FOUND', `bucket ${name} does not exist`, {
          cause: err,
          details: { bucket: name },
        });
      }
      throw err;
    }
  }

  /** Removes every key and revision of a bucket; the bucket stays. */
  async purgeBucket(name: string): Promise<void> {
    const b = (await this.bucket(name)) as KvBucketImpl<unknown>;
    await b.state.call('purge bucket', () => this.#streams.jsm.streams.purge(streamOf(name)));
  }

  // ---- the handle's methods, bucket first ----

  /** The handle of the bucket-first call `op`; a bucket that fails to open counts as that call. */
  #on<T = unknown>(bucket: string, op: string): Promise<KvBucket<T>> {
    return openMeasured(this.#measure, bucket, op, () => this.bucket<T>(bucket));
  }

  async get<T = unknown>(bucket: string, key: string, options?: KvCallOptions): Promise<T | null> {
    return await (await this.#on<T>(bucket, 'get')).get(key, options);
  }
  async getEntry<T = unknown>(
    bucket: string,
    key: string,
    options?: KvCallOptions,
  ): Promise<KvEntry<T> | null> {
    return await (await this.#on<T>(bucket, 'get')).getEntry(key, options);
  }
  async put<T = unknown>(
    bucket: string,
    key: string,
    value: T,
    options?: KvPutOptions,
  ): Promise<number> {
    return await (await this.#on<T>(bucket, 'put')).put(key, value, options);
  }
  async create<T = unknown>(
    bucket: string,
    key: string,
    value: T,
    options?: Omit<KvPutOptions, 'revision'>,
  ): Promise<number> {
    return await (await this.#on<T>(bucket, 'create')).create(key, value, options);
  }
  async update<T = unknown>(
    bucket: string,
    key: string,
    value: T,
    revision: number,
    options?: Omit<KvPutOptions, 'revision'>,
  ): Promise<number> {
    return await (await this.#on<T>(bucket, 'update')).update(key, value, revision, options);
  }
  /** Deletes a key; `true` when it was live, `false` when it was already absent. */
  async delete(bucket: string, key: string, options?: KvDeleteOptions): Promise<boolean> {
    return await (await this.#on(bucket, 'delete')).delete(key, options);
  }
  async purge(bucket: string, key: string, options?: KvDeleteOptions): Promise<void> {
    await (await this.#on(bucket, 'purge')).purge(key, options);
  }
  async keys(bucket: string, filter?: string): Promise<string[]> {
    return await (await this.#on(bucket, 'keys')).keys(filter);
  }
  async getAll<T = unknown>(bucket: string, filter?: string): Promise<Map<string, T>> {
    return await (await this.#on<T>(bucket, 'get_all')).getAll(filter);
  }
  async history<T = unknown>(bucket: string, key: string): Promise<KvChange<T>[]> {
    return await (await this.#on<T>(bucket, 'history')).history(key);
  }
  async watch<T = unknown>(
    bucket: string,
    keyOrFilter?: string,
    options?: KvWatchOptions<T>,
  ): Promise<KvWatcher<T>> {
    return await (await this.bucket<T>(bucket)).watch(keyOrFilter, options);
  }
  async bulkGet<T = unknown>(
    bucket: string,
    keys: readonly string[],
    options?: KvCallOptions,
  ): Promise<(T | null)[]> {
    return await (await this.#on<T>(bucket, 'bulk_get')).bulkGet(keys, options);
  }
  async bulkPut<T = unknown>(
    bucket: string,
    entries: readonly BulkPutEntry<T>[],
    options?: KvCallOptions,
  ): Promise<BulkResult[]> {
    return await (await this.#on<T>(bucket, 'bulk_put')).bulkPut(entries, options);
  }
  async bulkDelete(
    bucket: string,
    keys: readonly string[],
    options?: KvCallOptions,
  ): Promise<BulkResult[]> {
    return await (await this.#on(bucket, 'bulk_delete')).bulkDelete(keys, options);
  }
  async healthCheck(bucket: string): Promise<KvBucketHealth> {
    return await (await this.bucket(bucket)).healthCheck();
  }

  /**
   * Runs `fn` as an optimistic transaction on one bucket; see {@link KvBucket.transaction}.
   * Returns `{ value, attempts, revisions }`. Without a type, values read are `any`, as
   * `JSON.parse` gives them; for checked types annotate the handle (`async (tx: Tx<number>) =>`:
   * the result type is still inferred) or use a typed handle (`kv.bucket<number>(name)`).
   */
  async transaction<T = UntypedValue, R = unknown>(
    bucket: string,
    fn: (tx: Tx<T>) => Promise<R> | R,
    options?: TxOptions,
  ): Promise<TxResult<R>> {
    return await (await this.#on<T>(bucket, 'transaction')).transaction(fn, options);
  }
  /** Compare-and-set loop on one key (every server version); see {@link KvBucket.updateWith}. */
  async updateWith<T = unknown>(
    bucket: string,
    key: string,
    fn: (current: T | null) => T | Promise<T>,
    options?: TxOptions,
  ): Promise<{ value: T; revision: number; attempts: number }> {
    return await (await this.#on<T>(bucket, 'update_with')).updateWith(key, fn, options);
  }

  // ---- state calls on the default bucket ----

  async #state<T>(): Promise<KvBucket<T>> {
    return await this.bucket<T>(this.#options.stateBucket ?? 'natskit_state', {
      provision: this.#options.stateBucketConfig ?? { history: 5 },
      drift: 'warn',
    });
  }
  /** Sets a state value; returns its revision. */
  async setState<T = unknown>(key: string, value: T, options?: KvPutOptions): Promise<number> {
    return await (await this.#state<T>()).put(key, value, options);
  }
  /** A state value, or null. */
  async getState<T = unknown>(key: string): Promise<T | null> {
    return await (await this.#state<T>()).get(key);
  }
  /** Calls `onChange` with each change of a state key (or filter); stop it with the returned watcher. */
  async watchState<T = unknown>(
    keyOrFilter: string,
    onChange: (change: KvChange<T>) => void | Promise<void>,
  ): Promise<KvWatcher<T>> {
    return await (await this.#state<T>()).watch(keyOrFilter, { onChange });
  }
  /** Deletes a state key; `true` when it was set, `false` when it was already absent. */
  async deleteState(key: string): Promise<boolean> {
    return await (await this.#state()).delete(key);
  }

  /** `pass` while JetStream is there; the bucket checks are per bucket (`healthCheck`). */
  health(): HealthCheckResult {
    return this.#connection.capabilities.jetstream
      ? { status: 'pass', observedValue: this.#cache.size, observedUnit: 'buckets' }
      : { status: 'fail', output: 'JetStream is not enabled' };
  }

  /** Later calls fail with `INVALID_STATE`; handles already taken fail the same way. */
  stop(): void {
    this.#stopped = true;
    this.#cache.clear();
  }
}
