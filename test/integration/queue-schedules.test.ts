import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NatskitError,
  type QueueJob,
  queue,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const fast = { fetchExpiresMs: 1_000 };

interface Tick {
  n: number;
}
const ticks = queue<Tick>({ name: 'ticks' });
const failing = queue<Tick>({ name: 'failing', results: true });

/** The hour of `date` in `timeZone`, 0-23. */
function hourIn(timeZone: string, date = new Date()): number {
  const h = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', hourCycle: 'h23' })
    .formatToParts(date)
    .find((p) => p.type === 'hour')?.value;
  return Number(h);
}

describe('queue: repeatable jobs on the server scheduler (2.15)', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let other: ServiceManager;
  /** Every job run, in order, by any worker of either app. */
  const runs: { id: string; schedule: string | undefined; data: Tick; at: number }[] = [];
  const record = (job: QueueJob<Tick>) => {
    runs.push({ id: job.id, schedule: job.schedule, data: job.data, at: Date.now() });
  };
  const runsOf = (schedule: string) => runs.filter((r) => r.schedule === schedule);

  beforeAll(async () => {
    server = await startNatsServer();
    const options = { ...quiet, nats: { servers: server.url }, services: [ticks, failing] };
    app = await ServiceManager.start(options);
    other = await ServiceManager.start(options);
    // Two workers in two apps share the queue's consumer: a firing run twice would show here.
    await app.get(ticks.token).work(record, { ...fast, concurrency: 4 });
    await other.get(ticks.token).work(record, { ...fast, concurrency: 4 });
  });
  afterAll(async () => {
    await other?.stop();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('an every-1s schedule fires repeatedly, each firing runs once; unschedule stops it', async () => {
    const q = app.get(ticks.token);
    expect(await q.schedule('every1', { every: 1_000, data: { n: 1 } })).toEqual({
      name: 'every1',
      action: 'created',
    });
    await waitUntil(() => runsOf('every1').length >= 4, 10_000, 'four firings');
    const fired = runsOf('every1');
    for (const r of fired) {
      expect(r.id).toMatch(/^every1=\d+$/);
      expect(r.data).toEqual({ n: 1 });
    }
    expect(new Set(fired.map((r) => r.id)).size).toBe(fired.length);
    // About one a second (the server rounds firings to the second).
    const gaps = fired.slice(1).map((r, i) => r.at - (fired[i]?.at ?? 0));
    for (const g of gaps) expect(g).toBeGreaterThan(500);

    expect(await q.schedules()).toEqual([
      expect.objectContaining({ name: 'every1', every: '1000ms', cron: undefined, data: { n: 1 } }),
    ]);
    expect(await q.unschedule('every1')).toBe(true);
    const atStop = runsOf('every1').length;
    // A window of three intervals: at most the firing already stored runs after the purge.
    await sleep(3_000);
    expect(runsOf('every1').length).toBeLessThanOrEqual(atStop + 1);
    expect(await q.schedules()).toEqual([]);
    expect(await q.unschedule('every1')).toBe(false);
  });

  it('two apps declaring the same schedule make one; declaring it again changes nothing', async () => {
    const [a, b] = await Promise.all([
      app.get(ticks.token).schedule('shared', { every: '1s', data: { n: 2 } }),
      other.get(ticks.token).schedule('shared', { every: '1s', data: { n: 2 } }),
    ]);
    expect([a.action, b.action]).toContain('created');
    const jsm = app.get(StreamService).jsm;
    const stored = await jsm.streams.getMessage('QUEUE_ticks', {
      last_by_subj: 'queue.ticks.schedules.shared',
    });
    // A process restarting declares its schedules again: the stored one keeps its timing.
    expect(
      await other.get(ticks.token).schedule('shared', { every: '1s', data: { n: 2 } }),
    ).toEqual({ name: 'shared', action: 'unchanged' });
    const after = await jsm.streams.getMessage('QUEUE_ticks', {
      last_by_subj: 'queue.ticks.schedules.shared',
    });
    expect(after?.seq).toBe(stored?.seq);
    expect((await app.get(ticks.token).schedules()).map((s) => s.name)).toEqual(['shared']);

    await waitUntil(() => runsOf('shared').length >= 1, 5_000, 'a first firing');
    const from = runsOf('shared').length;
    await sleep(4_000);
    const inWindow = runsOf('shared').length - from;
    console.log(`two declarations of one @every 1s schedule: ${inWindow} firings in 4 s`);
    // One schedule fires about four times in four seconds; two would fire about eight.
    expect(inWindow).toBeGreaterThanOrEqual(2);
    expect(inWindow).toBeLessThanOrEqual(5);
    await app.get(ticks.token).unschedule('shared');
  });

  it('an update replaces the interval', async () => {
    const q = app.get(ticks.token);
    await q.schedule('upd', { every: '1s', data: { n: 3 } });
    await waitUntil(() => runsOf('upd').length >= 2, 6_000, 'two firings at 1s');
    expect(await q.schedule('upd', { every: '10s', data: { n: 4 } })).toEqual({
      name: 'upd',
      action: 'updated',
    });
    const at = runsOf('upd').length;
    await sleep(4_000);
    // At 1 s it would have fired about four times; at 10 s at most the firing in flight.
    expect(runsOf('upd').length - at).toBeLessThanOrEqual(1);
    expect(await q.schedules()).toEqual([
      expect.objectContaining({ name: 'upd', every: '10s', data: { n: 4 } }),
    ]);
    await q.unschedule('upd');
  });

  it('reads a cron expression in its time zone', async () => {
    const q = app.get(ticks.token);
    // Not within the last seconds of an hour anywhere here (Kolkata is UTC+5:30).
    while (new Date().getUTCMinutes() % 30 === 29 && new Date().getUTCSeconds() > 50) {
      await sleep(1_000);
    }
    const kolkata = hourIn('Asia/Kolkata');
    const utc = new Date().getUTCHours();
    expect(kolkata).not.toBe(utc);
    // Every second of this hour in Kolkata: fires now.
    await q.schedule('kolkata-now', {
      cron: `* * ${kolkata} * * *`,
      timeZone: 'Asia/Kolkata',
      data: { n: 5 },
    });
    // Every second of the UTC hour, read in Kolkata: that hour is not now there.
    await q.schedule('kolkata-other', {
      cron: `* * ${utc} * * *`,
      timeZone: 'Asia/Kolkata',
      data: { n: 6 },
    });
    // The same expression without a zone is UTC: fires now.
    await q.schedule('utc-now', { cron: `* * ${utc} * * *`, data: { n: 7 } });
    await waitUntil(
      () => runsOf('kolkata-now').length >= 2 && runsOf('utc-now').length >= 2,
      8_000,
      'the schedules due now fired',
    );
    expect(runsOf('kolkata-other')).toEqual([]);
    const list = await q.schedules();
    expect(list.find((s) => s.name === 'kolkata-now')).toMatchObject({
      cron: `* * ${kolkata} * * *`,
      timeZone: 'Asia/Kolkata',
      every: undefined,
    });
    expect(list.find((s) => s.name === 'utc-now')?.timeZone).toBeUndefined();
    // A zone name in another case is stored as the server can load it.
    await q.schedule('paris', {
      cron: '0 0 9 * * mon-fri',
      timeZone: 'europe/paris',
      data: { n: 8 },
    });
    expect((await q.schedules()).find((s) => s.name === 'paris')?.timeZone).toBe('Europe/Paris');
    for (const s of await q.schedules()) await q.unschedule(s.name);
    expect(await q.schedules()).toEqual([]);
  });

  it("a failing firing uses the schedule's job options, dies under its own id and redrives on it", async () => {
    const q = app.get(failing.token);
    let fixed = false;
    const seen: { id: string; attempt: number }[] = [];
    await using _w = await q.work((job) => {
      seen.push({ id: job.id, attempt: job.attempt });
      if (!fixed) throw new Error('not yet');
    }, fast);
    await q.schedule('doomed', { every: '1s', data: { n: 9 }, attempts: 1 });
    await waitUntil(() => seen.length >= 1, 5_000, 'a first firing');
    await q.unschedule('doomed');
    const first = seen[0]?.id ?? '';
    expect(first).toMatch(/^doomed=\d+$/);
    // attempts: 1 from the schedule (the queue's default is 3): dead after one run.
    expect(await q.result(first, { timeoutMs: 5_000 })).toMatchObject({
      state: 'dead',
      reason: 'failed',
    });
    expect((await q.deadJobs()).map((d) => d.id)).toContain(first);
    fixed = true;
    expect(await q.redrive(first)).toBe(true);
    expect(await q.result(first, { timeoutMs: 5_000 })).toMatchObject({ state: 'completed' });
    expect(seen.filter((r) => r.id === first).map((r) => r.attempt)).toEqual([1, 1]);
  });

  it('refuses bad input with INVALID_OPTIONS naming the field, and stores nothing', async () => {
    const q = app.get(ticks.token);
    const data = { n: 0 };
    const cases: [string, unknown, string, number?][] = [
      ['a.b', { every: '1s', data }, 'name'],
      ['a b', { every: '1s', data }, 'name'],
      ['x'.repeat(65), { every: '1s', data }, 'name'],
      ['bad', { every: 500, data }, 'options.every'],
      ['bad', { every: '500ms', data }, 'options.every'],
      ['bad', { every: 'soon', data }, 'options.every'],
      ['bad', { every: '1s', timeZone: 'UTC', data }, 'options.timeZone'],
      ['bad', { cron: '* * * * *', data }, 'options.cron'],
      ['bad', { cron: '* * * * * * *', data }, 'options.cron'],
      ['bad', { cron: '* * * * * *', timeZone: 'Mars/Olympus', data }, 'options.timeZone'],
      ['bad', { evrey: '1s', data }, 'options.evrey'],
      ['bad', { every: '1s', cron: '* * * * * *', data }, 'options.every'],
      ['bad', { data }, 'options.every'],
      ['bad', { every: '1s' }, 'options.data'],
      ['bad', { every: '1s', data, headers: { 'Nats-Rollup': 'all' } }, 'options.headers'],
      ['bad', { every: '1s', data, attempts: 0 }, 'options.attempts'],
      // Passes the client's checks; the server's parser refuses it (second 61).
      ['bad', { cron: '61 * * * * *', data }, 'options', 10189],
      // An offset this runtime knows, but not a zone the server can load.
      ['bad', { cron: '* * * * * *', timeZone: '+05:30', data }, 'options.timeZone', 10223],
    ];
    for (const [name, options, field, apiCode] of cases) {
      const err = await q
        .schedule(name, options as Parameters<typeof q.schedule>[1])
        .catch((e: unknown) => e);
      expect(NatskitError.is(err, 'INVALID_OPTIONS'), `${name} ${JSON.stringify(options)}`).toBe(
        true,
      );
      expect(String((err as NatskitError).details?.field)).toContain(field);
      if (apiCode !== undefined) expect((err as NatskitError).details?.apiCode).toBe(apiCode);
    }
    const typo = await q.schedule('bad', { evrey: '1s', data } as never).catch((e: unknown) => e);
    expect((typo as NatskitError).details?.suggestion).toBe('every');
    const info = await app.get(StreamService).jsm.streams.info('QUEUE_ticks', {
      subjects_filter: 'queue.ticks.schedules.*',
    });
    const refused = new Set(cases.map(([name]) => `queue.ticks.schedules.${name}`));
    expect(Object.keys(info.state.subjects ?? {}).filter((k) => refused.has(k))).toEqual([]);
    expect((await q.schedules()).filter((s) => s.name === 'bad')).toEqual([]);
  });
});

describe('repeatable jobs on nats-server 2.9.10', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  const old = queue<Tick>({ name: 'old-sched' });
  beforeAll(async () => {
    server = await startNatsServer({ version: '2.9' });
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url }, services: [old] });
  });
  afterAll(async () => {
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  it('refuses a schedule with CAPABILITY_MISSING naming 2.14, and stores nothing', async () => {
    const q = app.get(old.token);
    for (const options of [
      { every: '1s', data: { n: 1 } },
      { cron: '0 0 9 * * *', timeZone: 'Europe/Paris', data: { n: 1 } },
    ]) {
      const err = await q.schedule('nightly', options).catch((e: unknown) => e);
      expect(NatskitError.is(err, 'CAPABILITY_MISSING')).toBe(true);
      expect((err as NatskitError).message).toContain('2.14');
      expect((err as NatskitError).details).toMatchObject({
        feature: 'repeatSchedules',
        minServer: '2.14',
        minApiLevel: 4,
      });
    }
    expect((await app.get(StreamService).jsm.streams.info('QUEUE_old-sched')).state.messages).toBe(
      0,
    );
  });
});
