import { performance } from 'node:perf_hooks';
import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  type JsMsg,
  type StoredMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import {
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  nuid,
  RequestError,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Capabilities } from '../connection/capabilities.js';
import { requireFeature } from '../connection/capabilities.js';
import { NatskitError } from '../errors/natskit-error.js';
import { type RetryCounter, type RetryOptions, withRetry } from '../retry/retry.js';
import { MAX_BATCH_MESSAGES, publishAtomicBatch } from './atomic-batch.js';
import { fromStreamConfig } from './bucket-config.js';
import type { Codec, StandardSchemaV1 } from './codec.js';
import { validate } from './codec.js';
import {
  isReserved,
  keyOf,
  RESERVED_PREFIX,
  streamOf,
  subjectOf,
  validateFilter,
  validateKey,
} from './names.js';
import { scan } from './scan.js';
import {
  runTransaction,
  type Tx,
  type TxBackend,
  type TxOptions,
  type TxResult,
} from './transaction.js';
import { type KvChange, type KvWatcher, type KvWatchOptions, startWatch } from './watch.js';

/** A live value with its metadata. */
export interface KvEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly revision: number;
  readonly created: Date;
}

/** Per-call options of reads. */
export interface KvCallOptions {
  /** Retry transient errors; `false` for one attempt. @defaultValue the service's retry options */
  readonly retry?: RetryOptions | false;
  readonly signal?: AbortSignal;
}

/** Options of `put`. */
export interface KvPutOptions extends KvCallOptions {
  /** This value expires after this long (at least 1000 ms; server >= 2.11). */
  readonly ttlMs?: number;
  /** Write only if the key's revision is this (0: only if absent); else `KV_REVISION_CONFLICT`. */
  readonly revision?: number;
}

/** Options of `delete` and `purge`. */
export interface KvDeleteOptions extends KvCallOptions {
  /** Delete only if the key's revision is this. */
  readonly revision?: number;
}

/** The result of one key of a bulk write: nothing is dropped. */
export type BulkResult =
  | { readonly key: string; readonly ok: true; readonly revision: number }
  | { readonly key: string; readonly ok: false; readonly error: NatskitError };

/** One entry of a `bulkPut`. */
export interface BulkPutEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly ttlMs?: number;
}

/** A bucket's health. */
export interface KvBucketHealth {
  readonly bucket: string;
  readonly healthy: boolean;
  /** Why not, when not healthy. */
  readonly reason?: string;
  readonly values: number;
  readonly keys: number;
  readonly bytes: number;
  readonly history: number;
  readonly ttlMs: number;
  readonly replicas: number;
  readonly leader: string | undefined;
  readonly replicasCurrent: boolean;
  readonly directGet: boolean;
  /** Time of one direct read, in ms. */
  readonly readLatencyMs: number;
}

/** A bucket handle: the KV operations without the bucket argument. */
export interface KvBucket<T = unknown> {
  readonly name: string;
  get(key: string, options?: KvCallOptions): Promise<T | null>;
  getEntry(key: string, options?: KvCallOptions): Promise<KvEntry<T> | null>;
  put(key: string, value: T, options?: KvPutOptions): Promise<number>;
  create(key: string, value: T, options?: Omit<KvPutOptions, 'revision'>): Promise<number>;
  update(key: string, value: T, revision: number, options?: KvCallOptions): Promise<number>;
  delete(key: string, options?: KvDeleteOptions): Promise<void>;
  purge(key: string, options?: KvDeleteOptions): Promise<void>;
  keys(filter?: string): Promise<string[]>;
  getAll(filter?: string): Promise<Map<string, T>>;
  history(key: string): Promise<KvChange<T>[]>;
  watch(keyOrFilter?: string, options?: KvWatchOptions<T>): Promise<KvWatcher<T>>;
  bulkGet(keys: readonly string[], options?: KvCallOptions): Promise<(T | null)[]>;
  bulkPut(entries: readonly BulkPutEntry<T>[], options?: KvCallOptions): Promise<BulkResult[]>;
  bulkDelete(keys: readonly string[], options?: KvCallOptions): Promise<BulkResult[]>;
  healthCheck(): Promise<KvBucketHealth>;
  /**
   * Runs `fn` as an optimistic transaction: its writes commit atomically (one JetStream atomic
   * batch, server >= 2.12) only if nothing it read or wrote changed meanwhile; on a conflict it
   * runs again on fresh reads, up to `maxAttempts`. `fn` must be safe to re-run: side effects
   * belong after the commit. Transactions are per bucket.
   */
  transaction<R>(fn: (tx: Tx<T>) => Promise<R> | R, options?: TxOptions): Promise<TxResult<R>>;
  /** Compare-and-set loop on one key; works on every server version. */
  updateWith(
    key: string,
    fn: (current: T | null) => T | Promise<T>,
    options?: TxOptions,
  ): Promise<{ value: T; revision: number; attempts: number }>;
}

