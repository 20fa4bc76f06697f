import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  endpoint,
  endpointClient,
  endpoints,
  NatskitError,
  ServiceManager,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

async function failure(p: Promise<unknown>): Promise<NatskitError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!NatskitError.is(err)) throw new Error(`expected a NatskitError, got ${String(err)}`);
  return err;
}

const ordersApi = (handler: () => unknown = () => ({ id: 'o-1' })) =>
  endpoints({
    name: 'orders',
    version: '1.0.0',
    endpoints: () => ({ get: endpoint({ handler }) }),
  });

describe('an endpoint subject a stream captures', () => {
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

  it('fails the start with INVALID_OPTIONS naming the endpoint, subject and stream', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'AUDIT', subjects: ['orders.>'] });
    try {
      const err = await failure(
        ServiceManager.start({ ...quiet, nats: { servers: server.url }, services: [ordersApi()] }),
      );
      expect(err.code).toBe('INVALID_OPTIONS');
      expect(err.message).toContain('orders.get');
      expect(err.message).toContain('AUDIT');
      expect(err.details).toMatchObject({
        endpoint: 'get',
        subject: 'orders.get',
        streams: ['AUDIT'],
      });
    } finally {
      await jsm.streams.delete('AUDIT');
    }
  });

  it('a wildcard endpoint subject is caught by a stream over all of it or part of it', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'WIDE', subjects: ['wide.>'] });
    await jsm.streams.add({ name: 'NARROW', subjects: ['narrow.a.get'] });
    try {
      for (const [subject, stream] of [
        ['wide.*.get', 'WIDE'],
        ['narrow.*.get', 'NARROW'],
      ] as const) {
        const api = endpoints({
          name: 'wild',
          version: '1.0.0',
          endpoints: () => ({ get: endpoint({ subject, handler: () => 1 }) }),
        });
        const err = await failure(
          ServiceManager.start({ ...quiet, nats: { servers: server.url }, services: [api] }),
        );
        expect(err.code).toBe('INVALID_OPTIONS');
        expect(err.details).toMatchObject({ subject, streams: [stream] });
      }
    } finally {
      await jsm.streams.delete('WIDE');
      await jsm.streams.delete('NARROW');
    }
  });

  it('starts when no stream captures the subject', async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'OTHER', subjects: ['audit.>'] });
    try {
      const app = await ServiceManager.start({
        ...quiet,
        nats: { servers: server.url },
        services: [ordersApi()],
      });
      try {
        expect(await endpointClient(nc, 'orders.get').request({})).toEqual({ id: 'o-1' });
      } finally {
        await app.stop();
      }
    } finally {
      await jsm.streams.delete('OTHER');
    }
  });

  it('the client turns a publish ack for a reply into PUBLISH_FAILED', async () => {
    // The stream comes after the endpoints started, so the start check could not see it. The
    // handler holds its replies until the end: with two responders the first reply wins, and a
    // loaded CI run saw the handler's reply come before JetStream's ack.
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [ordersApi(() => held.then(() => ({ id: 'o-1' })))],
    });
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.streams.add({ name: 'AUDIT2', subjects: ['orders.>'] });
      const get = endpointClient(nc, 'orders.get', { retry: false });
      for (let i = 1; i <= 5; i++) {
        const err = await failure(get.request({}));
        expect(err.code).toBe('PUBLISH_FAILED');
        expect(err.details).toMatchObject({ subject: 'orders.get', stream: 'AUDIT2', seq: i });
        expect(err.message).toContain('captured the request');
      }
    } finally {
      release();
      await jsm.streams.delete('AUDIT2').catch(() => undefined);
      await app.stop();
    }
  });
});
