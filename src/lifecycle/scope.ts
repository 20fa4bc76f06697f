import { Container } from 'inversify';
import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { NatskitAggregateError, NatskitError } from '../errors/natskit-error.js';
import { bindRegistration } from './bind.js';
import { resolve } from './resolve.js';
import { type ScopedRegistration, type ServiceToken, tokenName } from './service.js';

/** A value handed to one scope only (the job being processed, say). */
export interface ScopeValue<T = unknown> {
  readonly token: ServiceToken<T>;
  readonly useValue: T;
}

/** Options of `manager.createScope()`. */
export interface ScopeOptions {
  /** Values bound in this scope only; they are the caller's and are not disposed. */
  readonly values?: readonly ScopeValue[];
}

const SCOPE_KEYS = knownKeys<ScopeOptions>({ values: true });
const SCOPE_VALUE_KEYS = knownKeys<ScopeValue>({ token: true, useValue: true });

/**
 * A child container for per-job or per-request services. Scoped services are created once per
 * scope on first `get`; disposing the scope disposes them in reverse creation order. The app's
 * singletons resolve through it but are never disposed by it.
 */
export interface Scope extends AsyncDisposable {
  /** Resolves a scoped service (created on first use) or an app service. */
  get<T>(token: ServiceToken<T>): T;
  readonly disposed: boolean;
}

async function disposeOne(instance: unknown): Promise<void> {
  const i = instance as Partial<AsyncDisposable & Disposable & { stop(): unknown }>;
  const asyncDispose = i[Symbol.asyncDispose];
  const dispose = i[Symbol.dispose];
  if (typeof asyncDispose === 'function') await asyncDispose.call(i);
  else if (typeof dispose === 'function') dispose.call(i);
  else if (typeof i.stop === 'function') await i.stop();
}

/** @internal created by the ServiceManager. */
export class ServiceScope implements Scope {
  readonly #container: Container;
  readonly #created: { name: string; instance: unknown }[] = [];
  readonly #onDisposed: (scope: ServiceScope) => void;
  #disposing: Promise<void> | undefined;

  constructor(
    parent: Container,
    scoped: readonly ScopedRegistration[],
    options: ScopeOptions,
    onDisposed: (scope: ServiceScope) => void,
  ) {
    checkOptionsObject('createScope options ', options, SCOPE_KEYS);
    (options.values ?? []).forEach((v: unknown, i: number) => {
      checkOptionsObject(`createScope options values[${i}]`, v, SCOPE_VALUE_KEYS);
    });
    this.#container = new Container({ parent });
    this.#onDisposed = onDisposed;
    for (const r of scoped) {
      const name = tokenName(r.token);
      bindRegistration(this.#container, r, (instance) => this.#created.push({ name, instance }));
    }
    for (const v of options.values ?? []) this.#container.bind(v.token).toConstantValue(v.useValue);
  }

  get disposed(): boolean {
    return this.#disposing !== undefined;
  }

  get<T>(token: ServiceToken<T>): T {
    if (this.#disposing !== undefined) {
      throw new NatskitError(
        'INVALID_STATE',
        `cannot get ${tokenName(token)}: the scope is disposed`,
      );
    }
    if (!this.#container.isBound(token)) {
      throw new NatskitError('SERVICE_NOT_FOUND', `${tokenName(token)} is not registered`, {
        service: tokenName(token),
      });
    }
    return resolve(this.#container, token);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposing ??= this.#dispose();
    return this.#disposing;
  }

  async #dispose(): Promise<void> {
    const errors: unknown[] = [];
    for (const { name, instance } of this.#created.reverse()) {
      try {
        await disposeOne(instance);
      } catch (err) {
        errors.push(
          new NatskitError('SCOPE_DISPOSE_FAILED', `disposing scoped ${name} failed`, {
            cause: err,
            service: name,
          }),
        );
      }
    }
    this.#created.length = 0;
    this.#onDisposed(this);
    if (errors.length > 0) {
      throw new NatskitAggregateError(
        'SCOPE_DISPOSE_FAILED',
        `${errors.length} scoped service(s) failed to dispose`,
        errors,
      );
    }
  }
}
