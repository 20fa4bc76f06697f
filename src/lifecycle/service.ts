import type { Newable, ResolutionContext, ServiceIdentifier } from 'inversify';
import type { HealthCheckResult } from '../health/types.js';

export type { HealthCheckResult, HealthStatus } from '../health/types.js';

/**
 * A typed DI token: a unique symbol that remembers the type it resolves to.
 * Create one with {@link createToken}; the built-in service classes are their own tokens.
 */
export type Token<T> = symbol & { readonly __natskitTokenType?: T };

/** Anything that identifies a service: a {@link Token}, a class, or an inversify identifier. */
export type ServiceToken<T = unknown> = Token<T> | Newable<T> | ServiceIdentifier<T>;

/**
 * Creates a typed token for `@inject(TOKEN)` and `manager.get(TOKEN)`.
 *
 * @example
 * ```ts
 * export const MAILER = createToken<Mailer>('Mailer');
 * ```
 */
export function createToken<T>(description: string): Token<T> {
  return Symbol(description) as Token<T>;
}

/** A readable name for a token, for logs and errors. */
export function tokenName(token: unknown): string {
  if (typeof token === 'symbol') return token.description ?? token.toString();
  if (typeof token === 'function') return token.name || '<anonymous class>';
  return String(token);
}

/**
 * What a service managed by the ServiceManager may implement. Every method is optional.
 */
export interface Service {
  /**
   * Acquires the service's resources. The signal aborts when the start overruns its deadline or
   * the boot is abandoned; a long start should stop waiting then.
   */
  start?(signal: AbortSignal): void | Promise<void>;
  /** Releases what `start` acquired. Called once, in reverse start order. */
  stop?(): void | Promise<void>;
  /** Reports the service's health. */
  health?(): HealthCheckResult | Promise<HealthCheckResult>;
}

/** Lets a factory resolve other services. */
export type ServiceFactoryContext = ResolutionContext;

interface RegistrationBase<T> {
  /** The token the service is resolved by; a class may be its own token. */
  readonly token: ServiceToken<T>;
  /**
   * Tokens this service needs started before it. Constructor parameters declared with
   * `@inject(TOKEN)` count too, without being listed here.
   */
  readonly dependsOn?: readonly ServiceToken[];
  /** Deadline for this service's `start`. @defaultValue the manager's `startTimeoutMs` */
  readonly startTimeoutMs?: number;
  /** Deadline for this service's `stop`. @defaultValue the manager's `stopTimeoutMs` */
  readonly stopTimeoutMs?: number;
}

/**
 * How to register a service with the ServiceManager: a class (constructor parameters injected
 * with `@inject(TOKEN)`), a factory, or a ready value.
 */
export type ServiceRegistration<T = unknown> = RegistrationBase<T> &
  (
    | { readonly useClass: Newable<T>; readonly useFactory?: never; readonly useValue?: never }
    | {
        readonly useFactory: (context: ServiceFactoryContext) => T;
        readonly useClass?: never;
        readonly useValue?: never;
      }
    | { readonly useValue: T; readonly useClass?: never; readonly useFactory?: never }
  );

/** A per-scope service: one instance per scope, disposed with the scope. */
export type ScopedRegistration<T = unknown> = Omit<
  ServiceRegistration<T>,
  'dependsOn' | 'startTimeoutMs' | 'stopTimeoutMs'
>;
