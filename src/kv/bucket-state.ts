import type { StoredMsg, StreamConfig } from '@nats-io/jetstream';
import { nuid } from '@nats-io/transport-node';
import { describeValue } from '../config/validate.js';
import type { Feature } from '../connection/capabilities.js';
import { requireFeature } from '../connection/capabilities.js';
import { NatskitError } from '../errors/natskit-error.js';
import {
  ApiCode,
  closedError,
  isApiError,
  isConflict,
  isConnectionClosed,
} from '../jetstream/api-errors.js';
import { type HeaderList, headerBytes, msgHeaders } from '../jetstream/headers.js';
import { isPublishNoResponders } from '../jetstream/no-stream.js';
import type { KvMetrics } from '../metrics/metrics.js';
import { withRetry } from '../retry/retry.js';
import { keySpaceOf, readOnlyError } from './bucket-topology.js';
import { guardSubjectOf, RESERVED_PREFIX, streamOf, subjectOf } from './names.js';
import type { KvCallOptions } from './types.js';

export type { KvContext, WriteOptions } from './bucket-context.js';

import { writeSubject } from '../jetstream/domain.js';
import type { KvContext, WriteOptions } from './bucket-context.js';

/** A bucket seen through a codec: what bulk calls and transactions work on. */
export interface TypedBucket<T> {
  readonly state: BucketState;
  /** Validates the key and the value and encodes it; nothing is sent. */
  encode(key: string, value: T): Promise<Uint8Array>;
  /** Decodes (and validates) a stored value. */
  decode(key: string, m: { data: Uint8Array; seq: number }): T | Promise<T>;
}

/**
 * The state one bucket's handles share (however they decode values): its stored config, the
 * one-way stream flags natskit turns on, and the plumbing of every request (retries, the
 * connection's loss and return, error classification).
 */
export class BucketState {
  readonly name: string;
  readonly stream: string;
  readonly ctx: KvContext;
  /** This bucket's instruments; undefined when metrics are off (nothing is timed then). */
  readonly metrics: KvMetrics | undefined;
  #config: StreamConfig;
  /** Stream updates run one at a time: each builds on the config the previous one left. */
  #mutating: Promise<unknown> = Promise.resolve();
  /** The options of a publish without headers (one object for every plain put). */
  readonly #publishOptions: { readonly timeout: number };

  constructor(ctx: KvContext, name: string, config: StreamConfig) {
    this.ctx = ctx;
    this.name = name;
    this.stream = streamOf(name);
    this.#config = config;
    this.metrics = ctx.measure(name);
    this.#publishOptions = Object.freeze({ timeout: ctx.requestTimeoutMs });
  }

  /** The stored stream config, as last read or updated. */
  get config(): StreamConfig {
    return this.#config;
  }

