import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RetentionPolicy } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createToken,
  endpoint,
  endpointClient,
  endpoints,
  KVStoreService,
  type KvChange,
  NatskitError,
  ServiceManager,
  STATE_STORE,
  type StandardSchemaV1,
  type StateChange,
  StreamService,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { captureLogs } from '../support/log-capture.js';
import { oddThrownValues } from '../support/thrown-values.js';
import { waitUntil } from '../support/wait.js';

// Regression tests for a catch that reads a property of whatever user code threw: a handler
// rejecting with null left the request unanswered and raised an unhandled rejection (in a
// default Node process: exit code 1). Loggers are on (not silent) because logging `{ err }`
// is one of the reads that threw.

const odd = oddThrownValues();
const kinds = Object.keys(odd);

/** What `p` rejected with; boxed, since resolving with the odd Proxy would read its `then`. */
function rejection(p: Promise<unknown>): Promise<{ e: unknown }> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => ({ e }),
  );
}

describe('whatever user code throws', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.[Symbol.asyncDispose]();
  });

  it('an endpoint handler rejecting with null, undefined or any odd value is answered 500 at once, and the service keeps serving', async () => {
    const logs = captureLogs();
    await using _app = await ServiceManager.start({
      logger: { level: 'error', destination: logs.stream },
      nats: { servers: server.url },
      services: [
        endpoints({
          name: 'odd',
          version: '1.0.0',
          endpoints: () => ({
            reject: endpoint<{ kind: string }>({
              handler: ({ data }) => Promise.reject(odd[data.kind]),
            }),
            throws: endpoint<{ kind: string }>({
              handler: ({ data }) => {
                throw odd[data.kind];
              },
            }),
            schema: endpoint<{ kind: string }>({
              // A validator that throws instead of returning issues: a bug of the service.
              schema: {
                '~standard': {
                  version: 1,
                  vendor: 'test',
                  validate: (v) => {
                    throw odd[(v as { kind: string }).kind];
                  },
                },
              },
              handler: () => 'unreachable',
            }),
            ok: endpoint({ handler: () => 'fine' }),
          }),
        }),
      ],
    });
    // One attempt, a long deadline: an unanswered request would be NATS_UNAVAILABLE (timedOut).
    const client = (name: string) =>
      endpointClient(nc, `odd.${name}`, { retry: false, timeoutMs: 10_000 });
    const ok = client('ok');
    for (const kind of kinds) {
      for (const name of ['reject', 'throws', 'schema']) {
        const { e: err } = await rejection(client(name).request({ kind }));
        expect(NatskitError.is(err, 'REQUEST_FAILED'), `${name} ${kind}: ${String(err)}`).toBe(
          true,
        );
        expect((err as NatskitError).details, `${name} ${kind}`).toMatchObject({
          status: 500,
          description: 'internal error',
        });
        expect(await ok.request(undefined)).toBe('fine');
      }
    }
    const failed = logs.lines().filter((l) => l.msg === 'endpoint handler failed');
    expect(failed).toHaveLength(kinds.length * 3);
  });

  it('in a process with Node’s default unhandled-rejection mode, a handler rejecting with undefined or null does not end the service', async () => {
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../fixtures/endpoint-reject-child.mjs', import.meta.url)),
        server.url,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitUntil(() => out.includes('ready') || child.exitCode !== null, 20_000);
      expect(child.exitCode).toBeNull();
      for (const name of ['undef', 'nul', 'undef', 'nul']) {
        const { e: err } = await rejection(
          endpointClient(nc, `odd.${name}`, { retry: false, timeoutMs: 5_000 }).request({}),
        );
        expect((err as NatskitError).details, `${name}: ${out}`).toMatchObject({ status: 500 });
      }
      // A round trip after the failures: an unhandled rejection would have ended it by now.
      expect(
        await endpointClient(nc, 'odd.ok', { retry: false, timeoutMs: 5_000 }).request({}),
      ).toBe('fine');
      expect(child.exitCode, out).toBeNull();
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    expect(await exited, out).toBe(0);
    expect(out).not.toContain('TypeError');
  });

  it('a worker handler throwing any odd value: the job is retried, then terminated, and the worker goes on', async () => {
    const logs = captureLogs();
    await using app = await ServiceManager.start({
      logger: { level: 'warn', destination: logs.stream },
      nats: { servers: server.url },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'ODDJOBS',
      subjects: ['oddjobs.>'],
      retention: RetentionPolicy.Workqueue,
    });
    for (const kind of kinds) await streams.publish('oddjobs.job', JSON.stringify({ kind }));
    const done: string[] = [];
    await using worker = await streams.createWorker<{ kind: string }>({
      stream: 'ODDJOBS',
      consumer: 'oddjobs',
      maxDeliver: 2,
      retryDelayMs: () => 10,
      fetchExpiresMs: 1_000,
      handler: (job) => {
        if (job.data.kind === 'fine') done.push('fine');
        else throw odd[job.data.kind];
      },
    });
    worker.start();
    await waitUntil(() => worker.stats.terminated === kinds.length, 20_000);
    await streams.publish('oddjobs.job', JSON.stringify({ kind: 'fine' }));
    await waitUntil(() => done.length === 1, 10_000);
    expect(worker.stats).toMatchObject({ failed: kinds.length, terminated: kinds.length });
    const lines = logs.lines();
    expect(lines.filter((l) => l.msg === 'job failed; will retry')).toHaveLength(kinds.length);
    expect(
      lines.filter((l) => l.msg === 'job failed on its last delivery; terminated'),
    ).toHaveLength(kinds.length);
  });

  it('a retryDelayMs that throws: the job is still given back (default delay), and the worker goes on', async () => {
    const logs = captureLogs();
    await using app = await ServiceManager.start({
      logger: { level: 'warn', destination: logs.stream },
      nats: { servers: server.url },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'ODDDELAY',
      subjects: ['odddelay.>'],
      retention: RetentionPolicy.Workqueue,
    });
    await streams.publish('odddelay.job', JSON.stringify({ n: 1 }));
    const deliveries: number[] = [];
    await using worker = await streams.createWorker<{ n: number }>({
      stream: 'ODDDELAY',
      consumer: 'odddelay',
      maxDeliver: 3,
      fetchExpiresMs: 1_000,
      retryDelayMs: () => {
        throw null;
      },
      handler: (job) => {
        deliveries.push(job.deliveryCount);
        if (job.deliveryCount === 1) throw new Error('first delivery fails');
      },
    });
    worker.start();
    // The default delay after a first failure is 1 s.
    await waitUntil(() => worker.stats.processed === 1, 15_000);
    expect(deliveries).toEqual([1, 2]);
    expect(worker.stats.failed).toBe(1);
    expect(logs.lines().some((l) => l.msg === 'job failed; will retry')).toBe(true);
  });

  it('a watch callback throwing any odd value is logged, and the watch goes on', async () => {
    const logs = captureLogs();
    await using app = await ServiceManager.start({
      logger: { level: 'error', destination: logs.stream },
      nats: { servers: server.url },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('oddwatch');
    const seen: string[] = [];
    const watcher = await kv.watch<number>('oddwatch', '>', {
      include: 'updates',
      onChange: (c: KvChange<number>) => {
        seen.push(c.key);
        if (c.key in odd) throw odd[c.key];
      },
    });
    try {
      for (const kind of kinds) await kv.put('oddwatch', kind, 1);
      await kv.put('oddwatch', 'last', 1);
      await waitUntil(() => seen.includes('last'), 10_000);
    } finally {
      await watcher.stop();
    }
    expect(seen).toEqual([...kinds, 'last']);
    expect(
      logs.lines().filter((l) => l.msg === 'watch callback threw; the watch goes on'),
    ).toHaveLength(kinds.length);
  });

  it('an onInitialized throwing any odd value is logged, and the watch goes on', async () => {
    const logs = captureLogs();
    await using app = await ServiceManager.start({
      logger: { level: 'error', destination: logs.stream },
      nats: { servers: server.url },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('oddinit');
    await kv.put('oddinit', 'before', 1);
    for (const [i, kind] of kinds.entries()) {
      const seen: string[] = [];
      let initialized = false;
      const watcher = await kv.watch<number>('oddinit', '>', {
        onChange: (c) => void seen.push(c.key),
        onInitialized: () => {
          initialized = true;
          throw odd[kind];
        },
      });
      try {
        await waitUntil(() => initialized, 10_000);
        await kv.put('oddinit', kind, 1);
        await waitUntil(() => seen.includes(kind), 10_000);
      } finally {
        await watcher.stop();
      }
      // The initial state (the keys of earlier rounds, in write order), then the new write.
      expect(seen, kind).toEqual(['before', ...kinds.slice(0, i + 1)]);
    }
    expect(
      logs.lines().filter((l) => l.msg === 'onInitialized threw; the watch goes on'),
    ).toHaveLength(kinds.length);
  });

  it('a transaction function throwing any odd value rejects with that very value (metrics on)', async () => {
    await using app = await ServiceManager.start({
      logger: { level: 'error', destination: captureLogs().stream },
      nats: { servers: server.url },
      metrics: true,
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('oddtx');
    const bucket = await kv.bucket<number>('oddtx');
    for (const kind of kinds) {
      const { e: err } = await rejection(
        bucket.transaction(async (tx) => {
          await tx.get('a');
          throw odd[kind];
        }),
      );
      expect(err === odd[kind], kind).toBe(true);
    }
    expect((await bucket.transaction((tx) => tx.put('a', 1))).attempts).toBe(1);
  });

  it('a codec throwing any odd value: INVALID_VALUE on write, DECODE_FAILED on read', async () => {
    await using app = await ServiceManager.start({
      logger: { level: 'error', destination: captureLogs().stream },
      nats: { servers: server.url },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('oddcodec');
    await kv.put('oddcodec', 'stored', 1);
    for (const kind of kinds) {
      const bucket = await kv.bucket<number>('oddcodec', {
        codec: {
          encode: () => {
            throw odd[kind];
          },
          decode: () => {
            throw odd[kind];
          },
        },
      });
      const { e: put } = await rejection(bucket.put('k', 1));
      expect(NatskitError.is(put, 'INVALID_VALUE'), `${kind}: ${String(put)}`).toBe(true);
      expect((put as NatskitError).cause === odd[kind]).toBe(true);
      const { e: get } = await rejection(bucket.get('stored'));
      expect(NatskitError.is(get, 'DECODE_FAILED'), `${kind}: ${String(get)}`).toBe(true);
    }
  });

  /** A schema whose validator throws (instead of returning issues) the odd value named by the stored kind. */
  const throwingSchema = {
    '~standard': {
      version: 1,
      vendor: 'test',
      validate: (v: unknown) => {
        throw odd[(v as { kind: string }).kind];
      },
    },
  } as StandardSchemaV1<unknown, { kind: string }>;

  it("a schema throwing any odd value on read: a watch's invalid change carries a natskit error (KV and state store)", async () => {
    await using app = await ServiceManager.start({
      logger: { level: 'error', destination: captureLogs().stream },
      nats: { servers: server.url },
      state: { backend: 'nats', bucket: 'oddstate' },
    });
    const kv = app.get(KVStoreService);
    await kv.createBucket('oddschema');
    for (const kind of kinds) await kv.put('oddschema', kind, { kind });
    const bucket = await kv.bucket('oddschema', { schema: throwingSchema });
    const kvSeen: KvChange<{ kind: string }>[] = [];
    const kvWatch = await bucket.watch('>', { onChange: (c) => void kvSeen.push(c) });
    const store = app.get(STATE_STORE);
    for (const kind of kinds) await store.setState(`s.${kind}`, { kind });
    const stateSeen: StateChange<{ kind: string }>[] = [];
    const stateWatch = await store.watchState('s.*', (c) => void stateSeen.push(c), {
      schema: throwingSchema,
    });
    try {
      await waitUntil(
        () => kvSeen.length === kinds.length && stateSeen.length === kinds.length,
        10_000,
      );
    } finally {
      await kvWatch.stop();
      await stateWatch.stop();
    }
    for (const c of [...kvSeen, ...stateSeen]) {
      expect(c.type).toBe('invalid');
      const error = (c as { error: unknown }).error;
      expect(NatskitError.is(error, 'VALIDATION_FAILED'), `${c.key}: ${String(error)}`).toBe(true);
      expect((error as NatskitError).cause === odd[c.key.replace(/^s\./, '')], c.key).toBe(true);
    }
  });

  it('a start or stop hook or a health check throwing any odd value is reported under the service name', async () => {
    for (const kind of kinds) {
      const Starts = createToken<object>(`Starts-${kind}`);
      const { e: err } = await rejection(
        ServiceManager.start({
          logger: { level: 'error', destination: captureLogs().stream },
          nats: { servers: server.url },
          services: [
            {
              token: Starts,
              useValue: {
                start: () => {
                  throw odd[kind];
                },
              },
            },
          ],
        }),
      );
      expect(NatskitError.is(err, 'SERVICE_START_FAILED'), `${kind}: ${String(err)}`).toBe(true);
      expect((err as NatskitError).service).toBe(`Starts-${kind}`);
      expect((err as NatskitError).cause === odd[kind], kind).toBe(true);

      const Stops = createToken<object>(`Stops-${kind}`);
      const app = await ServiceManager.start({
        logger: { level: 'error', destination: captureLogs().stream },
        nats: { servers: server.url },
        services: [
          {
            token: Stops,
            useValue: {
              health: () => {
                throw odd[kind];
              },
              stop: () => {
                throw odd[kind];
              },
            },
          },
        ],
      });
      const report = await app.health.report();
      expect(report.checks[`Stops-${kind}`]?.[0]).toMatchObject({ status: 'fail' });
      expect(report.checks[`Stops-${kind}`]?.[0]?.output).toMatch(/^check threw: /);
      const { e: stopped } = await rejection(app.stop());
      expect(NatskitError.is(stopped, 'SHUTDOWN_FAILED'), `${kind}: ${String(stopped)}`).toBe(true);
      const first = (stopped as AggregateError).errors[0] as NatskitError;
      expect(first.code).toBe('SERVICE_STOP_FAILED');
      expect(first.cause === odd[kind], kind).toBe(true);
    }
  });
});
