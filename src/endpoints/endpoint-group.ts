import { performance } from 'node:perf_hooks';
import { type Msg, type NatsConnection, nuid, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { positiveInt } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { HealthCheckResult, Service } from '../lifecycle/service.js';
import { type EndpointMetrics, type Metrics, NO_METRICS } from '../metrics/metrics.js';
import { validate } from '../schema/standard-schema.js';
import { withDeadline } from '../timing/deadline.js';
import {
  checkEndpoints,
  controlSubjects,
  DEFAULT_QUEUE,
  type Identity,
  infoResponse,
  pingResponse,
  respondError,
  statsResponse,
  statusOf,
  VERBS,
} from './protocol.js';
import type {
  AnyEndpoint,
  EndpointGroupHandle,
  EndpointServiceOptions,
  EndpointStats,
} from './types.js';

/** One endpoint while it runs: its subscription, its slots and queue, its counters. */
interface Running {
  readonly name: string;
  readonly subject: string;
  readonly queue: string;
  readonly def: AnyEndpoint;
  readonly concurrency: number;
  readonly maxPending: number;
  readonly pending: Msg[];
  /** Requests being handled, and whether each was answered already. */
  readonly running: Map<Msg, { answered: boolean }>;
  sub: Subscription | undefined;
  active: number;
  requests: number;
  errors: number;
  /** Nanoseconds spent handling. */
  timeNs: number;
  lastError: string | undefined;
  /** Its instruments; undefined when metrics are off. */
  readonly metrics: EndpointMetrics | undefined;
}

const decoder = new TextDecoder();

/**
 * The streams that capture a subject, or `undefined` when JetStream did not say (no answer in
 * time): the start then goes on, as it cannot tell.
 */
export type StreamsOf = (subject: string) => Promise<readonly string[] | undefined>;

/**
 * The endpoints of one service instance on the NATS service protocol. Started after the services
 * it injects and stopped before them; on stop it takes no new request (its subscriptions are
 * drained, so what the server already sent is still handled), lets the accepted ones finish
 * until `drainTimeoutMs`, then aborts their signals and answers those still waiting with 503.
 */
export class EndpointGroup implements Service, EndpointGroupHandle {
  readonly name: string;
  readonly version: string;
  #id = '';
  #started = '';
  readonly #nc: () => NatsConnection;
  readonly #log: Logger;
  readonly #o: EndpointServiceOptions<readonly never[]>;
  readonly #services: readonly unknown[];
  readonly #metrics: Metrics;
  readonly #streamsOf: StreamsOf;
  readonly #abort = new AbortController();
  #endpoints: Running[] = [];
  #control: Subscription[] = [];
  #stopping = false;
  #idle: () => void = () => undefined;

  constructor(
    nc: () => NatsConnection,
    logger: Logger,
    options: EndpointServiceOptions<readonly never[]>,
    services: readonly unknown[],
    metrics: Metrics = NO_METRICS,
    streamsOf: StreamsOf = async () => [],
  ) {
    this.#nc = nc;
    this.#streamsOf = streamsOf;
    this.#metrics = metrics;
    this.#o = options;
    this.#services = services;
    this.name = options.name;
    this.version = options.version;
    this.#log = logger.child({ service: `endpoints:${options.name}` });
  }

  get id(): string {
    return this.#id;
  }

  get inFlight(): number {
    return this.#endpoints.reduce((n, e) => n + e.active + e.pending.length, 0);
  }

  #identity(): Identity {
    return {
      name: this.name,
      id: this.#id,
      version: this.version,
      metadata: this.#o.metadata ?? {},
    };
  }

  stats(): readonly EndpointStats[] {
    return this.#endpoints.map((e) => ({
      name: e.name,
      subject: e.subject,
      queue_group: e.queue,
      num_requests: e.requests,
      num_errors: e.errors,
      processing_time: e.timeNs,
      average_processing_time: e.requests > 0 ? Math.round(e.timeNs / e.requests) : 0,
      ...(e.lastError === undefined ? {} : { last_error: e.lastError }),
    }));
  }

  async start(): Promise<void> {
    const nc = this.#nc();
    this.#id = nuid.next();
    this.#started = new Date().toISOString();
    const defs = (this.#o.endpoints as (...s: readonly unknown[]) => Record<string, AnyEndpoint>)(
      ...this.#services,
    );
    checkEndpoints(defs);
    this.#endpoints = Object.entries(defs).map(([name, def]) => ({
      name,
      subject: def.subject ?? `${this.name}.${name}`,
      queue: def.queue ?? this.#o.queue ?? DEFAULT_QUEUE,
      def,
      concurrency: positiveInt(`endpoints ${name} concurrency`, def.concurrency, 64),
      maxPending:
        def.maxPending === 0
          ? 0
          : positiveInt(`endpoints ${name} maxPending`, def.maxPending, 1_000),
      pending: [],
      running: new Map(),
      sub: undefined,
      active: 0,
      requests: 0,
      errors: 0,
      timeNs: 0,
      lastError: undefined,
      metrics: this.#metrics.enabled ? this.#metrics.endpoint(this.name, name) : undefined,
    }));
    await this.#checkNoStreamCaptures();
    for (const e of this.#endpoints) {
      e.sub = nc.subscribe(e.subject, {
        queue: e.queue,
        callback: (err, msg) => {
          if (err) this.#log.error({ err, endpoint: e.name }, 'endpoint subscription failed');
          else this.#accept(e, msg);
        },
      });
    }
    const answers = {
      PING: () => pingResponse(this.#identity()),
      INFO: () =>
        infoResponse(
          this.#identity(),
          this.#o.description ?? '',
          this.#endpoints.map((e) => ({
            name: e.name,
            subject: e.subject,
            queue_group: e.queue,
            metadata: e.def.metadata ?? {},
          })),
        ),
      STATS: () => statsResponse(this.#identity(), this.#started, this.stats()),
    };
    for (const verb of VERBS) {
      for (const subject of controlSubjects(verb, this.name, this.#id)) {
        this.#control.push(
          nc.subscribe(subject, {
            callback: (err, msg) => {
              if (!err) msg.respond(JSON.stringify(answers[verb]()));
            },
          }),
        );
      }
    }
    // Started means listening: the server has the subscriptions before start resolves, so a
    // request sent by anyone once the app is up finds this instance (on other nodes of a
    // cluster, once the server has passed the interest on: a few milliseconds).
    await nc.flush();
    this.#log.info(
      { id: this.#id, endpoints: this.#endpoints.map((e) => e.subject) },
      'endpoints listening',
    );
  }

  /**
   * A stream whose subjects take in an endpoint's subject stores every request and answers it
   * with a publish ack, which reaches the caller before the handler's reply: every call would
   * "succeed" with `{ stream, seq }`. Asked once per endpoint subject before anything listens
   * (not the `$SRV` control subjects: a stream over those would be no accident of the endpoint).
   */
  async #checkNoStreamCaptures(): Promise<void> {
    const asked = await Promise.all(
      this.#endpoints.map(async (e) => ({ e, streams: await this.#streamsOf(e.subject) })),
    );
    for (const { e, streams } of asked) {
      if (streams === undefined) {
        this.#log.warn(
          { endpoint: e.name, subject: e.subject },
          'JetStream did not say within 1 s whether a stream captures the endpoint subject; not checked',
        );
        continue;
      }
      if (streams.length === 0) continue;
      throw new NatskitError(
        'INVALID_OPTIONS',
        `endpoints ${this.name}: endpoint ${e.name} listens on ${e.subject}, which stream ${streams.join(', ')} captures: ` +
          'the stream would store each request and answer it with a publish ack before the handler replies. ' +
          "Move the endpoint's subject out of the stream's subjects",
        {
          details: {
            field: `endpoints.${e.name}.subject`,
            endpoint: e.name,
            subject: e.subject,
            streams,
          },
        },
      );
    }
  }

  /** A request delivered to this instance: run it, queue it, or say 503 when full. */
  #accept(e: Running, msg: Msg): void {
    if (e.active < e.concurrency) {
      this.#spawn(e, msg);
    } else if (e.pending.length < e.maxPending) {
      e.pending.push(msg);
    } else {
      e.requests++;
      this.#fail(e, msg, 503, 'busy: too many requests waiting; try again');
    }
  }

  /** Runs a request nobody awaits: what escapes (a reply the closed connection refused) is logged. */
  #spawn(e: Running, msg: Msg): void {
    this.#run(e, msg).catch((err: unknown) => {
      this.#log.error({ err, endpoint: e.name }, 'endpoint request could not be answered');
    });
  }

  async #run(e: Running, msg: Msg): Promise<void> {
    e.active++;
    const state = { answered: false };
    e.running.set(msg, state);
    const t0 = performance.now();
    try {
      let data: unknown;
      try {
        data = msg.data.length === 0 ? undefined : JSON.parse(decoder.decode(msg.data));
      } catch {
        this.#fail(e, msg, 400, 'the request is not valid JSON', undefined, t0);
        return;
      }
      if (e.def.schema) {
        try {
          data = await validate(e.def.schema, data, { label: `request to ${e.subject}` });
        } catch (err) {
          // A schema that throws (rather than returning issues) is a bug of the service: 500.
          if (!NatskitError.is(err, 'VALIDATION_FAILED')) throw err;
          this.#fail(e, msg, 400, err.message, { issues: err.details?.issues }, t0);
          return;
        }
      }
      const result = await e.def.handler({
        data,
        subject: msg.subject,
        headers: msg.headers,
        signal: this.#abort.signal,
      });
      if (state.answered) return; // answered at the drain deadline
      msg.respond(result === undefined ? undefined : JSON.stringify(result));
      e.metrics?.request(200, (performance.now() - t0) / 1000);
    } catch (err) {
      if (state.answered) return;
      const { status, description } = statusOf(err);
      if (status >= 500) this.#log.error({ err, endpoint: e.name }, 'endpoint handler failed');
      // Only a natskit error's details are ours to read: a handler may reject with anything
      // (null, undefined, an object whose getters throw), and a throw here would be an
      // unhandled rejection and the request left unanswered.
      const body = NatskitError.is(err) ? err.details?.body : undefined;
      this.#fail(e, msg, status, description, body, t0);
    } finally {
      e.requests++;
      e.timeNs += Math.round((performance.now() - t0) * 1e6);
      e.active--;
      e.running.delete(msg);
      const next = e.pending.shift();
      if (next) this.#spawn(e, next);
      else if (this.inFlight === 0) this.#idle();
    }
  }

  /** Answers with a service error; `t0` is when handling began (none: refused unhandled). */
  #fail(
    e: Running,
    msg: Msg,
    status: number,
    description: string,
    body?: unknown,
    t0?: number,
  ): void {
    e.metrics?.request(status, t0 === undefined ? 0 : (performance.now() - t0) / 1000);
    e.errors++;
    e.lastError = description;
    respondError(msg, status, description, body);
  }

  /** Takes no new request, lets the accepted ones finish (until the drain deadline), then leaves. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    // Draining answers the server's UNSUB; what it sent before still reaches #accept.
    await Promise.all(this.#endpoints.map((e) => e.sub?.drain().catch(() => undefined)));
    if (this.inFlight > 0) {
      const idle = new Promise<void>((resolve) => {
        this.#idle = resolve;
      });
      await withDeadline(idle, this.#o.drainTimeoutMs ?? 10_000);
    }
    this.#abort.abort();
    let refused = 0;
    let cut = 0;
    for (const e of this.#endpoints) {
      // Never run: 503, which the client helper retries elsewhere.
      for (const msg of e.pending.splice(0)) {
        refused++;
        this.#fail(e, msg, 503, 'stopping: try again');
      }
      // Running past the deadline: it may have done its work, so not 503 (no blind retry).
      for (const [msg, state] of e.running) {
        if (state.answered) continue;
        state.answered = true;
        cut++;
        this.#fail(e, msg, 500, 'the service stopped before this request finished');
      }
    }
    for (const sub of this.#control) sub.unsubscribe();
    await this.#nc()
      .flush()
      .catch(() => undefined);
    this.#log.info({ id: this.#id, refused, cut }, 'endpoints stopped');
  }

  /** `warn` while an endpoint's queue is over half full. */
  health(): HealthCheckResult {
    const crowded = this.#endpoints.filter((e) => e.pending.length > e.maxPending / 2);
    return crowded.length > 0
      ? {
          status: 'warn',
          output: `requests waiting: ${crowded.map((e) => `${e.name} ${e.pending.length}`).join(', ')}`,
        }
      : { status: 'pass', observedValue: this.inFlight, observedUnit: 'requests in flight' };
  }
}
