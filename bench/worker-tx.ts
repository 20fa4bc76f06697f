// A first worker as a new user writes it: each job runs one KV transaction (read two keys of
// its own, write both: an atomic batch commit), on a file bucket and on a memory bucket; for
// reference, one single-key updateWith (compare-and-set, no batch) and one plain put per job on
// the file bucket. Concurrency 16, WORKER_TX_JOBS jobs
// (default 3000) queued on a file stream before the worker starts; jobs/s of the median round
// (BENCH_ROUNDS, default 3; the kinds interleaved in each round). WORKER_TX_CONCURRENCY changes
// the concurrency.
// Run: npm run bench (or npm run build, then node bench/worker-tx.ts)
import { KVStoreService, RetentionPolicy, ServiceManager, StreamService } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { median } from './lib.ts';
import { waitFor } from './queue-side.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const jobs = Number(process.env.WORKER_TX_JOBS ?? 3_000);
const concurrency = Number(process.env.WORKER_TX_CONCURRENCY ?? 16);
/** WORKER_TX_ONLY='memory' runs the kinds whose name contains it. */
const only = process.env.WORKER_TX_ONLY;
const KINDS = [
  'transaction, file bucket',
  'transaction, memory bucket',
  'updateWith, file bucket',
  'put, file bucket',
];

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  const kv = app.get(KVStoreService);
  const streams = app.get(StreamService);
  const file = await kv.bucket<number>('wtx_file', { provision: { history: 1 } });
  const memory = await kv.bucket<number>('wtx_mem', {
    provision: { history: 1, storage: 'memory' },
  });
  const handlers = [
    (i: number) =>
      file.transaction(async (tx) => {
        const [a, b] = await tx.getMany([`a${i}`, `b${i}`]);
        await tx.put(`a${i}`, (a ?? 0) + 1);
        await tx.put(`b${i}`, (b ?? 0) + 1);
      }),
    (i: number) =>
      memory.transaction(async (tx) => {
        const [a, b] = await tx.getMany([`a${i}`, `b${i}`]);
        await tx.put(`a${i}`, (a ?? 0) + 1);
        await tx.put(`b${i}`, (b ?? 0) + 1);
      }),
    (i: number) => file.updateWith(`u${i}`, (n) => (n ?? 0) + 1),
    (i: number) => file.put(`p${i}`, i),
  ];

  let run = 0;
  const once = async (handle: (i: number) => Promise<unknown>): Promise<number> => {
    const stream = `WTX_${run++}`;
    await streams.ensureStream({
      name: stream,
      subjects: [`${stream.toLowerCase()}.>`],
      retention: RetentionPolicy.Workqueue,
    });
    for (let i = 0; i < jobs; i++) await streams.publish(`${stream.toLowerCase()}.job`, `${i}`);
    const worker = await streams.createWorker<number>({
      stream,
      consumer: 'worker',
      concurrency,
      handler: async (job) => {
        await handle(job.data);
      },
    });
    const t0 = performance.now();
    worker.start();
    await waitFor(() => worker.stats.processed + worker.stats.failed >= jobs);
    const s = (performance.now() - t0) / 1_000;
    await worker.stop();
    if (worker.stats.failed > 0) throw new Error(`${worker.stats.failed} jobs failed`);
    await streams.jsm.streams.delete(stream);
    return jobs / s;
  };

  const perKind: number[][] = KINDS.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < KINDS.length; k++) {
      // Each round starts with a different kind, so none always runs on a warmer process.
      const kind = (k + r) % KINDS.length;
      if (only && !KINDS[kind]?.includes(only)) continue;
      perKind[kind]?.push(await once(handlers[kind] as (i: number) => Promise<unknown>));
    }
  }
  console.log(
    `worker, concurrency ${concurrency}, ${jobs} jobs, ${rounds} rounds (median, min-max jobs/s):`,
  );
  KINDS.forEach((name, k) => {
    const xs = perKind[k] ?? [];
    if (xs.length === 0) return;
    console.log(
      `  ${name.padEnd(28)} ${Math.round(median(xs))} (${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))})`,
    );
  });
}

await main();
