import { performance } from 'node:perf_hooks';
import { Container } from 'inversify';
import type { Logger } from 'pino';
import { ConnectionService } from '../connection/connection-service.js';
import { CONNECTION_OPTIONS } from '../connection/options.js';
import { NatskitAggregateError, NatskitError } from '../errors/natskit-error.js';
import { HealthRegistry } from '../health/health-registry.js';
import { ProbeServer, type ProbeSource } from '../health/probe-server.js';
import { KV_OPTIONS, KVStoreService } from '../kv/kv-store-service.js';
import { createRootLogger } from '../logging/logger.js';
import { StreamService } from '../stream/stream-service.js';
import { checkInjections, type GraphNode, planLevels } from './graph.js';
import {
  type ResolvedManagerOptions,
  resolveManagerOptions,
  type ServiceManagerOptions,
} from './options.js';
import { resolve } from './resolve.js';
import { type Scope, type ScopeOptions, ServiceScope } from './scope.js';
import {
  type HealthCheckResult,
  type Service,
  type ServiceRegistration,
  type ServiceToken,
  tokenName,
} from './service.js';
import { installSignalHandlers } from './signals.js';
import { LOGGER, SERVICE_MANAGER } from './tokens.js';

/** Where a ServiceManager is in its life. */
export type ManagerState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

interface Started {
  readonly node: GraphNode;
  readonly instance: Service;
}

/** Adds the built-in NATS services when `nats` is configured and the user did not register them. */
function withBuiltins(o: ResolvedManagerOptions): ResolvedManagerOptions {
  if (!o.nats) return o;
  const has = (token: unknown) => o.services.some((r) => r.token === token);
  const builtins: ServiceRegistration[] = [];
  if (!has(ConnectionService))
    builtins.push({ token: ConnectionService, useClass: ConnectionService });
  if (!has(StreamService)) builtins.push({ token: StreamService, useClass: StreamService });
  if (!has(KVStoreService)) builtins.push({ token: KVStoreService, useClass: KVStoreService });
  return { ...o, services: [...builtins, ...o.services] };
}

