import { checkOptionsObject, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { KVStoreService } from '../kv/kv-store-service.js';
import type { KvBucket } from '../kv/types.js';
import type { DeadReason, JobOutcome, QueueResultOptions, ResultOptions } from './types.js';

/** A job's outcome as stored in the results bucket. */
type Stored =
  | {
      readonly state: 'completed';
      readonly value: unknown;
      readonly attempt: number;
      readonly at: string;
    }
  | {
      readonly state: 'dead';
      readonly reason: DeadReason;
      readonly error: string;
      readonly at: string;
    };

/** Results once validated. */
export interface ResolvedResults {
  readonly ttlMs: number;
  readonly maxBytes: number;
}

const RESULT_KEYS = knownKeys<QueueResultOptions>({ ttlMs: true, maxBytes: true });
const WAIT_KEYS = knownKeys<ResultOptions>({ timeoutMs: true, signal: true });

/** Checks `results`: `true` for the defaults, an object, or absent/false for none. */
export function checkResults(value: unknown): ResolvedResults | undefined {
  if (value === undefined || value === false) return undefined;
  const o = (value === true ? {} : value) as QueueResultOptions;
  checkOptionsObject('queue.results', o, RESULT_KEYS);
  const ttlMs = o.ttlMs ?? 3_600_000;
  const maxBytes = o.maxBytes ?? 64 * 1024;
  if (!Number.isInteger(ttlMs) || ttlMs < 1_000) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `queue.results.ttlMs must be an integer of milliseconds >= 1000, got ${describeValue(o.ttlMs)}`,
      { details: { field: 'results.ttlMs' } },
    );
  }
  if (!Number.isInteger(maxBytes) || maxBytes < 64) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `queue.results.maxBytes must be an integer >= 64, got ${describeValue(o.maxBytes)}`,
      { details: { field: 'results.maxBytes' } },
    );
  }
  return { ttlMs, maxBytes };
}

/**
 * The results of one queue: a KV bucket (`queue_<name>_results`) whose key is the job id, each
 * value expiring after `ttlMs`, none larger than `maxBytes`. A waiter watches the key (a
 * consumer per wait), so an outcome stored while the wait starts is not missed.
 */
export class ResultStore {
  readonly bucketName: string;
  readonly #kv: KVStoreService;
  readonly #o: ResolvedResults;
  readonly #replicas: number;
  #bucket: KvBucket<Stored> | undefined;

  constructor(queue: string, kv: KVStoreService, o: ResolvedResults, replicas: number) {
    this.bucketName = `queue_${queue}_results`;
    this.#kv = kv;
    this.#o = o;
    this.#replicas = replicas;
  }

  async open(): Promise<void> {
    this.#bucket = await this.#kv.bucket<Stored>(this.bucketName, {
      provision: { ttlMs: this.#o.ttlMs, maxValueSize: this.#o.maxBytes, replicas: this.#replicas },
    });
  }

  get #b(): KvBucket<Stored> {
    if (!this.#bucket)
      throw new NatskitError('INVALID_STATE', `results ${this.bucketName} are not open`);
    return this.#bucket;
  }

  /**
   * Stores a completed job's value. A value the codec refuses or over `maxBytes` is stored as
   * that failure instead (the job did complete; the caller learns why there is no value).
   */
  async completed(id: string, value: unknown, attempt: number): Promise<void> {
    const at = new Date().toISOString();
    try {
      await this.#b.put(id, { state: 'completed', value: value ?? null, attempt, at });
    } catch (err) {
      if (!NatskitError.is(err, 'VALUE_TOO_LARGE') && !NatskitError.is(err, 'INVALID_VALUE'))
        throw err;
      const error = `the job completed but its result was not stored: ${err.message}`;
      await this.#b.put(id, { state: 'completed', value: null, attempt, at, error } as Stored);
    }
  }

  async dead(id: string, reason: DeadReason, error: string): Promise<void> {
    await this.#b.put(id, {
      state: 'dead',
      reason,
      error: error.slice(0, 1_000),
      at: new Date().toISOString(),
    });
  }

  /** Stores a job's latest progress (`progress.<id>`, with the outcomes' TTL and size bound). */
  async progress(id: string, value: unknown): Promise<void> {
    await this.#b.put(`progress.${id}`, {
      state: 'progress',
      value,
      at: new Date().toISOString(),
    } as never);
  }

  /** The job's latest progress, or undefined. */
  async getProgress(id: string): Promise<unknown> {
    const p = (await this.#b.get(`progress.${id}`)) as { value?: unknown } | null;
    return p?.value;
  }

  /** Forgets a job's outcome (it is redriven: its old outcome no longer holds). */
  async forget(id: string): Promise<void> {
    await this.#b.delete(id);
  }

  /** The outcome now, or `pending`. */
  async get<R>(id: string): Promise<JobOutcome<R>> {
    return toOutcome<R>(id, await this.#b.get(id));
  }

  /** Waits for the job's outcome until `timeoutMs` (then `pending`) or the signal aborts. */
  async wait<R>(id: string, options: ResultOptions = {}): Promise<JobOutcome<R>> {
    checkOptionsObject('result options', options, WAIT_KEYS);
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `result options.timeoutMs must be >= 0, got ${describeValue(timeoutMs)}`,
        {
          details: { field: 'timeoutMs' },
        },
      );
    }
    options.signal?.throwIfAborted();
    if (timeoutMs === 0) return this.get<R>(id);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    // Armed before the watch starts, so an abort while it starts is not missed.
    const stop = new Promise<JobOutcome<R>>((resolve, reject) => {
      timer = setTimeout(() => resolve({ state: 'pending', id }), timeoutMs);
      onAbort = () => reject(new NatskitError('ABORTED', `waiting for job ${id} was aborted`));
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
    // A watch of the key (its last value, then updates) misses no outcome stored while it
    // starts. A subscription plus a read did: the server may answer the read before it has
    // stored a put sent just before the subscription, and then neither sees it.
    const watching = this.#b.watch(id, { include: 'last' });
    const arrived = watching.then(async (w): Promise<JobOutcome<R>> => {
      for await (const change of w) {
        if (change.type === 'put') return toOutcome<R>(id, change.value);
      }
      return { state: 'pending', id };
    });
    arrived.catch(() => undefined); // a failure after the wait ended has nobody to tell
    try {
      return await Promise.race([arrived, stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort) options.signal?.removeEventListener('abort', onAbort);
      void watching.then((w) => w.stop()).catch(() => undefined);
    }
  }
}

function toOutcome<R>(id: string, s: Stored | null): JobOutcome<R> {
  if (!s) return { state: 'pending', id };
  if (s.state === 'dead')
    return { state: 'dead', id, reason: s.reason, error: s.error, at: new Date(s.at) };
  const error = (s as { error?: unknown }).error;
  return {
    state: 'completed',
    id,
    value: s.value as R,
    attempt: s.attempt,
    at: new Date(s.at),
    ...(typeof error === 'string' ? { error } : {}),
  };
}
