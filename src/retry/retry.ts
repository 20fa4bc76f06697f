import { setTimeout as sleep } from 'node:timers/promises';
import { JetStreamApiError } from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  ConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import pRetry from 'p-retry';
import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';

/**
 * A request was in flight when the connection was lost, and the connection is back: its reply
 * will never come (the server that had it is gone), so it is retried at once instead of waiting
 * for its timeout. Transient by definition.
 */
export class RequestInterruptedError extends Error {
  constructor() {
    super('the connection was lost while the request was in flight');
    this.name = 'RequestInterruptedError';
  }
}

/**
 * A request was not sent: the connection was down, and did not come back within the wait (the
 * request timeout). Nothing reached the server, so another attempt is always safe. Transient.
 */
export class NotConnectedError extends Error {
  constructor(waitedMs: number) {
    super(`the connection was down for ${waitedMs} ms; the request was not sent`);
    this.name = 'NotConnectedError';
  }
}

/** Backoff for retries of transient NATS errors: exponential with jitter. */
export interface RetryOptions {
  /** Retries after the first attempt; 0 disables retrying. @defaultValue 5 */
  readonly retries?: number;
  /** Delay before the first retry. @defaultValue 100 */
  readonly minDelayMs?: number;
  /** Longest delay between two attempts. @defaultValue 2000 */
  readonly maxDelayMs?: number;
  /** Growth of the delay per retry. @defaultValue 2 */
  readonly factor?: number;
}

const RETRY_KEYS = knownKeys<RetryOptions>({
  retries: true,
  minDelayMs: true,
  maxDelayMs: true,
  factor: true,
});

/** Throws `INVALID_OPTIONS` unless `retry` is absent, `false` or retry options with known fields. */
export function checkRetryOptions(where: string, retry: unknown): void {
  if (retry !== false) checkOptionsObject(where, retry, RETRY_KEYS);
}

/** The defaults of {@link RetryOptions}. */
export const RETRY_DEFAULTS = Object.freeze({
  retries: 5,
  minDelayMs: 100,
  maxDelayMs: 2_000,
  factor: 2,
});

/** Counts retries, for metrics. */
export interface RetryCounter {
  retries: number;
}

/**
 * True for errors that another attempt may cure: a request timeout, no responders (a stream
 * leader election, or a server restarting), a JetStream 503, a connection that is reconnecting,
 * a request whose connection was lost and came back while it was in flight, a request not sent
 * because the connection stayed down.
 * Never for conflicts, validation, permissions, not-found or a closed connection.
 */
export function isTransient(err: unknown): boolean {
  // A natskit error is a final classification (KV_BUCKET_NOT_FOUND caused by "no responders"...).
  if (NatskitError.is(err)) return false;
  if (err instanceof RequestInterruptedError || err instanceof NotConnectedError) return true;
  if (err instanceof TimeoutError || err instanceof NoRespondersError) return true;
  if (err instanceof RequestError) return err.isNoResponders() || err.cause instanceof TimeoutError;
  if (err instanceof JetStreamApiError) return err.status === 503;
  if (err instanceof ClosedConnectionError) return false;
  if (err instanceof ConnectionError) return true;
  if (err instanceof Error && err.cause !== undefined && err.cause !== err)
    return isTransient(err.cause);
  return false;
}

/** How {@link withRetry} runs. */
export interface WithRetryOptions {
  /** What is being done, for the error message (`publish to jobs.x`). */
  readonly what: string;
  /** The backoff; `{ retries: 0 }` for one attempt. @defaultValue RETRY_DEFAULTS */
  readonly retry?: RetryOptions | undefined;
  /** Aborting it ends the retries with `ABORTED`. */
  readonly signal?: AbortSignal | undefined;
  /** Counts the retries, for metrics. */
  readonly counter?: RetryCounter | undefined;
  /** Which failures another attempt may cure. @defaultValue isTransient */
  readonly isRetryable?: ((err: unknown) => boolean) | undefined;
}

/**
 * Runs `fn`, retrying transient errors with exponential backoff and jitter. A non-transient
 * error is rethrown at once, unchanged; transient errors that outlast every retry become
 * `NATS_UNAVAILABLE` with the last one as cause. An aborted signal gives `ABORTED`.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  { what, retry: options, signal, counter, isRetryable = isTransient }: WithRetryOptions,
): Promise<T> {
  let attempts = 1;
  let o: Required<RetryOptions>;
  try {
    signal?.throwIfAborted();
    // The first attempt runs bare: p-retry's setup (and the options) is only paid once something
    // failed.
    try {
      return await fn(1);
    } catch (err) {
      if (!isRetryable(err)) throw err;
      o = { ...RETRY_DEFAULTS, ...options };
      if (o.retries <= 0) throw err;
      if (counter) counter.retries++;
      // The connection is back: nothing to wait for.
      if (!(err instanceof RequestInterruptedError)) {
        await sleep(o.minDelayMs * (1 + Math.random()), undefined, signal ? { signal } : {});
      }
    }
    return await pRetry(
      (attempt) => {
        attempts = attempt + 1;
        return fn(attempts);
      },
      {
        retries: o.retries - 1,
        minTimeout: o.minDelayMs,
        maxTimeout: o.maxDelayMs,
        factor: o.factor,
        randomize: true,
        ...(signal ? { signal } : {}),
        shouldRetry: ({ error }) => isRetryable(error),
        onFailedAttempt: ({ error, retriesLeft }) => {
          if (counter && retriesLeft > 0 && isRetryable(error)) counter.retries++;
        },
      },
    );
  } catch (err) {
    if (signal?.aborted) {
      throw new NatskitError('ABORTED', `${what} was aborted`, { cause: signal.reason });
    }
    if (isRetryable(err)) {
      throw new NatskitError(
        'NATS_UNAVAILABLE',
        `${what} failed after ${attempts} attempt(s): ${describeThrown(err)}`,
        {
          cause: err,
          details: { attempts },
        },
      );
    }
    throw err;
  }
}
