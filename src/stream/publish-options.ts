import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { checkRetryOptions, type RetryOptions } from '../retry/retry.js';

/** Expectations the server checks before storing a message. */
export interface PublishExpectations {
  /** The stream's last sequence must be this. */
  readonly lastSequence?: number;
  /** The last sequence on this subject must be this (0: no message on it yet). */
  readonly lastSubjectSequence?: number;
  /** The stream's last message id must be this. */
  readonly lastMsgId?: string;
  /** The message must land in this stream. */
  readonly streamName?: string;
}

/** Options of `StreamService.publish`. */
export interface PublishOptions {
  /**
   * Deduplication id. When retries are on and none is given, natskit generates one, so that a
   * retry after a lost acknowledgement cannot store the message twice (within the stream's
   * duplicate window).
   */
  readonly msgId?: string;
  readonly expect?: PublishExpectations;
  readonly headers?: Readonly<Record<string, string>>;
  /** Per-attempt timeout. @defaultValue the connection's `requestTimeoutMs` (5000) */
  readonly timeoutMs?: number;
  /** Retry transient failures; `false` for one attempt. @defaultValue RETRY_DEFAULTS */
  readonly retry?: RetryOptions | false;
  readonly signal?: AbortSignal;
}

const PUBLISH_KEYS = knownKeys<PublishOptions>({
  msgId: true,
  expect: true,
  headers: true,
  timeoutMs: true,
  retry: true,
  signal: true,
});
const EXPECT_KEYS = knownKeys<PublishExpectations>({
  lastSequence: true,
  lastSubjectSequence: true,
  lastMsgId: true,
  streamName: true,
});

/**
 * Throws `INVALID_OPTIONS` when the options of a publish, or its `expect` or `retry`, have an
 * unknown field: a misspelt expectation must not publish without the check it was meant to make.
 */
export function checkPublishOptions(options: unknown): void {
  checkOptionsObject('publish options ', options, PUBLISH_KEYS);
  const o = options as PublishOptions | undefined;
  checkOptionsObject('publish options expect', o?.expect, EXPECT_KEYS);
  checkRetryOptions('publish options retry', o?.retry);
}
