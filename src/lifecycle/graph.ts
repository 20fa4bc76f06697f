import { ClassElementMetadataKind, getClassMetadata } from '@inversifyjs/core';
import { LazyServiceIdentifier, type Newable } from 'inversify';
import { NatskitError } from '../errors/natskit-error.js';
import {
  type ScopedRegistration,
  type ServiceRegistration,
  type ServiceToken,
  tokenName,
} from './service.js';

/** A node of the service graph: a registration and the tokens it needs started first. */
export interface GraphNode {
  readonly registration: ServiceRegistration;
  readonly name: string;
  /** Registered services this one depends on (declared or injected). */
  readonly dependsOn: readonly ServiceToken[];
}

function unwrap(id: unknown): unknown {
  return id instanceof LazyServiceIdentifier ? id.unwrap() : id;
}

/** Where inversify keeps a class's metadata (pinned to the inversify version natskit uses). */
const CLASS_METADATA_KEY = '@inversifyjs/core/classMetadataReflectKey';

/** Constructor parameter indexes of `cls` that have no injection decorator, and how many do. */
function undecorated(cls: Newable): { missing: number[]; decorated: number } {
  const read = (Reflect as { getOwnMetadata?: (key: string, target: object) => unknown })
    .getOwnMetadata;
  const args =
    (read?.(CLASS_METADATA_KEY, cls) as { constructorArguments?: unknown[] } | undefined)
      ?.constructorArguments ?? [];
  const missing: number[] = [];
  const total = Math.max(cls.length, args.length);
  for (let i = 0; i < total; i++) {
    if (args[i] === undefined) missing.push(i);
  }
  return { missing, decorated: total - missing.length };
}

/**
 * How to fix a class registration that says nothing of some constructor parameters, worded for
 * the form the user wrote: no decorators at all points to `inject: [...]` (the form the README
 * leads with) first; a class with decorators on some parameters, to the decorators.
 */
function injectionAdvice(cls: Newable, missing: readonly number[], decorated: number): string {
  const className = cls.name || 'the class';
  const at = `parameter${missing.length === 1 ? '' : 's'} at index ${missing.join(', ')}`;
  if (decorated === 0) {
    return (
      `the constructor of ${className} takes ${cls.length || missing.length} parameter${missing.length === 1 ? '' : 's'} and the registration does not say what to pass: ` +
      `list one token per parameter, in order, with inject: [TOKEN, ...] in the registration (no decorators needed), ` +
      `or put @inject(TOKEN) on each parameter (experimentalDecorators; natskit does not use emitDecoratorMetadata)`
    );
  }
  return (
    `constructor ${at} of ${className} ha${missing.length === 1 ? 's' : 've'} no @inject(TOKEN), while its other parameters have one: ` +
    'give each @inject(TOKEN), or @unmanaged() for one the container must not fill ' +
    '(natskit does not use emitDecoratorMetadata); or drop the decorators and list the tokens in inject: [...]'
  );
}

/** The class's injection metadata; `INJECTION_MISSING` naming the parameters when incomplete. */
function classMetadata(cls: Newable, token: unknown): ReturnType<typeof getClassMetadata> {
  try {
    return getClassMetadata(cls);
  } catch (err) {
    const { missing, decorated } = undecorated(cls);
    const name = tokenName(token);
    throw new NatskitError(
      'INJECTION_MISSING',
      `${name}: ${injectionAdvice(cls, missing, decorated)}`,
      {
        cause: err,
        service: name,
        details: { parameters: missing, form: decorated === 0 ? 'none' : '@inject' },
      },
    );
  }
}

/**
 * Checks that every class registration declares what its constructor needs.
 * @throws NatskitError `INJECTION_MISSING` before anything starts.
 */
export function checkInjections(
  registrations: readonly (ServiceRegistration | ScopedRegistration)[],
): void {
  for (const r of registrations) {
    if (!('useClass' in r) || typeof r.useClass !== 'function') continue;
    if (r.inject === undefined) {
      classMetadata(r.useClass as Newable, r.token);
      continue;
    }
    // With `inject`, one token per constructor parameter: fewer leaves one undefined.
    const missing: number[] = [];
    for (let i = r.inject.length; i < r.useClass.length; i++) missing.push(i);
    if (missing.length > 0) {
      const name = tokenName(r.token);
      throw new NatskitError(
        'INJECTION_MISSING',
        `${name}: inject: [...] lists ${r.inject.length} token(s) but the constructor of ${r.useClass.name || 'the class'} takes ${r.useClass.length}; parameter${missing.length === 1 ? '' : 's'} at index ${missing.join(', ')} would be undefined: add ${missing.length === 1 ? 'its token' : 'their tokens'} to inject`,
        { service: name, details: { parameters: missing, form: 'inject' } },
      );
    }
  }
}

