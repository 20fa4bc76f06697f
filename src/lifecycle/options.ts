import { checkMs } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { ProbeServerOptions } from '../health/probe-server.js';
import { LOG_LEVELS, type LoggerOption } from '../logging/logger.js';
import { checkMetricsOptions, type MetricsOptions } from '../metrics/metrics.js';
import type { ServiceModule } from './module.js';
import type { ScopedRegistration, ServiceRegistration } from './service.js';

/** What the lifecycle itself takes: services, modules, deadlines, signals, probes, logging. */
export interface HostOptions {
  /** The services to boot, in any order: the dependency graph decides the order. */
  readonly services?: readonly ServiceRegistration[];
  /** Per-scope services: one instance per `createScope()`, disposed with the scope. */
  readonly scoped?: readonly ScopedRegistration[];
  /** Groups of services that plug in as one (the NATS built-ins are one, added by `nats`). */
  readonly modules?: readonly ServiceModule[];
  /** A pino logger, or options for the one natskit creates. */
  readonly logger?: LoggerOption;
  /** Default deadline of each service's `start`. @defaultValue 30000 */
  readonly startTimeoutMs?: number;
  /** Default deadline of each service's `stop`. @defaultValue 10000 */
  readonly stopTimeoutMs?: number;
  /** Budget for the whole stop, every service included. @defaultValue 30000 */
  readonly shutdownTimeoutMs?: number;
  /**
   * Stop on SIGTERM/SIGINT and exit the process (0 when the stop succeeded, 1 when not); a second
   * signal exits at once. Without it no signal listener is installed. @defaultValue false
   */
  readonly handleSignals?: boolean;
  /** Aborting it abandons the boot: what started is stopped and `start` rejects. */
  readonly signal?: AbortSignal;
  /** Serve HTTP probes (`/livez`, `/readyz`, `/healthz`); `true` for the defaults. */
  readonly health?: ProbeServerOptions | boolean;
  /**
   * Prometheus metrics on the probe server's `/metrics` (which then runs, with the `health`
   * defaults when `health` is not set); `true` for the defaults. @defaultValue off
   */
  readonly metrics?: MetricsOptions | boolean;
}

/** The defaults of {@link HostOptions}. */
export const MANAGER_DEFAULTS = Object.freeze({
  startTimeoutMs: 30_000,
  stopTimeoutMs: 10_000,
  shutdownTimeoutMs: 30_000,
  handleSignals: false,
});

/** Options with the defaults filled in. */
export interface ResolvedManagerOptions {
  readonly services: readonly ServiceRegistration[];
  readonly scoped: readonly ScopedRegistration[];
  readonly logger: LoggerOption;
  readonly startTimeoutMs: number;
  readonly stopTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  readonly handleSignals: boolean;
  readonly signal: AbortSignal | undefined;
  readonly modules: readonly ServiceModule[];
  readonly health: ProbeServerOptions | undefined;
  readonly metrics: MetricsOptions | undefined;
}

function invalid(field: string, why: string): NatskitError {
  return new NatskitError('INVALID_OPTIONS', `options.${field} ${why}`, { details: { field } });
}

function checkRegistrations(field: string, list: unknown, timed: boolean): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) throw invalid(field, 'must be an array');
  const seen = new Set<unknown>();
  list.forEach((r: Partial<ServiceRegistration> | undefined, i) => {
    const at = `${field}[${i}]`;
    if (typeof r !== 'object' || r === null) throw invalid(at, 'must be an object');
    const t = typeof r.token;
    if (t !== 'symbol' && t !== 'function' && t !== 'string') {
      throw invalid(`${at}.token`, 'must be a token (symbol), a class or a string');
    }
    if (seen.has(r.token)) throw invalid(`${at}.token`, 'is registered twice');
    seen.add(r.token);
    const kinds = ['useClass', 'useFactory', 'useValue'].filter((k) => k in r);
    if (kinds.length !== 1)
      throw invalid(at, 'must have exactly one of useClass, useFactory, useValue');
    if ('useClass' in r && typeof r.useClass !== 'function')
      throw invalid(`${at}.useClass`, 'must be a class');
    if ('inject' in r && r.inject !== undefined) {
      if (!('useClass' in r)) throw invalid(`${at}.inject`, 'goes with useClass only');
      if (!Array.isArray(r.inject)) throw invalid(`${at}.inject`, 'must be an array of tokens');
      r.inject.forEach((t: unknown, j: number) => {
        if (typeof t !== 'symbol' && typeof t !== 'function' && typeof t !== 'string') {
          throw invalid(`${at}.inject[${j}]`, 'must be a token (symbol), a class or a string');
        }
      });
    }
    if ('useFactory' in r && typeof r.useFactory !== 'function') {
      throw invalid(`${at}.useFactory`, 'must be a function');
    }
    if (timed) {
      if (r.dependsOn !== undefined && !Array.isArray(r.dependsOn))
        throw invalid(`${at}.dependsOn`, 'must be an array');
      checkMs(`${at}.startTimeoutMs`, r.startTimeoutMs);
      checkMs(`${at}.stopTimeoutMs`, r.stopTimeoutMs);
    }
  });
}

/** Validates the options once and fills in the defaults; never mutates the caller's object. */
export function resolveManagerOptions(options: HostOptions): ResolvedManagerOptions {
  if (typeof options !== 'object' || options === null) throw invalid('', 'must be an object');
  checkRegistrations('services', options.services, true);
  checkRegistrations('scoped', options.scoped, false);
  checkMs('startTimeoutMs', options.startTimeoutMs);
  checkMs('stopTimeoutMs', options.stopTimeoutMs);
  checkMs('shutdownTimeoutMs', options.shutdownTimeoutMs);
  if (typeof options.health === 'object' && options.health !== null) {
    const { port, shutdownDelayMs } = options.health;
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65_535)) {
      throw invalid('health.port', `must be an integer from 0 to 65535, got ${String(port)}`);
    }
    if (
      shutdownDelayMs !== undefined &&
      !(Number.isFinite(shutdownDelayMs) && shutdownDelayMs >= 0)
    ) {
      throw invalid(
        'health.shutdownDelayMs',
        `must be a number of milliseconds >= 0, got ${String(shutdownDelayMs)}`,
      );
    }
  }
  checkMetricsOptions(options.metrics);
  if (
    options.modules !== undefined &&
    !(
      Array.isArray(options.modules) &&
      options.modules.every(
        (m) => typeof m === 'object' && m !== null && typeof m.name === 'string',
      )
    )
  ) {
    throw invalid('modules', 'must be an array of modules ({ name, services?, values? })');
  }
  const logger = options.logger ?? {};
  const level = (logger as { level?: unknown }).level;
  if (
    typeof (logger as { child?: unknown }).child !== 'function' &&
    level !== undefined &&
    !LOG_LEVELS.includes(String(level))
  ) {
    throw invalid('logger.level', `must be one of ${LOG_LEVELS.join(', ')}, got ${String(level)}`);
  }
  return {
    ...MANAGER_DEFAULTS,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    services: [...(options.services ?? [])],
    scoped: [...(options.scoped ?? [])],
    logger,
    signal: options.signal,
    modules: [...(options.modules ?? [])],
    metrics: options.metrics === true ? {} : options.metrics || undefined,
    // Metrics are served by the probe server: it runs for them too.
    health:
      options.health === true || (options.metrics && !options.health)
        ? {}
        : options.health || undefined,
  } as ResolvedManagerOptions;
}
