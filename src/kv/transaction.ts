import { setTimeout as sleep } from 'node:timers/promises';
import type { StoredMsg } from '@nats-io/jetstream';
import { nuid } from '@nats-io/transport-node';
import { ApiCode } from '../errors/jetstream.js';
import { NatskitError } from '../errors/natskit-error.js';
import {
  type BatchAck,
  type BatchMessage,
  LATE_REPLY_MS,
  MAX_BATCH_MESSAGES,
} from './atomic-batch.js';
import { isAbsent, userHeaders } from './headers.js';
import type { KvEntry } from './types.js';

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
  put(key: string, value: T): Promise<void>;
  /** Writes only if the key is absent (at commit); fails with `KV_REVISION_CONFLICT` if it is live. */
  create(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
}

/** What a transaction needs from its bucket. */
export interface TxBackend<T> {
  readonly bucket: string;
  /** The subject of guard messages: in the bucket's stream, outside its key space. */
  readonly guardSubject: string;
  /** Throws `INVALID_KEY` unless the key can be read (or deleted). */
  validateReadKey(key: string): void;
  /** Throws `INVALID_KEY` unless natskit may write the key. */
  validateWriteKey(key: string): void;
  readLast(key: string): Promise<StoredMsg | null>;
  /** Reads the first message on the key with a sequence >= `seq`. */
  readNext(key: string, seq: number): Promise<StoredMsg | null>;
  encode(key: string, value: T): Promise<Uint8Array>;
  decode(key: string, m: StoredMsg): T | Promise<T>;
  /** Throws `CAPABILITY_MISSING` unless atomic batches work on this bucket (turning them on if needed). */
  ensureAtomic(what: string): Promise<void>;
  /** Like `ensureAtomic`, and readies the guard subject for keys only read. */
  ensureGuards(what: string): Promise<void>;
  /** The guard subject was found missing from the stream: the next `ensureGuards` adds it again. */
  forgetGuards(): void;
  /** A single compare-and-set write (works on every server). */
  writeOne(key: string, data: Uint8Array | null, revision: number | undefined): Promise<number>;
  publishBatch(messages: readonly BatchMessage[]): Promise<BatchAck>;
}

interface Read<T> {
  /** The revision to expect: live revision, tombstone revision, or 0. */
  readonly revision: number;
  readonly entry: KvEntry<T> | null;
}

interface Write<T> {
  /** The encoded value once ready; null: a delete. */
  data: Uint8Array | null | undefined;
  readonly value: T | null;
  /** Must the key be absent at commit (create)? */
  readonly create: boolean;
}

const TX_HEADER = 'Natskit-Tx';

class Attempt<T> implements Tx<T> {
  readonly reads = new Map<string, Read<T>>();
  readonly writes = new Map<string, Write<T>>();
  readonly #reading = new Map<string, Promise<Read<T>>>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #b: TxBackend<T>;
  /** The first write that failed: the commit throws it. */
  #failure: { readonly error: unknown } | undefined;
  #closed = false;

  constructor(backend: TxBackend<T>) {
    this.#b = backend;
  }

  /** Refuses operations once the function returned and the commit began. */
  #open(op: string): void {
    if (!this.#closed) return;
    throw new NatskitError(
      'INVALID_STATE',
      `tx.${op} was called after the transaction function returned (a missing await, or a callback that ran late): the transaction no longer takes operations`,
      { details: { bucket: this.#b.bucket, op } },
    );
  }

  /** Keeps `p` until it settles; a failed write poisons the attempt. */
  #track<R>(p: Promise<R>, write: boolean): Promise<R> {
    this.#pending.add(p);
    p.then(
      () => this.#pending.delete(p),
      (error: unknown) => {
        this.#pending.delete(p);
        if (write) this.#failure ??= { error };
      },
    );
    // The commit reports a failed write: its promise must not also crash the process as an
    // unhandled rejection when the function did not await it.
    if (write) p.catch(() => undefined);
    return p;
  }

  /** A write refused before it was recorded: it still aborts the transaction. */
  #refuse(error: unknown): Promise<void> {
    if (!NatskitError.is(error, 'INVALID_STATE')) {
      this.#failure ??= { error };
      const p = Promise.reject(error);
      p.catch(() => undefined);
      return p;
    }
    return Promise.reject(error); // the attempt is over: only the caller can still see this
  }

