import { Counter, Gauge, Registry } from 'prom-client';
import { checkKnownKeys, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { thrownProperty } from '../errors/thrown.js';
import { LeanHistogram } from './histogram.js';
import { registerProcessMetrics } from './process-metrics.js';

/** Options of `ServiceManager.start({ metrics })`. */
export interface MetricsOptions {
  /** Node's own process metrics too (CPU, memory, event loop lag...). @defaultValue true */
  readonly processMetrics?: boolean;
  /** Labels added to every metric (`{ app: 'billing' }`). Keep them few and fixed. */
  readonly defaultLabels?: Readonly<Record<string, string>>;
}

const METRICS_OPTION_KEYS = knownKeys<MetricsOptions>({
  processMetrics: true,
  defaultLabels: true,
});

/** The label names natskit's own metrics use: a default label cannot take one of them. */
const OWN_LABELS = [
  'bucket',
  'op',
  'outcome',
  'stream',
  'consumer',
  'service',
  'endpoint',
  'status',
  'component',
];

/** Throws `INVALID_OPTIONS` unless `options` is `true`, `false`, undefined or valid MetricsOptions. */
export function checkMetricsOptions(options: unknown): void {
  if (options === undefined || typeof options === 'boolean') return;
  const bad = (field: string, why: string) =>
    new NatskitError('INVALID_OPTIONS', `options.metrics${field} ${why}`, {
      details: { field: `metrics${field}` },
    });
  if (typeof options !== 'object' || options === null)
    throw bad('', `must be a boolean or an object, got ${describeValue(options)}`);
  checkKnownKeys('options.metrics', options, METRICS_OPTION_KEYS);
  const { processMetrics, defaultLabels } = options as MetricsOptions;
  if (processMetrics !== undefined && typeof processMetrics !== 'boolean')
    throw bad('.processMetrics', `must be a boolean, got ${describeValue(processMetrics)}`);
  if (defaultLabels === undefined) return;
  if (typeof defaultLabels !== 'object' || defaultLabels === null)
    throw bad('.defaultLabels', 'must be an object of strings');
  for (const [name, value] of Object.entries(defaultLabels)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) || name.startsWith('__'))
      throw bad(`.defaultLabels.${name}`, 'is not a Prometheus label name');
    if (OWN_LABELS.includes(name)) throw bad(`.defaultLabels.${name}`, 'is a label natskit uses');
    if (typeof value !== 'string')
      throw bad(`.defaultLabels.${name}`, `must be a string, got ${describeValue(value)}`);
  }
}

/** A result's label: `ok`, or the natskit error code in lower case (a closed set). */
export function outcomeOf(err?: unknown): string {
  if (err === undefined) return 'ok';
  const code = thrownProperty(err, 'code'); // anything user code threw
  return typeof code === 'string' && /^[A-Z_]+$/.test(code) ? code.toLowerCase() : 'error';
}

/** One bucket's instruments, label children bound once: the hot path only observes. */
export interface KvMetrics {
  /** An operation took `seconds` and ended with `outcome` (`ok` or an error code). */
  operation(op: string, seconds: number, outcome: string): void;
  transaction(attempts: number, outcome: string): void;
  watchResume(): void;
}

/** One worker's instruments. */
export interface WorkerMetrics {
  /** A job ended; `seconds` is how long its handler ran (none for a payload never decoded). */
  job(outcome: 'processed' | 'failed' | 'terminated' | 'naked', seconds?: number): void;
  redelivered(): void;
  ackFailed(): void;
}

/** One endpoint's instruments. */
export interface EndpointMetrics {
  request(status: number, seconds: number): void;
}

/**
 * What natskit measures, behind one facade: real instruments on a registry when metrics are on,
 * no-ops when they are off (the services then skip even the clock).
 */
export interface Metrics {
  readonly enabled: boolean;
  /** The Prometheus registry (add your own metrics to it); undefined when off. */
  readonly registry: Registry | undefined;
  kv(bucket: string): KvMetrics;
  worker(stream: string, consumer: string): WorkerMetrics;
  endpoint(service: string, endpoint: string): EndpointMetrics;
  /** A retried request, by component (`kv`, `stream`, `endpoint-client`). */
  retry(component: string): void;
  connectionState(connected: boolean): void;
  reconnect(): void;
  /** A connection found dead while it said "connected" (natskit's link watch or the client's pings). */
  staleLink(): void;
  /** A connection natskit closed to reconnect, because its link looked dead. */
  forcedReconnect(): void;
}

/**
 * Token of the app's metrics, bound by the ServiceManager (no-ops unless `metrics` is set). A
 * typed token, written out: this folder sits below the lifecycle.
 */
export const METRICS = Symbol('Metrics') as symbol & { readonly __natskitTokenType?: Metrics };

const NOOP_KV: KvMetrics = {
  operation: () => undefined,
  transaction: () => undefined,
  watchResume: () => undefined,
};
const NOOP_WORKER: WorkerMetrics = {
  job: () => undefined,
  redelivered: () => undefined,
  ackFailed: () => undefined,
};
const NOOP_ENDPOINT: EndpointMetrics = { request: () => undefined };

/** Metrics that measure nothing. */
export const NO_METRICS: Metrics = {
  enabled: false,
  registry: undefined,
  kv: () => NOOP_KV,
  worker: () => NOOP_WORKER,
  endpoint: () => NOOP_ENDPOINT,
  retry: () => undefined,
  connectionState: () => undefined,
  reconnect: () => undefined,
  staleLink: () => undefined,
  forcedReconnect: () => undefined,
};

