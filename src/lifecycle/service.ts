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
 * What a service managed by the ServiceManager may implement. Every method is optional, and a
 * class with none of them (a plain dependency) is a service too.
 */
export type Service = object & {
  /**
   * Acquires the service's resources. The signal aborts when the start overruns its deadline or
   * the boot is abandoned; a long start should stop waiting then.
   */
  start?(signal: AbortSignal): void | Promise<void>;
  /** Releases what `start` acquired. Called once, in reverse start order. */
  stop?(): void | Promise<void>;
  /** Reports the service's health (`/healthz`, `/readyz`'s detail). */
  health?(): HealthCheckResult | Promise<HealthCheckResult>;
  /** Reports whether the service still makes progress (`/livez`): `fail` gets the pod restarted. */
  liveness?(): HealthCheckResult | Promise<HealthCheckResult>;
};

/** Lets a factory resolve other services. */
export type ServiceFactoryContext = ResolutionContext;

/** A class whose instances are `T`. */
export type ServiceClass<T = unknown> = abstract new (...args: never[]) => T;

/** The type a token resolves to. */
export type TokenType<K> =
  K extends Token<infer T> ? T : K extends abstract new (...args: never[]) => infer T ? T : unknown;

interface RegistrationBase<T> {
  /** The token the service is resolved by; a class may be its own token. */
  readonly token: ServiceToken<T>;
  /**
   * Tokens this service needs started before it. Constructor dependencies (`inject`, or
   * `@inject(TOKEN)`) count too, without being listed here.
   */
  readonly dependsOn?: readonly ServiceToken[];
  /** Deadline for this service's `start`. @defaultValue the manager's `startTimeoutMs` */
  readonly startTimeoutMs?: number;
  /** Deadline for this service's `stop`. @defaultValue the manager's `stopTimeoutMs` */
  readonly stopTimeoutMs?: number;
}

/**
 * How to register a service with the ServiceManager: a class, a factory, or a ready value. A
 * class gets its constructor arguments from `inject` (one token per parameter, in order: no
 * decorators needed) or, without it, from `@inject(TOKEN)` on each parameter.
 */
export type ServiceRegistration<T = unknown> = RegistrationBase<T> &
  (
    | {
        readonly useClass: new (...args: never[]) => T;
        /** The tokens of the constructor's parameters, in order. */
        readonly inject?: readonly ServiceToken<unknown>[];
        readonly useFactory?: never;
        readonly useValue?: never;
      }
    | {
        readonly useFactory: (context: ServiceFactoryContext) => T;
        readonly useClass?: never;
        readonly useValue?: never;
        readonly inject?: never;
      }
    | {
        readonly useValue: T;
        readonly useClass?: never;
        readonly useFactory?: never;
        readonly inject?: never;
      }
  );

/** A per-scope service: one instance per scope, disposed with the scope. */
export type ScopedRegistration<T = unknown> = Omit<
  ServiceRegistration<T>,
  'dependsOn' | 'startTimeoutMs' | 'stopTimeoutMs'
>;

type Types<I> = { readonly [J in keyof I]: TokenType<I[J]> };
type TokensFor<P> = { readonly [J in keyof P]: ServiceToken<P[J]> };

/**
 * One registration checked: the class must create the token's type, a value must be of it, and
 * `inject`'s tokens must fit the constructor's parameters. Factories are not checked here.
 */
export type CheckRegistration<R> = R extends { readonly token: infer K }
  ? R extends { readonly useClass: infer C extends abstract new (...args: never[]) => unknown }
    ? [InstanceType<C>] extends [TokenType<K>]
      ? R extends { readonly inject: infer I }
        ? [Types<I>] extends [ConstructorParameters<C>]
          ? R
          : Omit<R, 'inject'> & { readonly inject: TokensFor<ConstructorParameters<C>> }
        : R
      : Omit<R, 'useClass'> & { readonly useClass: ServiceClass<TokenType<K>> }
    : R extends { readonly useValue: infer V }
      ? [V] extends [TokenType<K>]
        ? R
        : Omit<R, 'token'> & { readonly token: K extends symbol ? Token<V> : ServiceClass<V> }
      : R
  : R;

/** Every registration of a list checked (see {@link CheckRegistration}). */
export type CheckRegistrations<S extends readonly unknown[]> = {
  readonly [K in keyof S]: CheckRegistration<S[K]>;
};
