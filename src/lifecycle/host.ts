import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Container } from 'inversify';
import type { Logger } from 'pino';
import { NatskitAggregateError, NatskitError, supersede } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import { HealthRegistry } from '../health/health-registry.js';
import { ProbeServer, type ProbeSource } from '../health/probe-server.js';
import { createRootLogger } from '../logging/logger.js';
import { createMetrics, METRICS, type Metrics, NO_METRICS } from '../metrics/metrics.js';
import { TIMED_OUT, withDeadline } from '../timing/deadline.js';
import { bindRegistration } from './bind.js';
import { checkInjections, type GraphNode, planLevels } from './graph.js';
import type { ServiceModule } from './module.js';
import type { ResolvedManagerOptions } from './options.js';
import { resolve } from './resolve.js';
import { type Started, startService, stopService } from './run-service.js';
import { type Scope, type ScopeOptions, ServiceScope } from './scope.js';
import {
  createToken,
  type HealthCheckResult,
  type Service,
  type ServiceRegistration,
  type ServiceToken,
  type Token,
  tokenName,
} from './service.js';
import { installSignalHandlers } from './signals.js';
import { LOGGER } from './tokens.js';

/** Where a ServiceManager is in its life. */
export type ManagerState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** Token of the running manager itself (`SERVICE_MANAGER` in the public API). */
export const SERVICE_HOST: Token<ServiceHost> = createToken<ServiceHost>('ServiceManager');

// A hook can throw anything: `null`, an object without `message`, one whose getters throw.
const message = describeThrown;

/** The user's registrations, then each module's for tokens the user did not register. */
function withModules(o: ResolvedManagerOptions): ServiceRegistration[] {
  const mine = new Set(o.services.map((r) => r.token));
  const fromModules = o.modules.flatMap((m) =>
    (m.services ?? []).filter((r) => !mine.has(r.token)),
  );
  return [...fromModules, ...o.services];
}

/**
 * The lifecycle: boots services in dependency order, stops them in reverse, with deadlines, and
 * rolls back a failed boot. It knows services, modules, tokens, scopes, deadlines and health, and
 * nothing of NATS: the NATS built-ins plug in as a {@link ServiceModule}. The public class is
 * `ServiceManager`, which adds the `nats` convenience on top.
 */
export class ServiceHost implements AsyncDisposable {
  /** The root logger; services get `logger.child({ service })`. */
  readonly logger: Logger;
  /** The app's health checks: every started service's `health()`, and your own. */
  readonly health = new HealthRegistry();
  /** What natskit measures (no-ops unless `metrics` is set); `metrics.registry` takes yours too. */
  readonly metrics: Metrics;
  readonly #options: ResolvedManagerOptions;
  readonly #container = new Container();
  readonly #started: Started[] = [];
  readonly #scopes = new Set<ServiceScope>();
  readonly #bootAbort = new AbortController();
  readonly #listeners = new Set<(state: ManagerState) => void>();
  #state: ManagerState = 'starting';
  #booting: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | undefined;
  #uninstallSignals: (() => void) | undefined;
  #probes: ProbeServer | undefined;
  #probeUrl: string | undefined;

  protected constructor(options: ResolvedManagerOptions) {
    this.#options = options;
    this.logger = createRootLogger(options.logger);
    this.metrics = options.metrics ? createMetrics(options.metrics) : NO_METRICS;
    this.health.register(
      'process',
      () => ({ status: 'pass', observedValue: Math.round(process.uptime()), observedUnit: 's' }),
      { kind: 'liveness', cacheMs: 0 },
    );
  }

