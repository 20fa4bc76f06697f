import type { StoredMsg } from '@nats-io/jetstream';
import { describeValue } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import {
  MAX_BATCH_MESSAGES,
  publishAtomicBatch,
  worstCaseBytes,
} from '../jetstream/atomic-batch.js';
import { headerBytes } from '../jetstream/headers.js';
import type { BucketState, TypedBucket } from './bucket-state.js';
import { FAST_INGEST_MIN, fastBulkPut, fastIngestReady } from './bulk-fast.js';
import { isAbsent, OPERATION } from './headers.js';
import { keyOf, subjectOf, validateStoredKey } from './names.js';
import { checkBulkEntry } from './options.js';
import type { BulkPutEntry, BulkResult, KvCallOptions } from './types.js';

/** Requests in flight at once where a bulk call falls back to one request per key. */
const WINDOW = 256;
/** The most subjects one `multi_last` direct get answers (the server says 413 beyond). */
const MULTI_LAST_MAX = 1_024;

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

/** The `Nats-TTL` value of a per-key TTL; `INVALID_OPTIONS` below one second. */
export function ttlOf(ttlMs: number | undefined): string | undefined {
  if (ttlMs === undefined) return undefined;
  if (!Number.isInteger(ttlMs) || ttlMs < 1_000) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `ttlMs must be an integer of at least 1000, got ${describeValue(ttlMs)}`,
      { details: { field: 'ttlMs' } },
    );
  }
  return `${ttlMs}ms`;
}

/** Any error as a natskit error, for a per-key result. */
export function asNatskit(err: unknown): NatskitError {
  return NatskitError.is(err)
    ? err
    : new NatskitError('PUBLISH_FAILED', describeThrown(err), {
        cause: err,
      });
}

/**
 * The values of many keys, in the order asked (`null` for missing, deleted, purged, expired):
 * one `multi_last` direct get per 1024 keys (server >= 2.11), else pipelined gets.
 */
export async function bulkGet<T>(
  b: TypedBucket<T>,
  keys: readonly string[],
  options?: KvCallOptions,
): Promise<(T | null)[]> {
  const { state } = b;
  for (const k of keys) validateStoredKey(k, state.name);
  const found = new Map<string, StoredMsg>();
  const unique = [...new Set(keys)];
  if (state.config.allow_direct && state.ctx.capabilities().features.multiGet) {
    for (let i = 0; i < unique.length; i += MULTI_LAST_MAX) {
      const chunk = unique.slice(i, i + MULTI_LAST_MAX).map((k) => subjectOf(state.keySpace, k));
      const msgs = await state.call(
        'bulk get',
        async () => {
          const got: StoredMsg[] = [];
          for await (const m of await state.ctx.jsm.direct.getLastMessagesFor(state.stream, {
            multi_last: chunk,
          }))
            got.push(m);
          return got;
        },
        options,
      );
      for (const m of msgs) found.set(keyOf(state.keySpace, m.subject), m);
    }
  } else {
    await pool(unique, WINDOW, async (k) => {
      const m = await state.readLast(k, options);
      if (m) found.set(k, m);
    });
  }
  const decoded = new Map<string, T | null>();
  for (const [k, m] of found) decoded.set(k, isAbsent(m.header) ? null : await b.decode(k, m));
  return keys.map((k) => decoded.get(k) ?? null);
}

/**
 * Writes many keys, one result per entry: invalid entries fail alone. On nats-server >= 2.14 one
 * fast-ingest batch (stored as it streams in, paced by the server; see `bulk-fast.ts` for how
 * each key gets its revision), elsewhere atomic batches of up to 1000 where the bucket allows
 * them; both several times the throughput of single puts. A key a batch did not store for
 * certain (refused, lost, a batch that failed, a value too large to travel in one) is written
 * alone, so its result is what a put of it gives.
 */
