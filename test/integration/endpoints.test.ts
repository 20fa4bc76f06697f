import { setTimeout as sleep } from 'node:timers/promises';
import { Svcm } from '@nats-io/services';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  createToken,
  endpoint,
  endpointClient,
  endpointError,
  endpoints,
  NatskitError,
  type Service,
  ServiceManager,
} from '../../src/index.js';
import {
  type NatsServerHandle,
  startNatsCluster,
  startNatsServer,
} from '../../src/testing/index.js';
import { testSchema } from '../support/schema.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };

interface GetOrder {
  id: string;
}
const getOrder = testSchema<GetOrder>((v) =>
  typeof (v as { id?: unknown })?.id === 'string' ? undefined : 'id must be a string',
);

/** The orders "database" the endpoints inject; it records what ran, and after its own stop. */
class OrdersDb implements Service {
  readonly instance: string;
  readonly executed: string[] = [];
  stopped = false;
  ranAfterStop = 0;
  constructor(instance: string) {
    this.instance = instance;
  }
  async find(id: string, delayMs = 0) {
    if (delayMs) await sleep(delayMs);
    if (this.stopped) this.ranAfterStop++;
    this.executed.push(id);
    return { id, by: this.instance };
  }
  stop() {
    this.stopped = true;
  }
}
const DB = createToken<OrdersDb>('OrdersDb');

function ordersApi(options: { concurrency?: number; maxPending?: number; delayMs?: number } = {}) {
  return endpoints({
    name: 'orders',
    version: '1.0.0',
    description: 'orders by id',
    inject: [DB],
    endpoints: (db) => ({
      get: endpoint({
        schema: getOrder,
        concurrency: options.concurrency ?? 64,
        maxPending: options.maxPending ?? 1_000,
        handler: ({ data }) => db.find(data.id, options.delayMs),
      }),
      missing: endpoint({
        handler: () => {
          throw endpointError(404, 'no such order', { id: 'x' });
        },
      }),
      crash: { handler: () => Promise.reject(new Error('secret internals')) },
      conflict: {
        handler: () => {
          throw new NatskitError('KV_REVISION_CONFLICT', 'moved');
        },
      },
    }),
  });
}

async function instance(url: string | string[], name: string, options = {}) {
  const db = new OrdersDb(name);
  const app = await ServiceManager.start({
    ...quiet,
    nats: { servers: url },
    services: [{ token: DB, useValue: db }, ordersApi(options)],
  });
  return { app, db };
}

async function failure(p: Promise<unknown>): Promise<NatskitError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!NatskitError.is(err)) throw new Error(`expected a NatskitError, got ${String(err)}`);
  return err;
}

