import type { JetStreamManager } from '@nats-io/jetstream';
import { NatskitError } from '../errors/natskit-error.js';
import { TIMED_OUT, withDeadline } from '../timing/deadline.js';
import { isNoResponders } from './api-errors.js';

/**
 * How long the stream lookup may take. A JetStream API that answers at all does so in
 * milliseconds; one that does not (a meta leader election) must not add a whole request timeout
 * to a publish that is about to be retried anyway.
 */
const ASK_TIMEOUT_MS = 1_000;

/**
 * A JetStream publish nobody answered. The client reports it as `JetStreamNotEnabled` ("jetstream
 * is not enabled", whatever the reason) with the no-responders `RequestError` as its cause; that
 * class is not in the package's public exports, so the cause is what is checked.
 */
export function isPublishNoResponders(err: unknown): boolean {
  return isNoResponders(err) || (err instanceof Error && isNoResponders(err.cause));
}

/**
 * Tells a publish to a subject no stream captures (permanent) from one whose stream is not
 * listening right now (transient: a stream leader election, its server restarting, interest not
 * yet passed on across a cluster after the stream was made). Both are "no responders" on the
 * publish. On the first one, `$JS.API.STREAM.NAMES` is asked once with the subject as filter
 * (answered by the meta leader from its assignments, so a stream whose servers are down is still
 * listed): no stream -> `STREAM_NOT_FOUND`, thrown at once; a stream, or no answer within
 * 1 s (JetStream itself unavailable) -> the original error, retried as transient.
 *
 * Returns the handler for a failed attempt of one publish; it always throws.
 */
export function noStreamCheck(
  jsm: JetStreamManager,
  subject: string,
): (err: unknown) => Promise<never> {
  let asked = false;
  return async (err) => {
    if (asked || !isPublishNoResponders(err)) throw err;
    asked = true;
    const asking = jsm.streams.names(subject).next();
    asking.catch(() => undefined); // it may settle after the deadline, unheard
    let names: string[] | typeof TIMED_OUT;
    try {
      names = await withDeadline(asking, ASK_TIMEOUT_MS);
    } catch {
      throw err; // not known: leave it to the retries
    }
    if (names === TIMED_OUT || names.length > 0) throw err;
    throw new NatskitError(
      'STREAM_NOT_FOUND',
      `publish to ${subject}: no stream captures the subject (JetStream answered; add the subject to a stream)`,
      { cause: err, details: { subject } },
    );
  };
}
