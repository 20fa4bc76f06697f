import { setTimeout as sleep } from 'node:timers/promises';
import type { StoredMsg } from '@nats-io/jetstream';
import { nuid } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import {
  type BatchAck,
  type BatchMessage,
  LATE_REPLY_MS,
  MAX_BATCH_MESSAGES,
  type publishAtomicBatch,
} from './atomic-batch.js';
import type { KvEntry } from './bucket.js';

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
 * The transaction handle passed to the function. Writes are buffered and invisible to others
 * until commit; reads see the transaction's own writes. The function may run several times (on
 * conflict), so it must have no side effects: do those after the commit.
 */
export interface Tx<T> {
  get(key: string): Promise<T | null>;
  /** Reads several keys at once (in parallel: one round trip); values in the order asked. */
  getMany(keys: readonly string[]): Promise<(T | null)[]>;
  getEntry(key: string): Promise<KvEntry<T> | null>;
  put(key: string, value: T): Promise<void>;
  /** Writes only if the key is absent (at commit); throws `KV_REVISION_CONFLICT` now if it exists. */
  create(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
}

/** What a transaction needs from its bucket. */
export interface TxBackend<T> {
  readonly bucket: string;
  readonly stream: string;
  readonly reservedPrefix: string;
  validateKey(key: string): void;
  readLast(key: string): Promise<StoredMsg | null>;
  /** Reads the first message on the key with a sequence >= `seq`. */
  readNext(key: string, seq: number): Promise<StoredMsg | null>;
  isAbsent(m: StoredMsg): boolean;
  encode(key: string, value: T): Promise<Uint8Array>;
  decode(key: string, m: StoredMsg): T | Promise<T>;
  /** Throws `CAPABILITY_MISSING` unless atomic batches work on this bucket (turning them on if needed). */
  ensureAtomic(what: string): Promise<void>;
  /** A single compare-and-set write (works on every server). */
  writeOne(key: string, data: Uint8Array | null, revision: number | undefined): Promise<number>;
  publishBatch: (messages: readonly BatchMessage[]) => ReturnType<typeof publishAtomicBatch>;
}

interface Read<T> {
  /** The revision to expect: live revision, tombstone revision, or 0. */
  readonly revision: number;
  readonly entry: KvEntry<T> | null;
}

interface Write<T> {
  readonly data: Uint8Array | null; // null: delete
  readonly value: T | null;
  /** Must the key be absent at commit (create)? */
  readonly create: boolean;
}

const TX_HEADER = 'Natskit-Tx';
const GUARD_KEY = 'txguard';

class Attempt<T> implements Tx<T> {
  readonly reads = new Map<string, Read<T>>();
  readonly writes = new Map<string, Write<T>>();
  readonly #b: TxBackend<T>;

  constructor(backend: TxBackend<T>) {
    this.#b = backend;
  }

  async #read(key: string): Promise<Read<T>> {
    this.#b.validateKey(key);
    const known = this.reads.get(key);
    if (known) return known; // repeatable reads within an attempt
    const m = await this.#b.readLast(key);
    const read: Read<T> =
      !m || this.#b.isAbsent(m)
        ? { revision: m?.seq ?? 0, entry: null }
        : {
            revision: m.seq,
            entry: { key, value: await this.#b.decode(key, m), revision: m.seq, created: m.time },
          };
    this.reads.set(key, read);
    return read;
  }

