import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVStoreService, NatskitError, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';

const quiet = { logger: { level: 'silent' as const } };

/** The error `p` rejects with; a resolve, or an error that is not a NatskitError, fails the test. */
async function failure(p: Promise<unknown>): Promise<NatskitError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!NatskitError.is(err)) {
    throw new Error(`expected a NatskitError, got ${err === undefined ? 'no error' : String(err)}`);
  }
  return err;
}

function thrown(f: () => unknown): NatskitError {
  try {
    f();
  } catch (err) {
    if (NatskitError.is(err)) return err;
    throw new Error(`expected a NatskitError, got ${String(err)}`);
  }
  throw new Error('expected a NatskitError, got no error');
}

describe('options and messages a new user meets', () => {
  let server: NatsServerHandle;
  let auth: NatsServerHandle;
  beforeAll(async () => {
    [server, auth] = await Promise.all([
      startNatsServer(),
      startNatsServer({ auth: { token: 'right-token' }, jetstream: false }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([server?.[Symbol.asyncDispose](), auth?.[Symbol.asyncDispose]()]);
  });

  it('a server URL the client cannot parse is INVALID_OPTIONS naming nats.servers, redacted', async () => {
    const err = await failure(
      ServiceManager.start({ ...quiet, nats: { servers: 'localhost:notaport' } }),
    );
    expect(err.code).toBe('INVALID_OPTIONS');
    expect(err.details?.field).toBe('nats.servers');
    expect(err.message).toContain("'localhost:notaport'");
    const secret = await failure(
      ServiceManager.start({
        ...quiet,
        nats: { servers: [server.url, 'nats://user:s3cret@host:99999'] },
      }),
    );
    expect(secret.code).toBe('INVALID_OPTIONS');
    expect(JSON.stringify({ m: secret.message, d: secret.details })).not.toContain('s3cret');
    // The forms the client takes still connect: host:port without a scheme, a nats:// URL.
    const port = new URL(server.url).port;
    for (const servers of [`127.0.0.1:${port}`, `nats://127.0.0.1:${port}`, server.url]) {
      const app = await ServiceManager.start({ ...quiet, nats: { servers } });
      await app.stop();
    }
  });

  it('no credentials against a server that needs them says none were given', async () => {
    const err = await failure(ServiceManager.start({ ...quiet, nats: { servers: auth.url } }));
    expect(err.code).toBe('AUTH_FAILED');
    expect(err.message).toContain('requires credentials and none were given');
    expect(err.message).not.toContain('refused the credentials');
    const wrong = await failure(
      ServiceManager.start({ ...quiet, nats: { servers: auth.url, token: 'wrong-token' } }),
    );
    expect(wrong.message).toContain('refused the credentials');
  });

  it('health: a string says true, false or an object', async () => {
    const err = await failure(ServiceManager.start({ ...quiet, health: 'yes' as never }));
    expect(err.code).toBe('INVALID_OPTIONS');
    expect(err.message).toBe(
      "options.health must be true, false or an object, got the string 'yes'",
    );
  });

  it('INVALID_KEY details carry the key itself, not a quoted preview', async () => {
    const app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    try {
      const kv = app.get(KVStoreService);
      await kv.createBucket('keys');
      const err = await failure(kv.put('keys', 'bad key', 1));
      expect(err.code).toBe('INVALID_KEY');
      expect(err.details?.key).toBe('bad key');
      expect(err.message).toContain('"bad key"');
    } finally {
      await app.stop();
    }
  });

  it('get(KVStoreService) without nats says the nats option registers it', async () => {
    const app = await ServiceManager.start(quiet);
    try {
      const err = thrown(() => app.get(KVStoreService));
      expect(err.code).toBe('SERVICE_NOT_FOUND');
      expect(err.message).toContain('KVStoreService is not registered');
      expect(err.message).toContain('`nats` option');
    } finally {
      await app.stop();
    }
  });
});
