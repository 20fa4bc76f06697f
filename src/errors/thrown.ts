/**
 * Reading what user code threw without trusting it. A handler, hook, codec, schema or callback
 * can throw anything: `null`, `undefined`, a string, an object without `message`, a frozen
 * error, an object whose getters throw, a Proxy. Reading a property of such a value inside a
 * `catch` throws again, and a throw from a `catch` in a callback nobody awaits is an unhandled
 * rejection that ends a Node process. Every catch that may receive a user's value reads it
 * through these functions.
 */

import { type ErrorCode, NatskitError } from './natskit-error.js';

const MAX_DESCRIPTION = 200;

/**
 * One property of a caught value: `undefined` when the value is not an object (or function),
 * lacks the property, or reading it throws.
 */
export function thrownProperty(value: unknown, key: PropertyKey): unknown {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) {
    return undefined;
  }
  try {
    return (value as Record<PropertyKey, unknown>)[key];
  } catch {
    return undefined;
  }
}

/**
 * A one-line description of a caught value, for error messages and health output; never throws.
 * An error-like value gives its `message`; a primitive its string form (`null`, `undefined`,
 * `42`); another object its JSON (cut at 200 characters) or its tag (`[object Object]`).
 */
export function describeThrown(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' && typeof value !== 'function') {
    // number, boolean, bigint, symbol: String() handles each (a template literal would throw on a symbol).
    return String(value);
  }
  const message = thrownProperty(value, 'message');
  if (typeof message === 'string') return message;
  try {
    const json = JSON.stringify(value);
    if (typeof json === 'string' && json !== '{}') {
      return json.length > MAX_DESCRIPTION ? `${json.slice(0, MAX_DESCRIPTION)}...` : json;
    }
  } catch {
    // BigInt, a cycle, a throwing getter or toJSON: fall through to the tag.
  }
  try {
    return Object.prototype.toString.call(value);
  } catch {
    // A revoked Proxy.
    return 'a value that cannot be read';
  }
}

/** A pino serializer: takes the value logged under a key, returns what goes into the line. */
type Serializer = (value: unknown) => unknown;

/**
 * Wraps the serializer pino runs on `{ err }` so that logging a caught value never throws.
 * pino's own error serializer writes a tag onto the error (a frozen error throws) and reads
 * `message`, `stack`, `cause` and every enumerable field (a throwing getter throws); a logger
 * call that throws inside a `catch` turns a logged failure into an unhandled rejection. When
 * the serializer throws, or the value is an object it would pass through untouched, the line
 * carries `{ type, message }` read through {@link describeThrown} instead.
 */
export function safeErrSerializer(inner: (value: never) => unknown): Serializer {
  return (value) => {
    try {
      const out = inner(value as never);
      // An object that is not error-like comes back as itself; pino then stringifies it, which
      // calls its getters: keep it only when that is known to work.
      if (out === value && typeof value === 'object' && value !== null) JSON.stringify(value);
      return out;
    } catch {
      const stack = thrownProperty(value, 'stack');
      return {
        type: typeName(value),
        message: describeThrown(value),
        ...(typeof stack === 'string' ? { stack } : {}),
      };
    }
  };
}

/** The constructor name of a value, or its `typeof`; never throws. */
function typeName(value: unknown): string {
  if (typeof value !== 'object' || value === null) return value === null ? 'null' : typeof value;
  const ctor = thrownProperty(value, 'constructor');
  const name = thrownProperty(ctor, 'name');
  return typeof name === 'string' && name !== '' ? name : 'object';
}

/**
 * `err` when it is a natskit error, else a new one with `code` that keeps `err` as its cause and
 * describes it after `message` (for a slot typed `NatskitError`, like an `invalid` change's
 * `error`, that user code, a schema, may have filled with anything).
 */
export function asNatskitError(
  err: unknown,
  code: ErrorCode,
  message: string,
  details?: Readonly<Record<string, unknown>>,
): NatskitError {
  if (NatskitError.is(err)) return err;
  return new NatskitError(code, `${message}: ${describeThrown(err)}`, {
    cause: err,
    ...(details ? { details } : {}),
  });
}
