import type { BucketConfig } from '../kv/bucket-config.js';
import type { StandardSchemaV1 } from '../kv/codec.js';
import type { KvChange } from '../kv/types.js';
import type { HealthCheckResult } from '../lifecycle/service.js';
import { createToken, type Token } from '../lifecycle/service.js';

/** A state value with its revision. */
export interface StateEntry<T> {
  readonly key: string;
  readonly value: T;
  /** Increases with every write to the store (any key): compare it, pass it back to `setState`. */
  readonly revision: number;
  /** When this revision was written. */
  readonly created: Date;
}

/**
 * One change seen by `watchState`: `put`, `delete`, `purge` (an expired TTL, or a purge), or
 * `invalid` (a stored value that is not JSON or fails the watch's schema; the watch goes on).
 * The same shape as a KV watch's changes.
 */
export type StateChange<T> = KvChange<T>;

/** Options of `setState`. */
export interface StateSetOptions<T> {
  /**
   * Write only if the key's last change has this revision (from `getStateEntry`, or a change
   * seen by a watch); `0`: only if the key is absent (never set, deleted or expired). Else
   * `KV_REVISION_CONFLICT`, and nothing is written.
   */
  readonly revision?: number;
  /** The value expires after this long (an integer >= 1000); watchers then see a `purge`. */
  readonly ttlMs?: number;
  /** Validates the value before it is written (`VALIDATION_FAILED`, nothing written). */
  readonly schema?: StandardSchemaV1<unknown, T>;
}

/** Options of `getState` and `getStateEntry`. */
export interface StateReadOptions<T> {
  /** Validates the stored value (`VALIDATION_FAILED` when it does not match). */
  readonly schema?: StandardSchemaV1<unknown, T>;
}

/** Options of `deleteState`. */
export interface StateDeleteOptions {
  /** Delete only if the key's last change has this revision; else `KV_REVISION_CONFLICT`. */
  readonly revision?: number;
}

/** Options of `watchState`. */
export interface StateWatchOptions<T> {
  /** Validates each value; one that fails comes as an `invalid` change. */
  readonly schema?: StandardSchemaV1<unknown, T>;
  /** Called once the initial state has been delivered; what follows are updates. */
  readonly onInitialized?: () => void;
}

/** A running `watchState`. */
export interface StateWatcher extends AsyncDisposable {
  /** The revision of the last change delivered. */
  readonly lastRevision: number;
  /** Ends the watch. */
  stop(): Promise<void>;
  /** Settles when the watch ends. */
  readonly done: Promise<void>;
}

/**
 * Keyed JSON state with revisions: the same calls and the same semantics over NATS KV (default
 * with `nats`) or an embedded SQLite file (`node:sqlite`, no server). Inject it with
 * `@inject(STATE_STORE)` (or `inject: [STATE_STORE]`); pick the backend with `options.state`.
 * Keys follow the NATS KV key rules on both backends, so state moves between them.
 */
export interface StateStore {
  /** Which backend this is. */
  readonly backend: 'nats' | 'sqlite';
  /** Sets a value; resolves with its revision. */
  setState<T = unknown>(key: string, value: T, options?: StateSetOptions<T>): Promise<number>;
  /** A value, or null when the key is absent (never set, deleted, expired). */
  getState<T = unknown>(key: string, options?: StateReadOptions<T>): Promise<T | null>;
  /** A value with its revision, or null. */
  getStateEntry<T = unknown>(
    key: string,
    options?: StateReadOptions<T>,
  ): Promise<StateEntry<T> | null>;
  /**
   * Calls `onChange` with the current value of each matching key (`initial: true`, deleted keys
   * left out), then with every change, in order, one at a time (awaited; an error it throws is
   * logged and the watch goes on). `keyOrFilter` takes `*` (one token) and a final `>`.
   */
  watchState<T = unknown>(
    keyOrFilter: string,
    onChange: (change: StateChange<T>) => void | Promise<void>,
    options?: StateWatchOptions<T>,
  ): Promise<StateWatcher>;
  /** Deletes a key; `true` when it was set, `false` when it was already absent. */
  deleteState(key: string, options?: StateDeleteOptions): Promise<boolean>;
  health(): Promise<HealthCheckResult>;
}

/** Token of the app's state store. */
export const STATE_STORE: Token<StateStore> = createToken<StateStore>('StateStore');

/** The NATS KV backend: a bucket of the connection's JetStream. */
export interface NatsStateOptions {
  readonly backend: 'nats';
  /** @defaultValue `options.kv.stateBucket`, else 'natskit_state' */
  readonly bucket?: string;
  /**
   * Config when natskit creates the bucket. @defaultValue `options.kv.stateBucketConfig`, else
   * `{ history: 5 }` plus `markerTtlMs: 1000` on servers with per-key TTL (expiries reach watchers)
   */
  readonly bucketConfig?: BucketConfig;
}

/** The embedded backend: one SQLite file, for one process. */
export interface SqliteStateOptions {
  readonly backend: 'sqlite';
  /** The database file (its folder is created), or `':memory:'`. */
  readonly path: string;
  /**
   * `'normal'`: a write survives the process being killed (as NATS's default file store does);
   * `'full'`: it also survives power loss (an fsync each write). @defaultValue 'normal'
   */
  readonly synchronous?: 'normal' | 'full';
  /** Values larger than this fail with `VALUE_TOO_LARGE`. @defaultValue 1048576 (NATS's default max_payload) */
  readonly maxValueBytes?: number;
}

/** `options.state` of the ServiceManager. */
export type StateOptions = NatsStateOptions | SqliteStateOptions;