  /**
   * Plans the dependency graph (a cycle, a missing dependency or a missing `@inject` fails here,
   * before anything starts), serves the probes, then starts the services level by level.
   * `create` makes the instance (the public subclass).
   */
  protected static async launch<H extends ServiceHost>(
    options: ResolvedManagerOptions,
    create: (options: ResolvedManagerOptions) => H,
  ): Promise<H> {
    const services = withModules(options);
    const values = options.modules.flatMap((m) => m.values ?? []);
    const levels = planLevels(
      services,
      new Set<unknown>([LOGGER, SERVICE_HOST, METRICS, ...values.map((v) => v.token)]),
    );
    checkInjections(services);
    checkInjections(options.scoped);
    const host = create(options);
    host.#container.bind(LOGGER).toConstantValue(host.logger);
    host.#container.bind(SERVICE_HOST).toConstantValue(host);
    host.#container.bind(METRICS).toConstantValue(host.metrics);
    for (const v of values) host.#container.bind(v.token).toConstantValue(v.value);
    for (const r of services) bindRegistration(host.#container, r);
    if (options.health) {
      // Before the boot, so that /readyz answers 503 while starting; closed after the last stop.
      host.#probes = new ProbeServer(host.#probeSource(), host.logger);
      host.#probeUrl = await host.#probes.listen(options.health);
    }
    // After the probe server listens: a start that fails there leaves no listener behind.
    if (options.handleSignals) {
      host.#uninstallSignals = installSignalHandlers(() => host.stop(), host.logger);
    }
    const outer = options.signal;
    const onOuterAbort = () => host.#bootAbort.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    if (outer?.aborted) onOuterAbort();
    host.#booting = host.#boot(levels);
    try {
      await host.#booting;
    } catch (err) {
      await host.#probes?.close();
      throw err;
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
    }
    return host;
  }

  /** The base URL of the probe server (`/livez`, `/readyz`, `/healthz`), when `options.health` is set. */
  get probeUrl(): string | undefined {
    return this.#probeUrl;
  }

  /** Ready: running, and no module reports a reason not to be (the NATS connection down...). */
  #notReady(): string | undefined {
    if (this.#state !== 'running') return `manager is ${this.#state}`;
    const get = <T>(token: ServiceToken<T>): T | undefined =>
      this.#container.isBound(token) ? this.#container.get<T>(token) : undefined;
    for (const m of this.#options.modules as readonly ServiceModule[]) {
      const reason = m.notReady?.(get);
      if (reason !== undefined) return reason;
    }
    return undefined;
  }

  #probeSource(): ProbeSource {
    return {
      registry: this.health,
      ready: () => this.#notReady() === undefined,
      readyReason: () => this.#notReady() ?? 'ready',
      metrics: this.metrics.registry
        ? async () => {
            const registry = this.metrics.registry as NonNullable<Metrics['registry']>;
            return { contentType: registry.contentType, body: await registry.metrics() };
          }
        : undefined,
    };
  }

  /** Where the manager is in its life. */
  get state(): ManagerState {
    return this.#state;
  }

