import type { NatskitError } from '../errors/natskit-error.js';
import type { RetryOptions } from '../retry/retry.js';
import type { Tx, TxOptions, TxResult } from './transaction.js';
import type { KvChange, KvWatcher, KvWatchOptions } from './watch.js';

/** A live value with its metadata. */
export interface KvEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly revision: number;
  readonly created: Date;
  /** The headers the writer stored with the value (`put(k, v, { headers })`), without NATS's own. */
  readonly headers: Readonly<Record<string, string>>;
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
  /**
   * Headers stored with the value and returned by `getEntry`. Names starting with `Nats-`, `KV-`
   * or `Natskit-` are reserved (`INVALID_OPTIONS`); they count toward the value size limit.
   */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Options of `delete` and `purge`. */
export interface KvDeleteOptions extends KvCallOptions {
  /** Delete only if the key's revision is this; else `KV_REVISION_CONFLICT`. */
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
  /** The largest value the bucket stores, in bytes; -1: only the server's `max_payload` limits it. */
  readonly maxValueSize: number;
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
  update(
    key: string,
    value: T,
    revision: number,
    options?: Omit<KvPutOptions, 'revision'>,
  ): Promise<number>;
  /**
   * Deletes a key; resolves `true` when it was live, `false` when it was already absent (then
   * nothing is written). It reads the key first and deletes that revision, so a concurrent
   * write is never reported wrongly.
   */
  delete(key: string, options?: KvDeleteOptions): Promise<boolean>;
  /** Deletes a key and every older revision of it (the history). */
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
