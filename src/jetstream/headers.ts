import { type MsgHdrs, headers as natsHeaders } from '@nats-io/transport-node';

/** One header of a write, in the order sent. */
export type HeaderList = readonly (readonly [string, string])[];

/** The bytes headers take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`). */
export function headerBytes(list: HeaderList): number {
  if (list.length === 0) return 0;
  let n = 12;
  for (const [k, v] of list) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n;
}

/** Client headers from a list or a record of names and values; undefined when there are none. */
export function msgHeaders(
  h: HeaderList | Readonly<Record<string, string>> | undefined,
): MsgHdrs | undefined {
  const list = Array.isArray(h) ? (h as HeaderList) : Object.entries(h ?? {});
  if (list.length === 0) return undefined;
  const out = natsHeaders();
  for (const [k, v] of list) out.set(k, v);
  return out;
}
