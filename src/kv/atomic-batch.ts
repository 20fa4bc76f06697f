import {
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  nuid,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';

/** One message of an atomic batch. */
export interface BatchMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

/** The server's acknowledgement of a committed batch. */
export interface BatchAck {
  readonly stream: string;
  /** Sequence of the first message; message i got `firstSeq + i`. */
  readonly firstSeq: number;
  /** Sequence of the last message. */
  readonly seq: number;
  readonly count: number;
}

/** The most messages one atomic batch may carry (ADR-50). */
export const MAX_BATCH_MESSAGES = 1_000;

interface CommitReply {
  stream?: string;
  seq?: number;
  batch?: string;
  count?: number;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * Publishes messages as one JetStream atomic batch (server >= 2.12, stream with `allow_atomic`):
 * all stored or none. Per-message headers (expectations, TTL, rollup) are kept as given; only the
 * commit waits for a reply. Written by hand because the client's `startBatch` drops expectations
 * and loses the server's error code.
 *
 * @throws NatskitError `KV_REVISION_CONFLICT` (an expectation failed; nothing stored),
 * `CAPABILITY_MISSING` (the stream refuses atomic publish, or the reply is not a batch reply: an
 * old server that stored the messages one by one), `TX_TOO_LARGE`, `PUBLISH_FAILED` (another
 * server error; nothing stored), `NATS_UNAVAILABLE` with `details.outcome` `'not-applied'` (no
 * responders: certainly nothing stored) or `'unknown'` (the commit reply timed out).
 */
export async function publishAtomicBatch(
  nc: NatsConnection,
  messages: readonly BatchMessage[],
  timeoutMs: number,
): Promise<BatchAck> {
  if (messages.length === 0)
    throw new NatskitError('INVALID_OPTIONS', 'an atomic batch needs at least one message');
  if (messages.length > MAX_BATCH_MESSAGES) {
    throw new NatskitError(
      'TX_TOO_LARGE',
      `an atomic batch carries at most ${MAX_BATCH_MESSAGES} messages, got ${messages.length}`,
      {
        details: { count: messages.length, max: MAX_BATCH_MESSAGES },
      },
    );
  }
  const batchId = nuid.next();
  const last = messages.length - 1;
  let reply: CommitReply;
  try {
    let commit: Promise<CommitReply> | undefined;
    messages.forEach((m, i) => {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(m.headers ?? {})) h.set(k, v);
      h.set('Nats-Batch-Id', batchId);
      h.set('Nats-Batch-Sequence', String(i + 1));
      if (i === last) {
        h.set('Nats-Batch-Commit', '1');
        commit = nc
          .request(m.subject, m.data, { headers: h, timeout: timeoutMs })
          .then((r) => r.json<CommitReply>());
      } else {
        nc.publish(m.subject, m.data, { headers: h });
      }
    });
    reply = await (commit as Promise<CommitReply>);
  } catch (err) {
    const noResponders =
      err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders());
    const timedOut =
      err instanceof TimeoutError ||
      (err instanceof RequestError && err.cause instanceof TimeoutError);
    if (noResponders || timedOut) {
      throw new NatskitError(
        'NATS_UNAVAILABLE',
        noResponders
          ? 'atomic batch: no stream answered the commit (nothing was stored)'
          : `atomic batch: the commit reply did not come within ${timeoutMs} ms (the outcome is unknown)`,
        { cause: err, details: { outcome: noResponders ? 'not-applied' : 'unknown', batchId } },
      );
    }
    throw err;
  }
  if (reply.error) {
    const apiCode = reply.error.err_code ?? 0;
    const details = { apiCode, description: reply.error.description, batchId };
    if (apiCode === 10071 || apiCode === 10164) {
      throw new NatskitError(
        'KV_REVISION_CONFLICT',
        `atomic batch rejected: ${reply.error.description}`,
        { details },
      );
    }
    if (apiCode === 10174) {
      throw new NatskitError(
        'CAPABILITY_MISSING',
        `the stream does not allow atomic publish (${reply.error.description})`,
        {
          details: { ...details, feature: 'atomicBatch' },
        },
      );
    }
    if (apiCode === 10199)
      throw new NatskitError('TX_TOO_LARGE', `atomic batch too large: ${reply.error.description}`, {
        details,
      });
    throw new NatskitError('PUBLISH_FAILED', `atomic batch rejected: ${reply.error.description}`, {
      details,
    });
  }
  if (reply.batch !== batchId || reply.count !== messages.length || typeof reply.seq !== 'number') {
    // An old server ignores the batch headers and stores each message alone: never pass that off as atomic.
    throw new NatskitError(
      'CAPABILITY_MISSING',
      'the server did not acknowledge an atomic batch: it does not support atomic publish and may have stored the messages one by one',
      { details: { feature: 'atomicBatch', reply } },
    );
  }
  return {
    stream: reply.stream ?? '',
    seq: reply.seq,
    count: reply.count,
    firstSeq: reply.seq - reply.count + 1,
  };
}
