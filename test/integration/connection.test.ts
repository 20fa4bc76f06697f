import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionService,
  type ConnectionStatus,
  NatskitError,
  ServiceManager,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { NatsServerProcess } from '../../src/testing/nats-server.js';
import { makeTestCertificates } from '../support/certs.js';
import { captureLogs } from '../support/log-capture.js';

const quiet = { logger: { level: 'silent' as const } };
const SECRET_TOKEN = 'tok-s3cr3t-4f9a';
const SECRET_PASSWORD = 'pw-s3cr3t-77c1';

describe('ConnectionService auth', () => {
  let tokenServer: NatsServerHandle;
  let userServer: NatsServerHandle;
  beforeAll(async () => {
    [tokenServer, userServer] = await Promise.all([
      startNatsServer({ auth: { token: SECRET_TOKEN } }),
      startNatsServer({ auth: { user: 'app', password: SECRET_PASSWORD } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([tokenServer?.[Symbol.asyncDispose](), userServer?.[Symbol.asyncDispose]()]);
  });

  it('connects with a token', async () => {
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: tokenServer.url, token: SECRET_TOKEN },
    });
    const conn = app.get(ConnectionService);
    expect(conn.status.state).toBe('connected');
    await conn.nc.flush();
  });

  it('connects with user and password', async () => {
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: userServer.url, user: 'app', password: SECRET_PASSWORD },
    });
    expect(app.get(ConnectionService).status.state).toBe('connected');
  });

  it.each([
    ['a bad token', () => ({ servers: tokenServer.url, token: `${SECRET_TOKEN}-wrong` })],
    [
      'a bad password',
      () => ({ servers: userServer.url, user: 'app', password: `${SECRET_PASSWORD}-wrong` }),
    ],
    [
      'a URL with bad credentials',
      () => ({ servers: `nats://app:${SECRET_PASSWORD}-wrong@127.0.0.1:${userServer.port}` }),
    ],
  ])('%s fails with AUTH_FAILED and no secret in the error or the logs', async (_, nats) => {
    const logs = captureLogs();
    const err = await ServiceManager.start({
      logger: { level: 'trace', destination: logs.stream },
      nats: { ...nats(), reconnect: false },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'AUTH_FAILED')).toBe(true);
    expect((err as NatskitError).service).toBe('ConnectionService');
    const everything = `${(err as Error).message} ${JSON.stringify(err)} ${logs.text()}`;
    expect(everything).not.toContain(SECRET_TOKEN);
    expect(everything).not.toContain(SECRET_PASSWORD);
  });

  it('an unreachable server fails with CONNECTION_FAILED', async () => {
    const err = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: 'nats://127.0.0.1:1', reconnect: false, connectTimeoutMs: 1_000 },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'CONNECTION_FAILED')).toBe(true);
  });
});

describe('ConnectionService TLS', () => {
  it('connects over TLS with the CA, and fails without it', async () => {
    using certs = makeTestCertificates();
    await using server = await startNatsServer({
      tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    });
    const tlsUrl = `tls://127.0.0.1:${server.port}`;
    {
      await using app = await ServiceManager.start({
        logger: { level: 'silent' },
        nats: { servers: tlsUrl, tls: { caFile: certs.caFile } },
      });
      expect(app.get(ConnectionService).status.state).toBe('connected');
    }
    const err = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: tlsUrl, reconnect: false },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'CONNECTION_FAILED')).toBe(true);
  });
});

describe('ConnectionService status and capabilities', () => {
  it('follows a server restart: reconnecting then connected, the manager stays running', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: server.url, reconnectTimeWaitMs: 100, reconnectJitterMs: 50 },
    });
    const conn = app.get(ConnectionService);
    const seen: ConnectionStatus[] = [];
    const back = new Promise<void>((resolve) =>
      conn.onStatus((s) => {
        seen.push(s);
        if (s.state === 'connected') resolve();
      }),
    );
    await server.restart({ signal: 'SIGKILL' });
    await back;
    const states = seen.map((s) => s.state);
    expect(states[0]).toBe('disconnected');
    expect(states).toContain('reconnecting');
    expect(states.at(-1)).toBe('connected');
    expect(app.state).toBe('running');
    expect((await conn.health()).status).toBe('pass');
  });

  it('reads different capabilities from 2.9.10 and a modern server', async () => {
    await using modern = await startNatsServer();
    await using old = await startNatsServer({ version: '2.9' });
    await using a = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: modern.url },
    });
    await using b = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: old.url },
    });
    const m = a.get(ConnectionService).capabilities;
    const o = b.get(ConnectionService).capabilities;
    expect(m.serverVersion).toBe(modern.version);
    expect(o.serverVersion).toBe(old.version);
    expect(m.apiLevel).toBeGreaterThanOrEqual(2);
    expect(o.apiLevel).toBe(0);
    expect(m.features).toMatchObject({ perKeyTtl: true, atomicBatch: true, multiGet: true });
    expect(o.features).toMatchObject({ perKeyTtl: false, atomicBatch: false, multiGet: false });
    expect(o.jetstream).toBe(true);
    const err = (() => {
      try {
        b.get(ConnectionService).requireFeature('atomicBatch', 'a multi-key transaction');
      } catch (e) {
        return e;
      }
    })();
    expect(NatskitError.is(err, 'CAPABILITY_MISSING')).toBe(true);
    expect((err as Error).message).toContain('nats-server >= 2.12');
    expect((err as Error).message).toContain(old.version);
  });

  it('drains on stop, and never closes a connection it was handed', async () => {
    await using server = await startNatsServer();
    const app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: server.url },
    });
    const conn = app.get(ConnectionService);
    const nc = conn.nc;
    await app.stop();
    expect(conn.closeResult).toBe('drained');
    expect(nc.isClosed()).toBe(true);
    expect(conn.status.state).toBe('closed');

    const own = await connect({ servers: server.url });
    const app2 = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { connection: own },
    });
    await app2.stop();
    expect(app2.get(ConnectionService).closeResult).toBe('external');
    expect(own.isClosed()).toBe(false);
    await own.close();
  });

  it('rejects invalid connection options before anything starts', async () => {
    const err = await ServiceManager.start({ nats: { servers: [], drainTimeoutMs: 5 } }).catch(
      (e: unknown) => e,
    );
    expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
    expect((err as Error).message).toContain('nats.servers');
  });
});

describe('waiting for the first connection', () => {
  it('waitForFirstConnect starts once a server appears; without it the start fails at once; the start deadline bounds the wait', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const url = `nats://127.0.0.1:${port}`;
    const quick = { servers: url, reconnectTimeWaitMs: 100, reconnectJitterMs: 50 };

    const t0 = performance.now();
    const failed = await ServiceManager.start({ ...quiet, nats: quick }).catch((e: unknown) => e);
    expect(NatskitError.is(failed, 'CONNECTION_FAILED')).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3_000);

    const timedOut = await ServiceManager.start({
      ...quiet,
      startTimeoutMs: 700,
      nats: { ...quick, waitForFirstConnect: true },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(timedOut, 'SERVICE_START_TIMEOUT')).toBe(true);
    expect((timedOut as NatskitError).service).toBe('ConnectionService');

    // The app starts first; the server comes up 1.5 s later, on the port the app was given.
    const late = new NatsServerProcess({ port });
    const starting = ServiceManager.start({
      ...quiet,
      nats: { ...quick, waitForFirstConnect: true },
    });
    await sleep(1_500);
    await late.start();
    try {
      await using app = await starting;
      expect(app.get(ConnectionService).status.state).toBe('connected');
    } finally {
      await late[Symbol.asyncDispose]();
    }
  });
});
