import { describe, expect, it } from 'vitest';
import {
  createToken,
  LOGGER,
  type Logger,
  NatskitError,
  type Service,
  ServiceManager,
} from '../../../src/index.js';

const quiet = { logger: { level: 'silent' as const } };
const URL_TOKEN = createToken<string>('Url');

describe('decorator-free constructor dependencies (inject)', () => {
  it('passes the listed tokens in order and starts the dependencies first', async () => {
    const events: string[] = [];
    class Database implements Service {
      constructor(readonly url: string) {}
      start() {
        events.push(`db ${this.url}`);
      }
    }
    class Mailer implements Service {
      constructor(
        readonly db: Database,
        readonly logger: Logger,
      ) {}
      start() {
        events.push(`mailer uses ${this.db.url}, logger ${typeof this.logger.info}`);
      }
    }
    class Report {
      constructor(readonly mailer: Mailer) {}
    }
    await using app = await ServiceManager.start({
      ...quiet,
      services: [
        { token: Mailer, useClass: Mailer, inject: [Database, LOGGER] },
        { token: Database, useClass: Database, inject: [URL_TOKEN] },
        { token: URL_TOKEN, useValue: 'db://x' },
      ],
      scoped: [{ token: 'report', useClass: Report, inject: [Mailer] }],
    });
    expect(events).toEqual(['db db://x', 'mailer uses db://x, logger function']);
    expect(app.get(Mailer).db).toBe(app.get(Database));
    await using scope = app.createScope();
    expect((scope.get('report') as Report).mailer).toBe(app.get(Mailer));
  });

  it('an inject list shorter than the constructor fails with INJECTION_MISSING before anything starts', async () => {
    class Two {
      constructor(
        readonly a: string,
        readonly b: string,
      ) {}
    }
    const err = await ServiceManager.start({
      ...quiet,
      services: [
        { token: URL_TOKEN, useValue: 'x' },
        // A JavaScript user (or a cast) can write this; the compiler refuses it in TypeScript.
        { token: Two, useClass: Two, inject: [URL_TOKEN] } as never,
      ],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'INJECTION_MISSING')).toBe(true);
    expect((err as NatskitError).details?.parameters).toEqual([1]);
  });

  it('a token in inject nobody registered is DEPENDENCY_MISSING; inject without useClass is INVALID_OPTIONS', async () => {
    class One {
      constructor(readonly a: string) {}
    }
    const missing = await ServiceManager.start({
      ...quiet,
      services: [{ token: One, useClass: One, inject: [URL_TOKEN] }],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(missing, 'DEPENDENCY_MISSING')).toBe(true);
    const bad = await ServiceManager.start({
      ...quiet,
      services: [{ token: URL_TOKEN, useValue: 'x', inject: [URL_TOKEN] } as never],
    }).catch((e: unknown) => e);
    expect(NatskitError.is(bad, 'INVALID_OPTIONS')).toBe(true);
  });
});
