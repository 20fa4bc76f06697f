// The bank-transfer job: a worker at concurrency 16 whose every job moves an amount between two
// accounts exactly once. natskit: createWorker on a stream, each job one kv.transaction reading
// done.<id>, from and to and writing all three. BullMQ: a Lua script on Redis (append-only
// file, fsync every second) doing the same transfer and done marker. 3,000 jobs over 20 (hot)
// and 2,000 (cold) accounts, file and memory buckets. Every run checks each balance against the
// job list, that every done marker is there exactly once, and that no transaction was exhausted.
// Run: npm run bench   (BENCH_ROUNDS=1 by default; BENCH_BANK_ONLY='file hot' runs one setting)
import {
  KVStoreService,
  NatskitError,
  RetentionPolicy,
  ServiceManager,
  StreamService,
} from 'natskit';
import { startNatsServer } from 'natskit/testing';
// Bench only: the group commit counters of a bucket (not public API), from the same build.
import { committerOf } from '../dist/kv/transaction/group-commit.js';
import { median } from './lib.ts';
import { type Libraries, startRedis } from './queue-bullmq.ts';
import { waitFor } from './queue-side.ts';

const JOBS = 3_000;
const CONCURRENCY = 16;
const START = 1_000_000;
const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
const only = process.env.BENCH_BANK_ONLY;
const SETTINGS = [
  { storage: 'file', accounts: 20, name: 'file hot' },
  { storage: 'file', accounts: 2_000, name: 'file cold' },
  { storage: 'memory', accounts: 20, name: 'memory hot' },
  { storage: 'memory', accounts: 2_000, name: 'memory cold' },
] as const;
const TARGETS: Record<string, number> = {
  'file hot': 0.25,
  'file cold': 0.5,
  'memory hot': 0.5,
  'memory cold': 1.0,
};

interface Transfer {
  readonly id: number;
  readonly from: string;
  readonly to: string;
  readonly amount: number;
}

function jobsFor(accounts: number): Transfer[] {
  return Array.from({ length: JOBS }, (_, id) => {
    const from = Math.floor(Math.random() * accounts);
    const to = (from + 1 + Math.floor(Math.random() * (accounts - 1))) % accounts;
    return { id, from: `a${from}`, to: `a${to}`, amount: 1 + Math.floor(Math.random() * 100) };
  });
}

/** Balances the job list implies, each applied exactly once. */
function expected(accounts: number, jobs: readonly Transfer[]): Map<string, number> {
  const out = new Map(Array.from({ length: accounts }, (_, i) => [`a${i}`, START]));
  for (const j of jobs) {
    out.set(j.from, (out.get(j.from) ?? 0) - j.amount);
    out.set(j.to, (out.get(j.to) ?? 0) + j.amount);
  }
  return out;
}

/** Throws unless every balance and every done marker is what the job list implies. */
function check(
  side: string,
  accounts: number,
  jobs: readonly Transfer[],
  balances: readonly (number | null)[],
  done: readonly (number | null)[],
): void {
  const want = expected(accounts, jobs);
  const wrong = balances.filter((b, i) => b !== want.get(`a${i}`)).length;
  const missing = done.filter((d) => d !== 1).length;
  if (wrong > 0 || missing > 0) {
    throw new Error(`${side}: ${wrong} balance(s) wrong, ${missing} done marker(s) not 1`);
  }
}

interface Run {
  readonly jobsPerSecond: number;
  readonly conflicts: number;
  readonly exhausted: number;
  readonly note: string;
}

let runs = 0;

async function natskitRun(
  app: ServiceManager,
  storage: 'file' | 'memory',
  accounts: number,
): Promise<Run> {
  const kv = app.get(KVStoreService);
  const streams = app.get(StreamService);
  const id = ++runs;
  const bucket = await kv.bucket<number>(`bank_${id}`, { provision: { history: 1, storage } });
  const names = Array.from({ length: accounts }, (_, i) => `a${i}`);
  await bucket.bulkPut(names.map((key) => ({ key, value: START })));
  const jobs = jobsFor(accounts);
  const stream = `BANK_${id}`;
  await streams.ensureStream({
    name: stream,
    subjects: [`bank${id}.>`],
    retention: RetentionPolicy.Workqueue,
  });
  for (let i = 0; i < JOBS; i += 500) {
    await Promise.all(
      jobs.slice(i, i + 500).map((j) => streams.publish(`bank${id}.job`, JSON.stringify(j))),
    );
  }
  let conflicts = 0;
  let exhausted = 0;
  const worker = await streams.createWorker<Transfer>({
    stream,
    consumer: 'bank',
    concurrency: CONCURRENCY,
    handler: async (job) => {
      const { id: jobId, from, to, amount } = job.data;
      try {
        const r = await bucket.transaction(async (tx) => {
          const [done, a, b] = await tx.getMany([`done.${jobId}`, from, to]);
          if (done !== null) return; // delivered again after it committed: nothing to do
          await tx.put(from, (a ?? 0) - amount);
          await tx.put(to, (b ?? 0) + amount);
          await tx.put(`done.${jobId}`, 1);
        });
        conflicts += r.attempts - 1;
      } catch (err) {
        if (NatskitError.is(err, 'KV_REVISION_CONFLICT')) exhausted++;
        throw err; // the job is delivered again
      }
    },
  });
  const t0 = performance.now();
  worker.start();
  await waitFor(() => worker.stats.processed >= JOBS, 600_000);
  const ms = performance.now() - t0;
  await worker.stop();
  const balances = await bucket.bulkGet(names);
  const done = await bucket.bulkGet(jobs.map((j) => `done.${j.id}`));
  check(`natskit ${storage}`, accounts, jobs, balances, done);
  const s = committerOf((bucket as unknown as { state: object }).state, bucket.name).stats;
  const members = s.grouped + s.alone;
  await streams.jsm.streams.delete(stream);
  await kv.deleteBucket(bucket.name);
  return {
    jobsPerSecond: (JOBS / ms) * 1_000,
    conflicts,
    exhausted,
    note: `${s.batches} batches, ${(members / Math.max(1, s.batches)).toFixed(1)} members a batch (largest ${s.largest}), ${s.splits} splits, ${s.staleEarly} refused early`,
  };
}

