import type { StoredMsg } from '@nats-io/jetstream';
import { NatskitError } from '../errors/natskit-error.js';
import type { BatchMessage } from '../jetstream/atomic-batch.js';
import { publishFastIngest } from '../jetstream/fast-ingest.js';
import type { BucketState } from './bucket-state.js';
import { keyOf, subjectOf } from './names.js';
import type { KvCallOptions } from './types.js';

/** Below this many keys a bulk write goes as atomic batches: fast ingest costs two more round trips. */
export const FAST_INGEST_MIN = 64;
/** The most subjects one `multi_last` direct get answers. */
const MULTI_LAST_MAX = 1_024;
/** Buckets whose stream definitely refused `allow_batched`: not asked again by this process. */
const refused = new WeakSet<BucketState>();

const batched = (state: BucketState) => state.config.allow_batched === true;

/** One key of a bulk write, encoded. */
export interface FastItem {
  readonly key: string;
  readonly message: BatchMessage;
}

/**
 * Whether bulk writes to this bucket go through fast ingest: the server has it (API level >= 4)
 * and the stream has `allow_batched`, turned on here the first time (a stream update; it raises
 * the stream's required API level to 4). A stream that refuses it (`CAPABILITY_MISSING`: the
 * update refused, or the field dropped) keeps the atomic batches; after any other failure (the
 * connection, a deleted bucket) this call uses them and the next one asks again.
 */
export async function fastIngestReady(state: BucketState): Promise<boolean> {
  if (!state.ctx.capabilities().features.fastIngest || state.config.mirror || refused.has(state))
    return false;
  if (batched(state)) return true;
  try {
    await state.ensureFlag(
      `fast bulk writes to bucket ${state.name}`,
      'fastIngest',
      'allow_batched',
    );
    return batched(state);
  } catch (err) {
    const definite = NatskitError.is(err, 'CAPABILITY_MISSING');
    if (definite) refused.add(state);
    state.ctx.log.warn(
      { err, bucket: state.name },
      definite
        ? 'fast ingest refused by the stream; bulk writes use atomic batches'
        : 'fast ingest could not be turned on; this bulk write uses atomic batches',
    );
    return false;
  }
}

/**
 * Writes `items` as one fast-ingest batch and returns each item's revision, or undefined where
 * it is not known to be stored (refused, lost, outcome unknown): the caller writes those alone.
 *
 * The final ack names only the last message's sequence, and fast ingest does not store a batch
 * contiguously. So the stream's last sequence is read first: when the batch's stored messages
 * exactly fill the sequences after it, they got them in order (no other write came between).
 * Otherwise the keys' last messages up to the batch's end are read back, and a key whose message
 * there carries the value this batch wrote gets that revision; the rest are written alone again.
 * The call's `signal` stops the batch; its `retry` and `signal` apply to the reads.
 *
 * @throws whatever the stream-info read, the batch or the read-back threw: the caller then
 * writes every key alone.
 */
export async function fastBulkPut(
  state: BucketState,
  items: readonly FastItem[],
  options?: KvCallOptions,
): Promise<(number | undefined)[]> {
  const info = await state.call(
    'stream info',
    () => state.ctx.jsm.streams.info(state.stream),
    options,
  );
  const before = info.state.last_seq;
  const { stored, lastSeq } = await publishFastIngest(
    state.ctx.nc,
    items.map((i) => i.message),
    {
      timeoutMs: state.ctx.requestTimeoutMs,
      apiPrefix: state.ctx.js.apiPrefix,
      signal: options?.signal,
    },
  );
  const count = stored.filter(Boolean).length;
  if (lastSeq === undefined || count === 0) return items.map(() => undefined);
  if (lastSeq - before === count) {
    let seq = before;
    return stored.map((s) => (s ? ++seq : undefined));
  }
  state.ctx.log.debug(
    { bucket: state.name, before, lastSeq, count },
    'other writes came between the fast batch: reading its revisions back',
  );
  return await readBack(state, items, stored, lastSeq, options);
}

/** The revision of each stored item whose key's last message up to `lastSeq` holds its value. */
async function readBack(
  state: BucketState,
  items: readonly FastItem[],
  stored: readonly boolean[],
  lastSeq: number,
  options: KvCallOptions | undefined,
): Promise<(number | undefined)[]> {
  const out: (number | undefined)[] = items.map(() => undefined);
  if (!(state.config.allow_direct && state.ctx.capabilities().features.multiGet)) return out;
  // Only a key's last item can be confirmed this way; an earlier one of the same key is written again.
  const lastOf = new Map<string, number>();
  items.forEach((it, i) => {
    if (stored[i]) lastOf.set(it.key, i);
  });
  const keys = [...lastOf.keys()];
  for (let s = 0; s < keys.length; s += MULTI_LAST_MAX) {
    const subjects = keys.slice(s, s + MULTI_LAST_MAX).map((k) => subjectOf(state.keySpace, k));
    const msgs = await state.call(
      'bulk read back',
      async () => {
        const got: StoredMsg[] = [];
        for await (const m of await state.ctx.jsm.direct.getLastMessagesFor(state.stream, {
          multi_last: subjects,
          up_to_seq: lastSeq,
        }))
          got.push(m);
        return got;
      },
      options,
    );
    for (const m of msgs) {
      const i = lastOf.get(keyOf(state.keySpace, m.subject));
      const item = i === undefined ? undefined : items[i];
      if (item && i !== undefined && sameBytes(m.data, item.message.data)) out[i] = m.seq;
    }
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
