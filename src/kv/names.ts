import { NatskitError } from '../errors/natskit-error.js';

const KEY = /^[-/=.\w]+$/;

/** Keys natskit keeps for itself (the transaction guard key); hidden from keys, getAll and watch. */
export const RESERVED_PREFIX = '_natskit.';

/** True for a key natskit reserves. */
export const isReserved = (key: string) => key.startsWith(RESERVED_PREFIX);
const BUCKET = /^[-\w]+$/;

/** Throws `INVALID_KEY` unless `key` follows the NATS KV key rules. */
export function validateKey(key: unknown): asserts key is string {
  if (
    typeof key !== 'string' ||
    !KEY.test(key) ||
    key.startsWith('.') ||
    key.endsWith('.') ||
    key.includes('..') ||
    key.startsWith('_kv') ||
    key.startsWith(RESERVED_PREFIX)
  ) {
    throw new NatskitError(
      'INVALID_KEY',
      `invalid key ${JSON.stringify(key)}: keys use letters, digits, and - / _ = . (not at the ends, no '..'; _kv and _natskit. are reserved)`,
      { details: { key } },
    );
  }
}

/** Like {@link validateKey}, but allows the `*` and `>` wildcards as whole tokens. */
export function validateFilter(filter: unknown): asserts filter is string {
  if (typeof filter !== 'string' || filter === '') {
    throw new NatskitError('INVALID_KEY', `invalid key filter ${JSON.stringify(filter)}`, {
      details: { key: filter },
    });
  }
  const tokens = filter.split('.');
  tokens.forEach((t, i) => {
    if (t === '*' || (t === '>' && i === tokens.length - 1)) return;
    if (!/^[-/=\w]+$/.test(t)) {
      throw new NatskitError('INVALID_KEY', `invalid key filter ${JSON.stringify(filter)}`, {
        details: { key: filter },
      });
    }
  });
}

/** Throws `INVALID_BUCKET` unless `name` is a valid bucket name. */
export function validateBucket(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !BUCKET.test(name)) {
    throw new NatskitError(
      'INVALID_BUCKET',
      `invalid bucket name ${JSON.stringify(name)}: use letters, digits, - and _`,
      { details: { bucket: name } },
    );
  }
}

/** The stream behind a bucket. */
export const streamOf = (bucket: string) => `KV_${bucket}`;
/** The subject of a key. */
export const subjectOf = (bucket: string, key: string) => `$KV.${bucket}.${key}`;
/** The key of a subject. */
export const keyOf = (bucket: string, subject: string) => subject.slice(`$KV.${bucket}.`.length);
