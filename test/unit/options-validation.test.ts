import { describe, expect, it } from 'vitest';
import {
  checkKnownKeys,
  closestName,
  describeValue,
  knownKeys,
  positiveInt,
} from '../../src/config/validate.js';
import { resolveConnectionOptions } from '../../src/connection/options.js';
import {
  type ConnectionOptions,
  createToken,
  fromEnv,
  type HostOptions,
  NatskitError,
  ServiceManager,
  type ServiceManagerOptions,
  stateModule,
} from '../../src/index.js';
import { checkBucketConfig } from '../../src/kv/bucket-config.js';

const quiet = { logger: { level: 'silent' as const } };

/** The error `run` throws or rejects with, which must be a natskit INVALID_OPTIONS. */
async function invalid(run: () => unknown): Promise<NatskitError> {
  let caught: unknown;
  try {
    await run();
  } catch (err) {
    caught = err;
  }
  if (!NatskitError.is(caught, 'INVALID_OPTIONS'))
    throw new Error(`expected INVALID_OPTIONS, got ${String(caught)}`);
  return caught;
}

describe('unknown option names are refused, naming the closest known one', () => {
  it('nats: { server } (a typo of servers) fails before connecting anywhere', async () => {
    const err = await invalid(() =>
      ServiceManager.start({
        ...quiet,
        nats: { server: 'nats://127.0.0.1:1' } as ConnectionOptions,
      }),
    );
    expect(err.message).toContain("nats.server is not a known option (did you mean 'servers'?)");
    expect(err.message).toContain('known: servers, name,');
    expect(err.details).toMatchObject({ field: 'nats.server', suggestion: 'servers' });
  });

  it('ServiceManager.start({ metric: true }) is refused', async () => {
    const err = await invalid(() =>
      ServiceManager.start({ ...quiet, metric: true } as ServiceManagerOptions),
    );
    expect(err.message).toContain("options.metric is not a known option (did you mean 'metrics'?)");
  });

  it('a nats.js client option name points to natskit’s name for it', () => {
    const err = (() => {
      try {
        resolveConnectionOptions({ timeout: 1000 } as ConnectionOptions);
      } catch (e) {
        return e as NatskitError;
      }
      throw new Error('accepted');
    })();
    expect(err.message).toContain(
      "nats.timeout is not a known option (did you mean 'connectTimeoutMs'?)",
    );
  });

  it('each nested block is checked: tls, health, metrics, logger, kv, state, registrations, modules', async () => {
    const cases: [Partial<ServiceManagerOptions>, string][] = [
      [
        { nats: { tls: { caFil: 'x' } } as ConnectionOptions },
        "nats.tls.caFil is not a known option (did you mean 'caFile'?)",
      ],
      [
        { health: { prot: 1 } } as HostOptions,
        "options.health.prot is not a known option (did you mean 'port'?)",
      ],
      [
        { metrics: { processMetric: false } } as HostOptions,
        "options.metrics.processMetric is not a known option (did you mean 'processMetrics'?)",
      ],
      [
        { logger: { levl: 'info' } } as HostOptions,
        "options.logger.levl is not a known option (did you mean 'level'?)",
      ],
      [
        { kv: { drfit: 'warn' } } as ServiceManagerOptions,
        "options.kv.drfit is not a known option (did you mean 'drift'?)",
      ],
      [
        { kv: { retry: { retires: 1 } } } as ServiceManagerOptions,
        "options.kv.retry.retires is not a known option (did you mean 'retries'?)",
      ],
      [
        {
          state: { backend: 'sqlite', path: ':memory:', synchronus: 'full' },
        } as ServiceManagerOptions,
        "options.state.synchronus is not a known option (did you mean 'synchronous'?)",
      ],
      [
        { state: { backend: 'nats', buckt: 'x' } } as ServiceManagerOptions,
        "options.state.buckt is not a known option (did you mean 'bucket'?)",
      ],
      [
        {
          services: [{ token: createToken('a'), useValue: 1, dependOn: [] }],
        } as unknown as HostOptions,
        "options.services[0].dependOn is not a known option (did you mean 'dependsOn'?)",
      ],
      [
        {
          scoped: [{ token: createToken('b'), useValue: 1, startTimeoutMs: 5 }],
        } as unknown as HostOptions,
        'options.scoped[0].startTimeoutMs is not a known option',
      ],
      [
        { modules: [{ name: 'm', service: [] }] } as unknown as HostOptions,
        "options.modules[0].service is not a known option (did you mean 'services'?)",
      ],
    ];
    for (const [options, message] of cases) {
      const err = await invalid(() => ServiceManager.start({ ...quiet, ...options }));
      expect(err.message).toContain(message);
    }
  });

  it('stateModule used alone checks its options too', async () => {
    const err = await invalid(() => stateModule({ backend: 'sqlite', pth: 'x' } as never));
    expect(err.message).toContain('options.state.pth is not a known option');
  });

  it('bucket configs keep refusing unknown fields, through the shared check', async () => {
    const err = await invalid(() => checkBucketConfig({ histroy: 5 } as never));
    expect(err.message).toBe(
      "bucket config histroy is not a known option (did you mean 'history'?); known: history, ttlMs, maxValueSize, maxBytes, replicas, storage, perKeyTtl, markerTtlMs, placement, mirror, sources, description",
    );
    expect(err.details).toMatchObject({ field: 'histroy', suggestion: 'history' });
    const placement = await invalid(() =>
      checkBucketConfig({ placement: { clustr: 'c' } } as never),
    );
    expect(placement.message).toContain(
      "placement.clustr is not a known option (did you mean 'cluster'?)",
    );
  });

  it('an unknown name far from every known one lists the known ones without a guess', () => {
    expect(() => checkKnownKeys('nats', { zzz: 1 }, ['servers', 'name'])).toThrow(
      /^nats\.zzz is not a known option; known: servers, name$/,
    );
  });

  it('fromEnv output stays accepted by the connection checks', () => {
    const env = fromEnv({
      NATS_URL: 'nats://a:4222',
      NATS_USER: 'u',
      NATS_PASSWORD: 'p',
      NATS_NAME: 'n',
    });
    expect(() => resolveConnectionOptions(env.nats as ConnectionOptions)).not.toThrow();
  });
});