  /**
   * Waits until no operation of the attempt is pending (one may start another), then closes it.
   * Throws the first failed write.
   */
  async settle(): Promise<void> {
    do {
      await Promise.allSettled([...this.#pending]);
      // A macrotask boundary: every callback the function chained on a settled operation
      // (`tx.get(k).then((v) => tx.put(...))`, however deep) has run before this returns.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } while (this.#pending.size > 0);
    this.#closed = true;
    if (this.#failure) throw this.#failure.error;
  }

  /** Ends an attempt whose function threw: later operations are refused. */
  close(): void {
    this.#closed = true;
  }

  #read(key: string): Promise<Read<T>> {
    try {
      this.#open('get');
      this.#b.validateReadKey(key);
    } catch (err) {
      return Promise.reject(err);
    }
    const known = this.reads.get(key);
    if (known) return Promise.resolve(known); // repeatable reads within an attempt
    const inFlight = this.#reading.get(key);
    if (inFlight !== undefined) return inFlight;
    const p = this.#track(
      (async (): Promise<Read<T>> => {
        const m = await this.#b.readLast(key);
        const read: Read<T> =
          !m || isAbsent(m.header)
            ? { revision: m?.seq ?? 0, entry: null }
            : {
                revision: m.seq,
                entry: {
                  key,
                  value: await this.#b.decode(key, m),
                  revision: m.seq,
                  created: m.time,
                  headers: userHeaders(m.header),
                },
              };
        this.reads.set(key, read);
        return read;
      })(),
      false,
    );
    this.#reading.set(key, p);
    p.then(
      () => this.#reading.delete(key),
      () => this.#reading.delete(key),
    );
    return p;
  }

  async getEntry(key: string): Promise<TxEntry<T> | null> {
    this.#open('getEntry');
    const w = this.writes.get(key);
    if (w) {
      return w.value === null
        ? null
        : { key, value: w.value, buffered: true, revision: undefined, created: undefined };
    }
    const { entry } = await this.#read(key);
    return entry && { ...entry, buffered: false };
  }

  async get(key: string): Promise<T | null> {
    return (await this.getEntry(key))?.value ?? null;
  }

  async getMany(keys: readonly string[]): Promise<(T | null)[]> {
    return await Promise.all(keys.map((k) => this.get(k)));
  }

  /** Records a write now; its encoding (or the read a create needs) finishes before the commit. */
  #record(op: string, key: string, value: T | null, create: boolean): Promise<void> {
    try {
      this.#open(op);
      if (value === null) this.#b.validateReadKey(key);
      else this.#b.validateWriteKey(key);
    } catch (err) {
      return this.#refuse(err);
    }
    const w: Write<T> = {
      data: value === null ? null : undefined,
      value,
      create: create || (this.writes.get(key)?.create ?? false),
    };
    const before = this.writes.get(key);
    this.writes.set(key, w);
    return this.#track(
      (async () => {
        if (create) {
          // A live key fails the create; the tombstone or 0 is what the commit expects.
          const entry = before ? before.value : (await this.#read(key)).entry;
          if (entry !== null) {
            throw new NatskitError(
              'KV_REVISION_CONFLICT',
              `key ${key} in bucket ${this.#b.bucket} exists (create)`,
              {
                details: {
                  bucket: this.#b.bucket,
                  key,
                  currentRevision: this.reads.get(key)?.revision,
                },
              },
            );
          }
        }
        if (value !== null) w.data = await this.#b.encode(key, value);
      })(),
      true,
    );
  }

  put(key: string, value: T): Promise<void> {
    return this.#record('put', key, value, false);
  }

  create(key: string, value: T): Promise<void> {
    return this.#record('create', key, value, true);
  }

  delete(key: string): Promise<void> {
    return this.#record('delete', key, null, false);
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
    let value: R;
    try {
      value = await fn(tx); // an error thrown here aborts, nothing written, rethrown unchanged
    } catch (err) {
      tx.close();
      throw err;
    }
    await tx.settle(); // every operation the function started; a failed write aborts, unchanged
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
    return { [key]: await b.writeOne(key, w.data ?? null, expectation(tx, key, w)) };
  }
  const what = `a transaction writing ${writes.length} key(s)${guards.length ? ` and guarding ${guards.length}` : ''}`;
  if (guards.length > 0) await b.ensureGuards(what);
  else await b.ensureAtomic(what);
  const txId = nuid.next();
  // Guards first: the commit (the last message) is then always a write, on a subject the
  // stream surely has; a guard subject someone removed fails the batch as incomplete, at once.
  const messages: BatchMessage[] = guards.map(([key, read]) => ({
    // Stored only if `key` is still at the revision read.
    subject: b.guardSubject,
    data: new Uint8Array(0),
    headers: {
      [TX_HEADER]: txId,
      'Nats-Expected-Last-Subject-Sequence': String(read.revision),
      'Nats-Expected-Last-Subject-Sequence-Subject': `$KV.${b.bucket}.${key}`,
    },
  }));
  for (const [key, w] of writes) {
    const h: Record<string, string> = { [TX_HEADER]: txId };
    const expected = expectation(tx, key, w);
    if (expected !== undefined) h['Nats-Expected-Last-Subject-Sequence'] = String(expected);
    if (w.data === null) h['KV-Operation'] = 'DEL';
    messages.push({
      subject: `$KV.${b.bucket}.${key}`,
      data: w.data ?? new Uint8Array(0),
      headers: h,
    });
  }
  let firstWrite: number;
  try {
    firstWrite = (await b.publishBatch(messages)).firstSeq + guards.length;
  } catch (err) {
    if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'unknown') {
      // The commit reply is late or lost: find out whether the batch was stored before anything
      // runs again, or it could be applied twice.
      const [key, w] = writes[0] as [string, Write<T>];
      const found = await resolveUnknown(b, key, expectation(tx, key, w), txId, err);
      if (found === undefined) throw conflict(b.bucket, [], 1, err); // not applied: run again
      firstWrite = found;
    } else if (NatskitError.is(err, 'NATS_UNAVAILABLE') && err.details?.outcome === 'not-applied') {
      throw conflict(b.bucket, [], 1, err); // certainly not stored: run again
    } else if (
      guards.length > 0 &&
      NatskitError.is(err, 'PUBLISH_FAILED') &&
      err.details?.apiCode === ApiCode.BatchIncomplete
    ) {
      // Nothing stored. The likely cause: another client rewrote the stream's config without
      // the guard subject. The next attempt adds it again.
      b.forgetGuards();
      throw conflict(b.bucket, [], 1, err);
    } else {
      throw err;
    }
  }
  return Object.fromEntries(writes.map(([key], i) => [key, firstWrite + i]));
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

/** The sequence of our first write if the batch with `txId` was stored, else undefined. */
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
