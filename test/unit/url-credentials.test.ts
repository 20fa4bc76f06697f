import { describe, expect, it } from 'vitest';
import { redactUrl, resolveConnectionOptions } from '../../src/connection/options.js';
import { splitUrlCredentials } from '../../src/connection/url-credentials.js';
import { fromEnv, NatskitError } from '../../src/index.js';

describe('credentials in server URLs', () => {
  it('user:password@ and token@ are taken out, percent-decoded; the URLs go on without them', () => {
    expect(splitUrlCredentials(['nats://u%40x:p%3A%2F@h:4222', 'nats://h2:4222'])).toEqual({
      servers: ['nats://h:4222', 'nats://h2:4222'],
      credentials: { user: 'u@x', password: 'p:/' },
    });
    expect(splitUrlCredentials(['tok@h:4222'])).toEqual({
      servers: ['h:4222'],
      credentials: { token: 'tok' },
    });
    expect(splitUrlCredentials(['nats://h:4222'])).toEqual({
      servers: ['nats://h:4222'],
      credentials: undefined,
    });
  });

  it('a raw @ in the password belongs to the password (the last @ ends the user info)', () => {
    expect(splitUrlCredentials(['nats://u:p@ss@h:1']).credentials).toEqual({
      user: 'u',
      password: 'p@ss',
    });
  });

  it('resolved options carry them as user/password or token', () => {
    const o = resolveConnectionOptions({ servers: 'nats://u:pw@a:1,nats://b:2' });
    expect(o.servers).toEqual(['nats://a:1', 'nats://b:2']);
    expect([o.user, o.password, o.token]).toEqual(['u', 'pw', undefined]);
  });

  it('empty parts and bad percent-encoding are refused without the secret', () => {
    for (const url of ['nats://u:@h', 'nats://:pw-secret@h', 'nats://u:pw-secret%zz@h']) {
      let err: unknown;
      try {
        splitUrlCredentials([url]);
      } catch (e) {
        err = e;
      }
      expect(NatskitError.is(err, 'INVALID_OPTIONS')).toBe(true);
      expect((err as Error).message).not.toContain('secret');
    }
  });

  it('NATS_URL accepts user:pass@host:port without a scheme', () => {
    expect(fromEnv({ NATS_URL: 'u:p@h:4222' }).nats?.servers).toEqual(['u:p@h:4222']);
  });

  it('redactUrl hides user info in URLs, host:port forms and texts', () => {
    expect(redactUrl('nats://u:p@h:4222')).toBe('nats://[redacted]@h:4222');
    expect(redactUrl('tok@h:4222')).toBe('[redacted]@h:4222');
    expect(redactUrl('nats://u:p@ss@h:1')).toBe('nats://[redacted]@h:1');
    expect(redactUrl('failed: nats://u:p@a:1 and tls://t@b:2')).toBe(
      'failed: nats://[redacted]@a:1 and tls://[redacted]@b:2',
    );
    expect(redactUrl('nats://h:4222')).toBe('nats://h:4222');
  });
});