/** Latency buckets in seconds: 100 µs to 10 s. */
const SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Prometheus metrics on a registry of the app's own. */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaultLabels) registry.setDefaultLabels({ ...options.defaultLabels });
  if (options.processMetrics ?? true) registerProcessMetrics(registry);
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  const histogram = (name: string, help: string, labelNames: string[]) =>
    new LeanHistogram({ name, help, labelNames, buckets: SECONDS, registry });
  const kvOps = histogram(
    'natskit_kv_operation_duration_seconds',
    'KV operations by bucket, operation and outcome (ok or the error code)',
    ['bucket', 'op', 'outcome'],
  );
  const txs = counter('natskit_kv_transactions_total', 'KV transactions by bucket and outcome', [
    'bucket',
    'outcome',
  ]);
  const txAttempts = counter(
    'natskit_kv_transaction_attempts_total',
    'Runs of transaction functions (1 per transaction plus 1 per conflict retried)',
    ['bucket'],
  );
  const txConflicts = counter(
    'natskit_kv_transaction_conflicts_total',
    'Transaction commits that conflicted',
    ['bucket'],
  );
  const resumes = counter(
    'natskit_kv_watch_resumes_total',
    'Watch consumers replaced after a fault (reconnect, node lost, consumer deleted)',
    ['bucket'],
  );
  const jobs = counter(
    'natskit_worker_jobs_total',
    'Worker jobs by outcome: processed, failed (will retry), terminated, naked on stop',
    ['stream', 'consumer', 'outcome'],
  );
  const jobSeconds = histogram('natskit_worker_job_duration_seconds', 'Time a job handler ran', [
    'stream',
    'consumer',
  ]);
  const redeliveries = counter(
    'natskit_worker_redeliveries_total',
    'Jobs delivered more than once',
    ['stream', 'consumer'],
  );
  const ackFailures = counter(
    'natskit_worker_ack_failures_total',
    'Finished jobs whose acknowledgement the server did not confirm',
    ['stream', 'consumer'],
  );
  const requests = histogram(
    'natskit_endpoint_request_duration_seconds',
    'Endpoint requests by service, endpoint and reply status (200 or the service error code)',
    ['service', 'endpoint', 'status'],
  );
  const retries = counter(
    'natskit_retries_total',
    'Requests retried after a transient failure, by component',
    ['component'],
  );
  const connected = new Gauge({
    name: 'natskit_nats_connected',
    help: '1 while the NATS connection is up',
    registers: [registry],
  });
  const reconnects = counter('natskit_nats_reconnects_total', 'Reconnections to NATS');
  const staleLinks = counter(
    'natskit_nats_stale_links_total',
    'Connections found dead while they said connected: no byte and no reply to a ping in time',
  );
  const forcedReconnects = counter(
    'natskit_nats_forced_reconnects_total',
    'Connections natskit replaced because their link looked dead',
  );

  const kvCache = new Map<string, KvMetrics>();
  return {
    enabled: true,
    registry,
    kv(bucket) {
      let m = kvCache.get(bucket);
      if (!m) {
        // Label sets bound once: the hot path only adds to numbers.
        const observers = new Map<string, (seconds: number) => void>();
        const attempts = txAttempts.labels(bucket);
        const conflicts = txConflicts.labels(bucket);
        const resume = resumes.labels(bucket);
        m = {
          operation(op, seconds, outcome) {
            const key = outcome === 'ok' ? op : `${op}\u0000${outcome}`;
            let observe = observers.get(key);
            if (!observe) {
              observe = kvOps.child(bucket, op, outcome);
              observers.set(key, observe);
            }
            observe(seconds);
          },
          transaction(n, outcome) {
            txs.labels(bucket, outcome).inc();
            attempts.inc(n);
            // Every attempt but a committed last one conflicted.
            const failed = outcome === 'ok' ? n - 1 : outcome === 'kv_revision_conflict' ? n : 0;
            if (failed > 0) conflicts.inc(failed);
          },
          watchResume: () => resume.inc(),
        };
        kvCache.set(bucket, m);
      }
      return m;
    },
    worker(stream, consumer) {
      const seconds = jobSeconds.child(stream, consumer);
      const redelivered = redeliveries.labels(stream, consumer);
      const ackFailed = ackFailures.labels(stream, consumer);
      const outcomes = {
        processed: jobs.labels(stream, consumer, 'processed'),
        failed: jobs.labels(stream, consumer, 'failed'),
        terminated: jobs.labels(stream, consumer, 'terminated'),
        naked: jobs.labels(stream, consumer, 'naked'),
      };
      return {
        job(outcome, s) {
          outcomes[outcome].inc();
          if (s !== undefined) seconds(s);
        },
        redelivered: () => redelivered.inc(),
        ackFailed: () => ackFailed.inc(),
      };
    },
    endpoint(service, endpoint) {
      const byStatus = new Map<number, (seconds: number) => void>();
      return {
        request(status, s) {
          let observe = byStatus.get(status);
          if (!observe) {
            observe = requests.child(service, endpoint, String(status));
            byStatus.set(status, observe);
          }
          observe(s);
        },
      };
    },
    retry: (component) => retries.labels(component).inc(),
    connectionState: (up) => connected.set(up ? 1 : 0),
    reconnect: () => reconnects.inc(),
    staleLink: () => staleLinks.inc(),
    forcedReconnect: () => forcedReconnects.inc(),
  };
}

/**
 * A retry counter (`{ retries }`, what withRetry increments) that also counts in the metrics.
 */
export function countingRetries(metrics: Metrics, component: string): { retries: number } {
  let n = 0;
  return {
    get retries() {
      return n;
    },
    set retries(v: number) {
      for (let i = n; i < v; i++) metrics.retry(component);
      n = v;
    },
  };
}
