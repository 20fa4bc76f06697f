import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queue, ServiceManager } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const ACK_WAIT_MS = 2_000;
const crashy = queue<{ k: string }, string>({ name: 'crashy', results: true });

describe('queue: a worker process killed mid-job', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [crashy],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('redelivers the job after the ack wait; the lost delivery counts as an attempt; it completes once', async () => {
    const q = app.get(crashy.token);
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../fixtures/queue-worker-child.mjs', import.meta.url)),
        server.url,
        'crashy',
        String(ACK_WAIT_MS),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const running = new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('running')) resolve(d.toString().trim());
      });
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    await q.add({ k: 'v' }, { jobId: 'survivor', attempts: 3 });
    expect(await running).toBe('running survivor 1');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const killedAt = performance.now();
    expect((await q.getJob('survivor')).state).toBe('active'); // delivered, not finished
    const attempts: number[] = [];
    let startedAt = 0;
    await using w = await q.work(
      (job) => {
        startedAt ||= performance.now();
        attempts.push(job.attempt);
        return `done by attempt ${job.attempt}`;
      },
      { ackWaitMs: ACK_WAIT_MS, fetchExpiresMs: 1_000 },
    );
    const outcome = await q.result('survivor', { timeoutMs: 15_000 });
    expect(outcome).toMatchObject({ state: 'completed', value: 'done by attempt 2', attempt: 2 });
    await waitUntil(() => w.stats.completed === 1, 5_000, 'completed');
    expect(attempts).toEqual([2]);
    // Redelivered by the server once the dead worker's ack wait ran out, not before.
    expect(startedAt - killedAt).toBeGreaterThan(ACK_WAIT_MS - 1_000);
    const idle = { waiting: 0, active: 0, delayed: 0, dead: 0 };
    // The ack follows the handler's end by a round trip.
    await waitForValue(
      () => q.counts(),
      (c) => JSON.stringify(c) === JSON.stringify(idle),
      5_000,
      'counts settle',
    );
  });
});
