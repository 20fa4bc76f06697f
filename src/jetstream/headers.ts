import { type MsgHdrs, headers as natsHeaders } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';

/** One header of a write, in the order sent. */
export type HeaderList = readonly (readonly [string, string])[];

/** No headers: what a write without any gets (one shared list, nothing allocated per call). */
export const NO_HEADERS: HeaderList = Object.freeze([]);

/** The bytes headers take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`). */
export function headerBytes(list: HeaderList): number {
  if (list.length === 0) return 0;
  let n = 12;
  for (const [k, v] of list) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n;
}

/** A name character the NATS client accepts: printable ASCII (33-126) except `:`. */
function badNameChar(name: string): string | undefined {
  for (const ch of name) {
    const c = ch.charCodeAt(0);
    if (ch.length > 1 || c < 33 || c > 126 || c === 58) return ch;
  }
  return undefined;
}

function invalid(field: string, header: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `${field}: header ${JSON.stringify(header)} ${why}`, {
    details: { field, header },
  });
}

/**
 * Checks headers before anything is sent, by the rules the NATS client enforces
 * (`@nats-io/nats-core` headers: `canonicalMIMEHeaderKey` and `validHeaderValue`), so a bad
 * header is a typed error naming it instead of the client's `InvalidArgumentError` (or a
 * TypeError for a value that is not a string): a name is one or more printable ASCII characters
 * (33-126) other than `:` (no space, no control character); a value is a string without CR or LF.
 * (The client trims a value's outer spaces; that is not an error.)
 *
 * @param field - the option the headers came in, for the message (`headers`).
 * @throws NatskitError `INVALID_OPTIONS` with `details.field` and `details.header`.
 */
export function checkHeaders(
  h: HeaderList | Readonly<Record<string, string>> | undefined,
  field = 'headers',
): HeaderList {
  if (h === undefined) return NO_HEADERS;
  if (typeof h !== 'object' || h === null) {
    throw new NatskitError('INVALID_OPTIONS', `${field} must be an object of strings`, {
      details: { field },
    });
  }
  const list = Array.isArray(h) ? (h as HeaderList) : Object.entries(h);
  for (const [k, v] of list) {
    if (typeof k !== 'string' || k === '') throw invalid(field, String(k), 'has an empty name');
    const bad = badNameChar(k);
    if (bad !== undefined) {
      throw invalid(
        field,
        k,
        `has ${JSON.stringify(bad)} in its name: printable ASCII only, no space or ':'`,
      );
    }
    if (typeof v !== 'string') throw invalid(field, k, `must be a string, got ${typeof v}`);
    if (/[\r\n]/.test(v)) throw invalid(field, k, 'has a line break (CR or LF) in its value');
  }
  return list;
}

/**
 * Client headers from a list or a record of names and values, checked by {@link checkHeaders};
 * undefined when there are none.
 *
 * @throws NatskitError `INVALID_OPTIONS` naming a header the client would refuse.
 */
export function msgHeaders(
  h: HeaderList | Readonly<Record<string, string>> | undefined,
  field = 'headers',
): MsgHdrs | undefined {
  const list = checkHeaders(h, field);
  if (list.length === 0) return undefined;
  const out = natsHeaders();
  for (const [k, v] of list) out.set(k, v);
  return out;
}
