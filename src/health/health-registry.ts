import { performance } from 'node:perf_hooks';
import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { describeThrown } from '../errors/thrown.js';
import type { HealthCheckResult, HealthStatus } from './types.js';

/** A check's function: what it measures, now. */
export type HealthCheckFn = () => HealthCheckResult | Promise<HealthCheckResult>;

/** Options of one check. */
export interface HealthCheckOptions {
  /** A check that takes longer reports `fail`. @defaultValue 2000 */
  readonly timeoutMs?: number;
  /** A result is reused this long, so a probe storm never hammers NATS. @defaultValue 1000 */
  readonly cacheMs?: number;
  /** `'liveness'` checks answer `/livez`; the others `/healthz` (and `/readyz` for `'readiness'`). @defaultValue 'health' */
  readonly kind?: 'liveness' | 'readiness' | 'health';
}

/** One check's entry in a report (IETF health check draft). */
export interface HealthCheckEntry extends HealthCheckResult {
  /** When it was measured (ISO 8601). */
  readonly time: string;
}

/** A report of several checks: `application/health+json`. */
export interface HealthReport {
  readonly status: HealthStatus;
  readonly checks: Readonly<Record<string, readonly HealthCheckEntry[]>>;
}

interface Registered {
  readonly fn: HealthCheckFn;
  readonly timeoutMs: number;
  readonly cacheMs: number;
  readonly kind: NonNullable<HealthCheckOptions['kind']>;
  last?: { entry: HealthCheckEntry; at: number };
  running?: Promise<HealthCheckEntry> | undefined;
}

/** Combines statuses: any fail is fail, else any warn is warn. */
export function worst(statuses: Iterable<HealthStatus>): HealthStatus {
  let out: HealthStatus = 'pass';
  for (const s of statuses) {
    if (s === 'fail') return 'fail';
    if (s === 'warn') out = 'warn';
  }
  return out;
}

const CHECK_KEYS = knownKeys<HealthCheckOptions>({ timeoutMs: true, cacheMs: true, kind: true });

/**
 * The health checks of an app. The built-in services contribute theirs; add your own with
 * {@link HealthRegistry.register}. Each check has a timeout and a short cache.
 */
export class HealthRegistry {
  readonly #checks = new Map<string, Registered>();

  /** Adds (or replaces) a check; returns the function that removes it. */
  register(name: string, fn: HealthCheckFn, options: HealthCheckOptions = {}): () => void {
    checkOptionsObject(`health check ${name} options `, options, CHECK_KEYS);
    this.#checks.set(name, {
      fn,
      timeoutMs: options.timeoutMs ?? 2_000,
      cacheMs: options.cacheMs ?? 1_000,
      kind: options.kind ?? 'health',
    });
    return () => this.#checks.delete(name);
  }

  /** The names of the checks of a kind (all when not given). */
  names(kind?: HealthCheckOptions['kind']): string[] {
    return [...this.#checks]
      .filter(([, c]) => kind === undefined || c.kind === kind)
      .map(([n]) => n);
  }

  async #run(c: Registered): Promise<HealthCheckEntry> {
    if (c.last && performance.now() - c.last.at < c.cacheMs) return c.last.entry;
    c.running ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<HealthCheckResult>((resolve) => {
        timer = setTimeout(
          () => resolve({ status: 'fail', output: `check timed out after ${c.timeoutMs} ms` }),
          c.timeoutMs,
        );
      });
      let result: HealthCheckResult;
      try {
        result = await Promise.race([Promise.resolve().then(c.fn), timeout]);
      } catch (err) {
        result = {
          status: 'fail',
          output: `check threw: ${describeThrown(err)}`,
        };
      } finally {
        clearTimeout(timer);
      }
      const entry = { ...result, time: new Date().toISOString() };
      c.last = { entry, at: performance.now() };
      return entry;
    })().finally(() => {
      c.running = undefined;
    });
    return await c.running;
  }

  /** Runs the checks of the given kinds (all when not given) and combines them. */
  async report(kinds?: readonly NonNullable<HealthCheckOptions['kind']>[]): Promise<HealthReport> {
    const selected = [...this.#checks].filter(([, c]) => !kinds || kinds.includes(c.kind));
    const entries = await Promise.all(
      selected.map(async ([name, c]) => [name, await this.#run(c)] as const),
    );
    return {
      status: worst(entries.map(([, e]) => e.status)),
      checks: Object.fromEntries(entries.map(([name, e]) => [name, [e]])),
    };
  }
}
