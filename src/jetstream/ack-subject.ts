/** What the reply subject of a JetStream delivery tells about the message. */
export interface AckInfo {
  /** Stream sequence. */
  readonly seq: number;
  /** Delivery sequence of the consumer. */
  readonly dseq: number;
  /** Stored time, in nanoseconds since the epoch (as a float: milliseconds are exact). */
  readonly ts: number;
  /** Messages the consumer still holds after this one. */
  readonly pending: number;
}

/**
 * Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` (nats-server 2.9)
 * and the newer form with domain and account hash after `ACK` and a random token at the end.
 * Returns undefined for anything else.
 */
export function parseAckSubject(reply: string): AckInfo | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  if (t.length === 9) t.splice(2, 0, '_', '');
  if (t.length < 11) return undefined;
  const info = { seq: Number(t[7]), dseq: Number(t[8]), ts: Number(t[9]), pending: Number(t[10]) };
  // The timestamp is in nanoseconds, beyond the safe integers: only finite is asked of it.
  const counters = [info.seq, info.dseq, info.pending].every(Number.isSafeInteger);
  return counters && Number.isFinite(info.ts) ? info : undefined;
}
