import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, RequestError } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createToken,
  endpointClient,
  KVStoreService,
  type KvBucket,
  NatskitError,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import {
  type NatsServerHandle,
  startNatsCluster,
  startNatsServer,
} from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

/** What `p` rejected with (boxed: the test then inspects it). */
function rejection(p: Promise<unknown>): Promise<{ e: unknown }> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => ({ e }),
  );
}

async function connections(server: NatsServerHandle): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.monitorPort}/connz`);
  return ((await res.json()) as { num_connections: number }).num_connections;
}

describe('edge errors a new user trips on', () => {
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

  describe('headers the NATS client would refuse: INVALID_OPTIONS naming the header, nothing sent', () => {
    const bad: [Record<string, string>, string][] = [
      [{ 'a b': 'x' }, 'a b'],
      [{ 'a:b': 'x' }, 'a:b'],
      [{ 'X-Ünï': 'x' }, 'X-Ünï'],
      [{ '': 'x' }, ''],
      [{ 'X-Tab\t': 'x' }, 'X-Tab\t'],
      [{ 'X-Crlf': 'a\r\nb' }, 'X-Crlf'],
      [{ 'X-Lf': 'a\nb' }, 'X-Lf'],
      [{ 'X-Cr': 'a\rb' }, 'X-Cr'],
      [{ 'X-Num': 5 as unknown as string }, 'X-Num'],
    ];

    function expectInvalid(e: unknown, header: string) {
      expect(NatskitError.is(e, 'INVALID_OPTIONS'), `${JSON.stringify(header)}: ${String(e)}`).toBe(
        true,
      );
      expect((e as NatskitError).details).toEqual({ field: 'headers', header });
      expect((e as NatskitError).message).toContain(JSON.stringify(header));
    }

    it('endpointClient requests', async () => {
      let received = 0;
      const sub = nc.subscribe('hdr.echo', {
        callback: (_err, msg) => {
          received++;
          msg.respond(JSON.stringify(msg.headers?.get('X-Ok') ?? null));
        },
      });
      try {
        await nc.flush();
        const client = endpointClient<unknown, string | null>(nc, 'hdr.echo', { retry: false });
        for (const [headers, header] of bad) {
          expectInvalid((await rejection(client.request({}, { headers }))).e, header);
        }
        expect(await client.request({}, { headers: { 'X-Ok': '  spaced  ' } })).toBe('spaced');
        expect(received).toBe(1);
      } finally {
        sub.unsubscribe();
      }
    });

    it('StreamService.publish (jobs included) and KV writes', async () => {
      await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
      const streams = app.get(StreamService);
      await streams.ensureStream({ name: 'HDR', subjects: ['hdr.jobs.>'] });
      for (const [headers, header] of bad) {
        expectInvalid((await rejection(streams.publish('hdr.jobs.a', 'x', { headers }))).e, header);
      }
      expect((await streams.jsm.streams.info('HDR')).state.messages).toBe(0);
      await streams.publish('hdr.jobs.a', 'x', { headers: { 'X-Ok': '1' } });
      expect((await streams.jsm.streams.info('HDR')).state.messages).toBe(1);

      const kv = app.get(KVStoreService);
      await kv.createBucket('hdr');
      for (const [headers, header] of bad) {
        expectInvalid((await rejection(kv.put('hdr', 'k', 1, { headers }))).e, header);
      }
      expect(await kv.getEntry('hdr', 'k')).toBeNull();
    });
  });

  describe('a publish no stream captures is refused at once, not retried as unavailable', () => {
    // The client reports "no responders" on a JetStream publish as JetStreamNotEnabled; it took
    // six attempts (about 2.7 s with the default backoff) to become NATS_UNAVAILABLE. The retry
    // counter shows whether the budget was spent: no timing assertion.
    it.each(['modern', '2.9'] as const)(
      'StreamService.publish (server %s): STREAM_NOT_FOUND with details.subject, no retry',
      async (version) => {
        await using own = version === 'modern' ? undefined : await startNatsServer({ version });
        const url = own?.url ?? server.url;
        await using app = await ServiceManager.start({ ...quiet, nats: { servers: url } });
        const streams = app.get(StreamService);
        await streams.ensureStream({ name: 'COVERED', subjects: ['cov.*'] });
        for (const subject of ['nostream.x', 'cov.a.b']) {
          const before = streams.metrics.retries;
          const { e } = await rejection(streams.publish(subject, 'x'));
          expect(NatskitError.is(e, 'STREAM_NOT_FOUND'), `${subject}: ${String(e)}`).toBe(true);
          expect((e as NatskitError).details).toEqual({ subject });
          expect((e as NatskitError).message).toContain(subject);
          expect(streams.metrics.retries - before).toBe(0);
        }
        // A subject a stream captures is published as ever, also right after the stream is made.
        await streams.ensureStream({ name: 'LATE', subjects: ['late.>'] });
        expect((await streams.publish('late.x', 'x')).stream).toBe('LATE');
        expect((await streams.publish('cov.a', 'x')).stream).toBe('COVERED');
      },
    );

    it('a KV write to a bucket deleted by another client: KV_BUCKET_NOT_FOUND, no retry', async () => {
      await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
      const kv = app.get(KVStoreService);
      const jsm = await jetstreamManager(nc);
      const writes: Record<string, (b: KvBucket<number>) => Promise<unknown>> = {
        put: (b) => b.put('k', 2),
        putWithHeaders: (b) => b.put('k', 2, { headers: { 'X-A': '1' } }),
        update: (b) => b.update('k', 2, 1),
        transaction: (b) => b.transaction((tx) => tx.put('k', 2)),
        bulkPut: async (b) => {
          const [r] = await b.bulkPut([{ key: 'k', value: 2 }]);
          if (r && !r.ok) throw r.error;
        },
      };
      // Each write is the first call after the deletion (a bucket found gone fails fast after).
      for (const [what, write] of Object.entries(writes)) {
        const name = `gone_${what}`;
        await kv.createBucket(name);
        const bucket = await kv.bucket<number>(name);
        await bucket.put('k', 1);
        await jsm.streams.delete(`KV_${name}`);
        const before = kv.metrics.retries;
        const { e } = await rejection(write(bucket));
        expect(NatskitError.is(e, 'KV_BUCKET_NOT_FOUND'), `${what}: ${String(e)}`).toBe(true);
        expect((e as NatskitError).details).toMatchObject({ bucket: name });
        expect(kv.metrics.retries - before, what).toBe(0);
      }
    });

    it('on a cluster, a stream whose only server is down is still retried as unavailable (the stream exists)', async () => {
      await using cluster = await startNatsCluster({ size: 3 });
      await using app = await ServiceManager.start({
        ...quiet,
        nats: { servers: [...cluster.urls] },
      });
      const streams = app.get(StreamService);
      await cluster.waitForMetaLeader();
      await streams.ensureStream({ name: 'R1', subjects: ['r1.>'], num_replicas: 1 });
      await streams.publish('r1.x', 'x');
      const host = (await streams.jsm.streams.info('R1')).cluster?.leader ?? '';
      const index = cluster.indexOf(host);
      expect(index).toBeGreaterThanOrEqual(0);
      await cluster.stop(index, { signal: 'SIGKILL' });
      // JetStream itself must answer (a new meta leader when the killed server was it) and
      // list the stream although its only server is down: that is the case to tell apart.
      await cluster.waitForMetaLeader();
      const listed = async () =>
        (
          await streams.jsm.streams
            .names('r1.x')
            .next()
            .catch((): string[] => [])
        ).includes('R1');
      for (const end = Date.now() + 20_000; !(await listed()); ) {
        if (Date.now() > end) throw new Error('JetStream did not list R1 within 20 s');
        await sleep(100);
      }
      const before = streams.metrics.retries;
      const { e } = await rejection(
        streams.publish('r1.x', 'x', {
          timeoutMs: 1_000,
          retry: { retries: 3, minDelayMs: 50, maxDelayMs: 200 },
        }),
      );
      // The case that matters: no responders on the publish while the stream exists.
      const last = ((e as Error).cause as Error | undefined)?.cause;
      expect(last instanceof RequestError && last.isNoResponders(), String(last)).toBe(true);
      expect(NatskitError.is(e, 'NATS_UNAVAILABLE'), String(e)).toBe(true);
      expect(streams.metrics.retries - before).toBe(3);
    });
  });

  describe('the probe server cannot listen', () => {
    it('a port in use: SERVICE_START_FAILED naming host:port, and nothing was started or connected', async () => {
      const blocker: Server = createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      try {
        const port = (blocker.address() as { port: number }).port;
        const before = await connections(server);
        let started = 0;
        const Probe = createToken<object>('Probe');
        const { e } = await rejection(
          ServiceManager.start({
            ...quiet,
            nats: { servers: server.url },
            health: { port },
            services: [{ token: Probe, useValue: { start: () => void started++ } }],
          }),
        );
        expect(NatskitError.is(e, 'SERVICE_START_FAILED'), String(e)).toBe(true);
        const err = e as NatskitError;
        expect(err.service).toBe('probes');
        expect(err.message).toContain(`127.0.0.1:${port}`);
        expect(err.details).toEqual({ host: '127.0.0.1', port, code: 'EADDRINUSE' });
        expect(started).toBe(0);
        expect(await connections(server)).toBe(before);
      } finally {
        await new Promise<void>((resolve) => blocker.close(() => resolve()));
      }
    });

    it('an address that is not local: SERVICE_START_FAILED with EADDRNOTAVAIL', async () => {
      // 192.0.2.1 (TEST-NET-1) is never an address of this machine.
      const { e } = await rejection(
        ServiceManager.start({ ...quiet, health: { host: '192.0.2.1', port: 0 } }),
      );
      expect(NatskitError.is(e, 'SERVICE_START_FAILED'), String(e)).toBe(true);
      expect((e as NatskitError).details).toMatchObject({
        host: '192.0.2.1',
        code: 'EADDRNOTAVAIL',
      });
      expect((e as NatskitError).message).toContain('192.0.2.1:0');
    });
  });
});