/** Resolves with `'timeout'` after `ms`, unless cleared. */
function deadline(ms: number): { promise: Promise<'timeout'>; clear: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Boots services in dependency order, stops them in reverse, with deadlines, and rolls back a
 * failed boot. Start one with {@link ServiceManager.start}; stop it with `stop()` or `await using`.
 *
 * @example
 * ```ts
 * await using app = await ServiceManager.start({
 *   services: [{ token: Mailer, useClass: Mailer, dependsOn: [Database] }, { token: Database, useClass: Database }],
 * });
 * app.get(Mailer).send(...);
 * ```
 */
export class ServiceManager implements AsyncDisposable {
  /** The root logger; services get `logger.child({ service })`. */
  readonly logger: Logger;
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
  /** The app's health checks: every started service's `health()`, and your own. */
  readonly health = new HealthRegistry();

  private constructor(options: ResolvedManagerOptions) {
    this.#options = options;
    this.logger = createRootLogger(options.logger);
    this.health.register(
      'process',
      () => ({ status: 'pass', observedValue: Math.round(process.uptime()), observedUnit: 's' }),
      { kind: 'liveness', cacheMs: 0 },
    );
  }

  /**
   * Validates the options, plans the dependency graph (a cycle or a missing dependency fails
   * here, before anything starts), then starts the services level by level.
   *
   * @throws NatskitError `INVALID_OPTIONS`, `DEPENDENCY_CYCLE`, `DEPENDENCY_MISSING` before
   * anything starts; after a failed start, once the services that had started were stopped
   * again: `SERVICE_START_TIMEOUT`, the code of a natskit error the service threw (e.g.
   * `AUTH_FAILED`), or `SERVICE_START_FAILED` for any other error; `service` names the service,
   * `cause` is what it threw, `details.rollbackErrors` holds any stop that failed then.
   */
  static async start(options: ServiceManagerOptions = {}): Promise<ServiceManager> {
    const resolved = withBuiltins(resolveManagerOptions(options));
    const provided = new Map<unknown, unknown>();
    if (resolved.nats) {
      provided.set(CONNECTION_OPTIONS, resolved.nats);
      provided.set(KV_OPTIONS, resolved.kv);
    }
    const levels = planLevels(
      resolved.services,
      new Set<unknown>([LOGGER, SERVICE_MANAGER, ...provided.keys()]),
    );
    checkInjections(resolved.scoped);
    const manager = new ServiceManager(resolved);
    manager.#bind(provided);
    if (resolved.health) {
      // Before the boot, so that /readyz answers 503 while starting; closed after the last stop.
      manager.#probes = new ProbeServer(manager.#probeSource(), manager.logger);
      manager.#probeUrl = await manager.#probes.listen(resolved.health);
    }
    // After the probe server listens: a start that fails there leaves no listener behind.
    if (resolved.handleSignals)
      manager.#uninstallSignals = installSignalHandlers(() => manager.stop(), manager.logger);
    const outer = resolved.signal;
    const onOuterAbort = () => manager.#bootAbort.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    if (outer?.aborted) onOuterAbort();
    manager.#booting = manager.#boot(levels);
    try {
      await manager.#booting;
    } catch (err) {
      await manager.#probes?.close();
      throw err;
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
    }
    return manager;
  }

  /** The base URL of the probe server (`/livez`, `/readyz`, `/healthz`), when `options.health` is set. */
  get probeUrl(): string | undefined {
    return this.#probeUrl;
  }

  #probeSource(): ProbeSource {
    const connection = () =>
      this.#state === 'running' && this.#container.isBound(ConnectionService)
        ? this.#container.get(ConnectionService)
        : undefined;
    return {
      registry: this.health,
      ready: () =>
        this.#state === 'running' && (connection()?.status.state ?? 'connected') === 'connected',
      readyReason: () =>
        this.#state !== 'running'
          ? `manager is ${this.#state}`
          : `NATS connection is ${connection()?.status.state}`,
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
   * @throws NatskitError `SERVICE_NOT_FOUND` when nothing is registered for it.
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

  #bind(provided: ReadonlyMap<unknown, unknown>): void {
    this.#container.bind(LOGGER).toConstantValue(this.logger);
    this.#container.bind(SERVICE_MANAGER).toConstantValue(this);
    for (const [token, value] of provided)
      this.#container.bind(token as symbol).toConstantValue(value);
    for (const r of this.#options.services) {
      const bind = this.#container.bind(r.token);
      if ('useClass' in r && r.useClass !== undefined) bind.to(r.useClass).inSingletonScope();
      else if ('useFactory' in r && r.useFactory !== undefined) {
        const factory = r.useFactory;
        bind.toDynamicValue((ctx) => factory(ctx)).inSingletonScope();
      } else bind.toConstantValue((r as { useValue: unknown }).useValue);
    }
  }

  async #boot(levels: GraphNode[][]): Promise<void> {
    const t0 = performance.now();
    this.logger.info({ services: levels.flat().length, levels: levels.length }, 'starting');
    for (const level of levels) {
      // One failure in a level aborts its siblings' signals; all of them settle before rollback.
      const levelAbort = new AbortController();
      const onBootAbort = () => levelAbort.abort(this.#bootAbort.signal.reason);
      this.#bootAbort.signal.addEventListener('abort', onBootAbort, { once: true });
      if (this.#bootAbort.signal.aborted) onBootAbort();
      const errors: unknown[] = [];
      await Promise.all(
        level.map((node) =>
          this.#startOne(node, levelAbort.signal).catch((err: unknown) => {
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
            {
              cause: this.#bootAbort.signal.reason,
            },
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
          ? new NatskitError(first.code, first.message, {
              cause: first.cause,
              ...(first.service === undefined ? {} : { service: first.service }),
              details: { ...first.details, rollbackErrors, concurrentErrors: others },
            })
          : first;
      }
    }
    this.#setState('running');
    this.logger.info({ ms: Math.round(performance.now() - t0) }, 'started');
  }

  async #startOne(node: GraphNode, levelSignal: AbortSignal): Promise<void> {
    const service = node.name;
    const timeoutMs = node.registration.startTimeoutMs ?? this.#options.startTimeoutMs;
    let instance: Service;
    try {
      instance = this.#container.get(node.registration.token) as Service;
    } catch (err) {
      throw new NatskitError(
        'SERVICE_START_FAILED',
        `${service} could not be created: ${message(err)}`,
        {
          cause: err,
          service,
        },
      );
    }
    if (typeof instance?.start !== 'function') {
      this.#markStarted(node, instance);
      return;
    }
    const ac = new AbortController();
    const onLevelAbort = () => ac.abort(levelSignal.reason);
    levelSignal.addEventListener('abort', onLevelAbort, { once: true });
    if (levelSignal.aborted) onLevelAbort();
    const timer = deadline(timeoutMs);
    const t0 = performance.now();
    const pending = Promise.resolve().then(() => instance.start?.(ac.signal));
    try {
      const outcome = await Promise.race([pending.then(() => 'started' as const), timer.promise]);
      if (outcome === 'timeout') {
        const err = new NatskitError(
          'SERVICE_START_TIMEOUT',
          `${service} did not start within ${timeoutMs} ms`,
          {
            service,
            details: { timeoutMs },
          },
        );
        ac.abort(err);
        // A start that ignores its signal and finishes late is stopped then, not leaked.
        pending.then(
          () => this.#stopLate(node, instance),
          () => undefined,
        );
        throw err;
      }
      this.#markStarted(node, instance);
      this.logger.info({ service, ms: Math.round(performance.now() - t0) }, 'service started');
    } catch (err) {
      if (NatskitError.is(err, 'SERVICE_START_TIMEOUT') && err.service === service) throw err;
      // A natskit error keeps its code (AUTH_FAILED, CAPABILITY_MISSING...), so callers can
      // branch on it; anything else is SERVICE_START_FAILED. Either way the service is named.
      const code = NatskitError.is(err) ? err.code : 'SERVICE_START_FAILED';
      throw new NatskitError(code, `${service} failed to start: ${message(err)}`, {
        cause: err,
        service,
        ...(NatskitError.is(err) && err.details ? { details: err.details } : {}),
      });
    } finally {
      timer.clear();
      levelSignal.removeEventListener('abort', onLevelAbort);
    }
  }

  /** Records a started service and registers its health checks. */
  #markStarted(node: GraphNode, instance: Service): void {
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

  #stopLate(node: GraphNode, instance: Service): void {
    this.logger.warn(
      { service: node.name },
      'service finished starting after its deadline; stopping it',
    );
    Promise.resolve()
      .then(() => instance.stop?.())
      .catch((err: unknown) => this.logger.error({ err, service: node.name }, 'late stop failed'));
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
      await new Promise((resolve) => setTimeout(resolve, delayMs));
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
    const budgetEnd = Date.now() + this.#options.shutdownTimeoutMs;
    for (const scope of [...this.#scopes].reverse()) {
      // Open scopes are disposed first, within the same budget as the services.
      const left = Math.max(0, budgetEnd - Date.now());
      const timer = deadline(left);
      try {
        const outcome = await Promise.race([
          scope[Symbol.asyncDispose]().then(() => 'disposed' as const),
          timer.promise,
        ]);
        if (outcome === 'timeout') {
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
      } finally {
        timer.clear();
      }
    }
    for (let s = this.#started.pop(); s !== undefined; s = this.#started.pop()) {
      const own = s.node.registration.stopTimeoutMs ?? this.#options.stopTimeoutMs;
      const left = Math.max(0, budgetEnd - Date.now());
      try {
        await this.#stopOne(s, Math.min(own, left), left < own, why);
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  async #stopOne(s: Started, timeoutMs: number, byBudget: boolean, why: string): Promise<void> {
    const service = s.node.name;
    if (typeof s.instance?.stop !== 'function') return;
    const t0 = performance.now();
    const timer = deadline(timeoutMs);
    const pending = Promise.resolve().then(() => s.instance.stop?.());
    try {
      const outcome = await Promise.race([pending.then(() => 'stopped' as const), timer.promise]);
      if (outcome === 'timeout') {
        pending.catch((err: unknown) =>
          this.logger.error({ err, service }, 'stop failed after its deadline'),
        );
        throw new NatskitError(
          'SERVICE_STOP_TIMEOUT',
          `${service} did not stop within ${timeoutMs} ms (${byBudget ? 'the shutdown budget ran out' : 'its stopTimeoutMs'})`,
          { service, details: { timeoutMs, byBudget } },
        );
      }
      this.logger.info({ service, ms: Math.round(performance.now() - t0), why }, 'service stopped');
    } catch (err) {
      if (NatskitError.is(err, 'SERVICE_STOP_TIMEOUT')) throw err;
      throw new NatskitError('SERVICE_STOP_FAILED', `${service} failed to stop: ${message(err)}`, {
        cause: err,
        service,
      });
    } finally {
      timer.clear();
    }
  }
}
