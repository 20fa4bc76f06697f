import {
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
  nuid,
} from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import { NotConnectedError, RequestInterruptedError } from '../retry/retry.js';
import { TIMED_OUT, withDeadline } from '../timing/deadline.js';
import { ApiCode } from './api-errors.js';
import { DEFAULT_API_PREFIX, writeSubject } from './domain.js';
import { headerBytes } from './headers.js';
import { inboxOf } from './inbox.js';

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

/** Options of {@link publishAtomicBatch}. */
export interface BatchOptions {
  /** How long the commit reply may take before the outcome is unknown. */
  readonly timeoutMs: number;
  /** The largest message (data plus headers, batch headers included) the stream takes. */
  readonly maxMessageBytes?: number;
  /**
   * Sends the batch on a live connection (waiting for it while it is down), and races the
   * commit reply with the loss and return of the connection: an interrupted commit's outcome is
   * unknown at once, instead of after `timeoutMs`.
   */
  readonly resilient?: <R>(send: () => Promise<R>) => Promise<R>;
  /** The JetStream API prefix: through a domain, KV subjects are sent under it. */
  readonly apiPrefix?: string;
  /** @internal test seam: runs after every message but the commit is published. */
  readonly beforeCommit?: () => Promise<void>;
}

/** Bytes of `name: value\r\n` for ASCII names and values. */
const line = (name: string, value: string) => name.length + value.length + 4;
const ID_LINE = line('Nats-Batch-Id', 'x'.repeat(22)); // a batch id is a 22-character nuid
const COMMIT_LINE = line('Nats-Batch-Commit', '1');

/** The bytes message `i` of `count` takes against the stream's limit: data, its headers, the batch's. */
function messageBytes(m: BatchMessage, i: number, count: number): number {
  let n = m.data.length + 12 + ID_LINE + line('Nats-Batch-Sequence', String(i + 1));
  if (i === count - 1) n += COMMIT_LINE;
  if (m.headers) for (const k in m.headers) n += headerBytes([[k, m.headers[k] as string]]) - 12;
  return n;
}

/**
 * The bytes a message takes against the stream's limit at the worst place in a batch (the
 * commit of a full batch): a message that fits this way fits anywhere in any batch.
 */
