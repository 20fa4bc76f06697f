// A job queue on JetStream: a result awaited, a delayed job on the server's scheduler, a job
// that fails and is retried, one dead-lettered and redriven once "fixed", and a repeatable job
// firing every second, then a summary line. Exit code 0 when every step happened as it should.
//   npm run demo -- queue        (a private nats-server, unless NATS_URL is set)
import { ConnectionService, queue, ServiceManager, StreamService, unrecoverable } from 'natskit';
import { startNatsServer } from 'natskit/testing';

interface Email {
  kind: 'welcome' | 'reminder' | 'flaky' | 'broken' | 'digest';
  to: string;
}

// A fresh queue each run, so a shared server (NATS_URL) holds nothing from an earlier one.
const name = `demo_${Date.now().toString(36)}`;
const emails = queue<Email, { sentAt: string }>({
  name,
  attempts: 3,
  backoff: { type: 'fixed', delayMs: 200 },
  results: true,
});

async function main(): Promise<void> {
  await using server = process.env.NATS_URL ? undefined : await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'error' },
    handleSignals: true,
    nats: { servers: process.env.NATS_URL ?? server?.url ?? '' },
    services: [emails],
  });
  const q = app.get(emails.token);
  const problems: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) problems.push(what);
  };

  let brokenFixed = false;
  let delayedLagMs = Number.NaN;
  const fired: string[] = [];
  let onFired: (() => void) | undefined;
  const worker = await q.work(
    async (job) => {
      if (job.data.kind === 'flaky' && job.attempt === 1) throw new Error('smtp timeout');
      if (job.data.kind === 'broken' && !brokenFixed) {
        throw unrecoverable(`no mailbox ${job.data.to}`);
      }
      if (job.runAt) delayedLagMs = Date.now() - job.runAt.getTime();
      if (job.schedule) {
        fired.push(job.id);
        onFired?.();
      }
      return { sentAt: new Date().toISOString() };
    },
    { concurrency: 4, fetchExpiresMs: 1_000 },
  );
  using _events = q.events(
    (e) => {
      if (e.type === 'failed')
        console.log(`  event: ${e.id} failed attempt ${e.attempt}, retry in ${e.retryInMs} ms`);
      if (e.type === 'dead') console.log(`  event: ${e.id} dead (${e.reason})`);
    },
    { types: ['failed', 'dead'] },
  );

  console.log(`queue ${name}:`);
  const welcome = await q.add({ kind: 'welcome', to: 'ada@example.com' }, { jobId: 'welcome-ada' });
  const r1 = await q.result(welcome.id, { timeoutMs: 10_000 });
  console.log(`- result awaited: ${welcome.id} ${r1.state}`);
  check(r1.state === 'completed', 'the welcome job did not complete');

  const reminder = await q.add({ kind: 'reminder', to: 'bob@example.com' }, { delayMs: 1_500 });
  console.log(`- delayed: ${reminder.id} due at ${reminder.runAt?.toISOString()}`);
  const flaky = await q.add({ kind: 'flaky', to: 'cy@example.com' }, { jobId: 'flaky-cy' });
  const r2 = await q.result(flaky.id, { timeoutMs: 10_000 });
  console.log(
    `- failing once: ${flaky.id} ${r2.state}${r2.state === 'completed' ? ` on attempt ${r2.attempt}` : ''}`,
  );
  check(r2.state === 'completed' && r2.attempt === 2, 'the flaky job was not retried once');

  const broken = await q.add({ kind: 'broken', to: 'nobody@example.com' }, { jobId: 'broken-1' });
  const r3 = await q.result(broken.id, { timeoutMs: 10_000 });
  const dead = await q.deadJobs();
  console.log(`- dead letter: ${dead.map((d) => `${d.id} (${d.reason}: ${d.error})`).join(', ')}`);
  check(r3.state === 'dead' && dead.length === 1, 'the broken job was not dead-lettered');
  brokenFixed = true; // the cause fixed: send it again
  check(await q.redrive(broken.id), 'the redrive found no dead job');
  const r4 = await q.result(broken.id, { timeoutMs: 10_000 });
  console.log(
    `- redriven: ${broken.id} ${r4.state}; dead letters now ${(await q.deadJobs()).length}`,
  );
  check(r4.state === 'completed', 'the redriven job did not complete');

  const r5 = await q.result(reminder.id, { timeoutMs: 10_000 });
  console.log(`- delayed job ${r5.state}, started ${delayedLagMs} ms after its time`);
  check(r5.state === 'completed' && delayedLagMs >= 0, 'the delayed job did not run at its time');

  let firings = 0;
  if (app.get(ConnectionService).capabilities.features.repeatSchedules) {
    const twice = new Promise<void>((resolve) => {
      onFired = () => fired.length >= 2 && resolve();
    });
    const s = await q.schedule('digest', {
      every: '1s',
      data: { kind: 'digest', to: 'team@example.com' },
    });
    await Promise.race([twice, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    await q.unschedule('digest');
    firings = fired.length;
    console.log(`- repeatable: schedule digest ${s.action}, fired ${fired.join(', ')}, removed`);
    check(firings >= 2, 'the repeatable job did not fire twice');
  } else {
    console.log('- repeatable: skipped (needs nats-server 2.14)');
  }

  const counts = await q.counts();
  await worker.stop();
  const { completed, retried, dead: deadCount } = worker.stats;
  console.log(
    `queue demo: ${completed} completed, ${retried} retried, ${deadCount} dead-lettered and redriven, ` +
      `delayed job started ${delayedLagMs} ms late, ${firings} repeatable firings; ` +
      `now waiting ${counts.waiting}, active ${counts.active}, dead ${counts.dead}` +
      (problems.length === 0 ? '' : `; PROBLEMS: ${problems.join('; ')}`),
  );
  if (process.env.NATS_URL) {
    const jsm = app.get(StreamService).jsm;
    for (const stream of [`QUEUE_${name}`, `QUEUE_${name}_DEAD`, `KV_queue_${name}_results`]) {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  }
  if (problems.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