  /** The bucket whose subjects (`$KV.<keySpace>.<key>`) hold the keys: the origin for a mirror. */
  get keySpace(): string {
    return keySpaceOf(this.name, this.#config);
  }

  /** Throws `KV_READ_ONLY` on a mirror, before anything is sent (no stream takes its writes). */
  assertWritable(what: string): void {
    const m = this.#config.mirror;
    if (m) throw readOnlyError(this.name, m.name.replace(/^KV_/, ''), what);
  }

  /** The largest message (value plus headers) the bucket and the server accept, in bytes. */
  get maxMessageBytes(): number {
    const maxValue = this.#config.max_msg_size ?? -1;
    const maxPayload = this.ctx.nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
    return maxValue > 0 ? Math.min(maxValue, maxPayload) : maxPayload;
  }

  /** Throws `VALUE_TOO_LARGE` unless a message of `bytes` (value and headers) fits. */
  checkSize(key: string, valueBytes: number, headers: number): void {
    const limit = this.maxMessageBytes;
    if (valueBytes + headers <= limit) return;
    throw new NatskitError(
      'VALUE_TOO_LARGE',
      `value for key ${key} is ${valueBytes} bytes${headers ? ` plus ${headers} bytes of headers` : ''}; the limit is ${limit}`,
      {
        details: { bucket: this.name, key, bytes: valueBytes, headerBytes: headers, limit },
      },
    );
  }

  gone(cause?: unknown): NatskitError {
    this.ctx.gone(this.name);
    return new NatskitError(
      'KV_BUCKET_NOT_FOUND',
      `bucket ${this.name} does not exist (it was deleted)`,
      { cause, details: { bucket: this.name } },
    );
  }

  /** Turns a client error into the natskit error it means; other errors come back unchanged. */
  async classify(err: unknown): Promise<unknown> {
    if (NatskitError.is(err)) return err;
    if (isConnectionClosed(err)) return closedError(`bucket ${this.name}`, this.ctx.stopped(), err);
    if (isApiError(err, ApiCode.StreamNotFound)) return this.gone(err);
    // A publish's no responders comes as JetStreamNotEnabled: the bucket may be gone.
    if (isPublishNoResponders(err)) {
      try {
        await this.ctx.jsm.streams.info(this.stream);
      } catch (e) {
        if (isApiError(e, ApiCode.StreamNotFound)) return this.gone(err);
      }
    }
    if (isConflict(err)) {
      const current = /wrong last sequence: (\d+)/.exec((err as Error).message)?.[1];
      return new NatskitError(
        'KV_REVISION_CONFLICT',
        `revision conflict in bucket ${this.name}: ${(err as Error).message}`,
        {
          cause: err,
          details: { bucket: this.name, ...(current ? { currentRevision: Number(current) } : {}) },
        },
      );
    }
    if (isApiError(err, ApiCode.MessageTooLarge)) {
      return new NatskitError(
        'VALUE_TOO_LARGE',
        `bucket ${this.name} refused the value: ${(err as Error).message}`,
        { cause: err, details: { bucket: this.name, limit: this.maxMessageBytes } },
      );
    }
    return err;
  }

  /** Throws `INVALID_STATE` once the service stopped. */
  assertOpen(what: string): void {
    if (this.ctx.stopped()) throw closedError(`${what} (bucket ${this.name})`, true);
  }

  /**
   * Runs one request: transient failures retried with backoff, a request whose connection was
   * lost and came back retried at once, every error classified.
   */
  call<R>(what: string, fn: () => Promise<R>, o?: KvCallOptions): Promise<R> {
    // Not async: one promise less per request (the hot path of every get and put).
    if (this.ctx.stopped())
      return Promise.reject(closedError(`${what} (bucket ${this.name})`, true));
    const retry =
      o?.retry === undefined
        ? this.ctx.retry
        : o.retry === false
          ? { retries: 0 }
          : { ...this.ctx.retry, ...o.retry };
    return withRetry(() => this.#attempt(fn), {
      what: `${what} (bucket ${this.name})`,
      retry,
      signal: o?.signal,
      counter: this.ctx.metrics,
    });
  }

