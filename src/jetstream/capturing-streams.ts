import type { JetStreamManager } from '@nats-io/jetstream';
import { TIMED_OUT, withDeadline } from '../timing/deadline.js';

/**
 * How long the lookup may take: a JetStream API that answers at all does so in milliseconds
 * (the same cap as the no-stream check of a publish).
 */
const ASK_TIMEOUT_MS = 1_000;

/**
 * The streams whose subjects overlap `subject` (`$JS.API.STREAM.NAMES` with the subject as
 * filter, answered by the meta leader), or `undefined` when JetStream gave no answer within 1 s
 * or refused the request: not known, so the caller must not conclude "none".
 */
export async function capturingStreams(
  jsm: JetStreamManager,
  subject: string,
): Promise<readonly string[] | undefined> {
  const asking = jsm.streams.names(subject).next();
  asking.catch(() => undefined); // it may settle after the deadline, unheard
  try {
    const names = await withDeadline(asking, ASK_TIMEOUT_MS);
    return names === TIMED_OUT ? undefined : names;
  } catch {
    return undefined;
  }
}
