import { DeliverPolicy, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { describeValue, positiveInt } from '../../config/validate.js';
import { NatskitError } from '../../errors/natskit-error.js';
import { addReadConsumer } from '../scan.js';
import type { KvChange, KvWatcher, KvWatchOptions } from '../types.js';
import { LiveConsumer, type LiveMsg } from './live-consumer.js';

/** What a watch decodes: a message of the initial state or of the live part. */
export type WatchedMsg = Pick<JsMsg, 'subject' | 'seq' | 'data' | 'headers' | 'time'>;

/** Turns a message into a change; null for a message to skip (a key natskit reserves). */
export type ToChange<T> = (m: WatchedMsg, initial: boolean) => Promise<KvChange<T>> | null;

/** Where a watch reads from: its stream, the filter of its keys, and how to decode them. */
export interface WatchSource<T> {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  readonly stream: string;
  readonly filter: string;
  readonly toChange: ToChange<T>;
  readonly log: Logger;
  /** Called each time a consumer of the watch is replaced after a fault. */
  readonly onResume?: (() => void) | undefined;
}

/** How many messages a fresh consumer would deliver (its `num_pending` at creation is exact). */
async function pendingCount(
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  deliver: DeliverPolicy,
  startSeq: number | undefined,
): Promise<number> {
  const { name, count } = await addReadConsumer(jsm, stream, {
    filterSubject: filter,
    deliver,
    startSeq,
    headersOnly: true,
    inactiveMs: 10_000,
  });
  await jsm.consumers.delete(stream, name).catch(() => undefined);
  return count;
}

/**
 * A running watch. Both parts are natskit's own ordered consumers ({@link LiveConsumer}),
 * created before `start` resolves. With `'last'`, the initial state is the last message of each
 * key up to the stream sequence pinned when the watch began, in ascending order, and the live
 * part starts right after it: a write made after `start` resolved is never folded into the
 * initial state, nor skipped. Each part resumes after the last message it yielded when its
 * consumer fails (reconnect, server restart, node killed).
 */
export class Watch<T> implements KvWatcher<T> {
  readonly done: Promise<void>;
  readonly #source: WatchSource<T>;
  readonly #options: KvWatchOptions<T>;
  readonly #abort: AbortController;
  readonly #snapshot: LiveConsumer | undefined;
  readonly #prefetched: LiveMsg[];
  readonly #live: LiveConsumer;
  readonly #iterator: AsyncGenerator<KvChange<T>>;
  #lastRevision: number;
  /** Initial-state messages the live part still has to deliver (`'history'`, `fromRevision`). */
  #pendingInitial: number;
  #initialized = false;
  #taken = false;
  #ended: () => void = () => undefined;

  /** Validates the options, pins the start, opens the consumers, reads the first initial entries. */
  static async start<T>(source: WatchSource<T>, options: KvWatchOptions<T>): Promise<Watch<T>> {
    const { jsm, nc, stream, filter, log, onResume } = source;
    const include = options.include ?? 'last';
    const bufferSize = positiveInt('watch bufferSize', options.bufferSize, 256);
    const from = options.fromRevision;
    if (from !== undefined && !(Number.isInteger(from) && from >= 0)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `watch fromRevision must be an integer >= 0, got ${describeValue(from)}`,
      );
    }
    const snapshotMode = include === 'last' && from === undefined;
    const pinned =
      from === undefined && include !== 'history'
        ? (await jsm.streams.info(stream)).state.last_seq
        : undefined;
    const resumeAfter = from ?? pinned;
    const startSeq = resumeAfter === undefined ? undefined : resumeAfter + 1;
    const pendingInitial =
      snapshotMode || include === 'updates'
        ? 0
        : await pendingCount(
            jsm,
            stream,
            filter,
            startSeq === undefined ? DeliverPolicy.All : DeliverPolicy.StartSequence,
            startSeq,
          );
    const abort = new AbortController();
    const common = { stream, filter, bufferSize, signal: abort.signal, log, onResume };
    const snapshot = snapshotMode
      ? await LiveConsumer.open(nc, jsm, { ...common, startSeq: 1, snapshotUpTo: pinned ?? 0 })
      : undefined;
    const prefetched: LiveMsg[] = [];
    try {
      // The first bufferSize initial entries are read now: with history 1 a later write removes
      // the message the snapshot points at. Past bufferSize keys, the rest is read as the watch
      // is consumed (bounded memory).
      const want = Math.min(snapshot?.initialPending ?? 0, bufferSize);
      while (snapshot && prefetched.length < want) {
        const r = await snapshot.messages.next();
        if (r.done) break;
        prefetched.push(r.value);
      }
      const live = await LiveConsumer.open(nc, jsm, { ...common, startSeq: startSeq ?? 1 });
      return new Watch(source, options, {
        abort,
        snapshot,
        prefetched,
        live,
        lastRevision: resumeAfter ?? 0,
        pendingInitial,
      });
    } catch (err) {
      abort.abort();
      await snapshot?.close();
      throw err;
    }
  }

  private constructor(
    source: WatchSource<T>,
    options: KvWatchOptions<T>,
    parts: {
      abort: AbortController;
      snapshot: LiveConsumer | undefined;
      prefetched: LiveMsg[];
      live: LiveConsumer;
      lastRevision: number;
      pendingInitial: number;
    },
  ) {
    this.#source = source;
    this.#options = options;
    this.#abort = parts.abort;
    this.#snapshot = parts.snapshot;
    this.#prefetched = parts.prefetched;
    this.#live = parts.live;
    this.#lastRevision = parts.lastRevision;
    this.#pendingInitial = parts.pendingInitial;
    if (this.#pendingInitial === 0 && (this.#snapshot?.initialPending ?? 0) === 0) {
      this.#markInitialized();
    }
    const ended = new Promise<void>((resolve) => {
      this.#ended = resolve;
    });
    this.#iterator = this.#changes();
    this.done = options.onChange ? this.#deliver(options.onChange) : ended;
  }

  /** The revision of the last change delivered. */
  get lastRevision(): number {
    return this.#lastRevision;
  }

  #markInitialized(): void {
    if (this.#initialized) return;
    this.#initialized = true;
    try {
      this.#options.onInitialized?.();
    } catch (err) {
      // User code: a throw would end the watch (and reject `done`, which nobody may await).
      this.#source.log.error({ err }, 'onInitialized threw; the watch goes on');
    }
  }

  async *#initialState(): AsyncGenerator<KvChange<T>> {
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    try {
      for (const m of this.#prefetched.splice(0)) {
        const change = await this.#source.toChange(m, true);
        if (change) yield change;
      }
      for await (const m of snapshot.messages) {
        const change = await this.#source.toChange(m, true);
        if (change) yield change;
      }
    } finally {
      await snapshot.close();
    }
    this.#markInitialized();
  }

  async *#changes(): AsyncGenerator<KvChange<T>> {
    try {
      yield* this.#initialState();
      for await (const m of this.#live.messages) {
        if (m.seq <= this.#lastRevision) continue; // already part of the initial state
        this.#lastRevision = m.seq;
        const initial = !this.#initialized;
        const change = await this.#source.toChange(m, initial);
        if (initial && (--this.#pendingInitial <= 0 || m.pending === 0)) this.#markInitialized();
        if (change) yield change; // null: a key natskit reserves
      }
    } finally {
      this.#abort.abort();
      await this.#live.close();
      this.#ended();
    }
  }

  /** The callback form: every change in order, one at a time; a callback error is logged. */
  async #deliver(onChange: (change: KvChange<T>) => void | Promise<void>): Promise<void> {
    this.#taken = true;
    for await (const change of this.#iterator) {
      try {
        await onChange(change);
      } catch (err) {
        this.#source.log.error(
          { err, key: change.key, revision: change.revision },
          'watch callback threw; the watch goes on',
        );
      }
    }
  }

  /** Ends the watch and removes every consumer it made. */
  async stop(): Promise<void> {
    this.#abort.abort(); // wakes a read waiting for the next message
    await this.#iterator.return(undefined);
    // A watch stopped before it was read never ran its cleanup.
    await this.#live.close();
    await this.#snapshot?.close();
    this.#ended();
    await this.done.catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<KvChange<T>> {
    if (this.#taken) {
      throw new NatskitError(
        'INVALID_STATE',
        'a watch can be iterated once (or used with onChange)',
      );
    }
    this.#taken = true;
    return this.#iterator;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
