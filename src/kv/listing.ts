import type { JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import { asNatskitError } from '../errors/thrown.js';
import type { TypedBucket } from './bucket-state.js';
import { isAbsent, OPERATION } from './headers.js';
import { isReserved, keyOf, subjectOf, validateFilter, validateStoredKey } from './names.js';
import { scan } from './scan.js';
import type { KvChange } from './types.js';

/** What a scanned or watched message carries. */
type Stored = {
  subject: string;
  seq: number;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
  time: Date;
};

/** Every message (or the last per key) of `filter`, read by a short-lived consumer. */
async function* read<T>(
  b: TypedBucket<T>,
  filter: string,
  lastPerSubject: boolean,
  headersOnly: boolean,
): AsyncGenerator<JsMsg> {
  const { ctx, stream, keySpace } = b.state;
  b.state.assertOpen('scan');
  try {
    yield* scan(ctx.jsm, ctx.js, stream, subjectOf(keySpace, filter), {
      lastPerSubject,
      headersOnly,
    });
  } catch (err) {
    throw await b.state.classify(err);
  }
}

/** The live keys matching `filter` (headers only: values are not transferred). */
export async function listKeys<T>(b: TypedBucket<T>, filter: string): Promise<string[]> {
  validateFilter(filter, b.state.name);
  const out: string[] = [];
  for await (const m of read(b, filter, true, true)) {
    const key = keyOf(b.state.keySpace, m.subject);
    if (!isAbsent(m.headers) && !isReserved(key)) out.push(key);
  }
  return out;
}

/** The live keys matching `filter`, with their decoded values. */
export async function listValues<T>(b: TypedBucket<T>, filter: string): Promise<Map<string, T>> {
  validateFilter(filter, b.state.name);
  const out = new Map<string, T>();
  for await (const m of read(b, filter, true, false)) {
    const key = keyOf(b.state.keySpace, m.subject);
    if (isAbsent(m.headers) || isReserved(key)) continue;
    out.set(key, await b.decode(key, m));
  }
  return out;
}

/** Every revision the bucket keeps of one key, oldest first. */
export async function keyHistory<T>(b: TypedBucket<T>, key: string): Promise<KvChange<T>[]> {
  validateStoredKey(key, b.state.name);
  const out: KvChange<T>[] = [];
  for await (const m of read(b, key, false, false)) out.push(await toChange(b, m, false));
  return out;
}

/** Decodes a watched or scanned message into a change; a value that fails is `invalid`. */
export async function toChange<T>(
  b: TypedBucket<T>,
  m: Stored,
  initial: boolean,
): Promise<KvChange<T>> {
  const key = keyOf(b.state.keySpace, m.subject);
  const created = m.time;
  if (isAbsent(m.headers)) {
    const op = m.headers?.get(OPERATION);
    return { type: op === 'DEL' ? 'delete' : 'purge', key, revision: m.seq, created, initial };
  }
  try {
    return { type: 'put', key, value: await b.decode(key, m), revision: m.seq, created, initial };
  } catch (err) {
    // A schema may throw anything (not only return issues): `error` is always a natskit error.
    const error = asNatskitError(
      err,
      'VALIDATION_FAILED',
      `stored value of key ${key} (revision ${m.seq}) could not be validated: the schema threw`,
      { bucket: b.state.name, key, revision: m.seq, direction: 'read' },
    );
    return { type: 'invalid', key, revision: m.seq, created, initial, error };
  }
}
