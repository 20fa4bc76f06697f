import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { AuthorizationError } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatskitError, ServiceManager } from '../../src/index.js';
import { freePort, type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { captureLogs } from '../support/log-capture.js';

const quiet = { logger: { level: 'silent' as const } };

/** How often `text` occurs in `haystack`. */
const count = (haystack: string, text: string) => haystack.split(text).length - 1;

/** The message pino logs for an error: its own and its causes', joined. */
const logged = (err: unknown) => pino.stdSerializers.err(err as Error).message;

describe('SERVICE_START_TIMEOUT says why the connection did not start', () => {
  it('waitForFirstConnect with no server: the last connect error is the cause and in the message', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const err = await ServiceManager.start({
      ...quiet,
      startTimeoutMs: 800,
      nats: {
        servers: url,
        waitForFirstConnect: true,
        reconnectTimeWaitMs: 100,
        reconnectJitterMs: 10,
      },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SERVICE_START_TIMEOUT')).toBe(true);
    const e = err as NatskitError;
    expect(e.service).toBe('ConnectionService');
    expect(e.message).toMatch(
      new RegExp(
        `^ConnectionService did not start within 800 ms: could not connect to NATS at ${url}: .+ \\(\\d+ attempts\\)$`,
      ),
    );
    expect(e.details).toMatchObject({ timeoutMs: 800, reason: 'CONNECTION_FAILED' });
    // The cause is the client's own error (the natskit one is already in the message).
    expect(e.cause).toBeInstanceOf(Error);
    expect(NatskitError.is(e.cause)).toBe(false);
  });

  it('a server that accepts but never answers: the timeout says the attempt had not finished, on time', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as { port: number };
    try {
      const t0 = performance.now();
      const err = await ServiceManager.start({
        ...quiet,
        startTimeoutMs: 600,
        nats: {
          servers: `nats://127.0.0.1:${port}`,
          waitForFirstConnect: true,
          connectTimeoutMs: 10_000,
        },
      }).catch((e: unknown) => e);
      const elapsed = performance.now() - t0;
      expect(NatskitError.is(err, 'SERVICE_START_TIMEOUT')).toBe(true);
      expect((err as Error).message).toContain('the first attempt had not finished');
      expect(elapsed).toBeLessThan(3_000); // not the 10 s connect timeout
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});

describe('messages do not repeat themselves', () => {
  let server: NatsServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startNatsServer({ auth: { token: 'right-token' }, jetstream: false });
    dir = mkdtempSync(join(tmpdir(), 'natskit-start-errors-'));
  });
  afterAll(async () => {
    await server?.[Symbol.asyncDispose]();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refused credentials: the logged message says it once, the cause is the client error', async () => {
    const logs = captureLogs();
    const err = await ServiceManager.start({
      logger: { level: 'error', destination: logs.stream },
      nats: { servers: server.url, token: 'wrong-token' },
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'AUTH_FAILED')).toBe(true);
    expect((err as Error).message).toBe(
      `ConnectionService failed to start: the NATS server at ${server.url} refused the credentials (AuthorizationError)`,
    );
    expect((err as Error).cause).toBeInstanceOf(AuthorizationError);
    expect(count(logged(err), 'refused the credentials')).toBe(1);
    const line = logs.lines().find((l) => l.msg === 'start failed, rolled back');
    const loggedLine = (line?.err as { message?: string } | undefined)?.message ?? '';
    expect(count(loggedLine, 'refused the credentials')).toBe(1);
    expect(JSON.stringify(line)).not.toContain('wrong-token');
  });

  it('a locked SQLite file: said once, attributed to StateStore only, and short', async () => {
    const path = join(dir, 'locked.db');
    const options = {
      ...quiet,
      // With nats, ConnectionService starts beside the store and is aborted by its failure.
      nats: { servers: server.url, token: 'right-token' },
      kv: {},
      state: { backend: 'sqlite' as const, path },
    };
    await using _first = await ServiceManager.start(options);
    const err = await ServiceManager.start(options).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'STORAGE_FAILED')).toBe(true);
    const e = err as NatskitError;
    expect(e.service).toBe('StateStore');
    expect(count(logged(e), 'in use by another process')).toBe(1);
    expect(e.details?.concurrentErrors).toEqual([]);
    const lines = inspect(e, { depth: 10 }).split('\n').length;
    expect(lines).toBeLessThan(40);
  });
});
