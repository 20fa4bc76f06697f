import {
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  jetstream,
  jetstreamManager,
  type PubAck,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { nuid } from '@nats-io/transport-node';
import { inject } from 'inversify';
import type { Logger } from 'pino';
import { ConnectionService } from '../connection/connection-service.js';
import { NatskitAggregateError, NatskitError } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import { ApiCode, closedError, isApiError, isConnectionClosed } from '../jetstream/api-errors.js';
import { checkJetStreamName, configRefusal } from '../jetstream/config-errors.js';
import { msgHeaders } from '../jetstream/headers.js';
import { storedAttempt } from '../jetstream/lost-ack.js';
import { noStreamCheck } from '../jetstream/no-stream.js';
import type { HealthCheckResult, Service } from '../lifecycle/service.js';
import { LOGGER } from '../lifecycle/tokens.js';
import { countingRetries, METRICS, type Metrics, NO_METRICS } from '../metrics/metrics.js';
import { type RetryCounter, withRetry } from '../retry/retry.js';
import { createWorker } from './create-worker.js';
import { checkPublishOptions, type PublishOptions } from './publish-options.js';
import { type EnsureStreamResult, ensureStreamConfig } from './stream-config.js';
import type { Worker, WorkerOptions } from './worker.js';

export type { PublishExpectations, PublishOptions } from './publish-options.js';

/** A stream's health: its state, its consumers' lag, and the last error seen. */
export interface StreamHealth {
  readonly name: string;
  readonly messages: number;
  readonly bytes: number;
  readonly consumers: readonly {
    name: string;
    pending: number;
    ackPending: number;
    redelivered: number;
  }[];
  readonly leader: string | undefined;
  readonly lastError: string | undefined;
}

const EXPECTATION_CODES = [
  ApiCode.WrongLastMsgId,
  ApiCode.WrongLastSequence,
  ApiCode.WrongLastSequenceUnknown,
];

/**
 * JetStream streams as a service: ensure streams exist with the config asked for, publish with
 * deduplication, expectations and retries, and run workers on durable pull consumers.
 */
export class StreamService implements Service {
  readonly #connection: ConnectionService;
  readonly #log: Logger;
  readonly #workers = new Set<Worker<unknown>>();
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #lastError: string | undefined;
  #stopped = false;
  /** Retries of transient errors (also in `natskit_retries_total{component="stream"}`). */
  readonly metrics: RetryCounter & { published: number };
  readonly #measure: Metrics;

  constructor(
    @inject(ConnectionService) connection: ConnectionService,
    @inject(LOGGER) logger: Logger,
    @inject(METRICS) metrics: Metrics = NO_METRICS,
  ) {
    this.#connection = connection;
    this.#log = logger.child({ service: 'stream' });
    this.#measure = metrics;
    this.metrics = Object.assign(countingRetries(metrics, 'stream'), { published: 0 });
  }

  async start(): Promise<void> {
    const nc = this.#connection.nc;
    const timeout = this.#connection.requestTimeoutMs;
    const apiPrefix = this.#connection.jetstreamApiPrefix;
    this.#js = jetstream(nc, { timeout, apiPrefix });
    this.#jsm = await jetstreamManager(nc, { checkAPI: false, timeout, apiPrefix });
  }

  /**
   * The JetStream client.
   * @throws NatskitError `CAPABILITY_MISSING` without JetStream, `INVALID_STATE` before start or
   * after stop.
   */
  get js(): JetStreamClient {
    this.#assertOpen('js');
    this.#connection.requireFeature('jetstream', 'StreamService');
    if (!this.#js) throw new NatskitError('INVALID_STATE', 'StreamService is not started');
    return this.#js;
  }

  /**
   * The JetStream manager.
   * @throws NatskitError `CAPABILITY_MISSING` without JetStream, `INVALID_STATE` before start or
   * after stop.
   */
  get jsm(): JetStreamManager {
    this.#assertOpen('jsm');
    this.#connection.requireFeature('jetstream', 'StreamService');
    if (!this.#jsm) throw new NatskitError('INVALID_STATE', 'StreamService is not started');
    return this.#jsm;
  }

  #assertOpen(what: string): void {
    if (this.#stopped || this.#connection.stopped) {
      throw closedError(`StreamService.${what}`, true);
    }
  }

  /**
   * A client error as a natskit error where one applies: a closed connection, or a JetStream
   * API refusal of the config asked for (`INVALID_OPTIONS`, `STREAM_CONFIG_CONFLICT`,
   * `CONSUMER_CONFIG_CONFLICT` with `details.apiCode`).
   */
  #classify(err: unknown, what: string): unknown {
    if (isConnectionClosed(err)) {
      return closedError(what, this.#stopped || this.#connection.stopped, err);
    }
    return configRefusal(err, what);
  }

  #record(err: unknown): void {
    this.#lastError = describeThrown(err);
  }

  /**
   * Creates the stream when absent. When present, compares the fields asked for with the stored
   * config: compatible differences are applied by an update, incompatible ones (storage,
   * retention, subjects removed, one-way flags turned off...) fail with `STREAM_CONFIG_CONFLICT`
   * listing each. After a create or update the stored config is read back: a field the server
   * silently ignored (older servers do) fails with `CAPABILITY_MISSING`. Safe to call
   * concurrently from several processes.
   *
   * Durations (`max_age`, `duplicate_window`) are nanoseconds, as the server takes them: use
   * `nanos(ms)` from @nats-io/transport-node. A value between 0 and one second is refused as a
   * units mistake (a week in milliseconds is 0.6 s in nanoseconds).
   *
   * @throws NatskitError `INVALID_OPTIONS` (a name with `.`, `*`, `>`, a separator or a space; an
   * unknown field; `retention`, `storage` or `discard` not one of its values, the closest named;
   * a config the server refuses, with `details.apiCode` and the server's text), and
   * `STREAM_CONFIG_CONFLICT` (incompatible with the stored config, or subjects that overlap
   * another stream's: `details.apiCode` 10065). Nothing is sent when a check before the server
   * call fails.
   */
  async ensureStream(
    config: Partial<StreamConfig> & { readonly name: string },
  ): Promise<EnsureStreamResult> {
    const jsm = this.jsm;
    checkJetStreamName('ensureStream config.name', config?.name);
    try {
      return await ensureStreamConfig(jsm, config, {
        info: (name) => this.#info(name),
        serverVersion: () => this.#connection.capabilities.serverVersion,
        log: this.#log,
      });
    } catch (err) {
      this.#record(err);
      throw this.#classify(err, `ensureStream ${config.name}`);
    }
  }

  async #info(name: string): Promise<StreamInfo | undefined> {
    const jsm = this.jsm;
    try {
      return await withRetry(() => this.#connection.resilient(() => jsm.streams.info(name)), {
        what: `stream info ${name}`,
        counter: this.metrics,
      });
    } catch (err) {
      if (isApiError(err, ApiCode.StreamNotFound)) return undefined;
      throw this.#classify(err, `stream info ${name}`);
    }
  }

  /**
   * Publishes to a stream. Transient failures (timeouts, no responders during a leader
   * election, reconnecting) are retried with backoff and jitter; anything else is thrown at once.
   *
   * @throws NatskitError `EXPECTATION_FAILED` (an expectation did not hold), `PUBLISH_FAILED`,
   * `STREAM_NOT_FOUND` (no stream captures the subject: at once, not retried), `INVALID_OPTIONS`
   * (a header the client refuses), `NATS_UNAVAILABLE` (retries exhausted), `ABORTED`.
   */
  async publish(
    subject: string,
    payload: Uint8Array | string,
    options: PublishOptions = {},
  ): Promise<PubAck> {
    const js = this.js;
    checkPublishOptions(options);
    const retry = options.retry === false ? { retries: 0 } : options.retry;
    const msgId = options.msgId ?? (options.retry === false ? undefined : nuid.next());
    const opts: Partial<JetStreamPublishOptions> = {
      timeout: options.timeoutMs ?? this.#connection.requestTimeoutMs,
    };
    if (msgId !== undefined) opts.msgID = msgId;
    if (options.expect) opts.expect = { ...options.expect };
    const headers = msgHeaders(options.headers);
    if (headers) opts.headers = headers;
    const noStream = noStreamCheck(this.jsm, subject);
    let attempts = 0;
    try {
      const ack = await withRetry(
        () => {
          attempts++;
          return this.#connection
            .resilient(() => js.publish(subject, payload, opts), opts.timeout)
            .catch(noStream);
        },
        { what: `publish to ${subject}`, retry, signal: options.signal, counter: this.metrics },
      );
      this.metrics.published++;
      return ack;
    } catch (err) {
      // A retry that fails its expectation may follow a first attempt that was stored.
      if (
        attempts > 1 &&
        msgId !== undefined &&
        options.expect &&
        isApiError(err, ...EXPECTATION_CODES)
      ) {
        const stored = await storedAttempt(this.jsm, subject, msgId, options.expect);
        if (stored) {
          this.metrics.published++;
          return stored;
        }
      }
      this.#record(err);
      if (NatskitError.is(err)) throw err;
      if (isConnectionClosed(err)) throw this.#classify(err, `publish to ${subject}`);
      if (isApiError(err, ...EXPECTATION_CODES)) {
        throw new NatskitError(
          'EXPECTATION_FAILED',
          `publish to ${subject}: ${describeThrown(err)}`,
          { cause: err, details: { subject, apiCode: (err as { code?: number }).code } },
        );
      }
      throw new NatskitError(
        'PUBLISH_FAILED',
        `publish to ${subject} failed: ${describeThrown(err)}`,
        {
          cause: err,
          details: { subject },
        },
      );
    }
  }

  /**
   * Creates a worker on a durable pull consumer (created or updated to the options). Start it
   * with `worker.start()`; it is stopped with this service at the latest.
   */
  async createWorker<T = unknown>(options: WorkerOptions<T>): Promise<Worker<T>> {
    let worker: Worker<T>;
    try {
      worker = await createWorker(
        {
          nc: this.#connection.nc,
          jsm: this.jsm,
          requestTimeoutMs: this.#connection.requestTimeoutMs,
          logger: this.#log,
          onStopped: () => this.#workers.delete(worker as Worker<unknown>),
          metrics: this.#measure,
        },
        options,
      );
    } catch (err) {
      throw this.#classify(err, `createWorker ${options?.stream}/${options?.consumer}`);
    }
    this.#workers.add(worker as Worker<unknown>);
    return worker;
  }

  /** The workers created through this service and not yet stopped. */
  get workers(): readonly Worker<unknown>[] {
    return [...this.#workers];
  }

  /** A stream's state, its consumers' lag, and the last error this service saw. */
  async streamHealth(name: string): Promise<StreamHealth> {
    const info = await this.#info(name);
    if (!info)
      throw new NatskitError('STREAM_NOT_FOUND', `stream ${name} does not exist`, {
        details: { stream: name },
      });
    const consumers: StreamHealth['consumers'][number][] = [];
    for await (const c of this.jsm.consumers.list(name)) {
      consumers.push({
        name: c.name,
        pending: c.num_pending,
        ackPending: c.num_ack_pending,
        redelivered: c.num_redelivered,
      });
    }
    return {
      name,
      messages: info.state.messages,
      bytes: info.state.bytes,
      consumers,
      leader: info.cluster?.leader,
      lastError: this.#lastError,
    };
  }

  /**
   * Stops the workers still running, newest first; every one is stopped even when one fails.
   * @throws NatskitAggregateError `SERVICE_STOP_FAILED` with one error per worker that failed.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    // At once: each stop may wait for its pulls to end (up to fetchExpiresMs), and workers do
    // not depend on one another.
    const settled = await Promise.allSettled([...this.#workers].map(async (w) => w.stop()));
    const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    if (errors.length > 0) {
      throw new NatskitAggregateError(
        'SERVICE_STOP_FAILED',
        `${errors.length} worker(s) failed to stop: ${errors.map(describeThrown).join('; ')}`,
        errors,
        { service: 'StreamService' },
      );
    }
  }

  /**
   * Liveness: `fail` when a running worker's fetch loop has not ticked within its `stuckAfterMs`
   * (an idle worker ticks every fetch period, so idle is live).
   */
  liveness(): HealthCheckResult {
    const running = [...this.#workers].filter((w) => w.running);
    const stuck = running.filter((w) => !w.progress().healthy);
    if (stuck.length > 0) {
      return {
        status: 'fail',
        output: stuck
          .map((w) => `${w.name}: fetch loop silent for ${w.progress().msSinceTick} ms`)
          .join('; '),
      };
    }
    const oldest = Math.max(0, ...running.map((w) => w.progress().msSinceTick));
    return {
      status: 'pass',
      observedValue: oldest,
      observedUnit: 'ms since the oldest fetch-loop tick',
    };
  }

  /** `fail` without JetStream, `warn` when a worker's fetch loop is stuck, else `pass`. */
  health(): HealthCheckResult {
    if (!this.#connection.capabilities.jetstream)
      return { status: 'fail', output: 'JetStream is not enabled' };
    const stuck = [...this.#workers].filter((w) => w.running && !w.progress().healthy);
    if (stuck.length > 0) {
      return {
        status: 'fail',
        output: `worker fetch loop stuck: ${stuck.map((w) => w.name).join(', ')}`,
      };
    }
    const failing = [...this.#workers].filter((w) => w.stats.fetchErrors >= 3);
    if (failing.length > 0) {
      return {
        status: 'warn',
        output: failing
          .map(
            (w) =>
              `${w.name}: ${w.stats.fetchErrors} fetches failed (${w.progress().lastFetchError})`,
          )
          .join('; '),
      };
    }
    return {
      status: 'pass',
      observedValue: this.#workers.size,
      observedUnit: 'workers',
      ...(this.#lastError ? { output: `last error: ${this.#lastError}` } : {}),
    };
  }
}
