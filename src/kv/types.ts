import type { NatskitError } from '../errors/natskit-error.js';
import type { RetryOptions } from '../retry/retry.js';

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

// ---- watches ----

/** One change a watch reports, tagged by `type`. */
export type KvChange<T> =
  | {
      readonly type: 'put';
      readonly key: string;
      readonly value: T;
      readonly revision: number;
      readonly created: Date;
      /** Part of the initial state, not an update. */
      readonly initial: boolean;
    }
  | {
      readonly type: 'delete' | 'purge';
      readonly key: string;
      readonly revision: number;
      readonly created: Date;
      readonly initial: boolean;
    }
  | {
      /** A stored value that failed to decode or validate; the watch goes on. */
      readonly type: 'invalid';
      readonly key: string;
      readonly revision: number;
      readonly created: Date;
      readonly initial: boolean;
      readonly error: NatskitError;
    };

/** Options of a watch. */
export interface KvWatchOptions<T> {
  /**
   * `'last'`: each key's current value, then updates; `'history'`: every stored revision, then
   * updates; `'updates'`: only what changes from now. @defaultValue 'last'
   */
  readonly include?: 'last' | 'history' | 'updates';
  /** Resume after this revision: changes with a higher revision only. */
  readonly fromRevision?: number;
  /**
   * Messages held on the client before the watch stops pulling from the server. A consumer that
   * falls behind is slowed down (the server keeps the rest), never buffered without bound.
   * @defaultValue 256
   */
  readonly bufferSize?: number;
  /** Callback form: called for each change, in order, one at a time (awaited). */
  readonly onChange?: (change: KvChange<T>) => void | Promise<void>;
  /**
   * Called once the initial state has been delivered; changes after it are updates. A write that
   * races the start of the watch is delivered either way, as initial state or as an update.
   */
  readonly onInitialized?: () => void;
}

/**
 * A running watch: iterate it (`for await`), or pass `onChange`. It survives reconnects and
 * server restarts, resuming after the last revision it delivered: no gap, no duplicate.
 */
export interface KvWatcher<T> extends AsyncIterable<KvChange<T>>, AsyncDisposable {
  /** The revision of the last change delivered. */
  readonly lastRevision: number;
  /** Ends the watch. */
  stop(): Promise<void>;
  /** Settles when the watch ends (with the callback form: rejects if the watch failed). */
  readonly done: Promise<void>;
}

// ---- transactions ----

/** How a transaction validates what it read. */
export type TxIsolation = 'serializable' | 'write-only';

/** Options of `transaction` and `updateWith`. */
export interface TxOptions {
  /** Runs of the function before giving up with `KV_REVISION_CONFLICT`. @defaultValue 10 */
  readonly maxAttempts?: number;
  /** Backoff between attempts, exponential with jitter. @defaultValue { minDelayMs: 5, maxDelayMs: 500 } */
  readonly backoff?: { readonly minDelayMs?: number; readonly maxDelayMs?: number };
  /**
   * `'serializable'`: every key read is validated at commit (keys only read cost one small guard
   * message each); `'write-only'`: only written keys are validated, which is cheaper but allows
   * write skew (two transactions each read both keys and write a different one). @defaultValue 'serializable'
   */
  readonly isolation?: TxIsolation;
  readonly signal?: AbortSignal;
}

/** What a committed transaction returns. */
export interface TxResult<R> {
  /** What the function returned. */
  readonly value: R;
  /** Runs of the function (1 when the first commit went through). */
  readonly attempts: number;
  /** The new revision of each key written. */
  readonly revisions: Readonly<Record<string, number>>;
}

/**
 * What `tx.getEntry` returns: a stored entry, or a value this transaction wrote and has not
 * committed (`buffered: true`: it has no revision or date yet).
 */
export type TxEntry<T> =
  | (KvEntry<T> & { readonly buffered: false })
  | {
      readonly key: string;
      readonly value: T;
      readonly buffered: true;
      readonly revision: undefined;
      readonly created: undefined;
    };

/**
 * The transaction handle passed to the function. Writes are buffered and invisible to others
 * until commit; reads see the transaction's own writes. The function may run several times (on
 * conflict), so it must have no side effects: do those after the commit.
 *
 * `put`, `create` and `delete` record the write when called, so a write whose promise is not
 * awaited is still committed; the commit waits for every operation the function started. A
 * write that fails (invalid key or value, `create` on a live key) aborts the transaction with
 * its error even if the function caught it: a transaction never commits without a write it was
 * asked to make. An operation called after the function returned is refused with `INVALID_STATE`.
 */
export interface Tx<T> {
  get(key: string): Promise<T | null>;
  /** Reads several keys at once (in parallel: one round trip); values in the order asked. */
  getMany(keys: readonly string[]): Promise<(T | null)[]>;
  getEntry(key: string): Promise<TxEntry<T> | null>;
  /**
   * Writes a value, encoded and validated exactly as `KvBucket.put` does: `null` is a value (JSON
   * `null`, or `VALIDATION_FAILED` / `INVALID_VALUE` where the schema or codec refuses it), never
   * a delete.
   */
  put(key: string, value: T): Promise<void>;
  /** Writes only if the key is absent (at commit); fails with `KV_REVISION_CONFLICT` if it is live. */
  create(key: string, value: T): Promise<void>;
  /** Deletes the key (no schema applies: there is no value). */
  delete(key: string): Promise<void>;
}