describe('closestName', () => {
  it('finds one-letter typos and case slips, not unrelated names', () => {
    const known = ['servers', 'name', 'concurrency', 'maxDeliver'];
    expect(closestName('server', known)).toBe('servers');
    expect(closestName('concurency', known)).toBe('concurrency');
    expect(closestName('maxdeliver', known)).toBe('maxDeliver');
    expect(closestName('foo', known)).toBeUndefined();
  });
});

describe('knownKeys', () => {
  it('lists the fields of the record it was given', () => {
    expect(knownKeys<{ a?: number; b: string }>({ a: true, b: true })).toEqual(['a', 'b']);
  });
});

describe('values in messages show their type', () => {
  it('describes each kind of value', () => {
    expect(describeValue('4')).toBe("the string '4'");
    expect(describeValue(-1)).toBe('the number -1');
    expect(describeValue(Number.NaN)).toBe('the number NaN');
    expect(describeValue(null)).toBe('null');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue([1])).toBe('an array');
    expect(describeValue({})).toBe('an object');
    expect(describeValue(new Date(0))).toBe('a Date');
    expect(describeValue(true)).toBe('the boolean true');
    expect(describeValue(10n)).toBe('the bigint 10n');
    expect(describeValue(() => 1)).toBe('a function');
    expect(describeValue("it's")).toBe("the string 'it\\'s'");
  });

  it("concurrency: '4' says it got the string '4'", () => {
    expect(() => positiveInt('worker.concurrency', '4', 1)).toThrow(
      "worker.concurrency must be a positive integer, got the string '4'",
    );
  });

  it("health port '8080' says it got the string '8080'", async () => {
    const err = await invalid(() =>
      ServiceManager.start({ ...quiet, health: { port: '8080' as unknown as number } }),
    );
    expect(err.message).toBe(
      "options.health.port must be an integer from 0 to 65535, got the string '8080'",
    );
  });

  it('a duration given as a string, and an integer given as a fraction, say so', async () => {
    const err = await invalid(() =>
      ServiceManager.start({ ...quiet, startTimeoutMs: '100' as unknown as number }),
    );
    expect(err.message).toContain("got the string '100'");
    const jitter = await invalid(() =>
      resolveConnectionOptions({ reconnectJitterMs: '5' as unknown as number }),
    );
    expect(jitter.message).toContain("got the string '5'");
  });

  it('bucket configs, registrations, metrics and the state path show what they got', async () => {
    const history = await invalid(() => checkBucketConfig({ history: '5' } as never));
    expect(history.message).toBe(
      "bucket config history must be an integer from 1 to 64, got the string '5'",
    );
    const token = await invalid(() =>
      ServiceManager.start({ ...quiet, services: [{ token: 42, useValue: 1 } as never] }),
    );
    expect(token.message).toContain('got the number 42');
    const metrics = await invalid(() =>
      ServiceManager.start({ ...quiet, metrics: { processMetrics: 'no' as never } }),
    );
    expect(metrics.message).toContain("got the string 'no'");
    const path = await invalid(() => stateModule({ backend: 'sqlite', path: null as never }));
    expect(path.message).toContain('got null');
  });

  it('a secret of the wrong type is described by its type only', async () => {
    const err = await invalid(() =>
      resolveConnectionOptions({ password: 123456, user: 'u' } as unknown as ConnectionOptions),
    );
    expect(err.message).toBe('nats.password must be a non-empty string, got a number');
  });
});
