import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  collectDefaultMetrics,
  Gauge,
  type MetricObjectWithValues,
  type MetricValue,
  type Registry,
} from 'prom-client';

/**
 * prom-client's gauges whose names end in `_total`, the suffix Prometheus reserves for counters
 * (`promtool check metrics` fails on them). Each is the sum of the by-type gauge of the same name
 * without the suffix (`sum(nodejs_active_handles)`), so nothing is lost by dropping them.
 */
const TOTAL_GAUGES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** The event-loop delay statistics prom-client reports, by name. */
const LAG_STATS = {
  nodejs_eventloop_lag_min_seconds: 'The minimum recorded event loop delay.',
  nodejs_eventloop_lag_max_seconds: 'The maximum recorded event loop delay.',
  nodejs_eventloop_lag_mean_seconds: 'The mean of the recorded event loop delays.',
  nodejs_eventloop_lag_stddev_seconds: 'The standard deviation of the recorded event loop delays.',
  nodejs_eventloop_lag_p50_seconds: 'The 50th percentile of the recorded event loop delays.',
  nodejs_eventloop_lag_p90_seconds: 'The 90th percentile of the recorded event loop delays.',
  nodejs_eventloop_lag_p99_seconds: 'The 99th percentile of the recorded event loop delays.',
} as const;
type LagStat = keyof typeof LAG_STATS;

/**
 * Node's process metrics (prom-client's default set) on `registry`, made valid for Prometheus:
 * no gauge named like a counter, and no NaN or int64-max event-loop statistics.
 */
export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of TOTAL_GAUGES) registry.removeSingleMetric(name);
  // prom-client resets its event-loop histogram at every scrape, even one that follows the last
  // with no sample in between: then min is int64 max (9223372036.85 s) and mean and stddev NaN.
  // Its statistics are replaced by ones read from a window that is only closed (and reset) once
  // it holds a sample; until then a scrape repeats the last window.
  for (const name of Object.keys(LAG_STATS)) registry.removeSingleMetric(name);
  const read = eventLoopWindow();
  for (const [name, help] of Object.entries(LAG_STATS))
    new WindowGauge(name, help, registry, () => read()?.[name as LagStat]);
}

/**
 * The statistics of the event-loop delay since the last window that had samples; undefined
 * before the first sample. One scrape reads all seven gauges in one synchronous pass, so a read
 * closes the window at most once per turn of the event loop.
 */
function eventLoopWindow(): () => Record<LagStat, number> | undefined {
  // Same resolution as prom-client's (10 ms). Its timer does not keep the process alive.
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let last: Record<LagStat, number> | undefined;
  let readThisTurn = false;
  return () => {
    if (readThisTurn) return last;
    readThisTurn = true;
    queueMicrotask(() => {
      readThisTurn = false;
    });
    if (histogram.count === 0) return last;
    last = {
      nodejs_eventloop_lag_min_seconds: histogram.min / 1e9,
      nodejs_eventloop_lag_max_seconds: histogram.max / 1e9,
      nodejs_eventloop_lag_mean_seconds: histogram.mean / 1e9,
      nodejs_eventloop_lag_stddev_seconds: histogram.stddev / 1e9,
      nodejs_eventloop_lag_p50_seconds: histogram.percentile(50) / 1e9,
      nodejs_eventloop_lag_p90_seconds: histogram.percentile(90) / 1e9,
      nodejs_eventloop_lag_p99_seconds: histogram.percentile(99) / 1e9,
    };
    histogram.reset();
    return last;
  };
}

/** A gauge whose value is read at scrape time; no sample at all while `read` has none. */
class WindowGauge extends Gauge {
  readonly #read: () => number | undefined;
  constructor(name: string, help: string, registry: Registry, read: () => number | undefined) {
    super({ name, help, registers: [registry] });
    this.#read = read;
  }
  override async get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    const value = this.#read();
    if (value === undefined) return { ...(await super.get()), values: [] };
    this.set(value);
    return super.get();
  }
}
