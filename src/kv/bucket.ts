import type { StoredMsg } from '@nats-io/jetstream';
import { describeValue } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import type { HeaderList } from '../jetstream/headers.js';
import { outcomeOf } from '../metrics/metrics.js';
import { bucketHealth } from './bucket-health.js';
import type { BucketState, WriteOptions } from './bucket-state.js';
import { bulkDelete, bulkGet, bulkPut, ttlOf } from './bulk.js';
import type { Codec, StandardSchemaV1 } from './codec.js';
import { validate } from './codec.js';
import { checkUserHeaders, isAbsent, OPERATION, userHeaders } from './headers.js';
import { keyHistory, listKeys, listValues, toChange } from './listing.js';
import {
  isReserved,
  keyOf,
  subjectOf,
  validateFilter,
  validateKey,
  validateStoredKey,
} from './names.js';
import { checkCallOptions } from './options.js';
import { type TxBackend, txBackend } from './transaction/backend.js';
import { runTransaction } from './transaction/transaction.js';
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
import { Watch } from './watch/watch.js';

/** The handle's codec and schema. */
export interface HandleCodec<T> {
  readonly codec: Codec<T>;
  readonly schema: StandardSchemaV1<unknown, T> | undefined;
}

/** The write options of a put given none. */
const NO_OPTIONS: WriteOptions = Object.freeze({});

/** How often `delete` re-reads a key that changed between its read and its delete. */
const DELETE_ATTEMPTS = 10;

/**
 * @internal created by KVStoreService: one bucket seen through one codec and schema. Handles of
 * one bucket with different codecs share its {@link BucketState}.
 */
export class KvBucketImpl<T> implements KvBucket<T> {
  readonly name: string;
  readonly state: BucketState;
  readonly #c: HandleCodec<T>;

  constructor(state: BucketState, codec: HandleCodec<T>) {
    this.state = state;
    this.name = state.name;
    this.#c = codec;
  }

  /** The stored stream config of the bucket. */
  get config() {
    return this.state.config;
  }

  /** Validates the key and the value, and encodes it; nothing is sent. */
  async encode(key: string, value: T): Promise<Uint8Array> {
    if (!this.#c.schema) return this.#encodePlain(key, value);
    validateKey(key, this.name);
    const checked = await validate(this.#c.schema, value, {
      key,
      direction: 'write',
      bucket: this.name,
    });
    return this.#bytes(key, checked);
  }