  /** Calls `listener` on every state change; returns the function that removes it. */
  onStateChange(listener: (state: ManagerState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #setState(state: ManagerState): void {
    this.#state = state;
    for (const listener of this.#listeners) {
      try {
        listener(state);
      } catch (err) {
        this.logger.error({ err }, 'state listener threw');
      }
    }
  }

  /**
   * Resolves a service (or anything bound in the container) by its token.
   * @throws NatskitError `SERVICE_NOT_FOUND` when nothing is registered for it,
   * `RESOLUTION_FAILED` when creating it failed.
   */
  get<T>(token: ServiceToken<T>): T {
    if (!this.#container.isBound(token)) {
      throw new NatskitError('SERVICE_NOT_FOUND', `${tokenName(token)} is not registered`, {
        service: tokenName(token),
      });
    }
    return resolve(this.#container, token);
  }

  /**
   * Opens a scope for one job or request: use it with `await using`. Disposing it disposes the
   * scoped instances it created, in reverse order, and leaves the app's singletons running.
   * @throws NatskitError `INVALID_STATE` unless the manager is running.
   */
  createScope(options: ScopeOptions = {}): Scope {
    if (this.#state !== 'running') {
      throw new NatskitError(
        'INVALID_STATE',
        `cannot create a scope while the manager is ${this.#state}`,
      );
    }
    const scope = new ServiceScope(this.#container, this.#options.scoped, options, (s) =>
      this.#scopes.delete(s),
    );
    this.#scopes.add(scope);
    return scope;
  }

  async #boot(levels: GraphNode[][]): Promise<void> {
    const t0 = performance.now();
    this.logger.info({ services: levels.flat().length, levels: levels.length }, 'starting');
    const ctx = {
      container: this.#container,
      logger: this.logger,
      startTimeoutMs: this.#options.startTimeoutMs,
      started: (s: Started) => this.#markStarted(s),
    };
    for (const level of levels) {
      // One failure in a level aborts its siblings' signals; all of them settle before rollback.
      const levelAbort = new AbortController();
      const onBootAbort = () => levelAbort.abort(this.#bootAbort.signal.reason);
      this.#bootAbort.signal.addEventListener('abort', onBootAbort, { once: true });
      if (this.#bootAbort.signal.aborted) onBootAbort();
      const errors: unknown[] = [];
      await Promise.all(
        level.map((node) =>
          startService(node, levelAbort.signal, ctx).catch((err: unknown) => {
            // Rejecting with the abort's reason only echoes the failure that aborted it.
            if (levelAbort.signal.aborted && err === levelAbort.signal.reason) return;
            errors.push(err);
            levelAbort.abort(err);
          }),
        ),
      );
      this.#bootAbort.signal.removeEventListener('abort', onBootAbort);
      if (errors.length === 0 && this.#bootAbort.signal.aborted) {
        errors.push(
          new NatskitError(
            'SERVICE_START_FAILED',
            `the boot was abandoned: ${message(this.#bootAbort.signal.reason)}`,
            { cause: this.#bootAbort.signal.reason },
          ),
        );
      }
      const [first, ...others] = errors;
      if (first !== undefined) {
        this.#setState('failed');
        const rollbackErrors = await this.#stopStarted('rollback');
        this.#uninstallSignals?.();
        this.logger.error(
          { err: first, rollbackErrors: rollbackErrors.length },
          'start failed, rolled back',
        );
        throw NatskitError.is(first)
          ? supersede(first, first.code, first.message, {
              ...(first.service === undefined ? {} : { service: first.service }),
              details: { ...first.details, rollbackErrors, concurrentErrors: others },
            })
          : first;
      }
    }
    this.#setState('running');
    this.logger.info({ ms: Math.round(performance.now() - t0) }, 'started');
  }

  /** Records a started service and registers its health checks. */
  #markStarted({ node, instance }: Started): void {
    this.#started.push({ node, instance });
    const s = instance as Service & {
      liveness?: () => HealthCheckResult | Promise<HealthCheckResult>;
    };
    if (typeof s?.health === 'function')
      this.health.register(node.name, () => s.health?.() ?? { status: 'pass' });
    if (typeof s?.liveness === 'function') {
      this.health.register(`${node.name}:liveness`, () => s.liveness?.() ?? { status: 'pass' }, {
        kind: 'liveness',
      });
    }
  }

  /**
   * Stops every service in exact reverse order of their starts, within the shutdown budget.
   * Idempotent: every call returns the same promise.
   * @throws NatskitAggregateError `SHUTDOWN_FAILED` with one error per failed step, after every
   * step ran.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(): Promise<void> {
    if (this.#state === 'starting') {
      this.#bootAbort.abort(
        new NatskitError('INVALID_STATE', 'stop was requested during the boot'),
      );
      await this.#booting.catch(() => undefined); // the boot rolls itself back
      this.#setState('stopped');
      return;
    }
    if (this.#state !== 'running') return;
    this.#setState('stopping'); // /readyz answers 503 from here on
    const delayMs = this.#options.health?.shutdownDelayMs ?? 0;
    if (delayMs > 0) {
      this.logger.info({ ms: delayMs }, 'not ready; waiting before stopping services');
      await sleep(delayMs);
    }
    const t0 = performance.now();
    const errors = await this.#stopStarted('stop');
    this.#uninstallSignals?.();
    this.#setState('stopped');
    await this.#probes?.close(); // /livez answered 200 until here
    this.logger.info({ ms: Math.round(performance.now() - t0), failed: errors.length }, 'stopped');
    if (errors.length > 0) {
      throw new NatskitAggregateError(
        'SHUTDOWN_FAILED',
        `${errors.length} stop step(s) failed: ${errors.map(message).join('; ')}`,
        errors,
      );
    }
  }

  /** Disposes open scopes, then stops started services last-first; every step runs. */
  async #stopStarted(why: 'stop' | 'rollback'): Promise<unknown[]> {
    const errors: unknown[] = [];
    const budgetEnd = performance.now() + this.#options.shutdownTimeoutMs;
    for (const scope of [...this.#scopes].reverse()) {
      // Open scopes are disposed first, within the same budget as the services.
      const left = Math.max(0, Math.round(budgetEnd - performance.now()));
      try {
        if ((await withDeadline(scope[Symbol.asyncDispose](), left)) === TIMED_OUT) {
          errors.push(
            new NatskitError(
              'SERVICE_STOP_TIMEOUT',
              `an open scope was not disposed within the shutdown budget (${left} ms left of ${this.#options.shutdownTimeoutMs})`,
              { details: { timeoutMs: left, byBudget: true } },
            ),
          );
          this.#scopes.delete(scope);
        }
      } catch (err) {
        errors.push(err);
      }
    }
    for (let s = this.#started.pop(); s !== undefined; s = this.#started.pop()) {
      const own = s.node.registration.stopTimeoutMs ?? this.#options.stopTimeoutMs;
      const left = Math.max(0, Math.round(budgetEnd - performance.now()));
      try {
        await stopService(s, Math.min(own, left), left < own, why, this.logger);
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }
}
