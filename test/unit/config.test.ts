import { describe, expect, it } from 'vitest';
import { fromEnv, NatskitError } from '../../src/index.js';

describe('fromEnv', () => {
  it('reads the conventional variables', () => {
    const config = fromEnv({
      NATS_URL: 'nats://a:4222, nats://b:4222',
      NATS_USER: 'bob',
      NATS_PASSWORD: 'pw',
      NATS_CREDS: '/etc/nats/app.creds',
      NATS_CA: '/etc/nats/ca.pem',
      LOG_LEVEL: 'debug',
    });
    expect(config).toEqual({
      nats: {
        servers: ['nats://a:4222', 'nats://b:4222'],
        user: 'bob',
        password: 'pw',
        credsFile: '/etc/nats/app.creds',
        tls: { caFile: '/etc/nats/ca.pem' },
      },
      logger: { level: 'debug' },
    });
  });

  it('returns nothing for an empty environment', () => {
    expect(fromEnv({})).toEqual({});
  });

  it.each([
    [{ NATS_URL: 'http://x y' }, 'NATS_URL'],
    [{ LOG_LEVEL: 'chatty' }, 'LOG_LEVEL'],
  ])('rejects %j naming the variable', (env, name) => {
    const err = (() => {
      try {
        fromEnv(env);
      } catch (e) {
        return e;
      }
    })();
    expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
    expect((err as Error).message).toContain(name);
  });
});