export async function bulkPut<T>(
  b: TypedBucket<T>,
  entries: readonly BulkPutEntry<T>[],
  options: KvCallOptions = {},
): Promise<BulkResult[]> {
  const { state } = b;
  state.assertOpen('bulk put');
  const results = new Array<BulkResult>(entries.length);
  const valid: Valid[] = [];
  for (const [i, e] of entries.entries()) {
    try {
      checkBulkEntry(i, e);
      const data = await b.encode(e.key, e.value);
      valid.push({ i, key: e.key, data, ttl: ttlOf(e.ttlMs) });
    } catch (err) {
      results[i] = { key: String(e?.key), ok: false, error: asNatskit(err) };
    }
  }
  if (valid.some((v) => v.ttl !== undefined)) await state.ensureTtl();
  const single = async (v: Valid) => {
    try {
      const revision = await state.write(v.key, v.data, [], { ...options, ttl: v.ttl });
      results[v.i] = { key: v.key, ok: true, revision };
    } catch (err) {
      results[v.i] = { key: v.key, ok: false, error: asNatskit(err) };
    }
  };
  const message = (v: Valid) => ({
    subject: subjectOf(state.name, v.key),
    data: v.data,
    ...(v.ttl ? { headers: { 'Nats-TTL': v.ttl, 'Nats-Rollup': 'sub' } } : {}),
  });
  const limit = state.maxMessageBytes;
  if (valid.length >= FAST_INGEST_MIN && (await fastIngestReady(state))) {
    const fits = (v: Valid) => {
      const m = message(v);
      return m.data.length + headerBytes(Object.entries(m.headers ?? {})) <= limit;
    };
    const batch = valid.filter(fits);
    const items = batch.map((v) => ({ key: v.key, message: message(v) }));
    // A failed batch (before it was sent, part-way, or reading back) stored nothing for certain:
    // every key is written alone, so each gets what a put of it gives.
    const revisions = await fastBulkPut(state, items, options).catch((err: unknown) => {
      state.ctx.log.warn(
        { err, bucket: state.name, keys: items.length },
        'fast bulk batch failed; writing its keys one by one',
      );
      return [] as (number | undefined)[];
    });
    batch.forEach((v, j) => {
      const revision = revisions[j];
      if (revision !== undefined) results[v.i] = { key: v.key, ok: true, revision };
    });
    await writeAlone(
      valid.filter((v) => results[v.i] === undefined),
      valid,
      single,
    );
    return results;
  }
  if (!(state.config.allow_atomic && state.ctx.capabilities().features.atomicBatch)) {
    await pool(valid, WINDOW, single);
    return results;
  }
  const batchable: Valid[] = [];
  const alone: Valid[] = [];
  for (const v of valid) (worstCaseBytes(message(v)) <= limit ? batchable : alone).push(v);
  for (let s = 0; s < batchable.length; s += MAX_BATCH_MESSAGES) {
    const chunk = batchable.slice(s, s + MAX_BATCH_MESSAGES);
    try {
      const ack = await publishAtomicBatch(state.ctx.nc, chunk.map(message), {
        timeoutMs: state.ctx.requestTimeoutMs,
        maxMessageBytes: limit,
        resilient: state.ctx.resilient,
        apiPrefix: state.ctx.js.apiPrefix,
      });
      chunk.forEach((v, j) => {
        results[v.i] = { key: v.key, ok: true, revision: ack.firstSeq + j };
      });
    } catch (err) {
      // Plain puts are idempotent in value: when the batch failed (or its outcome is unknown),
      // writing each key alone gives every key its own result.
      state.ctx.log.warn(
        { err, bucket: state.name, keys: chunk.length },
        'bulk batch failed; writing its keys one by one',
      );
      await pool(chunk, WINDOW, single);
    }
  }
  await pool(alone, WINDOW, single);
  return results;
}

type Valid = { i: number; key: string; data: Uint8Array; ttl: string | undefined };

/**
 * Writes `left` (entries a batch did not store) one by one, and with each of them every later
 * entry of the same key again, in entry order: the key ends with the value of its last entry, as
 * it would have had the batch stored them all. Different keys go in parallel.
 */
async function writeAlone(
  left: readonly Valid[],
  all: readonly Valid[],
  single: (v: Valid) => Promise<void>,
): Promise<void> {
  if (left.length === 0) return;
  const from = new Map<string, number>();
  for (const v of left) if (!from.has(v.key)) from.set(v.key, v.i);
  const lanes = new Map<string, Valid[]>();
  for (const v of all) {
    const first = from.get(v.key);
    if (first !== undefined && v.i >= first) lanes.set(v.key, [...(lanes.get(v.key) ?? []), v]);
  }
  await pool([...lanes.values()], WINDOW, async (lane) => {
    for (const v of lane) await single(v);
  });
}

/** Deletes many keys (a delete marker each), one result per key. */
export async function bulkDelete(
  state: BucketState,
  keys: readonly string[],
  options: KvCallOptions = {},
): Promise<BulkResult[]> {
  state.assertOpen('bulk delete');
  return await pool(keys, WINDOW, async (key): Promise<BulkResult> => {
    try {
      validateStoredKey(key, state.name);
      const revision = await state.write(key, new Uint8Array(0), [[OPERATION, 'DEL']], options);
      return { key, ok: true, revision };
    } catch (err) {
      return { key: String(key), ok: false, error: asNatskit(err) };
    }
  });
}
