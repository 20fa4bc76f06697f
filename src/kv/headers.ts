import type { MsgHdrs } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import { checkHeaders, type HeaderList } from '../jetstream/headers.js';

/** The header KV clients mark deletes and purges with. */
export const OPERATION = 'KV-Operation';
const MARKER = 'Nats-Marker-Reason';
const RESERVED_HEADER = /^(nats-|kv-|natskit-)/i;

/** True when a stored message is not a live value (deleted, purged, or an expiry marker). */
export function isAbsent(h: MsgHdrs | undefined): boolean {
  const op = h?.get(OPERATION);
  return op === 'DEL' || op === 'PURGE' || Boolean(h?.get(MARKER));
}

/**
 * Checks headers a user stores with a value: names and values the client accepts
 * ({@link checkHeaders}), and no name NATS or natskit uses (`Nats-`, `KV-`, `Natskit-`).
 */
export function checkUserHeaders(h: Readonly<Record<string, string>> | undefined): HeaderList {
  const list = checkHeaders(h);
  for (const [k] of list) {
    if (RESERVED_HEADER.test(k)) {
      throw new NatskitError(
        'INVALID_OPTIONS',
        `header ${JSON.stringify(k)} is not allowed: a name starting with Nats-, KV- or Natskit- is reserved`,
        { details: { field: 'headers', header: k } },
      );
    }
  }
  return list;
}

/** The headers a writer stored, without the ones NATS and natskit add. */
export function userHeaders(h: MsgHdrs | undefined): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const k of h.keys()) if (!RESERVED_HEADER.test(k)) out[k] = h.get(k);
  return out;
}