  async getEntry(key: string): Promise<KvEntry<T> | null> {
    const w = this.writes.get(key);
    if (w)
      return w.value === null ? null : { key, value: w.value, revision: 0, created: new Date() };
    return (await this.#read(key)).entry;
  }

  async get(key: string): Promise<T | null> {
    return (await this.getEntry(key))?.value ?? null;
  }

  async getMany(keys: readonly string[]): Promise<(T | null)[]> {
    return await Promise.all(keys.map((k) => this.get(k)));
  }

  async put(key: string, value: T): Promise<void> {
    this.writes.set(key, {
      data: await this.#b.encode(key, value),
      value,
      create: this.writes.get(key)?.create ?? false,
    });
  }

  async create(key: string, value: T): Promise<void> {
    const current = await this.getEntry(key);
    if (current) {
      throw new NatskitError(
        'KV_REVISION_CONFLICT',
        `key ${key} in bucket ${this.#b.bucket} exists (create)`,
        {
          details: { bucket: this.#b.bucket, key, currentRevision: current.revision },
        },
      );
    }
    if (!this.reads.has(key) && !this.writes.has(key)) await this.#read(key);
    this.writes.set(key, { data: await this.#b.encode(key, value), value, create: true });
  }

  async delete(key: string): Promise<void> {
    this.#b.validateKey(key);
    this.writes.set(key, {
      data: null,
      value: null,
      create: this.writes.get(key)?.create ?? false,
    });
  }
}

function conflict(bucket: string, keys: string[], attempts: number, cause?: unknown): NatskitError {
  return new NatskitError(
    'KV_REVISION_CONFLICT',
    `transaction on bucket ${bucket} conflicted ${attempts} time(s)${keys.length ? ` on ${keys.join(', ')}` : ''}`,
    { cause, details: { bucket, keys, attempts } },
  );
}

/** @internal runs a transaction: see `KvBucket.transaction`. */
export async function runTransaction<T, R>(
  b: TxBackend<T>,
  fn: (tx: Tx<T>) => Promise<R> | R,
  options: TxOptions = {},
): Promise<TxResult<R>> {
  const maxAttempts = options.maxAttempts ?? 10;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `maxAttempts must be a positive integer, got ${maxAttempts}`,
    );
  }
  const isolation = options.isolation ?? 'serializable';
  const minDelay = options.backoff?.minDelayMs ?? 5;
  const maxDelay = options.backoff?.maxDelayMs ?? 500;
  let last: NatskitError | undefined;
  let involved: string[] = [];
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    options.signal?.throwIfAborted();
    const tx = new Attempt(b);
    const value = await fn(tx); // an error thrown here aborts, nothing written, rethrown unchanged
    try {
      const revisions = await commit(b, tx, isolation);
      return { value, attempts: attempt, revisions };
    } catch (err) {
      if (!NatskitError.is(err, 'KV_REVISION_CONFLICT')) throw err;
      last = err;
      involved = await changedKeys(b, tx);
    }
    if (attempt < maxAttempts) {
      const delay = Math.min(maxDelay, minDelay * 2 ** (attempt - 1)) * (0.5 + Math.random());
      await sleep(delay, undefined, options.signal ? { signal: options.signal } : {});
    }
  }
  throw conflict(b.bucket, involved, maxAttempts, last);
}

/** The keys whose revision moved since the attempt read (or meant to write) them. */
async function changedKeys<T>(b: TxBackend<T>, tx: Attempt<T>): Promise<string[]> {
  const out: string[] = [];
  for (const [key, read] of tx.reads) {
    const m = await b.readLast(key).catch(() => null);
    if ((m?.seq ?? 0) !== read.revision) out.push(key);
  }
  return out;
}

/** The expected revision of a written key: what it read, or absent for create, or none (blind). */
function expectation<T>(tx: Attempt<T>, key: string, w: Write<T>): number | undefined {
  const read = tx.reads.get(key);
  if (read) return read.revision;
  return w.create ? 0 : undefined;
}

async function commit<T>(
  b: TxBackend<T>,
  tx: Attempt<T>,
  isolation: TxIsolation,
): Promise<Record<string, number>> {
  const writes = [...tx.writes];
  const guards =
    isolation === 'serializable' ? [...tx.reads].filter(([k]) => !tx.writes.has(k)) : [];
  if (writes.length === 0) {
    // A read-only transaction: its reads must still be current.
    if ((await changedKeys(b, tx)).length > 0) throw conflict(b.bucket, [], 1);
    return {};
  }
  if (writes.length + guards.length > MAX_BATCH_MESSAGES) {
    throw new NatskitError(
      'TX_TOO_LARGE',
      `transaction writes ${writes.length} key(s) and guards ${guards.length}; one atomic batch carries at most ${MAX_BATCH_MESSAGES}`,
      { details: { writes: writes.length, guards: guards.length, max: MAX_BATCH_MESSAGES } },
    );
  }
  if (writes.length === 1 && guards.length === 0) {
    const [key, w] = writes[0] as [string, Write<T>];
    return { [key]: await b.writeOne(key, w.data, expectation(tx, key, w)) };
  }
  await b.ensureAtomic(
    `a transaction writing ${writes.length} key(s)${guards.length ? ` and guarding ${guards.length}` : ''}`,
  );
  const txId = nuid.next();
  const messages: BatchMessage[] = writes.map(([key, w]) => {
    const h: Record<string, string> = { [TX_HEADER]: txId };
    const expected = expectation(tx, key, w);
    if (expected !== undefined) h['Nats-Expected-Last-Subject-Sequence'] = String(expected);
    if (w.data === null) h['KV-Operation'] = 'DEL';
    return { subject: `$KV.${b.bucket}.${key}`, data: w.data ?? new Uint8Array(0), headers: h };
  });
  for (const [key, read] of guards) {
    // A message on the reserved guard key that only stores if `key` is still at the revision read.
    messages.push({
      subject: `$KV.${b.bucket}.${b.reservedPrefix}${GUARD_KEY}`,
      data: new Uint8Array(0),
      headers: {
        [TX_HEADER]: txId,
        'Nats-Expected-Last-Subject-Sequence': String(read.revision),
        'Nats-Expected-Last-Subject-Sequence-Subject': `$KV.${b.bucket}.${key}`,
      },
    });
  }
  let firstSeq: number;
  try {
    firstSeq = (await b.publishBatch(messages)).firstSeq;
  } catch (err) {
    if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'unknown') {
      // The commit reply is late or lost: find out whether the batch was stored before anything
      // runs again, or it could be applied twice.
      const [key, w] = writes[0] as [string, Write<T>];
      const found = await resolveUnknown(b, key, expectation(tx, key, w), txId, err);
      if (found === undefined) throw conflict(b.bucket, [], 1, err); // not applied: run again
      firstSeq = found;
    } else if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'not-applied') {
      throw conflict(b.bucket, [], 1, err); // certainly not stored: run again
    } else {
      throw err;
    }
  }
  return Object.fromEntries(writes.map(([key], i) => [key, firstSeq + i]));
}