const TRANSFER_LUA = `
if redis.call('SETNX', KEYS[1], '1') == 0 then return 0 end
redis.call('DECRBY', KEYS[2], ARGV[1])
redis.call('INCRBY', KEYS[3], ARGV[1])
return 1`;

async function bullmqRun(lib: Libraries, connection: object, accounts: number): Promise<Run> {
  const id = ++runs;
  const redis = new lib.Redis(connection);
  redis.defineCommand('bankTransfer', { numberOfKeys: 3, lua: TRANSFER_LUA });
  const transfer = (redis as unknown as Record<string, (...a: unknown[]) => Promise<number>>)
    .bankTransfer as (...a: unknown[]) => Promise<number>;
  const p = `bank${id}:`;
  await redis.mset(
    ...Array.from({ length: accounts }, (_, i) => [`${p}a${i}`, String(START)]).flat(),
  );
  const jobs = jobsFor(accounts);
  const queue = new lib.Queue(`bank${id}`, { connection });
  for (let i = 0; i < JOBS; i += 500) {
    await queue.addBulk(
      jobs.slice(i, i + 500).map((j) => ({
        name: 'transfer',
        data: j,
        opts: { removeOnComplete: true, removeOnFail: true },
      })),
    );
  }
  let done = 0;
  const t0 = performance.now();
  const worker = new lib.Worker(
    queue.name,
    async (job) => {
      const j = job.data as Transfer;
      await transfer.call(redis, `${p}done.${j.id}`, `${p}${j.from}`, `${p}${j.to}`, j.amount);
      done++;
    },
    { connection, concurrency: CONCURRENCY },
  );
  await waitFor(() => done >= JOBS, 600_000);
  const ms = performance.now() - t0;
  await worker.close();
  const balances = (
    await redis.mget(...Array.from({ length: accounts }, (_, i) => `${p}a${i}`))
  ).map((v) => (v === null ? null : Number(v)));
  const marks = (await redis.mget(...jobs.map((j) => `${p}done.${j.id}`))).map((v) =>
    v === null ? null : Number(v),
  );
  check('bullmq', accounts, jobs, balances, marks);
  await queue.obliterate({ force: true });
  await queue.close();
  await redis.quit();
  return { jobsPerSecond: (JOBS / ms) * 1_000, conflicts: 0, exhausted: 0, note: '' };
}

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  await using redis = await startRedis();
  const results = new Map<string, Run[]>();
  const record = (k: string, r: Run) => results.set(k, [...(results.get(k) ?? []), r]);
  for (let round = 0; round < rounds; round++) {
    for (const s of SETTINGS) {
      if (only && only !== s.name) continue;
      // Alternate who goes first, so neither side always runs on a warmer machine.
      const sides = [
        async () => record(`natskit ${s.name}`, await natskitRun(app, s.storage, s.accounts)),
        async () => {
          if (redis.lib) {
            record(`bullmq ${s.name}`, await bullmqRun(redis.lib, redis.connection, s.accounts));
          }
        },
      ];
      for (const side of round % 2 === 0 ? sides : sides.reverse()) await side();
    }
  }
  console.log(
    `\nbank: nats-server ${server.version}, ${JOBS} jobs, concurrency ${CONCURRENCY}, ${rounds} round(s), median; ${redis.note}`,
  );
  console.log(
    '| jobs/s | natskit | BullMQ + Lua | natskit/BullMQ | target | conflicts retried per job | exhausted | group commit |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const s of SETTINGS) {
    const n = results.get(`natskit ${s.name}`);
    if (!n) continue;
    const b = results.get(`bullmq ${s.name}`);
    const nj = median(n.map((r) => r.jobsPerSecond));
    const bj = b ? median(b.map((r) => r.jobsPerSecond)) : Number.NaN;
    const conflicts = n.reduce((t, r) => t + r.conflicts, 0) / (JOBS * n.length);
    const exhausted = n.reduce((t, r) => t + r.exhausted, 0);
    console.log(
      `| ${s.name} (${s.accounts} accounts) | ${nj.toFixed(0)} | ${b ? bj.toFixed(0) : '-'} | ${b ? (nj / bj).toFixed(3) : '-'} | >= ${TARGETS[s.name]} | ${conflicts.toFixed(2)} | ${exhausted} | ${n.at(-1)?.note} |`,
    );
    if (exhausted > 0) process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
