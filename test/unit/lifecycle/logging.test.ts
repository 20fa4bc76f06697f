import type { Logger } from 'pino';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createToken, inject, LOGGER, type Service, ServiceManager } from '../../../src/index.js';
import { captureLogs } from '../../support/log-capture.js';

const SECRETS = [
  'hunter2',
  'tok-123456',
  'SUAEXAMPLESEED',
  'Bearer abc.def',
  '-----BEGIN NATS USER JWT-----',
];

class Chatty implements Service {
  readonly log: Logger;
  constructor(@inject(LOGGER) logger: Logger) {
    this.log = logger.child({ service: 'chatty' });
  }
  start() {
    this.log.info(
      {
        options: {
          user: 'bob',
          password: 'hunter2',
          token: 'tok-123456',
          nkeySeed: 'SUAEXAMPLESEED',
        },
        request: { headers: { authorization: 'Bearer abc.def' } },
        creds: '-----BEGIN NATS USER JWT-----',
      },
      'connecting',
    );
  }
}

const DB = createToken<Service>('Database');

describe('logging', () => {
  it('logs per-service start and stop timing and never a secret value', async () => {
    const out = captureLogs();
    const manager = await ServiceManager.start({
      logger: { level: 'info', destination: out.stream },
      services: [
        { token: DB, useValue: { start: () => new Promise<void>((r) => setTimeout(r, 20)) } },
        { token: Chatty, useClass: Chatty, dependsOn: [DB] },
      ],
    });
    await manager.stop();
    const lines = out.lines();
    const started = lines.filter((l) => l.msg === 'service started');
    expect(started.map((l) => l.service)).toEqual(['Database', 'Chatty']);
    for (const l of started) expect(typeof l.ms).toBe('number');
    expect((started[0]?.ms as number) >= 15).toBe(true);
    expect(lines.some((l) => l.msg === 'stopped' && typeof l.ms === 'number')).toBe(true);
    const connecting = lines.find((l) => l.msg === 'connecting') as {
      options: Record<string, unknown>;
    };
    expect(connecting.options.user).toBe('bob');
    expect(connecting.options.password).toBe('[redacted]');
    for (const secret of SECRETS) expect(out.text()).not.toContain(secret);
  });

  it('logs the start and stop of a service without start() or stop() too, with ms (KVStoreService logged none)', async () => {
    const out = captureLogs();
    const Plain = createToken<object>('Plain');
    const manager = await ServiceManager.start({
      logger: { level: 'info', destination: out.stream },
      services: [{ token: Plain, useValue: {} }],
    });
    await manager.stop();
    const lines = out.lines().filter((l) => l.service === 'Plain');
    expect(lines.map((l) => l.msg)).toEqual(['service started', 'service stopped']);
    for (const l of lines) expect(typeof l.ms).toBe('number');
  });

  it('adds the redaction to a logger the user passes in', async () => {
    const out = captureLogs();
    const manager = await ServiceManager.start({
      logger: pino({ level: 'info' }, out.stream),
      services: [{ token: Chatty, useClass: Chatty }],
    });
    await manager.stop();
    expect(out.text()).toContain('connecting');
    for (const secret of SECRETS) expect(out.text()).not.toContain(secret);
  });
});
