import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  createToken,
  inject,
  NatskitError,
  type Service,
  ServiceManager,
  type ServiceRegistration,
} from '../../../src/index.js';

/** Records what every fake service did, with real timestamps. */
class Journal {
  readonly events: string[] = [];
  readonly spans = new Map<string, { begin: number; end: number }>();
  readonly stops: string[] = [];
  readonly aborted: string[] = [];
}

interface FakeOptions {
  startMs?: number;
  failStart?: boolean;
  failStop?: boolean;
  hang?: boolean;
  ignoreSignal?: boolean;
  stopMs?: number;
}

function fake(journal: Journal, name: string, o: FakeOptions = {}): Service {
  return {
    async start(signal: AbortSignal) {
      const begin = performance.now();
      journal.events.push(`start ${name}`);
      signal.addEventListener('abort', () => journal.aborted.push(name));
      if (o.hang) {
        await new Promise<void>((resolve, reject) => {
          if (o.ignoreSignal) setTimeout(resolve, 300);
          else signal.addEventListener('abort', () => reject(signal.reason));
        });
      } else if (o.startMs) await sleep(o.startMs);
      if (o.failStart) throw new Error(`${name} cannot start`);
      journal.spans.set(name, { begin, end: performance.now() });
      journal.events.push(`started ${name}`);
    },
    async stop() {
      journal.stops.push(name);
      if (o.stopMs) await sleep(o.stopMs);
      if (o.failStop) throw new Error(`${name} cannot stop`);
    },
  };
}

const A = createToken<Service>('A');
const B = createToken<Service>('B');
const C = createToken<Service>('C');
const D = createToken<Service>('D');

/** C is a class whose dependency on A is declared only through @inject. */
function classC(journal: Journal, o: FakeOptions = {}) {
  class CService implements Service {
    readonly impl: Service;
    constructor(@inject(A) readonly a: Service) {
      this.impl = fake(journal, 'C', o);
    }
    start(signal: AbortSignal) {
      return this.impl.start?.(signal);
    }
    stop() {
      return this.impl.stop?.();
    }
  }
  return CService;
}

function diamond(
  journal: Journal,
  opts: Partial<Record<'A' | 'B' | 'C' | 'D', FakeOptions>> = {},
): ServiceRegistration[] {
  return [
    // Deliberately registered out of order: the graph decides.
    { token: D, useFactory: () => fake(journal, 'D', opts.D), dependsOn: [B, C] },
    { token: B, useFactory: () => fake(journal, 'B', { startMs: 60, ...opts.B }), dependsOn: [A] },
    { token: C, useClass: classC(journal, { startMs: 60, ...opts.C }) },
    { token: A, useFactory: () => fake(journal, 'A', opts.A) },
  ];
}

const quiet = { logger: { level: 'silent' as const } };

