// `await using` scopes per job: each job gets its own JobContext and AuditLog (scoped services),
// disposed in reverse order when the job is done; the app's singletons (KVStoreService) stay.
//   npm run demo -- scoped-jobs
import { createToken, inject, KVStoreService, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';

interface Job {
  id: string;
  amount: number;
}
const JOB = createToken<Job>('Job');

/** Per-job context: created for the job's scope, disposed with it. */
class JobContext {
  readonly startedAt = Date.now();
  constructor(@inject(JOB) readonly job: Job) {}
  [Symbol.dispose](): void {
    console.log(`  job ${this.job.id}: context disposed after ${Date.now() - this.startedAt} ms`);
  }
}

/** Per-job audit trail, flushed to KV when the scope closes. */
class AuditLog {
  readonly #lines: string[] = [];
  constructor(
    @inject(JobContext) readonly context: JobContext,
    @inject(KVStoreService) readonly kv: KVStoreService,
  ) {}
  add(line: string): void {
    this.#lines.push(line);
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kv.put('audit', `job.${this.context.job.id}`, this.#lines);
    console.log(`  job ${this.context.job.id}: audit flushed (${this.#lines.length} lines)`);
  }
}

async function main(): Promise<void> {
  await using server = process.env.NATS_URL ? undefined : await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'error' },
    handleSignals: true, // Ctrl-C stops gracefully, then exits
    nats: { servers: process.env.NATS_URL ?? server?.url ?? '' },
    scoped: [
      { token: JobContext, useClass: JobContext },
      { token: AuditLog, useClass: AuditLog },
    ],
  });
  const kv = app.get(KVStoreService);
  await kv.createBucket('audit');
  for (const job of [
    { id: 'a1', amount: 10 },
    { id: 'b2', amount: 25 },
  ]) {
    console.log(`job ${job.id}:`);
    await using scope = app.createScope({ values: [{ token: JOB, useValue: job }] });
    const audit = scope.get(AuditLog);
    audit.add(`charged ${job.amount}`);
    audit.add('receipt sent');
    if (scope.get(KVStoreService) !== kv) throw new Error('singletons must be shared');
  }
  const lines = await kv.get<string[]>('audit', 'job.b2');
  console.log(`audit of b2 in KV: ${JSON.stringify(lines)}`);
  if (process.env.NATS_URL) await kv.deleteBucket('audit');
  console.log('scoped jobs: done');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
