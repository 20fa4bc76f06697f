// The main job: a job-queue worker on natskit.
//
// Boots a ServiceManager (probes on), ensures a work-queue stream, enqueues jobs, processes them
// with a worker of configurable concurrency (some jobs fail on their first delivery and are
// retried), records each job's status in KV and running totals through transactions, shows its
// progress, asks its own /readyz and /healthz while running, stops gracefully, checks every job,
// and prints a summary. Exit code 0 when every job was processed exactly as recorded.
//
//   npm run demo                        (a private nats-server, unless NATS_URL is set)
//   DEMO_JOBS=10000 DEMO_CONCURRENCY=32 npm run demo
import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import {
  ConnectionService,
  endpointClient,
  endpoints,
  KVStoreService,
  ServiceManager,
  StreamService,
} from 'natskit';
import { startNatsServer } from 'natskit/testing';

const JOBS = Number(process.env.DEMO_JOBS ?? 3_000);
const CONCURRENCY = Number(process.env.DEMO_CONCURRENCY ?? 16);
const FAIL_RATE = Number(process.env.DEMO_FAIL_RATE ?? 0.02);
const SHARDS = 4;

interface JobData {
  id: number;
  enqueuedAt: number;
  workMs: number;
  failFirst: boolean;
}
interface JobStatus {
  status: 'done';
  attempts: number;
  latencyMs: number;
}

const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;

function progress(done: number, startedAt: number, final = false): void {
  const pct = Math.floor((done / JOBS) * 100);
  const rate = Math.round(done / ((Date.now() - startedAt) / 1_000) || 0);
  if (process.stdout.isTTY) {
    const bar = '#'.repeat(Math.floor(pct / 4)).padEnd(25, '.');
    process.stdout.write(
      `\r[${bar}] ${String(pct).padStart(3)}% ${done}/${JOBS} jobs, ${rate} jobs/s${final ? '\n' : ''}`,
    );
  } else {
    console.log(`progress: ${pct}% (${done}/${JOBS} jobs, ${rate} jobs/s)`);
  }
}

async function probe(base: string, path: string): Promise<string> {
  const res = await fetch(`${base}${path}`);
  const body = (await res.json()) as { status: string; checks?: Record<string, unknown> };
  return `${path} ${res.status} ${body.status}${body.checks ? ` (${Object.keys(body.checks).length} checks)` : ''}`;
}

