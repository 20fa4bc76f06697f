import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionService, fromEnv, NatskitError, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { captureLogs } from '../support/log-capture.js';

// A password with the characters a URL must percent-encode: '@', ':', '/', '%'.
const PASSWORD = 'pw@s3cr3t:9/x%';
const ENCODED = encodeURIComponent(PASSWORD);
const TOKEN = 'tok-s3cr3t-url-5b2e';

/** `nats://127.0.0.1:port` with `userinfo@` put in. */
const withInfo = (url: string, info: string) => url.replace('nats://', `nats://${info}@`);

describe('credentials in the server URL', () => {
  let userServer: NatsServerHandle;
  let tokenServer: NatsServerHandle;
  beforeAll(async () => {
    [userServer, tokenServer] = await Promise.all([
      startNatsServer({ auth: { user: 'app', password: PASSWORD }, jetstream: false }),
      startNatsServer({ auth: { token: TOKEN }, jetstream: false }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([userServer?.[Symbol.asyncDispose](), tokenServer?.[Symbol.asyncDispose]()]);
  });

  /** Starts an app on `nats`, logging everything; returns the log text and the app or error. */
  async function start(nats: object, env = false) {
    const logs = captureLogs();
    const result = await ServiceManager.start({
      logger: { level: 'trace', destination: logs.stream },
      env,
      nats,
    }).then(
      (app) => ({ app, err: undefined }),
      (err: unknown) => ({ app: undefined, err }),
    );
    return { ...result, logs };
  }

  it('nats://user:password@host connects (percent-encoded password), and the password is never logged', async () => {
    const { app, err, logs } = await start({ servers: withInfo(userServer.url, `app:${ENCODED}`) });
    expect(err).toBeUndefined();
    try {
      const conn = app?.get(ConnectionService);
      expect(conn?.status.state).toBe('connected');
      await conn?.nc.flush();
      expect(conn?.status.server).not.toContain('@');
    } finally {
      await app?.stop();
    }
    expect(logs.text()).not.toContain(PASSWORD);
    expect(logs.text()).not.toContain(ENCODED);
  });

  it('nats://token@host connects with the token', async () => {
    const { app, err, logs } = await start({ servers: withInfo(tokenServer.url, TOKEN) });
    expect(err).toBeUndefined();
    await app?.stop();
    expect(logs.text()).not.toContain(TOKEN);
  });

  it('NATS_URL with credentials (env: true) connects', async () => {
    const before = process.env.NATS_URL;
    process.env.NATS_URL = withInfo(tokenServer.url, TOKEN);
    try {
      expect(fromEnv().nats?.servers).toEqual([process.env.NATS_URL]);
      const { app, err, logs } = await start({}, true);
      expect(err).toBeUndefined();
      expect(app?.get(ConnectionService).status.state).toBe('connected');
      await app?.stop();
      expect(logs.text()).not.toContain(TOKEN);
    } finally {
      if (before === undefined) delete process.env.NATS_URL;
      else process.env.NATS_URL = before;
    }
  });

  it('a wrong password in the URL is AUTH_FAILED, and neither the error nor the logs hold it', async () => {
    const wrong = 'wrong-pw-in-url-31f';
    const { err, logs } = await start({ servers: withInfo(userServer.url, `app:${wrong}`) });
    expect(NatskitError.is(err, 'AUTH_FAILED')).toBe(true);
    const text = `${(err as Error).message} ${(err as Error).stack} ${JSON.stringify((err as NatskitError).details)}`;
    expect(text).not.toContain(wrong);
    expect(logs.text()).not.toContain(wrong);
  });

  it('credentials in the URL and in the options, or different ones per URL, are refused without showing them', async () => {
    const both = await start({ servers: withInfo(tokenServer.url, TOKEN), token: TOKEN });
    expect(NatskitError.is(both.err, 'INVALID_OPTIONS')).toBe(true);
    expect((both.err as Error).message).toContain(
      'nats.token is given, and nats.servers carries credentials',
    );
    expect((both.err as Error).message).not.toContain(TOKEN);
    const mixed = await start({
      servers: [withInfo(userServer.url, `app:${ENCODED}`), withInfo(tokenServer.url, TOKEN)],
    });
    expect(NatskitError.is(mixed.err, 'INVALID_OPTIONS')).toBe(true);
    expect((mixed.err as Error).message).not.toContain(TOKEN);
    const malformed = await start({ servers: `nats://app:${PASSWORD}@127.0.0.1:4222,` });
    expect(NatskitError.is(malformed.err, 'INVALID_OPTIONS')).toBe(true);
    expect((malformed.err as Error).message).not.toContain('s3cr3t');
  });
});
