import type { DeliveryInfo } from '@nats-io/jetstream';

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
  /** How many times this message has been delivered, this time included. */
  readonly delivered: number;
  readonly stream: string;
  readonly consumer: string;
  /** The JetStream domain, or '' for none. */
  readonly domain: string;
  /** The account hash, when the server sends it. */
  readonly accountHash: string | undefined;
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
  const n = (i: number) => Number(t[i]);
  const info: AckInfo = {
    domain: t[2] === '_' ? '' : (t[2] ?? ''),
    accountHash: t[3] ? t[3] : undefined,
    stream: t[4] ?? '',
    consumer: t[5] ?? '',
    delivered: n(6),
    seq: n(7),
    dseq: n(8),
    ts: n(9),
    pending: n(10),
  };
  // The timestamp is in nanoseconds, beyond the safe integers: only finite is asked of it.
  const counters = [info.delivered, info.seq, info.dseq, info.pending].every(Number.isSafeInteger);
  return counters && Number.isFinite(info.ts) ? info : undefined;
}

/** The client's delivery info, from a parsed ack subject. */
export function toDeliveryInfo(a: AckInfo): DeliveryInfo {
  return {
    domain: a.domain,
    ...(a.accountHash === undefined ? {} : { account_hash: a.accountHash }),
    stream: a.stream,
    consumer: a.consumer,
    deliveryCount: a.delivered,
    streamSequence: a.seq,
    deliverySequence: a.dseq,
    timestampNanos: a.ts,
    pending: a.pending,
    redelivered: a.delivered > 1,
  };
}