  /** One attempt of a request: sent on a live connection, its error classified. */
  async #attempt<R>(fn: () => Promise<R>): Promise<R> {
    try {
      return await this.ctx.resilient(fn);
    } catch (err) {
      throw await this.classify(err);
    }
  }

  /** The last message on a subject (direct get where the bucket allows it). */
  async last(subject: string): Promise<StoredMsg | null> {
    const { jsm } = this.ctx;
    return this.#config.allow_direct
      ? await jsm.direct.getMessage(this.stream, { last_by_subj: subject })
      : await jsm.streams.getMessage(this.stream, { last_by_subj: subject });
  }

  /** The last message of a key, with retries. */
  readLast(key: string, options?: KvCallOptions): Promise<StoredMsg | null> {
    return this.call(`get ${key}`, () => this.last(subjectOf(this.keySpace, key)), options);
  }

  /** The first message of a key at or after stream sequence `seq`, with retries. */
  readNext(key: string, seq: number, options?: KvCallOptions): Promise<StoredMsg | null> {
    const next_by_subj = subjectOf(this.keySpace, key);
    return this.call(
      `get ${key}`,
      () => this.ctx.jsm.direct.getMessage(this.stream, { next_by_subj, seq }),
      options,
    );
  }

  /**
   * Updates the stream once `want` says the stored config lacks something, reading it fresh
   * first (another client may have changed it), then checks the server kept the change (older
   * servers accept unknown fields and drop them).
   */
  async #mutate(
    what: string,
    feature: Feature,
    want: (config: StreamConfig) => Partial<StreamConfig> | undefined,
    kept: (config: StreamConfig) => boolean,
  ): Promise<void> {
    const run = this.#mutating.then(async () => {
      if (!want(this.#config)) return;
      const fresh = (await this.call('stream info', () => this.ctx.jsm.streams.info(this.stream)))
        .config;
      this.#config = fresh;
      const patch = want(fresh);
      if (!patch) return;
      let updated: StreamConfig;
      try {
        updated = (
          await this.call('stream update', () =>
            this.ctx.jsm.streams.update(this.stream, { ...fresh, ...patch }),
          )
        ).config;
      } catch (err) {
        if (NatskitError.is(err)) throw err;
        throw new NatskitError(
          'CAPABILITY_MISSING',
          `${what}: the stream of bucket ${this.name} could not be updated (${(err as Error).message})`,
          { cause: err, details: { feature, bucket: this.name } },
        );
      }
      if (!kept(updated)) {
        throw new NatskitError(
          'CAPABILITY_MISSING',
          `${what}: the stream of bucket ${this.name} refused ${Object.keys(patch).join(', ')}`,
          { details: { feature, bucket: this.name } },
        );
      }
      this.#config = updated;
      this.ctx.log.info(
        { bucket: this.name, fields: Object.keys(patch) },
        'updated the stream of the bucket',
      );
    });
    this.#mutating = run.catch(() => undefined);
    await run;
  }

  /** Turns on per-key TTL (a one-way stream flag) the first time it is needed. */
  async ensureTtl(): Promise<void> {
    await this.ensureFlag(`a per-key TTL on bucket ${this.name}`, 'perKeyTtl', 'allow_msg_ttl');
  }

  /** Turns on atomic publish the first time it is needed. */
  async ensureAtomic(what: string): Promise<void> {
    await this.ensureFlag(what, 'atomicBatch', 'allow_atomic');
  }

  /** Turns on a stream flag of `feature` the first time it is needed; the server must keep it. */
  async ensureFlag(
    what: string,
    feature: Feature,
    field: 'allow_msg_ttl' | 'allow_atomic' | 'allow_batched',
  ): Promise<void> {
    this.assertWritable(what);
    requireFeature(this.ctx.capabilities(), feature, what);
    await this.#mutate(
      what,
      feature,
      (c) => (c[field] ? undefined : { [field]: true }),
      (c) => c[field] === true,
    );
  }

  /**
   * Readies serializable transactions: atomic publish, and the guard subject in the stream
   * (outside the key space). Guard messages natskit 0.1 left on the key `_natskit.txguard` are
   * removed then.
   */
  async ensureGuards(what: string): Promise<void> {
    await this.ensureAtomic(what);
    requireFeature(this.ctx.capabilities(), 'subjectSequenceGuard', what);
    const guard = guardSubjectOf(this.name);
    const has = (c: StreamConfig) => (c.subjects ?? []).includes(guard);
    if (has(this.#config)) return;
    await this.#mutate(
      what,
      'subjectSequenceGuard',
      (c) => (has(c) ? undefined : { subjects: [...(c.subjects ?? []), guard] }),
      has,
    );
    const leftover = subjectOf(this.name, `${RESERVED_PREFIX}txguard`);
    await this.ctx.jsm.streams.purge(this.stream, { filter: leftover }).catch((err: unknown) => {
      this.ctx.log.warn({ err, bucket: this.name }, 'could not purge old guard messages');
    });
  }

  /** Atomic publish is off on the stream (another client turned it off): `ensureAtomic` reads it again. */
  forgetAtomic(): void {
    this.#config = { ...this.#config, allow_atomic: false };
  }

  /** The guard subject is missing from the stream (another client rewrote its config). */
  forgetGuards(): void {
    const guard = guardSubjectOf(this.name);
    this.#config = {
      ...this.#config,
      subjects: (this.#config.subjects ?? []).filter((s) => s !== guard),
    };
  }

  /**
   * Publishes one write of `key` with its headers, sized and retried. A compare-and-set carries a
   * message id: when a retry (after a lost acknowledgement) conflicts, the key's first message
   * after the expected revision is read, and if it carries that id the first attempt was stored
   * and its revision is the result, not a false conflict. (The server checks the expected
   * sequence before its duplicate window, so the id alone does not do it: measured on 2.15.1.)
   * A plain put goes without: its retry may store the same value twice, which leaves the same
   * state and one more revision.
   */
  async write(key: string, data: Uint8Array, h: HeaderList, o: WriteOptions): Promise<number> {
    if (this.#config.mirror) this.assertWritable(`write ${key}`);
    if (h.length === 0 && o.ttl === undefined && o.revision === undefined) {
      // The hot path: a plain put carries no header at all. (The client copies the options.)
      this.checkSize(key, data.length, 0);
      const subject = writeSubject(this.ctx.js.apiPrefix, subjectOf(this.name, key));
      const opts = this.#publishOptions;
      return (await this.call(`write ${key}`, () => this.ctx.js.publish(subject, data, opts), o))
        .seq;
    }
    const list: (readonly [string, string])[] = [...h];
    if (o.ttl !== undefined) {
      list.push(['Nats-TTL', o.ttl]);
      // An older revision must not come back when this one expires.
      if (!list.some(([k]) => k === 'Nats-Rollup')) list.push(['Nats-Rollup', 'sub']);
    }
    let msgId: string | undefined;
    if (o.revision !== undefined) {
      if (!Number.isInteger(o.revision) || o.revision < 0) {
        throw new NatskitError(
          'INVALID_OPTIONS',
          `revision must be an integer >= 0, got ${describeValue(o.revision)}`,
          { details: { field: 'revision' } },
        );
      }
      msgId = nuid.next();
      list.push(['Nats-Msg-Id', msgId]);
      list.push(['Nats-Expected-Last-Subject-Sequence', String(o.revision)]);
    }
    this.checkSize(key, data.length, headerBytes(list));
    const mh = msgHeaders(list);
    const opts = { timeout: this.ctx.requestTimeoutMs, ...(mh ? { headers: mh } : {}) };
    const subject = writeSubject(this.ctx.js.apiPrefix, subjectOf(this.name, key));
    let attempts = 0;
    try {
      const ack = await this.call(
        `write ${key}`,
        () => {
          attempts++;
          return this.ctx.js.publish(subject, data, opts);
        },
        o,
      );
      return ack.seq;
    } catch (err) {
      if (
        NatskitError.is(err, 'KV_REVISION_CONFLICT') &&
        attempts > 1 &&
        o.revision !== undefined
      ) {
        // Expected `o.revision`, so a stored first attempt is the key's next message after it.
        const next = await this.readNext(key, o.revision + 1, o).catch(() => null);
        if (next && next.header?.get('Nats-Msg-Id') === msgId) return next.seq;
      }
      if (NatskitError.is(err, 'KV_REVISION_CONFLICT')) {
        throw new NatskitError(
          'KV_REVISION_CONFLICT',
          `key ${key} in bucket ${this.name} is not at revision ${o.revision}`,
          { cause: err.cause, details: { ...err.details, key, expectedRevision: o.revision } },
        );
      }
      if (NatskitError.is(err, 'VALUE_TOO_LARGE')) {
        throw new NatskitError('VALUE_TOO_LARGE', err.message, {
          cause: err.cause,
          details: { ...err.details, key, bytes: data.length },
        });
      }
      throw err;
    }
  }
}
