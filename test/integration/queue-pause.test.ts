import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queue, ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const fast = { fetchExpiresMs: 1_000 };
const held = queue<{ i: number }>({ name: 'held' });
const timedPause = queue<{ i: number }>({ name: 'timedpause' });

describe('queue: pause and resume', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      services: [held, timedPause],
    });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('holds every worker while paused (set before any worker existed), and runs the jobs on resume', async () => {
    const q = app.get(held.token);
    await q.pause();
    expect((await q.paused()).paused).toBe(true);
    await Promise.all([1, 2, 3].map((i) => q.add({ i })));
    const ran: number[] = [];
    await using w1 = await q.work((job) => {
      ran.push(job.data.i);
    }, fast);
    await using w2 = await q.work((job) => {
      ran.push(job.data.i);
    }, fast);
    await sleep(2_500); // more than two pull periods: a paused consumer delivers nothing
    expect(ran).toEqual([]);
    expect((await q.paused()).paused).toBe(true); // starting workers did not undo the pause
    expect(app.get(StreamService).health().status).toBe('pass'); // the pulls wait, they do not fail
    expect(await q.counts()).toMatchObject({ waiting: 3, active: 0 });
    await q.resume();
    await waitUntil(() => ran.length === 3, 10_000, 'ran after resume');
    expect(ran.sort()).toEqual([1, 2, 3]);
    expect(w1.stats.completed + w2.stats.completed).toBe(3);
    expect(await q.paused()).toEqual({ paused: false, until: undefined });
  });

  it('resumes by itself at the time given', async () => {
    const q = app.get(timedPause.token);
    const ran: number[] = [];
    await using _w = await q.work((job) => {
      ran.push(job.data.i);
    }, fast);
    const until = new Date(Date.now() + 2_000);
    await q.pause(until);
    const state = await q.paused();
    expect(state.paused).toBe(true);
    expect(Math.abs((state.until?.getTime() ?? 0) - until.getTime())).toBeLessThan(1_000);
    await q.add({ i: 9 });
    await sleep(1_000);
    expect(ran).toEqual([]);
    await waitUntil(() => ran.length === 1, 10_000, 'ran after the pause ended');
    expect(Date.now()).toBeGreaterThanOrEqual(until.getTime() - 50);
    const bad = await q.pause(new Date('nope')).catch((e: unknown) => e);
    expect((bad as { code?: string }).code).toBe('INVALID_OPTIONS');
  });
});
