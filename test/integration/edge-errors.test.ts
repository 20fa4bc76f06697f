import { createServer, type Server } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, NatskitError, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

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
