import { DeliverPolicy, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { positiveInt } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { type Live, type LiveMsg, openLive } from './live-consumer.js';
import { addReadConsumer } from './scan.js';
import type { KvChange, KvWatcher, KvWatchOptions } from './types.js';

/** What a watch decodes: a message of the initial state or of the live part. */
export type WatchedMsg = Pick<JsMsg, 'subject' | 'seq' | 'data' | 'headers' | 'time'>;

async function initialCount(
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

/** @internal used by bucket handles. */
export async function startWatch<T>(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  filter: string,
  toChange: (m: WatchedMsg, initial: boolean) => Promise<KvChange<T>> | null,
  options: KvWatchOptions<T>,
  log: Logger,
): Promise<KvWatcher<T>> {
  const include = options.include ?? 'last';
  const bufferSize = positiveInt('watch bufferSize', options.bufferSize, 256);
  const from = options.fromRevision;
  if (from !== undefined && !(Number.isInteger(from) && from >= 0)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `watch fromRevision must be an integer >= 0, got ${from}`,
    );
  }
  // The live part always starts at a pinned stream sequence, so a write made after watch()
  // resolved is never folded into the initial state, nor skipped.
  const snapshotMode = include === 'last' && from === undefined;
  const pinned =
    from === undefined && include !== 'history'
      ? (await jsm.streams.info(stream)).state.last_seq
      : undefined;
  const resumeAfter = from ?? pinned;
  const deliver = resumeAfter !== undefined ? DeliverPolicy.StartSequence : DeliverPolicy.All;
  const startSeq = resumeAfter === undefined ? undefined : resumeAfter + 1;
  let pendingInitial =
    snapshotMode || include === 'updates'
      ? 0
      : await initialCount(jsm, stream, filter, deliver, startSeq);

  // Both parts are natskit's own ordered consumers (live-consumer.ts), created now, before
  // watch() resolves. 'last': the initial state is the last message of each key up to the pinned
  // sequence, in ascending order; the live part starts right after it. Each resumes after the
  // last message it yielded when its consumer fails (reconnect, server restart, node killed).
  const abort = new AbortController();
  const snapshot = snapshotMode
    ? await openLive(nc, jsm, {
        stream,
        filter,
        startSeq: 1,
        snapshotUpTo: pinned ?? 0,
        bufferSize,
        signal: abort.signal,
        log,
      })
    : undefined;
  let live: Live;
  const prefetched: LiveMsg[] = [];
  try {
    // The first bufferSize initial entries are read now: with history 1 a later write removes
    // the message the snapshot points at. Past bufferSize keys, the rest is read as the watch is
    // consumed (bounded memory).
    if (snapshot) {
      const want = Math.min(snapshot.initialPending, bufferSize);
      while (prefetched.length < want) {
        const r = await snapshot.messages.next();
        if (r.done) break;
        prefetched.push(r.value);
      }
    }
    live = await openLive(nc, jsm, {
      stream,
      filter,
      startSeq: startSeq ?? 1,
      bufferSize,
      signal: abort.signal,
      log,
    });
  } catch (err) {
    abort.abort();
    await snapshot?.close();
    throw err;
  }

  let lastRevision = resumeAfter ?? 0;
  let initialized = false;
  const markInitialized = () => {
    if (initialized) return;
    initialized = true;
    options.onInitialized?.();
  };
  if (pendingInitial === 0 && (snapshot?.initialPending ?? 0) === 0) markInitialized();
  let ended: () => void = () => undefined;
  const endedPromise = new Promise<void>((resolve) => {
    ended = resolve;
  });

  async function* initialState(): AsyncGenerator<KvChange<T>> {
    if (!snapshot) return;
    try {
      for (const m of prefetched.splice(0)) {
        const change = await toChange(m, true);
        if (change) yield change;
      }
      for await (const m of snapshot.messages) {
        const change = await toChange(m, true);
        if (change) yield change;
      }
    } finally {
      await snapshot.close();
    }
    markInitialized();
  }

  async function* changes(): AsyncGenerator<KvChange<T>> {
    try {
      yield* initialState();
      for await (const m of live.messages) {
        if (m.seq <= lastRevision) continue; // already part of the initial state
        lastRevision = m.seq;
        const initial = !initialized;
        const change = await toChange(m, initial);
        if (initial && (--pendingInitial <= 0 || m.pending === 0)) markInitialized();
        if (change) yield change; // null: a key natskit reserves
      }
    } finally {
      abort.abort();
      await live.close();
      ended();
    }
  }

  const iterator = changes();
  let taken = false;
  let done: Promise<void> = endedPromise;
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
    abort.abort(); // wakes a read waiting for the next message
    await iterator.return(undefined);
    // A watch stopped before it was read never ran its cleanup.
    await live.close();
    await snapshot?.close();
    ended();
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