  /** {@link encode} of a handle without a schema: synchronous, so a put need not wait for it. */
  #encodePlain(key: string, value: T): Uint8Array {
    validateKey(key, this.name);
    return this.#bytes(key, value);
  }

  /** The codec's bytes of a checked value, sized for the bucket. */
  #bytes(key: string, checked: T): Uint8Array {
    let data: Uint8Array;
    try {
      data = this.#c.codec.encode(checked);
    } catch (err) {
      if (NatskitError.is(err)) throw err;
      throw new NatskitError(
        'INVALID_VALUE',
        `value for key ${key} cannot be encoded: ${describeThrown(err)}`,
        { cause: err, details: { key } },
      );
    }
    this.state.checkSize(key, data.length, 0);
    return data;
  }

  /** Decodes a stored value; synchronous unless the bucket has a schema (validation may be async). */
  decode(key: string, m: { data: Uint8Array; seq: number }): T | Promise<T> {
    let value: unknown;
    try {
      value = this.#c.codec.decode(m.data);
    } catch (err) {
      throw new NatskitError(
        'DECODE_FAILED',
        `stored value of key ${key} (revision ${m.seq}) cannot be decoded: ${describeThrown(err)}`,
        { cause: err, details: { bucket: this.name, key, revision: m.seq } },
      );
    }
    if (!this.#c.schema) return value as T;
    return validate(this.#c.schema, value, {
      key,
      revision: m.seq,
      direction: 'read',
      bucket: this.name,
    });
  }

  // ---- reads ----

  async #read(key: string, options?: KvCallOptions): Promise<StoredMsg | null> {
    validateStoredKey(key, this.name);
    checkCallOptions('read', options);
    const m = await this.state.readLast(key, options);
    return !m || isAbsent(m.header) ? null : m;
  }

  async #getEntry(key: string, options?: KvCallOptions): Promise<KvEntry<T> | null> {
    const m = await this.#read(key, options);
    if (!m) return null;
    return {
      key,
      value: await this.decode(key, m),
      revision: m.seq,
      created: m.time,
      headers: userHeaders(m.header),
    };
  }

  async #get(key: string, options?: KvCallOptions): Promise<T | null> {
    const m = await this.#read(key, options);
    return m ? await this.decode(key, m) : null;
  }

  async watch(keyOrFilter = '>', options: KvWatchOptions<T> = {}): Promise<KvWatcher<T>> {
    validateFilter(keyOrFilter, this.name);
    checkCallOptions('watch', options);
    const { ctx } = this.state;
    this.state.assertOpen('watch');
    try {
      return await Watch.start(
        {
          nc: ctx.nc,
          jsm: ctx.jsm,
          stream: this.state.stream,
          filter: subjectOf(this.state.keySpace, keyOrFilter),
          toChange: (m, initial) =>
            isReserved(keyOf(this.state.keySpace, m.subject)) ? null : toChange(this, m, initial),
          log: ctx.log,
          onResume: this.state.metrics?.watchResume,
        },
        options,
      );
    } catch (err) {
      throw await this.state.classify(err);
    }
  }

  // ---- writes ----

  async #put(key: string, value: T, options?: KvPutOptions): Promise<number> {
    checkCallOptions('put', options);
    const headers = checkUserHeaders(options?.headers);
    // Without a schema nothing is awaited before the write: the value is encoded as it is now.
    const data = this.#c.schema ? await this.encode(key, value) : this.#encodePlain(key, value);
    if (options === undefined) return await this.state.write(key, data, headers, NO_OPTIONS);
    const ttl = ttlOf(options.ttlMs);
    if (ttl) await this.state.ensureTtl();
    return await this.state.write(key, data, headers, { ...options, ttl });
  }

  async #create(
    key: string,
    value: T,
    options: Omit<KvPutOptions, 'revision'> = {},
  ): Promise<number> {
    checkCallOptions('create', options);
    try {
      return await this.#put(key, value, { ...options, revision: 0 });
    } catch (err) {
      if (!NatskitError.is(err, 'KV_REVISION_CONFLICT')) throw err;
      // A deleted, purged or expired key still has its tombstone: absent, so create may write,
      // expecting the tombstone's revision (a concurrent writer still makes this fail).
      const m = await this.state.readLast(key, options);
      if (m && !isAbsent(m.header)) throw err;
      return await this.#put(key, value, { ...options, revision: m?.seq ?? 0 });
    }
  }

  async #update(
    key: string,
    value: T,
    revision: number,
    options: Omit<KvPutOptions, 'revision'> = {},
  ): Promise<number> {
    checkCallOptions('update', options);
    if (!Number.isInteger(revision) || revision < 1) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `update needs a revision >= 1, got ${describeValue(revision)}`,
        { details: { field: 'revision' } },
      );
    }
    return await this.#put(key, value, { ...options, revision });
  }

  async #delete(key: string, options: KvDeleteOptions = {}): Promise<boolean> {
    validateStoredKey(key, this.name);
    checkCallOptions('delete', options);
    for (let attempt = 1; ; attempt++) {
      const m = await this.state.readLast(key, options);
      const current = m?.seq ?? 0;
      if (options.revision !== undefined && current !== options.revision) {
        throw new NatskitError(
          'KV_REVISION_CONFLICT',
          `key ${key} in bucket ${this.name} is not at revision ${options.revision}`,
          {
            details: {
              bucket: this.name,
              key,
              expectedRevision: options.revision,
              currentRevision: current,
            },
          },
        );
      }
      if (!m || isAbsent(m.header)) return false; // already absent: nothing to write
      try {
        await this.state.write(key, new Uint8Array(0), [[OPERATION, 'DEL']], {
          ...options,
          revision: current,
        });
        return true;
      } catch (err) {
        // Changed between the read and the delete: read again, unless the caller pinned a revision.
        if (
          !NatskitError.is(err, 'KV_REVISION_CONFLICT') ||
          options.revision !== undefined ||
          attempt >= DELETE_ATTEMPTS
        ) {
          throw err;
        }
      }
    }
  }

  async #purge(key: string, options: KvDeleteOptions = {}): Promise<void> {
    validateStoredKey(key, this.name);
    checkCallOptions('delete', options);
    const h: HeaderList = [
      [OPERATION, 'PURGE'],
      ['Nats-Rollup', 'sub'],
    ];
    await this.state.write(key, new Uint8Array(0), h, options);
  }

  // ---- the operations, timed when metrics are on ----

  /** Runs an operation, observing its time and outcome when the bucket has instruments. */
  #timed<R>(op: string, run: () => Promise<R>): Promise<R> {
    const m = this.state.metrics;
    if (!m) return run();
    const t0 = performance.now();
    return run().then(
      (v) => {
        m.operation(op, (performance.now() - t0) / 1_000, 'ok');
        return v;
      },
      (err: unknown) => {
        m.operation(op, (performance.now() - t0) / 1_000, outcomeOf(err));
        throw err;
      },
    );
  }

  get(key: string, options?: KvCallOptions): Promise<T | null> {
    return this.#timed('get', () => this.#get(key, options));
  }
  getEntry(key: string, options?: KvCallOptions): Promise<KvEntry<T> | null> {
    return this.#timed('get', () => this.#getEntry(key, options));
  }
  keys(filter = '>'): Promise<string[]> {
    return this.#timed('keys', () => listKeys(this, filter));
  }
  getAll(filter = '>'): Promise<Map<string, T>> {
    return this.#timed('get_all', () => listValues(this, filter));
  }
  history(key: string): Promise<KvChange<T>[]> {
    return this.#timed('history', () => keyHistory(this, key));
  }
  put(key: string, value: T, options?: KvPutOptions): Promise<number> {
    return this.#timed('put', () => this.#put(key, value, options));
  }
  create(key: string, value: T, options?: Omit<KvPutOptions, 'revision'>): Promise<number> {
    return this.#timed('create', () => this.#create(key, value, options));
  }
  update(
    key: string,
    value: T,
    revision: number,
    options?: Omit<KvPutOptions, 'revision'>,
  ): Promise<number> {
    return this.#timed('update', () => this.#update(key, value, revision, options));
  }
  delete(key: string, options?: KvDeleteOptions): Promise<boolean> {
    return this.#timed('delete', () => this.#delete(key, options));
  }
  purge(key: string, options?: KvDeleteOptions): Promise<void> {
    return this.#timed('purge', () => this.#purge(key, options));
  }
  bulkGet(keys: readonly string[], options?: KvCallOptions): Promise<(T | null)[]> {
    return this.#bulk('bulk_get', options, () => bulkGet(this, keys, options));
  }
  bulkPut(entries: readonly BulkPutEntry<T>[], options?: KvCallOptions): Promise<BulkResult[]> {
    return this.#bulk('bulk_put', options, () => bulkPut(this, entries, options));
  }
  bulkDelete(keys: readonly string[], options?: KvCallOptions): Promise<BulkResult[]> {
    return this.#bulk('bulk_delete', options, () => bulkDelete(this.state, keys, options));
  }
  #bulk<R>(op: string, options: KvCallOptions | undefined, run: () => Promise<R>): Promise<R> {
    return this.#timed(op, async () => {
      checkCallOptions('bulk', options);
      return await run();
    });
  }

  // ---- transactions ----

  transaction<R>(fn: (tx: Tx<T>) => Promise<R> | R, options?: TxOptions): Promise<TxResult<R>> {
    return this.#timed('transaction', () => this.#transaction(fn, options));
  }

  async updateWith(
    key: string,
    fn: (current: T | null) => T | Promise<T>,
    options?: TxOptions,
  ): Promise<{ value: T; revision: number; attempts: number }> {
    validateKey(key, this.name);
    const result = await this.#timed('update_with', () =>
      this.#transaction(async (tx) => {
        const next = await fn(await tx.get(key));
        await tx.put(key, next);
        return next;
      }, options),
    );
    return { value: result.value, revision: result.revisions[key] ?? 0, attempts: result.attempts };
  }

  /** Runs a transaction; counts its attempts and conflicts when metrics are on. */
  async #transaction<R>(
    fn: (tx: Tx<T>) => Promise<R> | R,
    options?: TxOptions,
  ): Promise<TxResult<R>> {
    this.state.assertOpen('transaction');
    checkCallOptions('transaction', options);
    const m = this.state.metrics;
    if (!m) return await runTransaction(this.#backend(), fn, options);
    try {
      const result = await runTransaction(this.#backend(), fn, options);
      m.transaction(result.attempts, 'ok');
      return result;
    } catch (err) {
      // The transaction function may have thrown anything (null...): only our errors are read.
      const attempts = NatskitError.is(err) ? err.details?.attempts : undefined;
      m.transaction(typeof attempts === 'number' ? attempts : 1, outcomeOf(err));
      throw err;
    }
  }

  #backend(): TxBackend<T> {
    return txBackend(this);
  }

  healthCheck(): Promise<KvBucketHealth> {
    return bucketHealth(this.state);
  }
}
