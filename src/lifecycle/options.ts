import {
  checkKnownKeys,
  checkMs,
  checkOptionsObject,
  describeValue,
  knownKeys,
} from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { ProbeServerOptions } from '../health/probe-server.js';
import { LOG_LEVELS, type LoggerOption, type LoggerOptions } from '../logging/logger.js';
import { checkMetricsOptions, type MetricsOptions } from '../metrics/metrics.js';
import type { ModuleValue, ServiceModule } from './module.js';
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

/** The fields of {@link HostOptions}, for the unknown-field check. */
export const HOST_OPTION_KEYS = knownKeys<HostOptions>({
  services: true,
  scoped: true,
  modules: true,
  logger: true,
  startTimeoutMs: true,
  stopTimeoutMs: true,
  shutdownTimeoutMs: true,
  handleSignals: true,
  signal: true,
  health: true,
  metrics: true,
});

/** Every field a registration can have (the union's members each allow a subset). */
const REGISTRATION_KEYS = knownKeys<ServiceRegistration>({
  token: true,
  useClass: true,
  inject: true,
  useFactory: true,
  useValue: true,
  dependsOn: true,
  startTimeoutMs: true,
  stopTimeoutMs: true,
});
const SCOPED_KEYS = knownKeys<ScopedRegistration>({
  token: true,
  useClass: true,
  inject: true,
  useFactory: true,
  useValue: true,
});
const MODULE_KEYS = knownKeys<ServiceModule>({
  name: true,
  services: true,
  values: true,
  notReady: true,
});
const MODULE_VALUE_KEYS = knownKeys<ModuleValue>({ token: true, value: true });
const LOGGER_OPTION_KEYS = knownKeys<LoggerOptions>({ level: true, destination: true });
const PROBE_KEYS = knownKeys<ProbeServerOptions>({ host: true, port: true, shutdownDelayMs: true });

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
  if (!Array.isArray(list)) throw invalid(field, `must be an array, got ${describeValue(list)}`);
  const seen = new Set<unknown>();
  list.forEach((r: Partial<ServiceRegistration> | undefined, i) => {
    const at = `${field}[${i}]`;
    if (typeof r !== 'object' || r === null)
      throw invalid(at, `must be an object, got ${describeValue(r)}`);
    checkKnownKeys(`options.${at}`, r, timed ? REGISTRATION_KEYS : SCOPED_KEYS);
    const t = typeof r.token;
    if (t !== 'symbol' && t !== 'function' && t !== 'string') {
      throw invalid(
        `${at}.token`,
        `must be a token (symbol), a class or a string, got ${describeValue(r.token)}`,
      );
    }
    if (seen.has(r.token)) throw invalid(`${at}.token`, 'is registered twice');
    seen.add(r.token);
    const kinds = ['useClass', 'useFactory', 'useValue'].filter((k) => k in r);
    if (kinds.length !== 1)
      throw invalid(at, 'must have exactly one of useClass, useFactory, useValue');
    if ('useClass' in r && typeof r.useClass !== 'function')
      throw invalid(`${at}.useClass`, `must be a class, got ${describeValue(r.useClass)}`);
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
      throw invalid(`${at}.useFactory`, `must be a function, got ${describeValue(r.useFactory)}`);
    }
    if (timed) {
      if (r.dependsOn !== undefined && !Array.isArray(r.dependsOn))
        throw invalid(`${at}.dependsOn`, `must be an array, got ${describeValue(r.dependsOn)}`);
      checkMs(`${at}.startTimeoutMs`, r.startTimeoutMs);
      checkMs(`${at}.stopTimeoutMs`, r.stopTimeoutMs);
    }
  });
}

/** Validates the options once and fills in the defaults; never mutates the caller's object. */
export function resolveManagerOptions(options: HostOptions): ResolvedManagerOptions {
  if (typeof options !== 'object' || options === null)
    throw invalid('', `must be an object, got ${describeValue(options)}`);
  checkKnownKeys('options', options, HOST_OPTION_KEYS);
  checkRegistrations('services', options.services, true);
  checkRegistrations('scoped', options.scoped, false);
  checkMs('startTimeoutMs', options.startTimeoutMs);
  checkMs('stopTimeoutMs', options.stopTimeoutMs);
  checkMs('shutdownTimeoutMs', options.shutdownTimeoutMs);
  const health: unknown = options.health;
  if (
    health !== undefined &&
    typeof health !== 'boolean' &&
    (typeof health !== 'object' || health === null || Array.isArray(health))
  )
    throw invalid('health', `must be true, false or an object, got ${describeValue(health)}`);
  if (typeof options.health !== 'boolean')
    checkOptionsObject('options.health', options.health, PROBE_KEYS);
  if (typeof options.health === 'object' && options.health !== null) {
    const { host, port, shutdownDelayMs } = options.health;
    if (host !== undefined && (typeof host !== 'string' || host === ''))
      throw invalid('health.host', `must be a host name or address, got ${describeValue(host)}`);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65_535)) {
      throw invalid(
        'health.port',
        `must be an integer from 0 to 65535, got ${describeValue(port)}`,
      );
    }
    if (
      shutdownDelayMs !== undefined &&
      !(Number.isFinite(shutdownDelayMs) && shutdownDelayMs >= 0)
    ) {
      throw invalid(
        'health.shutdownDelayMs',
        `must be a number of milliseconds >= 0, got ${describeValue(shutdownDelayMs)}`,
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
  options.modules?.forEach((m, i) => {
    checkKnownKeys(`options.modules[${i}]`, m, MODULE_KEYS);
    checkRegistrations(`modules[${i}].services`, m.services, true);
    if (m.values !== undefined && !Array.isArray(m.values))
      throw invalid(`modules[${i}].values`, 'must be an array of { token, value }');
    (m.values ?? []).forEach((v: unknown, j: number) => {
      checkOptionsObject(`options.modules[${i}].values[${j}]`, v, MODULE_VALUE_KEYS);
    });
  });
  const logger = options.logger ?? {};
  const level = (logger as { level?: unknown }).level;
  const pinoLogger = typeof (logger as { child?: unknown }).child === 'function';
  if (!pinoLogger) checkOptionsObject('options.logger', logger, LOGGER_OPTION_KEYS);
  if (!pinoLogger && level !== undefined && !LOG_LEVELS.includes(String(level))) {
    throw invalid(
      'logger.level',
      `must be one of ${LOG_LEVELS.join(', ')}, got ${describeValue(level)}`,
    );
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
