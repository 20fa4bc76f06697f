import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, nuid } from '@nats-io/transport-node';

/** Options of a short-lived, read-only consumer. */
interface ReadConsumerOptions {
  readonly filterSubject: string;
  readonly deliver: DeliverPolicy;
  readonly startSeq?: number | undefined;
  readonly headersOnly: boolean;
  /** The server deletes it after this long unused, should the client die first. */
  readonly inactiveMs: number;
}

/**
 * Creates a short-lived consumer that only reads (no acks, memory, one replica) and returns its
 * name and how many messages it will deliver: `num_pending` at creation is exact.
 */
export async function addReadConsumer(
  jsm: JetStreamManager,
  stream: string,
  o: ReadConsumerOptions,
): Promise<{ name: string; count: number }> {
  const name = `natskit_read_${nuid.next()}`;
  const info = await jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: o.deliver,
    ...(o.startSeq === undefined ? {} : { opt_start_seq: o.startSeq }),
    filter_subject: o.filterSubject,
    headers_only: o.headersOnly,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(o.inactiveMs),
  });
  return { name, count: info.num_pending };
}

/**
 * Reads every message a fresh consumer would deliver (the last per subject, or all) and stops
 * when it has them all. The consumer is ephemeral (deleted after, and by the server 30 s after
 * a crash); its `num_pending` at creation tells exactly how many to expect, so an empty match
 * ends at once.
 */
export async function* scan(
  jsm: JetStreamManager,
  js: JetStreamClient,
  stream: string,
  filterSubject: string,
  options: { lastPerSubject: boolean; headersOnly: boolean },
): AsyncGenerator<JsMsg> {
  const { name, count } = await addReadConsumer(jsm, stream, {
    filterSubject,
    deliver: options.lastPerSubject ? DeliverPolicy.LastPerSubject : DeliverPolicy.All,
    headersOnly: options.headersOnly,
    inactiveMs: 30_000,
  });
  try {
    let left = count;
    if (left === 0) return;
    const consumer = await js.consumers.get(stream, name);
    while (left > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(left, 1_000), expires: 5_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        left--;
        yield m;
      }
      if (got === 0) break; // the messages went away (limits, TTL) while we read
    }
  } finally {
    await jsm.consumers.delete(stream, name).catch(() => undefined);
  }
}
