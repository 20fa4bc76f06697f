import { JetStreamError, type StoredMsg } from '@nats-io/jetstream';
import type { BatchAck } from '../../jetstream/atomic-batch.js';
import { publishAtomicBatch } from '../../jetstream/atomic-batch.js';
import type { BucketState, TypedBucket } from '../bucket-state.js';
import { OPERATION } from '../headers.js';
import { guardSubjectOf, keyOf, subjectOf, validateKey, validateStoredKey } from '../names.js';
import { committerOf, type GroupMember, type GroupSink } from './group-commit.js';
import type { KeyLocks } from './key-locks.js';

/** What a transaction needs from its bucket. */
export interface TxBackend<T> {
  readonly bucket: string;
  /** The subject of guard messages: in the bucket's stream, outside its key space. */
  readonly guardSubject: string;
  /** Throws `INVALID_KEY` unless the key can be read (or deleted). */
  validateReadKey(key: string): void;
  /** Throws `INVALID_KEY` unless natskit may write the key. */
  validateWriteKey(key: string): void;
  /**
   * Reads the last message on the key, once no commit of this process that writes it is
   * queued or in flight (reading the revision such a commit replaces is a certain conflict).
   */
  readLast(key: string): Promise<StoredMsg | null>;
  /**
   * Like `readLast` for several keys, in one request (one point in the stream); absent keys are
   * missing from the map. Undefined where the bucket cannot (reads then go one by one).
   */
  readonly readMany?: ((keys: readonly string[]) => Promise<Map<string, StoredMsg>>) | undefined;
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
  /** The stream refused atomic publish: the next `ensureAtomic` turns it on again. */
  forgetAtomic(): void;
  /** A single compare-and-set write (works on every server). */
  writeOne(key: string, data: Uint8Array | null, revision: number | undefined): Promise<number>;
  /** The keys transactions of this process hold (shared by every handle of the bucket). */
  readonly locks: KeyLocks;
  /** Commits one transaction's atomic batch, grouped with concurrent ones (see `GroupCommitter`). */
  commitBatch(member: GroupMember): Promise<BatchAck>;
}

/** What a transaction needs from a bucket handle: reads, encoding, compare-and-set writes, batches. */
export function txBackend<T>(handle: TypedBucket<T>): TxBackend<T> {
  const s = handle.state;
  const name = s.name;
  const committer = committerOf(s, name);
  const publishBatch: GroupSink['publishBatch'] = (messages) =>
    publishAtomicBatch(s.ctx.nc, messages, {
      timeoutMs: s.ctx.requestTimeoutMs,
      maxMessageBytes: s.maxMessageBytes,
      resilient: s.ctx.resilient,
      apiPrefix: s.ctx.js.apiPrefix,
    });
  const readLast = async (key: string) => {
    await committer.settledFor(key);
    const m = await s.readLast(key);
    committer.observe(key, m?.seq ?? 0);
    return m;
  };
  const readMany = async (keys: readonly string[]) => {
    await Promise.all(keys.map((k) => committer.settledFor(k)));
    let found: Map<string, StoredMsg>;
    try {
      found = await readLastMany(s, keys);
    } catch (err) {
      if (!(err instanceof JetStreamError)) throw err; // a status error (JetStreamStatusError)
      // A status instead of messages (no responders while a replica takes over, say): the keys
      // one by one, with the retries and error mapping of a single read.
      found = new Map();
      const msgs = await Promise.all(keys.map((k) => s.readLast(k)));
      for (const [i, m] of msgs.entries()) if (m) found.set(keys[i] as string, m);
    }
    for (const k of keys) committer.observe(k, found.get(k)?.seq ?? 0);
    return found;
  };
  const sink: GroupSink = {
    publishBatch,
    revisionOf: async (key) => (await s.readLast(key))?.seq ?? 0,
  };
  return {
    bucket: name,
    guardSubject: guardSubjectOf(name),
    validateReadKey: (key) => validateStoredKey(key, name),
    validateWriteKey: (key) => validateKey(key, name),
    readLast,
    readMany:
      s.config.allow_direct && s.ctx.capabilities().features.multiGet ? readMany : undefined,
    readNext: (key, seq) => s.readNext(key, seq),
    encode: (key, value) => handle.encode(key, value),
    decode: (key, m) => handle.decode(key, m),
    ensureAtomic: (what) => s.ensureAtomic(what),
    ensureGuards: (what) => s.ensureGuards(what),
    forgetGuards: () => s.forgetGuards(),
    forgetAtomic: () => s.forgetAtomic(),
    writeOne: (key, data, revision) =>
      data === null
        ? s.write(key, new Uint8Array(0), [[OPERATION, 'DEL']], { revision })
        : s.write(key, data, [], { revision }),
    locks: committer.locks,
    commitBatch: (member) => committer.submit(member, sink),
  };
}

/** The last message of each key, in one `multi_last` direct get (at most 1000 keys here). */
async function readLastMany(
  s: BucketState,
  keys: readonly string[],
): Promise<Map<string, StoredMsg>> {
  const subjects = keys.map((k) => subjectOf(s.keySpace, k));
  const msgs = await s.call(`get ${keys.join(', ')}`, async () => {
    const got: StoredMsg[] = [];
    for await (const m of await s.ctx.jsm.direct.getLastMessagesFor(s.stream, {
      multi_last: subjects,
    }))
      got.push(m);
    return got;
  });
  return new Map(msgs.map((m) => [keyOf(s.keySpace, m.subject), m]));
}
