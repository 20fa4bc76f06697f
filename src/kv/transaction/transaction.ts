import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { nuid } from '@nats-io/transport-node';
import { positiveInt } from '../../config/validate.js';
import { NatskitError } from '../../errors/natskit-error.js';
import { ApiCode } from '../../jetstream/api-errors.js';
import {
  type BatchAck,
  type BatchMessage,
  LATE_REPLY_MS,
  MAX_BATCH_MESSAGES,
} from '../../jetstream/atomic-batch.js';
import { subjectOf } from '../names.js';
import type { Tx, TxIsolation, TxOptions, TxResult } from '../types.js';
import { Attempt, type Write } from './attempt.js';
import type { TxBackend } from './backend.js';
import type { LockOwner } from './key-locks.js';

/** The header that marks every message of one commit with the transaction's id. */
const TX_HEADER = 'Natskit-Tx';

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
  const maxAttempts = positiveInt('maxAttempts', options.maxAttempts, 10);
  const isolation = options.isolation ?? 'serializable';
  const minDelay = options.backoff?.minDelayMs ?? 5;
  const maxDelay = options.backoff?.maxDelayMs ?? 500;
  let last: NatskitError | undefined;
  let involved: string[] = [];
  // One owner for every attempt: a retried transaction keeps its age, so it gets ahead.
  const owner = b.locks.owner();
  try {
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      options.signal?.throwIfAborted();
      const tx = new Attempt(b, owner);
      let committing = false;
      try {
        let value: R;
        try {
          value = await fn(tx); // an error thrown here aborts, nothing written, rethrown unchanged
        } catch (err) {
          tx.close();
          throw err;
        }
        await tx.settle(); // every operation the function started; a failed write aborts, unchanged
        committing = true;
        const revisions = await commit(b, tx, isolation, owner);
        return { value, attempts: attempt, revisions };
      } catch (err) {
        if (!NatskitError.is(err, 'KV_REVISION_CONFLICT') || !committing) throw err;
        last = err;
      } finally {
        b.locks.release(owner); // the commit settled (or never began): the keys are free
      }
      involved = await changedKeys(b, tx);
      if (attempt < maxAttempts) {
        const delay = Math.min(maxDelay, minDelay * 2 ** (attempt - 1)) * (0.5 + Math.random());
        await sleep(delay, undefined, options.signal ? { signal: options.signal } : {});
      }
    }
    throw conflict(b.bucket, involved, maxAttempts, last);
  } finally {
    b.locks.end(owner);
  }
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

/** What a settled write sends: its encoded value, or null for a delete. */
function payload<T>(key: string, w: Write<T>): Uint8Array | null {
  if (w.op === 'delete') return null;
  // settle() waited for every encoding and threw the first failure, so a put has its bytes.
  if (w.data === undefined) {
    throw new NatskitError('INVALID_STATE', `the value of key ${key} was not encoded`, {
      details: { key },
    });
  }
  return w.data;
}

async function commit<T>(
  b: TxBackend<T>,
  tx: Attempt<T>,
  isolation: TxIsolation,
  owner: LockOwner,
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
    return { [key]: await b.writeOne(key, payload(key, w), expectation(tx, key, w)) };
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
      'Nats-Expected-Last-Subject-Sequence-Subject': subjectOf(b.bucket, key),
    },
  }));
  for (const [key, w] of writes) {
    const h: Record<string, string> = { [TX_HEADER]: txId };
    const expected = expectation(tx, key, w);
    if (expected !== undefined) h['Nats-Expected-Last-Subject-Sequence'] = String(expected);
    const data = payload(key, w);
    if (data === null) h['KV-Operation'] = 'DEL';
    messages.push({
      subject: subjectOf(b.bucket, key),
      data: data ?? new Uint8Array(0),
      headers: h,
    });
  }
  const expects = new Map<string, number>(guards.map(([key, read]) => [key, read.revision]));
  for (const [key, w] of writes) {
    const expected = expectation(tx, key, w);
    if (expected !== undefined) expects.set(key, expected);
  }
  let firstWrite: number;
  try {
    const member = { messages, expects, writes: writes.map(([key]) => key), owner };
    firstWrite = (await b.commitBatch(member)).firstSeq + guards.length;
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
    } else if (
      NatskitError.is(err, 'CAPABILITY_MISSING') &&
      err.details?.apiCode === ApiCode.AtomicPublishDisabled
    ) {
      // Nothing stored: another client turned atomic publish off after this process turned it
      // on. The next attempt turns it on again, as a fresh start of this process would.
      b.forgetAtomic();
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
  const until = performance.now() + LATE_REPLY_MS + 1_000;
  while (performance.now() < until) {
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