/** What a handle needs from its service. */
export interface KvContext {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
  readonly metrics: RetryCounter;
  readonly retry: RetryOptions;
  readonly requestTimeoutMs: number;
  capabilities(): Capabilities;
  /** The bucket was found deleted: drop its cached handle. */
  gone(bucket: string): void;
}

/** The handle's codec and schema. */
export interface HandleCodec<T> {
  readonly codec: Codec<T>;
  readonly schema: StandardSchemaV1<unknown, T> | undefined;
}

const OPERATION = 'KV-Operation';
const MARKER = 'Nats-Marker-Reason';
const WINDOW = 256;
const MULTI_LAST_MAX = 1_024;

function noResponders(err: unknown): boolean {
  return err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders());
}

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function pool<I, R>(
  items: readonly I[],
  limit: number,
  fn: (item: I, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as I, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** True when a stored message is not a live value (deleted, purged, or an expiry marker). */
export function isAbsent(h: MsgHdrs | undefined): boolean {
  const op = h?.get(OPERATION);
  return op === 'DEL' || op === 'PURGE' || Boolean(h?.get(MARKER));
}

/** @internal created by KVStoreService. */
export class KvBucketImpl<T> implements KvBucket<T> {
  readonly name: string;
  readonly stream: string;
  #config: StreamConfig;
  readonly #ctx: KvContext;
  readonly #c: HandleCodec<T>;

  constructor(ctx: KvContext, name: string, config: StreamConfig, codec: HandleCodec<T>) {
    this.#ctx = ctx;
    this.name = name;
    this.stream = streamOf(name);
    this.#config = config;
    this.#c = codec;
  }

  /** The stored stream config this handle was opened with. */
  get config(): StreamConfig {
    return this.#config;
  }

  // ---- plumbing ----

  #gone(cause?: unknown): NatskitError {
    this.#ctx.gone(this.name);
    return new NatskitError(
      'KV_BUCKET_NOT_FOUND',
      `bucket ${this.name} does not exist (it was deleted)`,
      {
        cause,
        details: { bucket: this.name },
      },
    );
  }

  /** Maps "stream not found" to KV_BUCKET_NOT_FOUND; checks no-responders against stream info. */
  async #classify(err: unknown): Promise<unknown> {
    if (err instanceof JetStreamApiError && err.code === 10059) return this.#gone(err);
    if (noResponders(err)) {
      try {
        await this.#ctx.jsm.streams.info(this.stream);
      } catch (e) {
        if (e instanceof JetStreamApiError && e.code === 10059) return this.#gone(err);
      }
    }
    if (err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164)) {
      const current = /wrong last sequence: (\d+)/.exec(err.message)?.[1];
      return new NatskitError(
        'KV_REVISION_CONFLICT',
        `revision conflict in bucket ${this.name}: ${err.message}`,
        {
          cause: err,
          details: { bucket: this.name, ...(current ? { currentRevision: Number(current) } : {}) },
        },
      );
    }
    return err;
  }

  async #call<R>(what: string, fn: () => Promise<R>, o: KvCallOptions = {}): Promise<R> {
    const retry = o.retry === false ? { retries: 0 } : { ...this.#ctx.retry, ...o.retry };
    return await withRetry(
      `${what} (bucket ${this.name})`,
      async () => {
        try {
          return await fn();
        } catch (err) {
          throw await this.#classify(err);
        }
      },
      retry,
      o.signal,
      this.#ctx.metrics,
    );
  }

  async #encode(key: string, value: T): Promise<Uint8Array> {
    validateKey(key);
    const checked = await validate(this.#c.schema, value, {
      key,
      direction: 'write',
      bucket: this.name,
    });
    let data: Uint8Array;
    try {
      data = this.#c.codec.encode(checked);
    } catch (err) {
      if (NatskitError.is(err)) throw err;
      throw new NatskitError(
        'INVALID_VALUE',
        `value for key ${key} cannot be encoded: ${(err as Error).message}`,
        {
          cause: err,
          details: { key },
        },
      );
    }
    const maxValue = this.#config.max_msg_size ?? -1;
    const maxPayload = this.#ctx.nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
    const limit = maxValue > 0 ? Math.min(maxValue, maxPayload) : maxPayload;
    if (data.length > limit) {
      throw new NatskitError(
        'VALUE_TOO_LARGE',
        `value for key ${key} is ${data.length} bytes; the limit is ${limit}`,
        {
          details: { key, bytes: data.length, limit },
        },
      );
    }
    return data;
  }

  /** Decodes a stored value; synchronous unless the bucket has a schema (then validation may be async). */
  #decode(key: string, m: { data: Uint8Array; seq: number }): T | Promise<T> {
    let value: unknown;
    try {
      value = this.#c.codec.decode(m.data);
    } catch (err) {
      throw new NatskitError(
        'DECODE_FAILED',
        `stored value of key ${key} (revision ${m.seq}) cannot be decoded: ${(err as Error).message}`,
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

  async #last(subject: string): Promise<StoredMsg | null> {
    const { jsm } = this.#ctx;
    return this.#config.allow_direct
      ? await jsm.direct.getMessage(this.stream, { last_by_subj: subject })
      : await jsm.streams.getMessage(this.stream, { last_by_subj: subject });
  }

  /**
   * Turns on a one-way stream flag the first time it is needed (per-key TTL, atomic publish),
   * after checking the server has the feature, and checks the server kept it.
   */
  async #enable(
    flag: 'allow_msg_ttl' | 'allow_atomic',
    feature: 'perKeyTtl' | 'atomicBatch',
    what: string,
  ): Promise<void> {
    requireFeature(this.#ctx.capabilities(), feature, what);
    if (this.#config[flag]) return;
    const info = await this.#ctx.jsm.streams.update(this.stream, { ...this.#config, [flag]: true });
    if (!info.config[flag]) {
      throw new NatskitError(
        'CAPABILITY_MISSING',
        `${what}: the stream of bucket ${this.name} refused ${flag}`,
        {
          details: { feature },
        },
      );
    }
    this.#config = info.config;
    this.#ctx.log.info({ bucket: this.name, flag }, 'enabled a stream flag on the bucket');
  }

  #ensureTtl(): Promise<void> {
    return this.#enable('allow_msg_ttl', 'perKeyTtl', `a per-key TTL on bucket ${this.name}`);
  }

  #ttl(ttlMs: number | undefined): string | undefined {
    if (ttlMs === undefined) return undefined;
    if (!Number.isInteger(ttlMs) || ttlMs < 1_000) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `ttlMs must be an integer of at least 1000, got ${ttlMs}`,
        { details: { field: 'ttlMs' } },
      );
    }
    return `${ttlMs}ms`;
  }

  /** Publishes one write, retrying transient failures. */
  async #write(
    key: string,
    data: Uint8Array,
    h: Record<string, string>,
    o: KvCallOptions & { revision?: number | undefined; ttl?: string | undefined },
  ): Promise<number> {
    const opts: Partial<JetStreamPublishOptions> = { timeout: this.#ctx.requestTimeoutMs };
    if (o.revision !== undefined) {
      // A compare-and-set retried after a lost acknowledgement must not come back as a false
      // conflict: the message id makes the server answer the retry with the first write's ack.
      // A plain put goes without (no dedup bookkeeping on the hot path); its retry may store the
      // same value twice, which leaves the same state and one more revision.
      opts.msgID = nuid.next();
      if (!Number.isInteger(o.revision) || o.revision < 0) {
        throw new NatskitError(
          'INVALID_OPTIONS',
          `revision must be an integer >= 0, got ${o.revision}`,
          { details: { field: 'revision' } },
        );
      }
      opts.expect = { lastSubjectSequence: o.revision };
    }
    const headers: Record<string, string> = { ...h };
    if (o.ttl !== undefined) {
      opts.ttl = o.ttl;
      headers['Nats-Rollup'] = 'sub'; // an older revision must not come back when this one expires
    }
    if (Object.keys(headers).length > 0) {
      const mh = natsHeaders();
      for (const [k, v] of Object.entries(headers)) mh.set(k, v);
      opts.headers = mh;
    }
    try {
      const ack = await this.#call(
        `write ${key}`,
        () => this.#ctx.js.publish(subjectOf(this.name, key), data, opts),
        o,
      );
      return ack.seq;
    } catch (err) {
      if (NatskitError.is(err, 'KV_REVISION_CONFLICT')) {
        throw new NatskitError(
          'KV_REVISION_CONFLICT',
          `key ${key} in bucket ${this.name} is not at revision ${o.revision}`,
          {
            cause: err.cause,
            details: { ...err.details, key, expectedRevision: o.revision },
          },
        );
      }
      throw err;
    }
  }

  // ---- reads ----

  async getEntry(key: string, options?: KvCallOptions): Promise<KvEntry<T> | null> {
    validateKey(key);
    const m = await this.#call(`get ${key}`, () => this.#last(subjectOf(this.name, key)), options);
    if (!m || isAbsent(m.header)) return null;
    return { key, value: await this.#decode(key, m), revision: m.seq, created: m.time };
  }

  async get(key: string, options?: KvCallOptions): Promise<T | null> {
    return (await this.getEntry(key, options))?.value ?? null;
  }

  async keys(filter = '>'): Promise<string[]> {
    validateFilter(filter);
    const out: string[] = [];
    for await (const m of this.#scan(filter, true, true)) {
      const key = keyOf(this.name, m.subject);
      if (!isAbsent(m.headers) && !isReserved(key)) out.push(key);
    }
    return out;
  }

  async getAll(filter = '>'): Promise<Map<string, T>> {
    validateFilter(filter);
    const out = new Map<string, T>();
    for await (const m of this.#scan(filter, true, false)) {
      const key = keyOf(this.name, m.subject);
      if (isAbsent(m.headers) || isReserved(key)) continue;
      out.set(key, await this.#decode(key, m));
    }
    return out;
  }

  async history(key: string): Promise<KvChange<T>[]> {
    validateKey(key);
    const out: KvChange<T>[] = [];
    for await (const m of this.#scan(key, false, false)) out.push(await this.#change(m, false));
    return out;
  }

  async *#scan(
    filter: string,
    lastPerSubject: boolean,
    headersOnly: boolean,
  ): AsyncGenerator<JsMsg> {
    try {
      yield* scan(this.#ctx.jsm, this.#ctx.js, this.stream, subjectOf(this.name, filter), {
        lastPerSubject,
        headersOnly,
      });
    } catch (err) {
      throw await this.#classify(err);
    }
  }

  /** @internal decodes a watched or scanned message into a change. */
  async #change(
    m: {
      subject: string;
      seq: number;
      data: Uint8Array;
      headers?: MsgHdrs | undefined;
      time?: Date;
      info?: { timestampNanos: number };
    },
    initial: boolean,
  ): Promise<KvChange<T>> {
    const key = keyOf(this.name, m.subject);
    const created = m.time ?? new Date(Math.floor((m.info?.timestampNanos ?? 0) / 1e6));
    const op = m.headers?.get(OPERATION);
    if (op === 'DEL' || op === 'PURGE' || m.headers?.get(MARKER)) {
      return { type: op === 'DEL' ? 'delete' : 'purge', key, revision: m.seq, created, initial };
    }
    try {
      return {
        type: 'put',
        key,
        value: await this.#decode(key, m),
        revision: m.seq,
        created,
        initial,
      };
    } catch (err) {
      return {
        type: 'invalid',
        key,
        revision: m.seq,
        created,
        initial,
        error: err as NatskitError,
      };
    }
  }

  async watch(keyOrFilter = '>', options: KvWatchOptions<T> = {}): Promise<KvWatcher<T>> {
    validateFilter(keyOrFilter);
    try {
      return await startWatch(
        this.#ctx.nc,
        this.#ctx.jsm,
        this.stream,
        subjectOf(this.name, keyOrFilter),
        (m, initial) => (isReserved(keyOf(this.name, m.subject)) ? null : this.#change(m, initial)),
        options,
        this.#ctx.log,
      );
    } catch (err) {
      throw await this.#classify(err);
    }
  }

  async bulkGet(keys: readonly string[], options?: KvCallOptions): Promise<(T | null)[]> {
    for (const k of keys) validateKey(k);
    const found = new Map<string, StoredMsg>();
    const unique = [...new Set(keys)];
    if (this.#config.allow_direct && this.#ctx.capabilities().features.multiGet) {
      for (let i = 0; i < unique.length; i += MULTI_LAST_MAX) {
        const chunk = unique.slice(i, i + MULTI_LAST_MAX).map((k) => subjectOf(this.name, k));
        const msgs = await this.#call(
          'bulk get',
          async () => {
            const got: StoredMsg[] = [];
            for await (const m of await this.#ctx.jsm.direct.getLastMessagesFor(this.stream, {
              multi_last: chunk,
            }))
              got.push(m);
            return got;
          },
          options,
        );
        for (const m of msgs) found.set(keyOf(this.name, m.subject), m);
      }
    } else {
      await pool(unique, WINDOW, async (k) => {
        const m = await this.#call(`get ${k}`, () => this.#last(subjectOf(this.name, k)), options);
        if (m) found.set(k, m);
      });
    }
    const decoded = new Map<string, T | null>();
    for (const [k, m] of found)
      decoded.set(k, isAbsent(m.header) ? null : await this.#decode(k, m));
    return keys.map((k) => decoded.get(k) ?? null);
  }

  // ---- writes ----

  async put(key: string, value: T, options: KvPutOptions = {}): Promise<number> {
    const data = await this.#encode(key, value);
    const ttl = this.#ttl(options.ttlMs);
    if (ttl) await this.#ensureTtl();
    return await this.#write(key, data, {}, { ...options, ttl });
  }

  async create(
    key: string,
    value: T,
    options: Omit<KvPutOptions, 'revision'> = {},
  ): Promise<number> {
    try {
      return await this.put(key, value, { ...options, revision: 0 });
    } catch (err) {
      if (!NatskitError.is(err, 'KV_REVISION_CONFLICT')) throw err;
      // A deleted, purged or expired key still has its tombstone: absent, so create may write,
      // expecting the tombstone's revision (a concurrent writer still makes this fail).
      const tombstone = await this.#absentRevision(key, options);
      if (tombstone === undefined) throw err;
      return await this.put(key, value, { ...options, revision: tombstone });
    }
  }

  /**
   * The revision to expect for a key that reads as absent: 0 when it never existed, the
   * tombstone's revision when it was deleted, purged or expired; undefined when it is live.
   */
  async #absentRevision(key: string, options?: KvCallOptions): Promise<number | undefined> {
    const m = await this.#call(`get ${key}`, () => this.#last(subjectOf(this.name, key)), options);
    if (!m) return 0;
    return isAbsent(m.header) ? m.seq : undefined;
  }

  async update(
    key: string,
    value: T,
    revision: number,
    options: KvCallOptions = {},
  ): Promise<number> {
    if (!Number.isInteger(revision) || revision < 1) {
      throw new NatskitError('INVALID_OPTIONS', `update needs a revision >= 1, got ${revision}`, {
        details: { field: 'revision' },
      });
    }
    return await this.put(key, value, { ...options, revision });
  }

  async delete(key: string, options: KvDeleteOptions = {}): Promise<void> {
    validateKey(key);
    await this.#write(key, new Uint8Array(0), { [OPERATION]: 'DEL' }, options);
  }

  async purge(key: string, options: KvDeleteOptions = {}): Promise<void> {
    validateKey(key);
    await this.#write(
      key,
      new Uint8Array(0),
      { [OPERATION]: 'PURGE', 'Nats-Rollup': 'sub' },
      options,
    );
  }

  async bulkPut(
    entries: readonly BulkPutEntry<T>[],
    options: KvCallOptions = {},
  ): Promise<BulkResult[]> {
    const results = new Array<BulkResult>(entries.length);
    const valid: { i: number; key: string; data: Uint8Array; ttl: string | undefined }[] = [];
    let anyTtl = false;
    for (const [i, e] of entries.entries()) {
      try {
        const data = await this.#encode(e.key, e.value);
        const ttl = this.#ttl(e.ttlMs);
        anyTtl ||= ttl !== undefined;
        valid.push({ i, key: e.key, data, ttl });
      } catch (err) {
        results[i] = { key: String(e?.key), ok: false, error: asNatskit(err) };
      }
    }
    if (anyTtl) await this.#ensureTtl();
    const single = async (v: (typeof valid)[number]) => {
      try {
        results[v.i] = {
          key: v.key,
          ok: true,
          revision: await this.#write(v.key, v.data, {}, { ...options, ttl: v.ttl }),
        };
      } catch (err) {
        results[v.i] = { key: v.key, ok: false, error: asNatskit(err) };
      }
    };
    if (this.#config.allow_atomic && this.#ctx.capabilities().features.atomicBatch) {
      // Batches need no acknowledgement per message: several times the throughput of single puts.
      for (let s = 0; s < valid.length; s += MAX_BATCH_MESSAGES) {
        const chunk = valid.slice(s, s + MAX_BATCH_MESSAGES);
        try {
          const ack = await publishAtomicBatch(
            this.#ctx.nc,
            chunk.map((v) => ({
              subject: subjectOf(this.name, v.key),
              data: v.data,
              ...(v.ttl ? { headers: { 'Nats-TTL': v.ttl, 'Nats-Rollup': 'sub' } } : {}),
            })),
            this.#ctx.requestTimeoutMs,
          );
          chunk.forEach((v, j) => {
            results[v.i] = { key: v.key, ok: true, revision: ack.firstSeq + j };
          });
        } catch (err) {
          // Plain puts are idempotent in value: when the batch failed (or its outcome is unknown),
          // writing each key alone gives every key its own result.
          this.#ctx.log.warn(
            { err, bucket: this.name, keys: chunk.length },
            'bulk batch failed; writing its keys one by one',
          );
          await pool(chunk, WINDOW, single);
        }
      }
    } else {
      await pool(valid, WINDOW, single);
    }
    return results;
  }

  async bulkDelete(keys: readonly string[], options: KvCallOptions = {}): Promise<BulkResult[]> {
    return await pool(keys, WINDOW, async (key): Promise<BulkResult> => {
      try {
        validateKey(key);
        const revision = await this.#write(key, new Uint8Array(0), { [OPERATION]: 'DEL' }, options);
        return { key, ok: true, revision };
      } catch (err) {
        return { key: String(key), ok: false, error: asNatskit(err) };
      }
    });
  }

  // ---- transactions ----

  async transaction<R>(
    fn: (tx: Tx<T>) => Promise<R> | R,
    options?: TxOptions,
  ): Promise<TxResult<R>> {
    return await runTransaction(this.#backend(), fn, options);
  }

  async updateWith(
    key: string,
    fn: (current: T | null) => T | Promise<T>,
    options?: TxOptions,
  ): Promise<{ value: T; revision: number; attempts: number }> {
    validateKey(key);
    const result = await runTransaction(
      this.#backend(),
      async (tx) => {
        const next = await fn(await tx.get(key));
        await tx.put(key, next);
        return next;
      },
      options,
    );
    return { value: result.value, revision: result.revisions[key] ?? 0, attempts: result.attempts };
  }

  #backend(): TxBackend<T> {
    return {
      bucket: this.name,
      stream: this.stream,
      reservedPrefix: RESERVED_PREFIX,
      validateKey,
      readLast: (key) => this.#call(`get ${key}`, () => this.#last(subjectOf(this.name, key))),
      readNext: (key, seq) =>
        this.#call(`get ${key}`, () =>
          this.#ctx.jsm.direct.getMessage(this.stream, {
            next_by_subj: subjectOf(this.name, key),
            seq,
          }),
        ),
      isAbsent: (m) => isAbsent(m.header),
      encode: (key, value) => this.#encode(key, value),
      decode: (key, m) => this.#decode(key, m),
      ensureAtomic: (what) => this.#enable('allow_atomic', 'atomicBatch', what),
      writeOne: (key, data, revision) =>
        data === null
          ? this.#write(key, new Uint8Array(0), { [OPERATION]: 'DEL' }, { revision })
          : this.#write(key, data, {}, { revision }),
      publishBatch: (messages) =>
        publishAtomicBatch(this.#ctx.nc, messages, this.#ctx.requestTimeoutMs),
    };
  }

  async healthCheck(): Promise<KvBucketHealth> {
    const info = await this.#call('health check', () => this.#ctx.jsm.streams.info(this.stream));
    const t0 = performance.now();
    await this.#call('health read', () =>
      this.#last(subjectOf(this.name, '_natskit_health_probe')),
    );
    const readLatencyMs = Math.round((performance.now() - t0) * 100) / 100;
    const b = fromStreamConfig(info.config);
    const replicas = info.cluster?.replicas ?? [];
    const replicasCurrent = replicas.every((r) => r.current && !r.offline);
    const leader = info.cluster?.leader;
    const reasons = [
      ...(info.cluster && !leader ? ['no stream leader'] : []),
      ...(replicasCurrent
        ? []
        : [
            `replicas behind or offline: ${replicas
              .filter((r) => !r.current || r.offline)
              .map((r) => r.name)
              .join(', ')}`,
          ]),
    ];
    return {
      bucket: this.name,
      healthy: reasons.length === 0,
      ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
      values: info.state.messages,
      keys: info.state.num_subjects ?? 0,
      bytes: info.state.bytes,
      history: b.history,
      ttlMs: b.ttlMs,
      replicas: b.replicas,
      leader,
      replicasCurrent,
      directGet: b.directGet,
      readLatencyMs,
    };
  }
}

function asNatskit(err: unknown): NatskitError {
  return NatskitError.is(err)
    ? err
    : new NatskitError('PUBLISH_FAILED', err instanceof Error ? err.message : String(err), {
        cause: err,
      });
}
