import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, nuid } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';

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

type Messages = Awaited<
  ReturnType<Awaited<ReturnType<JetStreamClient['consumers']['get']>>['consume']>
>;

async function initialCount(
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  deliver: DeliverPolicy,
  startSeq: number | undefined,
): Promise<number> {
  const name = `natskit_count_${nuid.next()}`;
  const info = await jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: deliver,
    ...(startSeq === undefined ? {} : { opt_start_seq: startSeq }),
    filter_subject: filter,
    headers_only: true,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(10_000),
  });
  await jsm.consumers.delete(stream, name).catch(() => undefined);
  return info.num_pending;
}

/** @internal used by bucket handles. */
export async function startWatch<T>(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  toChange: (m: JsMsg, initial: boolean) => Promise<KvChange<T>> | null,
  options: KvWatchOptions<T>,
  log: Logger,
): Promise<KvWatcher<T>> {
  const include = options.include ?? 'last';
  const bufferSize = options.bufferSize ?? 256;
  if (!Number.isInteger(bufferSize) || bufferSize < 1) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `watch bufferSize must be a positive integer, got ${bufferSize}`,
    );
  }
  const from = options.fromRevision;
  if (from !== undefined && !(Number.isInteger(from) && from >= 0)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `watch fromRevision must be an integer >= 0, got ${from}`,
    );
  }
  // 'updates' starts right after the stream's last sequence now: the client creates its consumer
  // asynchronously, and a write made after watch() resolved must not be missed.
  const updatesFrom =
    include === 'updates' && from === undefined
      ? (await jsm.streams.info(stream)).state.last_seq
      : undefined;
  const resumeAfter = from ?? updatesFrom;
  const deliver =
    resumeAfter !== undefined
      ? DeliverPolicy.StartSequence
      : include === 'history'
        ? DeliverPolicy.All
        : DeliverPolicy.LastPerSubject;
  const startSeq = resumeAfter === undefined ? undefined : resumeAfter + 1;
  let pendingInitial =
    updatesFrom !== undefined ? 0 : await initialCount(jsm, stream, filter, deliver, startSeq);

  // An ordered consumer recreates itself after a reconnect, a missed heartbeat or a server restart,
  // starting after the last stream sequence it delivered.
  const consumer = await js.consumers.get(stream, {
    filter_subjects: [filter],
    deliver_policy: deliver,
    ...(startSeq === undefined ? {} : { opt_start_seq: startSeq }),
  });
  const messages: Messages = await consumer.consume({ max_messages: bufferSize });
  let lastRevision = resumeAfter ?? 0;
  let initialized = false;
  const markInitialized = () => {
    if (initialized) return;
    initialized = true;
    options.onInitialized?.();
  };
  if (pendingInitial === 0) markInitialized();

  async function* changes(): AsyncGenerator<KvChange<T>> {
    try {
      for await (const m of messages) {
        if (m.seq <= lastRevision) continue; // delivered before a reset: never twice
        lastRevision = m.seq;
        const initial = !initialized;
        const change = await toChange(m, initial);
        if (initial && (--pendingInitial <= 0 || m.info.pending === 0)) markInitialized();
        if (change) yield change; // null: a key natskit reserves
      }
    } finally {
      // stop(), not close(): close() waits for this very iterator to drain.
      messages.stop();
    }
  }

  const iterator = changes();
  let taken = false;
  let done: Promise<void> = messages.closed().then(() => undefined);
  if (options.onChange) {
    taken = true;
    const onChange = options.onChange;
    done = (async () => {
      for await (const change of iterator) {
        try {
          await onChange(change);
        } catch (err) {
          log.error(
            { err, key: change.key, revision: change.revision },
            'watch callback threw; the watch goes on',
          );
        }
      }
    })();
  }
  const stop = async () => {
    messages.stop();
    await iterator.return(undefined);
    await done.catch(() => undefined);
  };
  return {
    get lastRevision() {
      return lastRevision;
    },
    done,
    stop,
    [Symbol.asyncIterator]() {
      if (taken)
        throw new NatskitError(
          'INVALID_STATE',
          'a watch can be iterated once (or used with onChange)',
        );
      taken = true;
      return iterator;
    },
    [Symbol.asyncDispose]: stop,
  };
}
