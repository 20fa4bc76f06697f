import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  endpointClient,
  endpoints,
  KVStoreService,
  NatskitError,
  ServiceManager,
  STATE_STORE,
  StreamService,
} from '../../src/index.js';
import {
  type NatsServerHandle,
  startNatsCluster,
  startNatsServer,
} from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

/** The error `run` rejects with, which must be a natskit INVALID_OPTIONS. */
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

// Options objects that reach a running app: each typo must fail with the closest known name
// and leave nothing behind on the server.
describe('unknown options at run time', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  let kv: KVStoreService;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    streams = app.get(StreamService);
    kv = app.get(KVStoreService);
    await streams.ensureStream({ name: 'OPTS', subjects: ['opts.>'] });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('createWorker({ concurency: 4 }) is refused and creates no consumer', async () => {
    const err = await invalid(() =>
      streams.createWorker({
        stream: 'OPTS',
        consumer: 'typo',
        handler: () => undefined,
        concurency: 4,
      } as never),
    );
    expect(err.message).toContain(
      "worker.concurency is not a known option (did you mean 'concurrency'?)",
    );
    await expect(streams.jsm.consumers.info('OPTS', 'typo')).rejects.toThrow(/consumer not found/);
  });

  it("createWorker({ concurrency: '4' }) says it got the string '4'", async () => {
    const err = await invalid(() =>
      streams.createWorker({
        stream: 'OPTS',
        consumer: 'typo2',
        handler: () => undefined,
        concurrency: '4' as unknown as number,
      }),
    );
    expect(err.message).toBe("worker.concurrency must be a positive integer, got the string '4'");
  });

  it('ensureStream with a misspelt config field creates no stream', async () => {
    const err = await invalid(() =>
      streams.ensureStream({ name: 'TYPO', subjects: ['typo.>'], maxAge: 1_000 } as never),
    );
    expect(err.message).toContain(
      "ensureStream TYPO config maxAge is not a known option (did you mean 'max_age'?)",
    );
    await expect(streams.jsm.streams.info('TYPO')).rejects.toThrow(/stream not found/);
  });

  it('publish with a misspelt expectation stores nothing', async () => {
    const before = (await streams.jsm.streams.info('OPTS')).state.messages;
    const err = await invalid(() =>
      streams.publish('opts.a', 'x', { expect: { lastSubjectSeq: 0 } } as never),
    );
    expect(err.message).toContain(
      "publish options expect.lastSubjectSeq is not a known option (did you mean 'lastSubjectSequence'?)",
    );
    const unknown = await invalid(() => streams.publish('opts.a', 'x', { msgID: 'a' } as never));
    expect(unknown.message).toContain("(did you mean 'msgId'?)");
    expect((await streams.jsm.streams.info('OPTS')).state.messages).toBe(before);
  });

  it('KV: bucket(), put, delete, watch and transaction options are checked', async () => {
    const provisioned = await invalid(() => kv.bucket('optsb', { provison: {} } as never));
    expect(provisioned.message).toContain(
      "bucket optsb options provison is not a known option (did you mean 'provision'?)",
    );
    const b = await kv.bucket('optsb', { provision: {} });
    const put = await invalid(() => b.put('k', 1, { ttl: 5_000 } as never));
    expect(put.message).toContain("put options ttl is not a known option (did you mean 'ttlMs'?)");
    expect(await b.get('k')).toBeNull(); // nothing written
    const create = await invalid(() => b.create('k', 1, { revision: 3 } as never));
    expect(create.message).toContain('create options revision is not a known option');
    const del = await invalid(() => b.delete('k', { revison: 1 } as never));
    expect(del.message).toContain("(did you mean 'revision'?)");
    const get = await invalid(() => b.get('k', { retry: { retires: 1 } } as never));
    expect(get.message).toContain(
      "read options retry.retires is not a known option (did you mean 'retries'?)",
    );
    const watch = await invalid(() => b.watch('>', { bufferSise: 4 } as never));
    expect(watch.message).toContain("(did you mean 'bufferSize'?)");
    const tx = await invalid(() => b.transaction(() => 1, { maxAttempt: 2 } as never));
    expect(tx.message).toContain("(did you mean 'maxAttempts'?)");
    const results = await b.bulkPut([
      { key: 'typo', value: 1, ttl: 5_000 } as never,
      { key: 'fine', value: 2 },
    ]);
    expect(results[0]).toMatchObject({ key: 'typo', ok: false });
    expect(results[0]?.ok === false && results[0].error.code).toBe('INVALID_OPTIONS');
    expect(results[0]?.ok === false && results[0].error.message).toContain(
      "bulkPut entries[0].ttl is not a known option (did you mean 'ttlMs'?)",
    );
    expect(results[1]).toMatchObject({ key: 'fine', ok: true });
    expect(await b.get('typo')).toBeNull();
    const bulk = await invalid(() => b.bulkGet(['k'], { signl: undefined } as never));
    expect(bulk.message).toContain("(did you mean 'signal'?)");
  });

  it('endpoints(), an endpoint and endpointClient options are checked', async () => {
    const service = await invalid(() =>
      endpoints({ name: 'o', version: '1.0.0', endpoint: () => ({}) } as never),
    );
    expect(service.message).toContain("(did you mean 'endpoints'?)");
    const nc = app.get(ConnectionService);
    const client = await invalid(() => endpointClient(nc, 'o.x', { timeout: 5 } as never));
    expect(client.message).toContain("(did you mean 'timeoutMs'?)");
    const call = await invalid(() =>
      endpointClient(nc, 'o.x').request({}, { header: {} } as never),
    );
    expect(call.message).toContain(
      "request options header is not a known option (did you mean 'headers'?)",
    );
    const err = await invalid(() =>
      ServiceManager.start({
        ...quiet,
        nats: { servers: server.url },
        services: [
          endpoints({
            name: 'o',
            version: '1.0.0',
            endpoints: () => ({ get: { handler: () => 1, concurrenty: 2 } as never }),
          }),
        ],
      }),
    );
    expect(err.message).toContain(
      "endpoint get concurrenty is not a known option (did you mean 'concurrency'?)",
    );
  });

  it('the state store calls check their options', async () => {
    await using stateApp = await ServiceManager.start({
      ...quiet,
      state: { backend: 'sqlite', path: ':memory:' },
    });
    const state = stateApp.get(STATE_STORE);
    const err = await invalid(() => state.setState('k', 1, { ttl: 2_000 } as never));
    expect(err.message).toContain(
      "setState options ttl is not a known option (did you mean 'ttlMs'?)",
    );
    expect(await state.getState('k')).toBeNull();
  });
});

describe('harness options', () => {
  it('startNatsServer({ jetstrem: false }) fails before starting a server', async () => {
    const err = await invalid(() => startNatsServer({ jetstrem: false } as never));
    expect(err.message).toContain(
      "startNatsServer options.jetstrem is not a known option (did you mean 'jetstream'?)",
    );
    const auth = await invalid(() =>
      startNatsServer({ auth: { user: 'u', pasword: 'p' } } as never),
    );
    expect(auth.message).toContain("(did you mean 'password'?)");
  });

  it('startNatsCluster({ sise: 5 }) and stop({ signl }) are refused', async () => {
    const err = await invalid(() => startNatsCluster({ sise: 5 } as never));
    expect(err.message).toContain("(did you mean 'size'?)");
    await using s = await startNatsServer({ jetstream: false });
    const stop = await invalid(() => s.stop({ signl: 'SIGKILL' } as never));
    expect(stop.message).toContain(
      "stop options.signl is not a known option (did you mean 'signal'?)",
    );
    expect(s.running).toBe(true);
  });
});