export function worstCaseBytes(m: BatchMessage): number {
  return messageBytes(m, MAX_BATCH_MESSAGES - 1, MAX_BATCH_MESSAGES);
}

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
  options: BatchOptions,
): Promise<BatchAck> {
  const { timeoutMs } = options;
  if (messages.length === 0) {
    throw new NatskitError('INVALID_OPTIONS', 'an atomic batch needs at least one message');
  }
  if (messages.length > MAX_BATCH_MESSAGES) {
    throw new NatskitError(
      'TX_TOO_LARGE',
      `an atomic batch carries at most ${MAX_BATCH_MESSAGES} messages, got ${messages.length}`,
      { details: { count: messages.length, max: MAX_BATCH_MESSAGES } },
    );
  }
  const batchId = nuid.next();
  const last = messages.length - 1;
  // A message the stream refuses in the middle of a batch only shows as an incomplete batch, and
  // the client throws on one over max_payload after the first messages went out: check them all.
  const max = options.maxMessageBytes ?? nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
  messages.forEach((m, i) => {
    const bytes = messageBytes(m, i, messages.length);
    if (bytes > max) {
      throw new NatskitError(
        'VALUE_TOO_LARGE',
        `atomic batch: the message to ${m.subject} is ${bytes} bytes with its headers; the limit is ${max}`,
        { details: { subject: m.subject, bytes, limit: max } },
      );
    }
  });
  const header = (m: BatchMessage, i: number) => {
    const h = natsHeaders();
    if (m.headers) for (const k in m.headers) h.set(k, m.headers[k] as string);
    h.set('Nats-Batch-Id', batchId);
    h.set('Nats-Batch-Sequence', String(i + 1));
    if (i === last) h.set('Nats-Batch-Commit', '1');
    return h;
  };
  // The commit reply comes to an inbox of our own, kept open after the timeout: a reply that
  // arrives late still tells the outcome (see `details.lateReply`).
  const inbox = inboxOf(nc);
  const sub = nc.subscribe(inbox, { max: 1 });
  const reply = (async (): Promise<Msg | undefined> => {
    for await (const m of sub) return m;
    return undefined;
  })();
  const to = (m: BatchMessage) => writeSubject(options.apiPrefix ?? DEFAULT_API_PREFIX, m.subject);
  const send = async () => {
    for (let i = 0; i < last; i++) {
      const m = messages[i] as BatchMessage;
      nc.publish(to(m), m.data, { headers: header(m, i) });
    }
    if (options.beforeCommit) {
      await nc.flush();
      await options.beforeCommit();
    }
    const m = messages[last] as BatchMessage;
    nc.publish(to(m), m.data, { headers: header(m, last), reply: inbox });
    return withDeadline(reply, timeoutMs);
  };
  // Sent on a live connection only: the client drops what is published while it is down.
  const first = await (options.resilient ? options.resilient(send) : send()).catch(
    (err: unknown): typeof TIMED_OUT => {
      if (err instanceof RequestInterruptedError) return TIMED_OUT;
      // Any other failure of the send ends the wait for a reply: nothing listens on the inbox.
      sub.unsubscribe();
      if (err instanceof NotConnectedError) {
        throw new NatskitError(
          'NATS_UNAVAILABLE',
          `atomic batch: not sent, the connection was down (${err.message})`,
          { cause: err, details: { outcome: 'not-applied', batchId } },
        );
      }
      throw err;
    },
  );
  if (first === TIMED_OUT) {
    const late = setTimeout(() => sub.unsubscribe(), LATE_REPLY_MS);
    const lateReply = reply.then((r) => {
      clearTimeout(late);
      return r === undefined ? undefined : () => interpretReply(r, batchId, messages.length);
    });
    throw new NatskitError(
      'NATS_UNAVAILABLE',
      `atomic batch: the commit reply did not come (the connection was lost, or ${timeoutMs} ms passed): the outcome is unknown`,
      { details: { outcome: 'unknown', batchId, lateReply } },
    );
  }
  if (first === undefined) {
    throw new NatskitError(
      'NATS_UNAVAILABLE',
      'atomic batch: the connection closed before the commit reply',
      {
        details: { outcome: 'unknown', batchId, lateReply: Promise.resolve(undefined) },
      },
    );
  }
  return interpretReply(first, batchId, messages.length);
}

/** How long an unanswered commit keeps listening for a late reply: past the server's 10 s batch abandon. */
export const LATE_REPLY_MS = 15_000;

/** Turns the server's commit reply into an ack, or throws the typed error it means. */
export function interpretReply(msg: Msg, batchId: string, count: number): BatchAck {
  if (msg.headers?.code === 503 || (msg.data.length === 0 && msg.headers?.hasError)) {
    throw new NatskitError(
      'NATS_UNAVAILABLE',
      'atomic batch: no stream answered the commit (nothing was stored)',
      {
        details: { outcome: 'not-applied', batchId },
      },
    );
  }
  const reply = msg.json<CommitReply>();
  if (reply.error) {
    const apiCode = reply.error.err_code ?? 0;
    const details = { apiCode, description: reply.error.description, batchId };
    if (apiCode === ApiCode.WrongLastSequence || apiCode === ApiCode.WrongLastSequenceUnknown) {
      throw new NatskitError(
        'KV_REVISION_CONFLICT',
        `atomic batch rejected: ${reply.error.description}`,
        { details },
      );
    }
    if (apiCode === ApiCode.AtomicPublishDisabled) {
      throw new NatskitError(
        'CAPABILITY_MISSING',
        `the stream does not allow atomic publish (${reply.error.description})`,
        {
          details: { ...details, feature: 'atomicBatch' },
        },
      );
    }
    if (apiCode === ApiCode.MessageTooLarge) {
      throw new NatskitError('VALUE_TOO_LARGE', `atomic batch: ${reply.error.description}`, {
        details,
      });
    }
    if (apiCode === ApiCode.BatchTooLarge) {
      throw new NatskitError('TX_TOO_LARGE', `atomic batch too large: ${reply.error.description}`, {
        details,
      });
    }
    throw new NatskitError('PUBLISH_FAILED', `atomic batch rejected: ${reply.error.description}`, {
      details,
    });
  }
  if (reply.batch !== batchId || reply.count !== count || typeof reply.seq !== 'number') {
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
