// BullMQ on Redis: what a TypeScript user would pick instead of a NATS worker. The redis-server
// comes from scripts/provision-redis-server.sh (REDIS_SERVER_BIN, PATH, or Debian's package in
// the project cache); BullMQ and ioredis live in bench/bullmq/, installed here on first use.
// Without either, the comparison is skipped and the report says why.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from 'natskit/testing';
import { type QueueSide, waitFor } from './queue-side.ts';

/** The little of BullMQ and ioredis the benchmark uses (their types are not installed with natskit). */
interface BullQueue {
  readonly name: string;
  add(name: string, data: unknown, opts?: object): Promise<unknown>;
  addBulk(jobs: { name: string; data: unknown; opts?: object }[]): Promise<unknown>;
  obliterate(opts: { force: boolean }): Promise<void>;
  close(): Promise<void>;
}
interface BullWorker {
  waitUntilReady(): Promise<unknown>;
  close(): Promise<void>;
}
export interface Libraries {
  Queue: new (name: string, opts: object) => BullQueue;
  Worker: new (
    name: string,
    fn: (job: { data: unknown }) => Promise<void>,
    opts: object,
  ) => BullWorker;
  Redis: new (
    opts: object,
  ) => {
    on(event: string, fn: () => void): void;
    connect(): Promise<void>;
    ping(): Promise<string>;
    quit(): Promise<unknown>;
    defineCommand(name: string, def: { numberOfKeys: number; lua: string }): void;
    mget(...keys: string[]): Promise<(string | null)[]>;
    mset(...kv: string[]): Promise<unknown>;
  };
  version: string;
}

/** BullMQ and ioredis from bench/bullmq/, installed there the first time. */
function loadLibraries(): Libraries {
  const dir = new URL('./bullmq/', import.meta.url).pathname;
  if (!existsSync(`${dir}node_modules/bullmq`)) {
    console.error('installing BullMQ and ioredis into bench/bullmq/ for the comparison');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  const require = createRequire(`${dir}package.json`);
  const bullmq = require('bullmq') as Pick<Libraries, 'Queue' | 'Worker'>;
  const ioredis = require('ioredis') as Pick<Libraries, 'Redis'>;
  const pkg = require('bullmq/package.json') as { version: string };
  return { Queue: bullmq.Queue, Worker: bullmq.Worker, Redis: ioredis.Redis, version: pkg.version };
}

export interface BullmqRun extends AsyncDisposable {
  readonly side: QueueSide | undefined;
  /** Which Redis and how it persists, or why BullMQ was skipped. */
  readonly note: string;
}

/** A Redis server of our own (append-only file, fsync every second) and the libraries to use it. */
export interface RedisRun extends AsyncDisposable {
  readonly lib: Libraries | undefined;
  readonly connection: { host: string; port: number; maxRetriesPerRequest: null };
  /** Which Redis and how it persists, or why BullMQ was skipped. */
  readonly note: string;
}

/** Starts redis-server (provisioned by scripts/provision-redis-server.sh) for BullMQ. */
export async function startRedis(): Promise<RedisRun> {
  let found: string;
  let lib: Libraries;
  try {
    lib = loadLibraries();
    found = execFileSync('bash', ['scripts/provision-redis-server.sh'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    const why = String((err as { stderr?: string }).stderr ?? err)
      .trim()
      .split('\n')
      .at(-1);
    console.error(`BullMQ comparison skipped: ${why}`);
    return {
      lib: undefined,
      connection: { host: '127.0.0.1', port: 0, maxRetriesPerRequest: null },
      note: `BullMQ skipped (${why})`,
      [Symbol.asyncDispose]: async () => {},
    };
  }
  const [version, bin] = found.split(' ') as [string, string];
  const dir = mkdtempSync(join(tmpdir(), 'natskit-redis-'));
  const port = await freePort();
  // Persistence like a queue's Redis in production: append-only file, fsync every second
  // (JetStream's file store syncs periodically too, not per message).
  const child: ChildProcess = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
    ],
    { stdio: 'ignore' },
  );
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const probe = new lib.Redis({ ...connection, lazyConnect: true, retryStrategy: () => 50 });
  probe.on('error', () => undefined); // refused until redis-server listens
  for (let i = 0; i < 100; i++) {
    try {
      await probe.connect();
      break;
    } catch {
      await sleep(50);
    }
  }
  await probe.ping();
  await probe.quit();

  return {
    lib,
    connection,
    note: `BullMQ ${lib.version} with ioredis on Redis ${version} (appendonly, fsync every second)`,
    async [Symbol.asyncDispose]() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startBullmq(): Promise<BullmqRun> {
  const redis = await startRedis();
  const { lib, connection } = redis;
  if (!lib) {
    return { side: undefined, note: redis.note, [Symbol.asyncDispose]: async () => {} };
  }
  let queues = 0;
  const side: QueueSide = {
    name: 'bullmq',
    async throughput(concurrency, jobs, work) {
      const queue = new lib.Queue(`q${++queues}`, { connection });
      for (let i = 0; i < jobs; i += 500) {
        await queue.addBulk(
          Array.from({ length: Math.min(500, jobs - i) }, () => ({
            name: 'job',
            data: { t: performance.now() },
            opts: { removeOnComplete: true, removeOnFail: true },
          })),
        );
      }
      let done = 0;
      const t0 = performance.now();
      const worker = new lib.Worker(
        queue.name,
        async () => {
          await work();
          done++;
        },
        { connection, concurrency },
      );
      await waitFor(() => done >= jobs);
      const ms = performance.now() - t0;
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
      return (jobs / ms) * 1_000;
    },
    async latency(concurrency, jobs, gapMs, record) {
      const queue = new lib.Queue(`q${++queues}`, { connection });
      let done = 0;
      const worker = new lib.Worker(
        queue.name,
        async (job) => {
          record(performance.now() - (job.data as { t: number }).t);
          done++;
        },
        { connection, concurrency },
      );
      await worker.waitUntilReady();
      for (let i = 0; i < jobs; i++) {
        await queue.add('job', { t: performance.now() }, { removeOnComplete: true });
        await sleep(gapMs);
      }
      await waitFor(() => done >= jobs);
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    },
  };
  return { side, note: redis.note, [Symbol.asyncDispose]: () => redis[Symbol.asyncDispose]() };
}