describe('ServiceManager boot order', () => {
  it('starts a diamond along the graph, B and C concurrently, and stops in exact reverse', async () => {
    const journal = new Journal();
    const manager = await ServiceManager.start({ ...quiet, services: diamond(journal) });
    expect(manager.state).toBe('running');
    const span = (n: string) => journal.spans.get(n) ?? { begin: Number.NaN, end: Number.NaN };
    expect(span('A').end).toBeLessThanOrEqual(span('B').begin);
    expect(span('A').end).toBeLessThanOrEqual(span('C').begin);
    // B and C overlap in time.
    expect(span('B').begin).toBeLessThan(span('C').end);
    expect(span('C').begin).toBeLessThan(span('B').end);
    expect(span('D').begin).toBeGreaterThanOrEqual(Math.max(span('B').end, span('C').end));

    const startOrder = journal.events
      .filter((e) => e.startsWith('started '))
      .map((e) => e.slice(8));
    await manager.stop();
    expect(manager.state).toBe('stopped');
    expect(journal.stops).toEqual([...startOrder].reverse());
    expect(journal.stops[0]).toBe('D');
    expect(journal.stops[3]).toBe('A');
  });

  it('rolls back when D fails: A, B, C stopped in reverse, D not stopped, error names D', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: diamond(journal, { D: { failStart: true } }),
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SERVICE_START_FAILED')).toBe(true);
    expect((err as NatskitError).service).toBe('D');
    expect((err as Error).message).toContain('D cannot start');
    expect(((err as NatskitError).cause as Error).message).toBe('D cannot start');
    expect(journal.stops).not.toContain('D');
    const startOrder = journal.events
      .filter((e) => e.startsWith('started '))
      .map((e) => e.slice(8));
    expect(journal.stops).toEqual([...startOrder].reverse());
    expect(journal.stops).toHaveLength(3);
  });

  it('attaches a stop that throws during rollback, and still stops the rest', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: diamond(journal, { D: { failStart: true }, B: { failStop: true } }),
    }).catch((e: unknown) => e as NatskitError);
    expect(NatskitError.is(err, 'SERVICE_START_FAILED')).toBe(true);
    const rollbackErrors = (err as NatskitError).details?.rollbackErrors as NatskitError[];
    expect(rollbackErrors).toHaveLength(1);
    expect(rollbackErrors[0]?.code).toBe('SERVICE_STOP_FAILED');
    expect(rollbackErrors[0]?.service).toBe('B');
    expect(journal.stops.sort()).toEqual(['A', 'B', 'C']);
  });

  it('aborts a start that hangs past its deadline and rolls back', async () => {
    const journal = new Journal();
    const t0 = performance.now();
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useFactory: () => fake(journal, 'A') },
        {
          token: B,
          useFactory: () => fake(journal, 'B', { hang: true }),
          dependsOn: [A],
          startTimeoutMs: 150,
        },
      ],
    }).catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(NatskitError.is(err, 'SERVICE_START_TIMEOUT')).toBe(true);
    expect((err as NatskitError).service).toBe('B');
    expect((err as Error).message).toContain('150 ms');
    expect(journal.aborted).toContain('B');
    expect(journal.stops).toEqual(['A']);
    expect(elapsed).toBeGreaterThanOrEqual(140);
  });

  it('stops a service whose start ignored its signal and finished after the deadline', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        {
          token: A,
          useFactory: () => fake(journal, 'A', { hang: true, ignoreSignal: true }),
          startTimeoutMs: 50,
        },
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SERVICE_START_TIMEOUT')).toBe(true);
    expect(journal.stops).toEqual([]);
    await sleep(400);
    expect(journal.stops).toEqual(['A']);
  });

  it('a failing sibling aborts the others of its level before the rollback', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useFactory: () => fake(journal, 'A', { startMs: 10, failStart: true }) },
        { token: B, useFactory: () => fake(journal, 'B', { hang: true }) },
      ],
    }).catch((e: unknown) => e);
    expect((err as NatskitError).service).toBe('A');
    expect(journal.aborted).toContain('B');
  });
});

describe('ServiceManager graph errors', () => {
  it('a cycle fails before anything starts and names it', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useFactory: () => fake(journal, 'A'), dependsOn: [B] },
        { token: B, useFactory: () => fake(journal, 'B'), dependsOn: [A] },
        { token: C, useFactory: () => fake(journal, 'C') },
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'DEPENDENCY_CYCLE')).toBe(true);
    expect((err as Error).message).toContain('A -> B -> A');
    expect(journal.events).toEqual([]);
  });

  it('a missing dependency fails before anything starts, naming who asked for what', async () => {
    const journal = new Journal();
    const X = createToken<Service>('X');
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useFactory: () => fake(journal, 'A') },
        { token: B, useFactory: () => fake(journal, 'B'), dependsOn: [A, X] },
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'DEPENDENCY_MISSING')).toBe(true);
    expect((err as Error).message).toBe('B depends on X (dependsOn), which is not registered');
    expect(journal.events).toEqual([]);
  });

  it('a missing @inject dependency is reported too', async () => {
    const journal = new Journal();
    const err = await ServiceManager.start({
      ...quiet,
      services: [{ token: C, useClass: classC(journal) }],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'DEPENDENCY_MISSING')).toBe(true);
    expect((err as Error).message).toBe('C depends on A (@inject), which is not registered');
  });
});

