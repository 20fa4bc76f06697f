import type { Container } from 'inversify';
import type { ScopedRegistration, ServiceRegistration } from './service.js';

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
      .toDynamicValue((ctx) => factory(ctx))
      .inSingletonScope()
      .onActivation(track);
  } else {
    bind.toConstantValue((r as { useValue: unknown }).useValue);
  }
}
