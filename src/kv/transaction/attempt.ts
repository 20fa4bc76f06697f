import type { StoredMsg } from '@nats-io/jetstream';
import { NatskitError } from '../../errors/natskit-error.js';
import { isAbsent, userHeaders } from '../headers.js';
import type { KvEntry, Tx, TxEntry } from '../types.js';
import type { TxBackend } from './backend.js';
import type { LockOwner } from './key-locks.js';

export interface Read<T> {
  /** The revision to expect: live revision, tombstone revision, or 0. */
  readonly revision: number;
  readonly entry: KvEntry<T> | null;
}

/**
 * A buffered write: a value (`put`, `create`) or a delete. A value is never a delete, whatever it
 * is: `tx.put(k, null)` encodes and validates `null` like `put(k, null)` outside a transaction.
 */
export type Write<T> =
  | {
      readonly op: 'put';
      /** The encoded value once ready. */
      data: Uint8Array | undefined;
      readonly value: T;
      /** Must the key be absent at commit (create)? */
      readonly create: boolean;
    }
  | { readonly op: 'delete'; readonly data: null; readonly create: boolean };

/** One run of a transaction's function: what it read, what it wrote, what is still pending. */
export class Attempt<T> implements Tx<T> {
  readonly reads = new Map<string, Read<T>>();
  readonly writes = new Map<string, Write<T>>();
  readonly #reading = new Map<string, Promise<Read<T>>>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #b: TxBackend<T>;
  /** The transaction this attempt belongs to, as it holds keys in this process. */
  readonly #owner: LockOwner | undefined;
  /** The first write that failed: the commit throws it. */
  #failure: { readonly error: unknown } | undefined;
  #closed = false;

  constructor(backend: TxBackend<T>, owner?: LockOwner) {
    this.#b = backend;
    this.#owner = owner;
  }

  /** Waits for other transactions of this process that hold these keys (see `KeyLocks`). */
  async #lock(keys: readonly string[]): Promise<void> {
    const fresh = keys.filter((k) => !this.reads.has(k) && !this.writes.has(k));
    if (this.#owner && fresh.length > 0) await this.#b.locks.acquire(this.#owner, fresh);
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
        await this.#lock([key]);
        const known = this.reads.get(key); // read meanwhile by a getMany
        return known ?? (await this.#record_(key, await this.#b.readLast(key)));
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

  /** Records what a read found: the revision to expect, and the decoded entry. */
  async #record_(key: string, m: StoredMsg | null): Promise<Read<T>> {
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
  }

  /** Reads the keys not read yet in one request, where the bucket can. */
  async #readAll(keys: readonly string[]): Promise<void> {
    const fresh = [...new Set(keys)].filter(
      (k) => !this.reads.has(k) && !this.writes.has(k) && !this.#reading.has(k),
    );
    // One by one, as `get` does, for a single key or more than one direct get answers (1024).
    if (fresh.length < 2 || fresh.length > 1_000 || !this.#b.readMany) return;
    for (const k of fresh) this.#b.validateReadKey(k);
    const found = await this.#b.readMany(fresh);
    for (const k of fresh) if (!this.reads.has(k)) await this.#record_(k, found.get(k) ?? null);
  }

  async getEntry(key: string): Promise<TxEntry<T> | null> {
    this.#open('getEntry');
    const w = this.writes.get(key);
    if (w) {
      return w.op === 'delete'
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
    this.#open('getMany');
    // All at once: a transaction holding none of them waits until it can take them all.
    await this.#track(
      (async () => {
        await this.#lock(keys);
        await this.#readAll(keys);
      })(),
      false,
    );
    return await Promise.all(keys.map((k) => this.get(k)));
  }

  /** Records a write now; its encoding (or the read a create needs) finishes before the commit. */
  #record(
    op: string,
    key: string,
    put: { readonly value: T } | null,
    create: boolean,
  ): Promise<void> {
    try {
      this.#open(op);
      // Any stored key can be deleted; only keys every KV client reads can be written.
      if (put === null) this.#b.validateReadKey(key);
      else this.#b.validateWriteKey(key);
    } catch (err) {
      return this.#refuse(err);
    }
    const before = this.writes.get(key);
    // After an earlier write of the key in this transaction, the commit expects what that write
    // expected: a create after the transaction's own delete replaces it, it needs no absent key.
    const keepCreate = before ? before.create : create;
    const w: Write<T> =
      put === null
        ? { op: 'delete', data: null, create: keepCreate }
        : { op: 'put', data: undefined, value: put.value, create: keepCreate };
    this.writes.set(key, w);
    return this.#track(
      (async () => {
        if (create) {
          // A live key fails the create; the tombstone or 0 is what the commit expects.
          const live = before ? before.op === 'put' : (await this.#read(key)).entry !== null;
          if (live) {
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
        // The same encoding and schema as a put outside a transaction (null and undefined too).
        if (w.op === 'put') w.data = await this.#b.encode(key, w.value);
      })(),
      true,
    );
  }

  put(key: string, value: T): Promise<void> {
    return this.#record('put', key, { value }, false);
  }

  create(key: string, value: T): Promise<void> {
    return this.#record('create', key, { value }, true);
  }

  delete(key: string): Promise<void> {
    return this.#record('delete', key, null, false);
  }
}
