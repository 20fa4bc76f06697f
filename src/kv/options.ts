import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { checkRetryOptions, type RetryOptions } from '../retry/retry.js';
import type { BucketConfig, DriftPolicy } from './bucket-config.js';
import type { Codec, StandardSchemaV1 } from './codec.js';
import type {
  BulkPutEntry,
  KvCallOptions,
  KvDeleteOptions,
  KvPutOptions,
  KvWatchOptions,
  TxOptions,
} from './types.js';

/** Options of a bucket handle. */
export interface BucketOptions<T> {
  /** @defaultValue 'json' */
  readonly codec?: Codec<T> | 'json' | 'string' | 'bytes';
  /** Validates every value written and read (zod, valibot, arktype...). */
  readonly schema?: StandardSchemaV1<unknown, T>;
  /**
   * Create the bucket with this config when it does not exist. Without it, `bucket()` only binds
   * an existing bucket and fails with `KV_BUCKET_NOT_FOUND` when there is none.
   */
  readonly provision?: BucketConfig;
  /** When a provisioned bucket exists with another config. @defaultValue the service's `drift` */
  readonly drift?: DriftPolicy;
}

/** Options of the KVStoreService (`options.kv` of the ServiceManager). */
export interface KVStoreOptions {
  /** Retries of transient errors. @defaultValue RETRY_DEFAULTS */
  readonly retry?: RetryOptions;
  /**
   * `'error'`: fail with `KV_BUCKET_DRIFT`; `'warn'`: log and use the bucket as it is; `'update'`:
   * apply what a stream update can (never storage). @defaultValue 'error'
   */
  readonly drift?: DriftPolicy;
  /** Bucket of the state calls (`setState`...), provisioned on first use. @defaultValue 'natskit_state' */
  readonly stateBucket?: string;
  /**
   * Config of the state bucket when natskit creates it. History 5 so that a watcher sees every
   * transition: with history 1 a value replaced at once can be gone before it is delivered.
   * @defaultValue { history: 5 }
   */
  readonly stateBucketConfig?: BucketConfig;
}

// The fields of each KV options type, for the unknown-field check: a typo (`ttl` for `ttlMs`)
// must fail, not write a value that never expires. Each list is checked against its interface
// by the compiler (see knownKeys).

const KV_STORE_KEYS = knownKeys<KVStoreOptions>({
  retry: true,
  drift: true,
  stateBucket: true,
  stateBucketConfig: true,
});
const BUCKET_KEYS = knownKeys<BucketOptions<unknown>>({
  codec: true,
  schema: true,
  provision: true,
  drift: true,
});
const CALL_KEYS = knownKeys<KvCallOptions>({ retry: true, signal: true });
const PUT_KEYS = knownKeys<KvPutOptions>({
  retry: true,
  signal: true,
  ttlMs: true,
  revision: true,
  headers: true,
});
const DELETE_KEYS = knownKeys<KvDeleteOptions>({ retry: true, signal: true, revision: true });
const WATCH_KEYS = knownKeys<KvWatchOptions<unknown>>({
  include: true,
  fromRevision: true,
  bufferSize: true,
  onChange: true,
  onInitialized: true,
});
const TX_KEYS = knownKeys<TxOptions>({
  maxAttempts: true,
  backoff: true,
  isolation: true,
  signal: true,
});
const BACKOFF_KEYS = knownKeys<NonNullable<TxOptions['backoff']>>({
  minDelayMs: true,
  maxDelayMs: true,
});

const BULK_ENTRY_KEYS = knownKeys<BulkPutEntry<unknown>>({ key: true, value: true, ttlMs: true });

/**
 * Throws `INVALID_OPTIONS` when a `bulkPut` entry has an unknown field (`ttl` for `ttlMs` would
 * store a value that never expires); the bulk call reports it as that entry's result.
 */
export function checkBulkEntry(index: number, entry: unknown): void {
  checkOptionsObject(`bulkPut entries[${index}]`, entry, BULK_ENTRY_KEYS);
}

/** The option lists of the KV calls, by the kind of call. */
const CALLS = {
  read: CALL_KEYS,
  bulk: CALL_KEYS,
  put: PUT_KEYS,
  // `create` and `update` set the revision themselves.
  create: PUT_KEYS.filter((k) => k !== 'revision'),
  update: PUT_KEYS.filter((k) => k !== 'revision'),
  delete: DELETE_KEYS,
  watch: WATCH_KEYS,
  transaction: TX_KEYS,
} as const;

/** Throws `INVALID_OPTIONS` when the KV service's options (`options.kv`) have an unknown field. */
export function checkKvStoreOptions(options: unknown): void {
  checkOptionsObject('options.kv', options, KV_STORE_KEYS);
  checkRetryOptions('options.kv.retry', (options as KVStoreOptions | undefined)?.retry);
}

/** Throws `INVALID_OPTIONS` when the options of `bucket(name, options)` have an unknown field. */
export function checkBucketOptions(name: string, options: unknown): void {
  checkOptionsObject(`bucket ${name} options `, options, BUCKET_KEYS);
}

/** Throws `INVALID_OPTIONS` when the options of a KV call have an unknown field. */
export function checkCallOptions(call: keyof typeof CALLS, options: unknown): void {
  if (options === undefined) return; // the common call: nothing to check, no message to build
  const where = `${call} options `;
  checkOptionsObject(where, options, CALLS[call]);
  const o = options as { retry?: unknown; backoff?: unknown } | undefined;
  checkRetryOptions(`${where}retry`, o?.retry);
  if (call === 'transaction') checkOptionsObject(`${where}backoff`, o?.backoff, BACKOFF_KEYS);
}

/** Whether two opens ask for the same provisioning (then the second reuses the first). */
export function sameProvision(a: BucketOptions<unknown>, b: BucketOptions<unknown>): boolean {
  return (
    a.drift === b.drift &&
    JSON.stringify(a.provision ?? null) === JSON.stringify(b.provision ?? null)
  );
}