async function main(): Promise<number> {
  if (!(Number.isInteger(JOBS) && JOBS > 0 && Number.isInteger(CONCURRENCY) && CONCURRENCY > 0)) {
    console.error('DEMO_JOBS and DEMO_CONCURRENCY must be positive integers');
    return 1;
  }
  await using server = process.env.NATS_URL ? undefined : await startNatsServer();
  const servers = process.env.NATS_URL ?? server?.url ?? '';
  console.log(
    server
      ? `started a private nats-server ${server.version} at ${servers}`
      : `using NATS at ${process.env.NATS_URL}`,
  );
  const run = Date.now().toString(36); // own names per run: safe against a shared server
  // What the status endpoint reports, updated by the worker below.
  const state = { processed: 0, conflicts: 0, inFlight: 0 };
  const statusApi = endpoints({
    name: 'natskit-demo',
    version: '1.0.0',
    description: 'the job-queue demo: progress of this run',
    endpoints: () => ({
      status: {
        subject: `demo-status.${run}`, // not under the stream's subjects (demo.<run>.>)
        handler: () => ({ jobs: JOBS, ...state }),
      },
    }),
  });
  await using app = await ServiceManager.start({
    // Failed first deliveries are part of the show (logged as warnings): LOG_LEVEL=warn to see them.
    logger: {
      level: process.env.LOG_LEVEL === undefined ? 'error' : (process.env.LOG_LEVEL as 'info'),
    },
    health: true,
    // Ctrl-C (SIGINT) or SIGTERM: stop gracefully (running jobs finish or go back to the queue),
    // then exit; the private nats-server and its files go with the process.
    handleSignals: true,
    nats: { servers, name: 'natskit-demo' },
    services: [statusApi], // request/reply on the NATS service protocol: `nats micro ls` finds it
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () =>
      console.log(`\n${signal}: stopping gracefully (running jobs finish, the rest stay queued)`),
    );
  }
  app.onStateChange((state) => {
    if (state === 'stopped') console.log('stopped');
  });
  console.log(`probes at ${app.probeUrl} (/livez /readyz /healthz)`);
  const streams = app.get(StreamService);
  const kv = app.get(KVStoreService);
  const stream = `DEMO_${run}`;
  await streams.ensureStream({
    name: stream,
    subjects: [`demo.${run}.>`],
    retention: RetentionPolicy.Workqueue,
  });
  const status = await kv.bucket<JobStatus>(`demo_status_${run}`, { provision: { history: 1 } });
  // Totals are derived counters, recomputable from the statuses: a memory bucket keeps the hot
  // transaction path off the disk (the server syncs every atomic commit on file storage).
  const totals = await kv.bucket<number>(`demo_totals_${run}`, {
    provision: { history: 1, storage: 'memory' },
  });

  // Enqueue, 256 in flight, each with a message id (a retried publish cannot enqueue twice).
  const enqueueStart = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (next < JOBS) {
        const id = next++;
        const job: JobData = {
          id,
          enqueuedAt: Date.now(),
          workMs: 1 + (id % 5),
          failFirst: Math.random() < FAIL_RATE,
        };
        await streams.publish(`demo.${run}.job`, JSON.stringify(job), { msgId: `${run}-${id}` });
      }
    }),
  );
  console.log(`enqueued ${JOBS} jobs in ${Date.now() - enqueueStart} ms`);

  const latencies: number[] = [];
  let probed = false;
  const startedAt = Date.now();
  const worker = await streams.createWorker<JobData>({
    stream,
    consumer: 'demo',
    concurrency: CONCURRENCY,
    ackWaitMs: 10_000,
    maxDeliver: 3,
    retryDelayMs: () => 50,
    fetchExpiresMs: 1_000,
    handler: async (job, signal) => {
      await sleep(job.data.workMs, undefined, { signal });
      if (job.data.failFirst && job.deliveryCount === 1)
        throw new Error('simulated transient failure');
      const latencyMs = Date.now() - job.data.enqueuedAt;
      // Side effects after the commit: the function may run more than once on conflicts.
      // Totals in 4 shards of two keys each, updated together: contended enough to show conflicts.
      const shard = job.data.id % SHARDS;
      const r = await totals.transaction(
        async (tx) => {
          const [done, workMs] = await tx.getMany([`done.${shard}`, `work_ms.${shard}`]);
          await tx.put(`done.${shard}`, (done ?? 0) + 1);
          await tx.put(`work_ms.${shard}`, (workMs ?? 0) + job.data.workMs);
        },
        { maxAttempts: 100 },
      );
      state.conflicts += r.attempts - 1;
      await status.put(`job.${job.data.id}`, {
        status: 'done',
        attempts: job.deliveryCount,
        latencyMs,
      });
      latencies.push(latencyMs);
      state.processed++;
      state.inFlight = worker.stats.inFlight;
    },
  });
  worker.start();
  let lastShown = -1;
  while (state.processed < JOBS) {
    if (Date.now() - startedAt > 300_000)
      throw new Error(`only ${state.processed} of ${JOBS} jobs after 300 s`);
    // A bar redrawn on every percent on a terminal; a line every 10% otherwise (CI logs).
    const pct = Math.floor((state.processed / JOBS) * 100);
    const step = process.stdout.isTTY ? pct : Math.floor(pct / 10) * 10;
    if (step !== lastShown && step < 100) {
      progress(state.processed, startedAt);
      lastShown = step;
    }
    if (!probed && state.processed >= JOBS / 2) {
      probed = true;
      const status = endpointClient<void, { processed: number; jobs: number }>(
        app.get(ConnectionService),
        `demo-status.${run}`,
      );
      const lines = await Promise.all([
        probe(app.probeUrl ?? '', '/readyz'),
        probe(app.probeUrl ?? '', '/healthz'),
        status.request().then((r) => `status endpoint ${r.processed}/${r.jobs}`),
      ]);
      if (process.stdout.isTTY) process.stdout.write('\n');
      console.log(`while running: ${lines.join('; ')}`);
    }
    await sleep(100);
  }
  progress(state.processed, startedAt, true);
  const elapsedS = (Date.now() - startedAt) / 1_000;
  const { naked } = await worker.stop();

  // Check: every job recorded once, and the totals agree.
  const statuses = await status.bulkGet(Array.from({ length: JOBS }, (_, i) => `job.${i}`));
  const missing = statuses.filter((s) => s?.status !== 'done').length;
  const shards = await totals.bulkGet(Array.from({ length: SHARDS }, (_, s) => `done.${s}`));
  const done = shards.reduce<number>((sum, n) => sum + (n ?? 0), 0);
  const retries = statuses.reduce((n, s) => n + ((s?.attempts ?? 1) - 1), 0);
  const ok = missing === 0 && done === JOBS && naked === 0;

  console.log('');
  console.log('summary');
  console.log(
    `  jobs           ${JOBS} processed in ${elapsedS.toFixed(2)} s: ${Math.round(JOBS / elapsedS)} jobs/s (concurrency ${CONCURRENCY})`,
  );
  console.log(`  retries        ${retries} job deliveries retried after a failure`);
  console.log(
    `  conflicts      ${state.conflicts} transaction conflicts retried (totals kept exact: ${done})`,
  );
  console.log(
    `  latency        p50 ${percentile(latencies, 0.5)} ms, p99 ${percentile(latencies, 0.99)} ms (enqueue to done)`,
  );
  console.log(
    `  check          ${ok ? 'every job recorded once, totals exact' : `FAILED: ${missing} missing, totals ${done}`}`,
  );

  if (process.env.NATS_URL) {
    // Leave a shared server as we found it.
    await streams.jsm.streams.delete(stream);
    await kv.deleteBucket(`demo_status_${run}`);
    await kv.deleteBucket(`demo_totals_${run}`);
  }
  return ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
