import type { MsgHdrs } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import type { HeaderList } from '../jetstream/headers.js';

/** The header KV clients mark deletes and purges with. */
export const OPERATION = 'KV-Operation';
const MARKER = 'Nats-Marker-Reason';
const RESERVED_HEADER = /^(nats-|kv-|natskit-)/i;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** True when a stored message is not a live value (deleted, purged, or an expiry marker). */
export function isAbsent(h: MsgHdrs | undefined): boolean {
  const op = h?.get(OPERATION);
  return op === 'DEL' || op === 'PURGE' || Boolean(h?.get(MARKER));
}

/** Checks headers a user stores with a value: valid names, not NATS's or natskit's own. */
export function checkUserHeaders(h: Readonly<Record<string, string>> | undefined): HeaderList {
  if (h === undefined) return [];
  if (typeof h !== 'object' || h === null) {
    throw new NatskitError('INVALID_OPTIONS', 'headers must be an object of strings', {
      details: { field: 'headers' },
    });
  }
  return Object.entries(h).map(([k, v]) => {
    if (!HEADER_NAME.test(k) || RESERVED_HEADER.test(k)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `header ${JSON.stringify(k)} is not allowed: a token name, not starting with Nats-, KV- or Natskit-`,
        { details: { field: 'headers', header: k } },
      );
    }
    if (typeof v !== 'string' || /[\r\n]/.test(v)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `header ${k} must be a string without line breaks`,
        {
          details: { field: 'headers', header: k },
        },
      );
    }
    return [k, v] as const;
  });
}

/** The headers a writer stored, without the ones NATS and natskit add. */
export function userHeaders(h: MsgHdrs | undefined): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const k of h.keys()) if (!RESERVED_HEADER.test(k)) out[k] = h.get(k);
  return out;
}