describe('endpoints on the NATS service protocol', () => {
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

  it('answers, and maps bad requests and errors to service error codes', async () => {
    const { app } = await instance(server.url, 'a');
    try {
      const get = endpointClient<GetOrder, { id: string; by: string }>(nc, 'orders.get');
      expect(await get.request({ id: 'o-1' })).toEqual({ id: 'o-1', by: 'a' });
      const bad = await failure(get.request({ id: 7 } as never));
      expect(bad.code).toBe('REQUEST_FAILED');
      expect(bad.details).toMatchObject({
        status: 400,
        body: { issues: [{ message: 'id must be a string' }] },
      });
      const notJson = await nc.request('orders.get', '{nope');
      expect(notJson.headers?.get('Nats-Service-Error-Code')).toBe('400');
      expect(
        (await failure(endpointClient(nc, 'orders.missing').request({}))).details,
      ).toMatchObject({
        status: 404,
        description: 'no such order',
        body: { id: 'x' },
      });
      const crash = await failure(endpointClient(nc, 'orders.crash').request({}));
      expect(crash.details).toMatchObject({ status: 500, description: 'internal error' });
      expect(JSON.stringify(crash)).not.toContain('secret internals');
      expect(
        (await failure(endpointClient(nc, 'orders.conflict').request({}))).details?.status,
      ).toBe(409);
      // No instance at all: no responders, retried, then NATS_UNAVAILABLE.
      const none = await failure(
        endpointClient(nc, 'nobody.here', { retry: { retries: 2, minDelayMs: 10 } }).request({}),
      );
      expect(none.code).toBe('NATS_UNAVAILABLE');
    } finally {
      await app.stop();
    }
  });

  it('refuses endpoints the protocol or the server would not take, before any subscription, and leaves nothing running', async () => {
    const start = (defs: unknown) =>
      failure(
        ServiceManager.start({
          ...quiet,
          nats: { servers: server.url },
          services: [endpoints({ name: 'bad', version: '1.0.0', endpoints: () => defs as never })],
        }),
      );
    const handler = () => 1;
    const cases: [unknown, RegExp][] = [
      [{ 'get order': { handler } }, /endpoint "get order" name/],
      [{ 'a.b': { handler } }, /endpoint "a.b" name/], // a dot would make the name two tokens
      [{ get: {} }, /endpoint get needs a handler/],
      [{ get: { handler: 'x' } }, /endpoint get needs a handler/],
      [{ get: { handler, subject: 'a b' } }, /endpoint get subject "a b" is not a subject/],
      [{ get: { handler, subject: 'a..b' } }, /is not a subject/],
      [{ get: { handler, subject: '' } }, /subject must be a non-empty subject/],
      [{ get: { handler, subject: 'a.>.b' } }, /'>' before its last token/],
      [{ get: { handler, queue: 'q 1' } }, /endpoint get queue must be a queue group name/],
      [null, /must return an object of endpoints/],
    ];
    for (const [defs, message] of cases) {
      const err = await start(defs);
      expect(err.code, String(message)).toBe('INVALID_OPTIONS');
      expect(err.message).toMatch(message);
    }
    // Checked where the registration is built: no app is started at all.
    expect(() =>
      endpoints({ name: 'bad', version: '1.0.0', queue: 'a b', endpoints: () => ({}) }),
    ).toThrow(/endpoints queue must be a queue group name/);
    expect(() =>
      endpoints({ name: 'bad', version: '1.0.0', endpoints: undefined as never }),
    ).toThrow(/endpoints needs `endpoints:/);
    // Wildcards are subjects too: one endpoint may answer a family of subjects.
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [
        endpoints({
          name: 'wild',
          version: '1.0.0',
          endpoints: () => ({ any: { subject: 'wild.*.get', handler: ({ subject }) => subject } }),
        }),
      ],
    });
    const client = endpointClient(app.get(ConnectionService), 'wild.7.get');
    expect(await client.request(undefined)).toBe('wild.7.get');
    // Nothing subscribed by the refused starts answers.
    const ping = await nc.request('$SRV.PING.bad', '', { timeout: 500 }).catch((e: Error) => e);
    expect(ping).toBeInstanceOf(Error);
  });

  it('the client turns every way a request fails into a typed error, and sends nothing it must refuse', async () => {
    await using own = await startNatsServer({
      extraConfig: `max_payload: 4096
authorization { users = [ { user: u, password: p, permissions: { publish: { deny: ["secret.>"] } } } ] }`,
    });
    const c = await connect({ servers: own.url, user: 'u', pass: 'p' });
    let echoed = 0;
    c.subscribe('raw.text', { callback: (_e, m) => void m.respond('not json') });
    c.subscribe('raw.silent', { callback: () => undefined });
    c.subscribe('raw.echo', {
      callback: (_e, m) => {
        echoed++;
        m.respond(m.data);
      },
    });
    await c.flush();
    for (const subject of ['', 'a b', 'a..b', 'orders.*', 'orders.>', '>', 'a.']) {
      expect(() => endpointClient(c, subject), subject).toThrow(/a request goes to one subject/);
    }
    expect(endpointClient(c, 'a*b.c>d').subject).toBe('a*b.c>d'); // literal tokens
    expect((await failure(endpointClient(c, 'raw.text').request({}))).code).toBe('DECODE_FAILED');
    const timedOut = await failure(endpointClient(c, 'raw.silent', { timeoutMs: 200 }).request({}));
    expect([timedOut.code, timedOut.details?.timedOut]).toEqual(['NATS_UNAVAILABLE', true]);
    const echo = endpointClient<unknown, string>(c, 'raw.echo');
    expect((await failure(echo.request({ n: 1n }))).code).toBe('INVALID_VALUE');
    const exact = 'x'.repeat(4094); // with its quotes, max_payload exactly
    expect(await echo.request(exact)).toBe(exact);
    expect((await failure(echo.request(`${exact}x`))).code).toBe('VALUE_TOO_LARGE');
    expect(echoed).toBe(1); // the refused requests were never sent
    expect((await failure(endpointClient(c, 'secret.x').request({}))).code).toBe('AUTH_FAILED');
    await c.close();
    expect((await failure(echo.request('after close'))).code).toBe('NATS_UNAVAILABLE');
  });

  it('is listening once start resolves: a request sent from another connection at that moment is answered, without retries', async () => {
    const once = endpointClient<GetOrder, { by: string }>(nc, 'orders.get', { retry: false });
    for (let i = 0; i < 10; i++) {
      const { app } = await instance(server.url, `run${i}`);
      try {
        expect((await once.request({ id: 'now' })).by).toBe(`run${i}`);
      } finally {
        await app.stop();
      }
    }
  });

  it('two instances share the load and standard tooling discovers both (ping, info, stats)', async () => {
    const a = await instance(server.url, 'a');
    const b = await instance(server.url, 'b');
    try {
      const get = endpointClient<GetOrder, { by: string }>(nc, 'orders.get');
      const by = await Promise.all(
        Array.from({ length: 200 }, (_, i) => get.request({ id: `o-${i}` }).then((r) => r.by)),
      );
      expect(by.filter((x) => x === 'a').length).toBeGreaterThan(20);
      expect(by.filter((x) => x === 'b').length).toBeGreaterThan(20);

      // The official client of @nats-io/services, as tooling would use it.
      const client = new Svcm(nc as never).client();
      const pings = [];
      for await (const p of await client.ping('orders')) pings.push(p);
      expect(pings.map((p) => p.name)).toEqual(['orders', 'orders']);
      expect(new Set(pings.map((p) => p.id)).size).toBe(2);
      const infos = [];
      for await (const i of await client.info('orders')) infos.push(i);
      expect(infos[0]?.endpoints.map((e) => [e.name, e.subject, e.queue_group]).sort()).toEqual([
        ['conflict', 'orders.conflict', 'q'],
        ['crash', 'orders.crash', 'q'],
        ['get', 'orders.get', 'q'],
        ['missing', 'orders.missing', 'q'],
      ]);
      const stats = [];
      for await (const s of await client.stats('orders')) stats.push(s);
      const served = stats
        .map((s) => s.endpoints?.find((e) => e.name === 'get')?.num_requests ?? 0)
        .reduce((x, y) => x + y, 0);
      expect(served).toBe(200);
      // One instance by id.
      const one = [];
      for await (const p of await client.ping('orders', pings[0]?.id)) one.push(p);
      expect(one.map((p) => p.id)).toEqual([pings[0]?.id]);
    } finally {
      await a.app.stop();
      await b.app.stop();
    }
  });

  it('never runs more than concurrency handlers; beyond maxPending it answers 503, which the client retries', async () => {
    const { app, db } = await instance(server.url, 'a', { concurrency: 2, maxPending: 3 });
    try {
      // Handlers hold until the test has seen the refusals: which requests find the endpoint
      // full must not depend on how fast the first ones finish.
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let running = 0;
      let max = 0;
      const find = db.find.bind(db);
      db.find = async (id, delay) => {
        max = Math.max(max, ++running);
        try {
          await gate;
          return await find(id, delay);
        } finally {
          running--;
        }
      };
      const once = endpointClient<GetOrder>(nc, 'orders.get', { retry: false });
      let refusedSoFar = 0;
      const calls = Array.from({ length: 10 }, (_, i) =>
        once.request({ id: `x${i}` }).catch((e: unknown) => {
          if ((e as NatskitError).details?.status === 503) refusedSoFar++;
          throw e;
        }),
      );
      const settled = Promise.allSettled(calls);
      await waitUntil(() => refusedSoFar >= 5, 5_000);
      release();
      const results = await settled;
      const refused = results.filter(
        (r) => r.status === 'rejected' && (r.reason as NatskitError).details?.status === 503,
      );
      expect(refused.length).toBe(5); // 2 running + 3 waiting; the rest was not run
      expect(results.filter((r) => r.status === 'fulfilled').length).toBe(5);
      expect(max).toBe(2);
      const retried = endpointClient<GetOrder>(nc, 'orders.get');
      await Promise.all(Array.from({ length: 10 }, (_, i) => retried.request({ id: `y${i}` })));
      expect(db.executed.filter((id) => id.startsWith('y')).length).toBe(10);
    } finally {
      await app.stop();
    }
  });

  it('a stop under load answers every request it accepted; no request is lost or run twice', async () => {
    const a = await instance(server.url, 'a', { delayMs: 5 });
    const b = await instance(server.url, 'b', { delayMs: 5 });
    try {
      const get = endpointClient<GetOrder, { id: string }>(nc, 'orders.get');
      let sent = 0;
      let stopping: Promise<void> | undefined;
      const replies: string[] = [];
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          while (sent < 400) {
            const id = `r-${sent++}`;
            if (sent === 150) stopping = a.app.stop(); // in the middle of the load
            replies.push((await get.request({ id })).id);
          }
        }),
      );
      await stopping;
      expect(replies.length).toBe(400);
      const executed = [...a.db.executed, ...b.db.executed];
      expect(executed.length).toBe(400); // none run twice
      expect(new Set(executed).size).toBe(400); // none lost
      expect(a.db.executed.length).toBeGreaterThan(0);
      expect(a.db.ranAfterStop).toBe(0); // the endpoints stopped before the service they use
    } finally {
      await a.app.stop();
      await b.app.stop();
    }
  });
});

describe('endpoints on a 3-node cluster', () => {
  it('instances on two nodes share the requests of a client on the third, and discovery lists both', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    const [u0, u1, u2] = cluster.urls as [string, string, string];
    const a = await instance(u0, 'a');
    const b = await instance(u1, 'b');
    // An instance listens on its own server when start resolves; the other nodes learn of it
    // through the routes a moment later. The client's node must know of both before it sends.
    for (const subject of ['orders.get', '$SRV.PING.orders']) {
      await cluster.waitForInterest(subject, { subscribedNodes: 2 });
    }
    const client = await ServiceManager.start({ ...quiet, nats: { servers: u2 } });
    try {
      const get = endpointClient<GetOrder, { by: string }>(
        client.get(ConnectionService),
        'orders.get',
      );
      const by = await Promise.all(
        Array.from({ length: 100 }, (_, i) => get.request({ id: `c${i}` }).then((r) => r.by)),
      );
      expect(by.length).toBe(100);
      expect(new Set(by)).toEqual(new Set(['a', 'b']));
      const pings = [];
      for await (const p of await new Svcm(client.get(ConnectionService).nc as never)
        .client()
        .ping('orders'))
        pings.push(p);
      expect(pings.length).toBe(2);
    } finally {
      await client.stop();
      await a.app.stop();
      await b.app.stop();
    }
  });
});
