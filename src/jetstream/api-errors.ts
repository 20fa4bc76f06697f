import { JetStreamApiError } from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
} from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';

/** The JetStream API error codes natskit branches on (nats-server's `errors.json`). */
export const ApiCode = Object.freeze({
  ConsumerNotFound: 10014,
  JetStreamNotEnabledForAccount: 10039,
  /** "message size exceeds maximum allowed": the stream's `max_msg_size`, headers included. */
  MessageTooLarge: 10054,
  StreamNotFound: 10059,
  WrongLastMsgId: 10070,
  /** "wrong last sequence: N": a compare-and-set expectation did not hold. */
  WrongLastSequence: 10071,
  WrongLastSequenceUnknown: 10164,
  /** The stream does not allow atomic publish. */
  AtomicPublishDisabled: 10174,
  /** A message of the batch is missing (refused, or sent where no stream listens). */
  BatchIncomplete: 10176,
  BatchTooLarge: 10199,
  /** "message schedules pattern is invalid" (ADR-51): a bad `@every` or cron expression. */
  SchedulePatternInvalid: 10189,
  /** "message schedules target is invalid". */
  ScheduleTargetInvalid: 10190,
  /** "message schedules time zone is invalid": a zone the server cannot load. */
  ScheduleTimeZoneInvalid: 10223,
});

/** True when `err` is a JetStream API error with one of `codes`. */
export function isApiError(err: unknown, ...codes: number[]): err is JetStreamApiError {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/** The expectation codes: the key or stream was not at the revision expected. */
export const isConflict = (err: unknown) =>
  isApiError(err, ApiCode.WrongLastSequence, ApiCode.WrongLastSequenceUnknown);

/** No stream or service answered the request. */
export function isNoResponders(err: unknown): boolean {
  return err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders());
}

/** The connection was closed (or is draining) under the call. */
export function isConnectionClosed(err: unknown): boolean {
  return err instanceof ClosedConnectionError || err instanceof DrainingConnectionError;
}

/**
 * A closed connection as a natskit error: `INVALID_STATE` when the service was stopped (a call
 * after `stop()`, or one still running when it stopped), `NATS_UNAVAILABLE` when the connection
 * closed on its own (reconnect attempts exhausted).
 */
export function closedError(what: string, stopped: boolean, cause?: unknown): NatskitError {
  return stopped
    ? new NatskitError('INVALID_STATE', `${what}: the service is stopped`, { cause })
    : new NatskitError('NATS_UNAVAILABLE', `${what}: the NATS connection is closed`, { cause });
}
