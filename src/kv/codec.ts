import { describeType } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';

export type { StandardSchemaResult, StandardSchemaV1 } from '../schema/standard-schema.js';
export { validate } from '../schema/standard-schema.js';

/** Turns values into bytes and back. */
export interface Codec<T> {
  encode(value: T): Uint8Array;
  decode(data: Uint8Array): T;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Nesting the allocation-free check walks before the exact walk (it finds cycles) takes over. */
const FAST_DEPTH = 32;

/** Rejects what JSON would drop or mangle silently: BigInt, functions, symbols, cycles, Map, Set, NaN. */
export function assertJsonSafe(value: unknown, path = '$', seen = new Set<object>()): void {
  // Most values pass: check them without allocating, and walk again naming the path only when
  // this check fails (or the value is too deep for it to rule out a cycle).
  if (path === '$' && jsonSafe(value, 0)) return;
  const problem = jsonProblem(value, path, seen);
  if (problem) {
    throw new NatskitError('INVALID_VALUE', `value is not JSON-serializable: ${problem}`, {
      details: { path },
    });
  }
}

/**
 * True when JSON keeps `value` as it is, by the rules of {@link jsonProblem}; false when it does
 * not, or when it nests deeper than {@link FAST_DEPTH} (a cycle is never seen here).
 */
function jsonSafe(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'undefined':
      return depth > 0;
    case 'object':
      break;
    default:
      return false; // bigint, function, symbol
  }
  if (value === null) return true;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return true;
  if (value instanceof Map || value instanceof Set || depth >= FAST_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!jsonSafe(value[i], depth + 1)) return false;
    return true;
  }
  for (const k of Object.keys(value)) {
    if (!jsonSafe((value as Record<string, unknown>)[k], depth + 1)) return false;
  }
  return true;
}

function jsonProblem(value: unknown, path: string, seen: Set<object>): string | undefined {
  const t = typeof value;
  if (t === 'bigint' || t === 'function' || t === 'symbol') return `a ${t} at ${path}`;
  if (t === 'undefined') return path === '$' ? 'undefined' : undefined;
  if (t === 'number') return Number.isFinite(value) ? undefined : `${String(value)} at ${path}`;
  if (t !== 'object' || value === null) return undefined;
  const obj = value as object;
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') return undefined;
  if (obj instanceof Map || obj instanceof Set) return `a ${obj.constructor.name} at ${path}`;
  if (seen.has(obj)) return `a cycle at ${path}`;
  seen.add(obj);
  // Array.from visits a sparse array's holes too (JSON writes them as null).
  const entries: [string, unknown][] = Array.isArray(obj)
    ? Array.from(obj, (v: unknown, i) => [`[${i}]`, v])
    : Object.entries(obj).map(([k, v]) => [`.${k}`, v]);
  for (const [step, v] of entries) {
    const p = jsonProblem(v, `${path}${step}`, seen);
    if (p) return p;
  }
  seen.delete(obj);
  return undefined;
}

/** JSON (the default): rejects values JSON would lose before anything is sent. */
export function jsonCodec<T = unknown>(): Codec<T> {
  return {
    encode: (value) => {
      assertJsonSafe(value);
      return encoder.encode(JSON.stringify(value));
    },
    decode: (data) => JSON.parse(decoder.decode(data)) as T,
  };
}

/** UTF-8 strings. */
export function stringCodec(): Codec<string> {
  return {
    encode: (value) => {
      if (typeof value !== 'string') {
        throw new NatskitError(
          'INVALID_VALUE',
          `the string codec needs a string, got ${describeType(value)}`,
        );
      }
      return encoder.encode(value);
    },
    decode: (data) => decoder.decode(data),
  };
}

/** Raw bytes. */
export function bytesCodec(): Codec<Uint8Array> {
  return {
    encode: (value) => {
      if (!(value instanceof Uint8Array))
        throw new NatskitError('INVALID_VALUE', 'the bytes codec needs a Uint8Array');
      return value;
    },
    decode: (data) => data,
  };
}

/** A codec by name, or the codec given. */
export function resolveCodec<T>(
  codec: Codec<T> | 'json' | 'string' | 'bytes' | undefined,
): Codec<T> {
  if (codec === undefined || codec === 'json') return jsonCodec<T>();
  if (codec === 'string') return stringCodec() as unknown as Codec<T>;
  if (codec === 'bytes') return bytesCodec() as unknown as Codec<T>;
  if (typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new NatskitError(
      'INVALID_OPTIONS',
      'codec must be json, string, bytes, or { encode, decode }',
    );
  }
  return codec;
}