describe('ServiceManager stop', () => {
  it('is memoized and idempotent, and gathers every failing stop into one AggregateError', async () => {
    const journal = new Journal();
    const manager = await ServiceManager.start({
      ...quiet,
      services: [
        { token: A, useFactory: () => fake(journal, 'A', { failStop: true }) },
        { token: B, useFactory: () => fake(journal, 'B'), dependsOn: [A] },
        { token: C, useFactory: () => fake(journal, 'C', { failStop: true }), dependsOn: [B] },
      ],
    });
    const first = manager.stop();
    expect(manager.stop()).toBe(first);
    const err = await first.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect(NatskitError.is(err, 'SHUTDOWN_FAILED')).toBe(true);
    const errors = (err as AggregateError).errors as NatskitError[];
    expect(errors.map((e) => [e.code, e.service])).toEqual([
      ['SERVICE_STOP_FAILED', 'C'],
      ['SERVICE_STOP_FAILED', 'A'],
    ]);
    expect(journal.stops).toEqual(['C', 'B', 'A']);
    await manager.stop().catch(() => undefined);
    expect(journal.stops).toEqual(['C', 'B', 'A']);
  });

  it('enforces stopTimeoutMs and the shutdown budget, and still runs every later stop', async () => {
    const journal = new Journal();
    const manager = await ServiceManager.start({
      ...quiet,
      shutdownTimeoutMs: 300,
      services: [
        { token: A, useFactory: () => fake(journal, 'A') },
        { token: B, useFactory: () => fake(journal, 'B', { stopMs: 5_000 }), dependsOn: [A] },
        {
          token: C,
          useFactory: () => fake(journal, 'C', { stopMs: 5_000 }),
          dependsOn: [B],
          stopTimeoutMs: 100,
        },
      ],
    });
    const t0 = performance.now();
    const err = (await manager.stop().catch((e: unknown) => e)) as AggregateError;
    const elapsed = performance.now() - t0;
    const errors = err.errors as NatskitError[];
    expect(errors.map((e) => [e.code, e.service, e.details?.byBudget])).toEqual([
      ['SERVICE_STOP_TIMEOUT', 'C', false],
      ['SERVICE_STOP_TIMEOUT', 'B', true],
    ]);
    expect(journal.stops).toEqual(['C', 'B', 'A']);
    expect(elapsed).toBeLessThan(1_000);
  });

  it('works with await using, and reports its states in order', async () => {
    const journal = new Journal();
    const states: string[] = [];
    {
      await using manager = await ServiceManager.start({
        ...quiet,
        services: [{ token: A, useFactory: () => fake(journal, 'A') }],
      });
      manager.onStateChange((s) => states.push(s));
      expect(journal.stops).toEqual([]);
    }
    expect(journal.stops).toEqual(['A']);
    expect(states).toEqual(['stopping', 'stopped']);
  });

  it('an aborted boot signal abandons the boot and rolls back', async () => {
    const journal = new Journal();
    const ac = new AbortController();
    const pending = ServiceManager.start({
      ...quiet,
      signal: ac.signal,
      services: [
        { token: A, useFactory: () => fake(journal, 'A') },
        { token: B, useFactory: () => fake(journal, 'B', { hang: true }), dependsOn: [A] },
      ],
    });
    await sleep(50);
    ac.abort(new Error('shutting down'));
    const err = await pending.catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SERVICE_START_FAILED')).toBe(true);
    expect(journal.aborted).toContain('B');
    expect(journal.stops).toEqual(['A']);
  });

  it('get() resolves services and names an unknown token', async () => {
    const journal = new Journal();
    await using manager = await ServiceManager.start({ ...quiet, services: diamond(journal) });
    expect(manager.get(B)).toBe(manager.get(B));
    const X = createToken<Service>('X');
    expect(() => manager.get(X)).toThrow(expect.objectContaining({ code: 'SERVICE_NOT_FOUND' }));
  });
});

describe('ServiceManager options', () => {
  it.each([
    [{ startTimeoutMs: -1 }, 'options.startTimeoutMs'],
    [{ shutdownTimeoutMs: Number.NaN }, 'options.shutdownTimeoutMs'],
    [{ services: [{ token: A }] }, 'options.services[0] must have exactly one of'],
    [{ services: [{ token: 42, useValue: {} }] }, 'options.services[0].token'],
    [
      {
        services: [
          { token: A, useValue: {} },
          { token: A, useValue: {} },
        ],
      },
      'options.services[1].token is registered twice',
    ],
    [
      { services: [{ token: A, useValue: {}, stopTimeoutMs: 0 }] },
      'options.services[0].stopTimeoutMs',
    ],
    [{ logger: { level: 'loud' } }, 'options.logger.level'],
  ])('rejects %j naming the field', async (options, field) => {
    const err = await ServiceManager.start({ ...(options as object) }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
    expect((err as Error).message).toContain(field);
  });
});
