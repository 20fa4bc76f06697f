import { describe, expect, it } from 'vitest';
import { createToken, inject, NatskitError, ServiceManager } from '../../../src/index.js';

const log: string[] = [];

class Database {
  running = true;
  stop() {
    this.running = false;
    log.push('db stopped');
  }
}

const JOB = createToken<{ id: string }>('Job');

class JobContext {
  constructor(@inject(JOB) readonly job: { id: string }) {}
  async [Symbol.asyncDispose]() {
    log.push(`context ${this.job.id} disposed`);
  }
}

class Repository {
  constructor(
    @inject(JobContext) readonly context: JobContext,
    @inject(Database) readonly db: Database,
  ) {}
  [Symbol.dispose]() {
    log.push(`repository ${this.context.job.id} disposed`);
  }
}

class Broken {
  stop() {
    throw new Error('broken cannot stop');
  }
}

const quiet = { logger: { level: 'silent' as const } };

describe('scopes', () => {
  it('await using disposes scoped instances in reverse creation order and leaves singletons running', async () => {
    log.length = 0;
    await using manager = await ServiceManager.start({
      ...quiet,
      services: [{ token: Database, useClass: Database }],
      scoped: [
        { token: JobContext, useClass: JobContext },
        { token: Repository, useClass: Repository },
      ],
    });
    const db = manager.get(Database);
    let kept: Repository | undefined;
    {
      await using scope = manager.createScope({ values: [{ token: JOB, useValue: { id: 'j1' } }] });
      const repo = scope.get(Repository);
      kept = repo;
      expect(scope.get(Repository)).toBe(repo); // one instance per scope
      expect(repo.db).toBe(db); // the app's singleton
      expect(repo.context.job.id).toBe('j1');
      expect(log).toEqual([]);
    }
    // JobContext was created first (Repository needs it), so it is disposed last.
    expect(log).toEqual(['repository j1 disposed', 'context j1 disposed']);
    expect(db.running).toBe(true);

    await using other = manager.createScope({ values: [{ token: JOB, useValue: { id: 'j2' } }] });
    expect(other.get(Repository)).not.toBe(kept);
  });

  it('a disposed scope refuses get, and disposal failures are gathered', async () => {
    await using manager = await ServiceManager.start({
      ...quiet,
      scoped: [{ token: Broken, useClass: Broken }],
    });
    const scope = manager.createScope();
    scope.get(Broken);
    const err = await Promise.resolve(scope[Symbol.asyncDispose]()).catch((e: unknown) => e);
    expect(NatskitError.is(err, 'SCOPE_DISPOSE_FAILED')).toBe(true);
    expect(((err as AggregateError).errors[0] as NatskitError).service).toBe('Broken');
    expect(scope.disposed).toBe(true);
    expect(() => scope.get(Broken)).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
  });

  it('stopping the manager disposes open scopes first', async () => {
    log.length = 0;
    const manager = await ServiceManager.start({
      ...quiet,
      services: [{ token: Database, useClass: Database }],
      scoped: [
        { token: JobContext, useClass: JobContext },
        { token: Repository, useClass: Repository },
      ],
    });
    const scope = manager.createScope({ values: [{ token: JOB, useValue: { id: 'open' } }] });
    scope.get(Repository);
    await manager.stop();
    expect(log).toEqual(['repository open disposed', 'context open disposed', 'db stopped']);
    expect(() => manager.createScope()).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
  });
});