/**
 * Tokens a class receives, through `inject: [...]` or `@inject` (constructor parameters and
 * properties), each with where it was asked for, in the form the user wrote.
 */
function injectedTokens(
  registration: ServiceRegistration,
): { token: unknown; optional: boolean; how: string }[] {
  if (!('useClass' in registration) || typeof registration.useClass !== 'function') return [];
  if (registration.inject !== undefined) {
    return registration.inject.map((token, i) => ({ token, optional: false, how: `inject[${i}]` }));
  }
  const metadata = classMetadata(registration.useClass as Newable, registration.token);
  const elements = [
    ...metadata.constructorArguments.map((el) => ({ el, how: '@inject' })),
    ...[...metadata.properties].map(([key, el]) => ({
      el,
      how: `@inject on property ${String(key)}`,
    })),
  ];
  return elements.flatMap(({ el, how }) =>
    el.kind === ClassElementMetadataKind.unmanaged
      ? []
      : [{ token: unwrap(el.value), optional: el.optional, how }],
  );
}

/**
 * Builds the dependency graph and returns it in levels: every service of a level depends only
 * on services of earlier levels, so a level can start concurrently.
 *
 * @param provided tokens the manager binds itself (the logger...): valid dependencies that are
 * not services.
 * @throws NatskitError `DEPENDENCY_MISSING` naming who asked for what, `DEPENDENCY_CYCLE`
 * naming the cycle.
 */
export function planLevels(
  registrations: readonly ServiceRegistration[],
  provided: ReadonlySet<unknown>,
): GraphNode[][] {
  const byToken = new Map<unknown, GraphNode>();
  for (const registration of registrations) {
    const deps = new Set<ServiceToken>();
    for (const dep of registration.dependsOn ?? []) {
      if (!provided.has(dep)) deps.add(dep);
      if (!provided.has(dep) && !registrations.some((r) => r.token === dep)) {
        throw missing(registration.token, dep, 'dependsOn');
      }
    }
    for (const { token, optional, how } of injectedTokens(registration)) {
      if (provided.has(token)) continue;
      if (registrations.some((r) => r.token === token)) deps.add(token as ServiceToken);
      else if (!optional) throw missing(registration.token, token, how);
    }
    byToken.set(registration.token, {
      registration,
      name: tokenName(registration.token),
      dependsOn: [...deps],
    });
  }
  findCycle(byToken);

  const levels: GraphNode[][] = [];
  const placed = new Set<unknown>();
  while (placed.size < byToken.size) {
    const level = [...byToken.values()].filter(
      (n) => !placed.has(n.registration.token) && n.dependsOn.every((d) => placed.has(d)),
    );
    for (const n of level) placed.add(n.registration.token);
    levels.push(level);
  }
  return levels;
}

function missing(who: unknown, what: unknown, how: string): NatskitError {
  return new NatskitError(
    'DEPENDENCY_MISSING',
    `${tokenName(who)} depends on ${tokenName(what)} (${how}), which is not registered`,
    { service: tokenName(who), details: { missing: tokenName(what) } },
  );
}

/** Depth-first search; throws on the first cycle with its path `A -> B -> A`. */
function findCycle(byToken: ReadonlyMap<unknown, GraphNode>): void {
  const done = new Set<unknown>();
  const path: unknown[] = [];
  const visit = (token: unknown): void => {
    if (done.has(token)) return;
    const at = path.indexOf(token);
    if (at >= 0) {
      const cycle = [...path.slice(at), token].map(tokenName);
      throw new NatskitError('DEPENDENCY_CYCLE', `dependency cycle: ${cycle.join(' -> ')}`, {
        details: { cycle },
      });
    }
    path.push(token);
    for (const dep of byToken.get(token)?.dependsOn ?? []) visit(dep);
    path.pop();
    done.add(token);
  };
  for (const token of byToken.keys()) visit(token);
}
