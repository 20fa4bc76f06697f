import type { ResolutionContext } from '@inversifyjs/core';
import type { Container } from 'inversify';
import { NatskitError } from '../errors/natskit-error.js';
import { type ScopedRegistration, type ServiceRegistration, tokenName } from './service.js';

/**
 * The factory's context, whose `get` of a token nobody registered fails with
 * `DEPENDENCY_MISSING` naming the factory form (a factory's dependencies are only known when it
 * runs), instead of the container's "No bindings found".
 */
function factoryContext(
  container: Container,
  owner: unknown,
  ctx: ResolutionContext,
): ResolutionContext {
  const check = (token: unknown, options: unknown) => {
    const optional = (options as { optional?: unknown } | undefined)?.optional === true;
    if (!optional && !container.isBound(token as symbol)) {
      throw new NatskitError(
        'DEPENDENCY_MISSING',
        `${tokenName(owner)} depends on ${tokenName(token)} (ctx.get in its useFactory), which is not registered`,
        { service: tokenName(owner), details: { missing: tokenName(token), form: 'useFactory' } },
      );
    }
  };
  return new Proxy(ctx, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (prop !== 'get' && prop !== 'getAsync') return value.bind(target);
      return (token: unknown, options?: unknown) => {
        check(token, options);
        return (value as (t: unknown, o?: unknown) => unknown).call(target, token, options);
      };
    },
  });
}

/**
 * Binds a registration in a container: a class or a factory as a singleton of that container
 * (`onActivation` sees each instance it creates), a value as a constant.
 */
export function bindRegistration(
  container: Container,
  r: ServiceRegistration | ScopedRegistration,
  onActivation?: (instance: unknown) => void,
): void {
  const bind = container.bind(r.token);
  const track = (_: unknown, instance: unknown) => {
    onActivation?.(instance);
    return instance;
  };
  if ('useClass' in r && r.useClass !== undefined && r.inject !== undefined) {
    // Decorator-free: the constructor gets the listed tokens, in order.
    const cls = r.useClass as new (...args: unknown[]) => unknown;
    const tokens = r.inject;
    bind
      .toDynamicValue((ctx) => new cls(...tokens.map((t) => ctx.get(t as symbol))))
      .inSingletonScope()
      .onActivation(track);
  } else if ('useClass' in r && r.useClass !== undefined) {
    bind.to(r.useClass).inSingletonScope().onActivation(track);
  } else if ('useFactory' in r && r.useFactory !== undefined) {
    const factory = r.useFactory;
    bind
      .toDynamicValue((ctx) => factory(factoryContext(container, r.token, ctx)))
      .inSingletonScope()
      .onActivation(track);
  } else {
    bind.toConstantValue((r as { useValue: unknown }).useValue);
  }
}