/**
 * Decides an unknown commit: a late reply from the server settles it; meanwhile the first
 * written key is searched for the transaction's id. The server may take a moment to ingest the
 * batch after answering reads, so "not found" only counts once the late-reply window (past the
 * server's 10 s abandon of an idle batch) has passed without reply or find.
 */
async function resolveUnknown<T>(
  b: TxBackend<T>,
  key: string,
  expected: number | undefined,
  txId: string,
  err: NatskitError,
): Promise<number | undefined> {
  const late =
    (err.details?.lateReply as Promise<(() => BatchAck) | undefined> | undefined) ??
    Promise.resolve(undefined);
  let settled: (() => BatchAck) | undefined | 'none';
  void late.then((r) => {
    settled = r ?? 'none';
  });
  const until = Date.now() + LATE_REPLY_MS + 1_000;
  while (Date.now() < until) {
    if (typeof settled === 'function') {
      try {
        return settled().firstSeq;
      } catch (e) {
        if (NatskitError.is(e, 'KV_REVISION_CONFLICT') || NatskitError.is(e, 'NATS_UNAVAILABLE'))
          return undefined;
        throw e;
      }
    }
    const found = await findCommitted(b, key, expected, txId).catch(() => undefined);
    if (found !== undefined) return found;
    if (settled === 'none') break; // the window closed with no reply
    await sleep(250);
  }
  return await findCommitted(b, key, expected, txId).catch(() => undefined);
}

/** The sequence of our first message if the batch with `txId` was stored, else undefined. */
async function findCommitted<T>(
  b: TxBackend<T>,
  key: string,
  expected: number | undefined,
  txId: string,
): Promise<number | undefined> {
  // Our message, if stored, is the first on this key after the revision we expected (or after
  // any, for a blind write): history is at most 64 messages per key, so this scan is short.
  let seq = (expected ?? 0) + 1;
  for (let i = 0; i < 64; i++) {
    const m = await b.readNext(key, seq);
    if (!m) return undefined;
    if (m.header?.get(TX_HEADER) === txId) return m.seq;
    seq = m.seq + 1;
  }
  return undefined;
}
