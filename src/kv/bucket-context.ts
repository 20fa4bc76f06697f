import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Capabilities } from '../connection/capabilities.js';
import type { KvMetrics } from '../metrics/metrics.js';
import type { RetryCounter, RetryOptions } from '../retry/retry.js';
import type { KvCallOptions } from './types.js';

/** What a bucket needs from its service. */
export interface KvContext {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
  readonly metrics: RetryCounter;
  readonly retry: RetryOptions;
  readonly requestTimeoutMs: number;
  capabilities(): Capabilities;
  /** The bucket was found deleted: drop its cached state and handles. */
  gone(bucket: string): void;
  /** True once the service stopped: calls then fail with `INVALID_STATE`. */
  stopped(): boolean;
  /** The bucket's instruments, or undefined when metrics are off. */
  measure(bucket: string): KvMetrics | undefined;
  /** Sends a request on a live connection, across its loss and return (see ConnectionService). */
  resilient<R>(send: () => Promise<R>): Promise<R>;
}

/** A write's extra options. */
export interface WriteOptions extends KvCallOptions {
  /** Compare-and-set: the key must be at this revision (0: absent). */
  readonly revision?: number | undefined;
  /** `Nats-TTL` value (`<n>ms`). */
  readonly ttl?: string | undefined;
}
