import { NatskitError } from '../errors/natskit-error.js';

/** Keys natskit writes: the NATS KV key rules (ADR-8), readable by every KV client. */
const PORTABLE_KEY = /^[-/=.\w]+$/;
/** Tokens of a key other clients may have stored: anything a subject token can hold. */
const STORED_TOKEN = /^[^\s*>]+$/u;
const BUCKET = /^[-\w]+$/;

/**
 * Keys natskit reserved in earlier versions (the transaction guard key `_natskit.txguard`, now
 * outside the key space): hidden from keys, getAll and watch, refused everywhere else.
 */
export const RESERVED_PREFIX = '_natskit.';

/** True for a key natskit reserves. */
export const isReserved = (key: string) => key.startsWith(RESERVED_PREFIX);

/** A stream name is at most 255 characters, and a bucket's stream is `KV_<bucket>`. */
export const MAX_BUCKET_LENGTH = 252;

/** The server's default `max_control_line`: a longer protocol line closes the connection. */
export const MAX_CONTROL_LINE = 4_096;
/** What a protocol line needs beside the subject: the verb, the reply subject and two sizes. */
const LINE_RESERVE = 512;

/**
 * The longest key (in bytes) natskit can address in `bucket`. Its longest request subject, the
 * direct get `$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`, must fit one protocol line, or
 * the server closes the whole connection: 3,536 bytes for a 10-character bucket name.
 */
export function maxKeyBytes(bucket: string): number {
  return MAX_CONTROL_LINE - LINE_RESERVE - `$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.`.length;
}

const byteLength = (s: string) => Buffer.byteLength(s, 'utf8');

function invalidKey(key: unknown, why: string, bucket?: string): NatskitError {
  return new NatskitError('INVALID_KEY', `invalid key ${preview(key)}: ${why}`, {
    // The key itself (the message has the quoted, cut preview): a caller compares it.
    details: { key, ...(bucket ? { bucket } : {}) },
  });
}

/** A key for messages: long keys are cut, so a 5,000-character key does not flood a log line. */
function preview(key: unknown): string {
  const s = JSON.stringify(key) ?? String(key);
  return s.length > 80 ? `${s.slice(0, 60)}...(${s.length} chars)` : s;
}

function checkLength(key: string, bucket: string | undefined): void {
  if (bucket === undefined) return;
  const max = maxKeyBytes(bucket);
  if (byteLength(key) > max) {
    throw invalidKey(
      key,
      `it is ${byteLength(key)} bytes; keys in bucket ${bucket} are at most ${max} bytes (a request subject must fit the server's 4 KiB protocol line)`,
      bucket,
    );
  }
}

/**
 * Throws `INVALID_KEY` unless natskit may write `key`: the NATS KV key rules (letters, digits and
 * `- / _ = .`, no `.` at either end, no empty token), not reserved, and short enough for `bucket`.
 */
export function validateKey(key: unknown, bucket?: string): asserts key is string {
  if (typeof key !== 'string' || key === '') throw invalidKey(key, 'keys are non-empty strings');
  if (
    !PORTABLE_KEY.test(key) ||
    key.startsWith('.') ||
    key.endsWith('.') ||
    key.includes('..') ||
    key.startsWith('_kv') ||
    isReserved(key)
  ) {
    throw invalidKey(
      key,
      "natskit writes keys of letters, digits, and - / _ = . (not at the ends, no '..'; _kv and _natskit. are reserved)",
      bucket,
    );
  }
  checkLength(key, bucket);
}

/**
 * Throws `INVALID_KEY` unless `key` can name a stored key: what {@link validateKey} accepts, and
 * also keys other clients wrote that natskit would not write (`user:bob`, non-ASCII), so that
 * whatever `keys()` lists can be read and deleted. Wildcards, whitespace and empty tokens never.
 */
export function validateStoredKey(key: unknown, bucket?: string): asserts key is string {
  if (typeof key !== 'string' || key === '') throw invalidKey(key, 'keys are non-empty strings');
  if (!key.split('.').every((t) => STORED_TOKEN.test(t))) {
    throw invalidKey(key, 'a key has no whitespace, no wildcard (* >) and no empty token');
  }
  if (isReserved(key)) throw invalidKey(key, '_natskit. is reserved');
  checkLength(key, bucket);
}

/** Like {@link validateStoredKey}, but allows the `*` and `>` wildcards as whole tokens. */
export function validateFilter(filter: unknown, bucket?: string): asserts filter is string {
  if (typeof filter !== 'string' || filter === '') {
    throw invalidKey(filter, 'a key filter is a non-empty string');
  }
  const tokens = filter.split('.');
  tokens.forEach((t, i) => {
    if (t === '*' || (t === '>' && i === tokens.length - 1)) return;
    if (!STORED_TOKEN.test(t)) {
      throw invalidKey(
        filter,
        'a filter is a key whose tokens may be * (one token) or a final > (the rest)',
      );
    }
  });
  checkLength(filter, bucket);
}

/** Throws `INVALID_BUCKET` unless `name` is a valid bucket name (at most 252 characters). */
export function validateBucket(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !BUCKET.test(name)) {
    throw new NatskitError(
      'INVALID_BUCKET',
      `invalid bucket name ${preview(name)}: use letters, digits, - and _`,
      { details: { bucket: name } },
    );
  }
  if (name.length > MAX_BUCKET_LENGTH) {
    throw new NatskitError(
      'INVALID_BUCKET',
      `invalid bucket name ${preview(name)}: it is ${name.length} characters, at most ${MAX_BUCKET_LENGTH} (its stream KV_<name> is at most 255)`,
      { details: { bucket: preview(name), length: name.length, max: MAX_BUCKET_LENGTH } },
    );
  }
}

/** The stream behind a bucket. */
export const streamOf = (bucket: string) => `KV_${bucket}`;
/** The subject of a key. */
export const subjectOf = (bucket: string, key: string) => `$KV.${bucket}.${key}`;
/** The key of a subject. */
export const keyOf = (bucket: string, subject: string) => subject.slice(`$KV.${bucket}.`.length);
/**
 * The subject of a bucket's transaction guards: in the bucket's stream (a batch stays in one
 * stream) but outside its key space `$KV.<bucket>.>`, so no KV client lists, reads or watches it.
 */
export const guardSubjectOf = (bucket: string) => `$NATSKIT.TXGUARD.${bucket}`;
