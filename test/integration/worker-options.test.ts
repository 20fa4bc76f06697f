import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceManager, StreamService } from '../../src/index.js';
import { type NatsServerHandle, startNatsServer } from '../../src/testing/index.js';
import { freeze, thaw } from '../support/freeze.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const decoder = new TextDecoder();

describe('worker options', () => {
  let server: NatsServerHandle;
  let app: ServiceManager;
  let streams: StreamService;
  let observer: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    streams = app.get(StreamService);
    observer = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await observer?.close();
    await app?.stop();
    await server?.[Symbol.asyncDispose]();
  });

  /** Waits until the consumer has been offered every message up to `lastSeq` and acked them all. */
  const drained = (stream: string, consumer: string, lastSeq: number) =>
    waitForValue(
      () => streams.jsm.consumers.info(stream, consumer),
      (i) => i.delivered.stream_seq >= lastSeq && i.num_ack_pending === 0 && i.num_pending === 0,
      10_000,
      `consumer ${consumer} through stream sequence ${lastSeq}`,
    );

  it('filterSubjects: a worker gets only the subjects it filters on (one subject, or several)', async () => {
    await streams.ensureStream({ name: 'FILTER', subjects: ['filter.>'] });
    // The unfiltered subject in the middle, a filtered one last: once a consumer was offered
    // the last message, it has passed every other one.
    let last = 0;
    for (const s of ['a', 'b', 'c', 'c', 'a', 'b', 'a']) {
      last = (await streams.publish(`filter.${s}`, JSON.stringify(s))).seq;
    }
    const seen = new Map<string, string[]>();
    const worker = (consumer: string, filterSubjects: string | string[]) => {
      const subjects: string[] = [];
      seen.set(consumer, subjects);
      return streams.createWorker<string>({
        stream: 'FILTER',
        consumer,
        filterSubjects,
        fetchExpiresMs: 1_000,
        handler: (job) => {
          subjects.push(job.subject);
        },
      });
    };
    await using several = await worker('ab', ['filter.a', 'filter.b']);
    several.start();
    await drained('FILTER', 'ab', last);
    expect(seen.get('ab')?.sort()).toEqual([
      'filter.a',
      'filter.a',
      'filter.a',
      'filter.b',
      'filter.b',
    ]);
    expect((await streams.jsm.consumers.info('FILTER', 'ab')).config.filter_subjects).toEqual([
      'filter.a',
      'filter.b',
    ]);
    await using one = await worker('c', 'filter.c');
    one.start();
    const cInfo = await waitForValue(
      () => streams.jsm.consumers.info('FILTER', 'c'),
      (i) => i.num_ack_pending === 0 && i.num_pending === 0 && i.delivered.consumer_seq >= 2,
      10_000,
      'consumer c through its two messages',
    );
    expect(seen.get('c')).toEqual(['filter.c', 'filter.c']);
    expect(cInfo.config.filter_subject).toBe('filter.c');
  });

  it('decode: the handler gets what the decoder returns; a payload it throws on is terminated unhandled', async () => {
    await streams.ensureStream({ name: 'DECODE', subjects: ['decode.>'] });
    await streams.publish('decode.job', 'a,b,c'); // not JSON: the default decoder would refuse it
    const bad = await streams.publish('decode.job', 'bad');
    const last = (await streams.publish('decode.job', 'd')).seq;
    const got: string[][] = [];
    await using worker = await streams.createWorker<string[]>({
      stream: 'DECODE',
      consumer: 'decode',
      fetchExpiresMs: 1_000,
      decode: (data) => {
        const text = decoder.decode(data);
        if (text === 'bad') throw new Error('cannot decode');
        return text.split(',');
      },
      handler: (job) => {
        got.push(job.data);
      },
    });
    worker.start();
    await drained('DECODE', 'decode', last);
    expect(got).toEqual([['a', 'b', 'c'], ['d']]);
    expect(worker.stats).toMatchObject({ processed: 2, terminated: 1 });
    // Terminated, not retried: the server will not deliver it again.
    const info = await streams.jsm.consumers.info('DECODE', 'decode');
    expect(info.num_redelivered).toBe(0);
    expect(bad.seq).toBeLessThan(last);
  });

  it('heartbeatMs: a running job tells the server it is working at that rate, not the default ackWaitMs / 3', async () => {
    await streams.ensureStream({ name: 'BEAT', subjects: ['beat.>'] });
    await streams.publish('beat.job', '1');
    // The worker's +WPI acknowledgements, as the server receives them.
    const progress: number[] = [];
    const sub = observer.subscribe('$JS.ACK.BEAT.>', {
      callback: (_err, m) => {
        if (decoder.decode(m.data) === '+WPI') progress.push(performance.now());
      },
    });
    await observer.flush();
    const jobMs = 2_000;
    let ran: [number, number] = [0, 0];
    try {
      await using worker = await streams.createWorker({
        stream: 'BEAT',
        consumer: 'beat',
        ackWaitMs: 3_000, // the default heartbeat would be 1000 ms: one or two in 2 s
        heartbeatMs: 200,
        fetchExpiresMs: 1_000,
        handler: async () => {
          const t0 = performance.now();
          await sleep(jobMs); // the job's work
          ran = [t0, performance.now()];
        },
      });
      worker.start();
      await waitUntil(() => worker.stats.processed === 1, 10_000, 'the job finished');
    } finally {
      sub.unsubscribe();
    }
    const during = progress.filter((t) => t >= ran[0] && t <= ran[1] + 50);
    console.log(`heartbeatMs 200: ${during.length} +WPI in a ${jobMs} ms job`);
    // Every 200-250 ms (checked four times a period): about 8; the default would give 1-2.
    expect(during.length).toBeGreaterThanOrEqual(5);
    expect(during.length).toBeLessThanOrEqual(jobMs / 200 + 1);
  });
});

// What this shows is that the renewal fires on silence and leaves the worker working, each job
// once. It does not show the renewal is needed here: a frozen server keeps its pulls and expires
// them when it wakes, so with the watchdog off the worker also took the next job (measured). The
// renewal is for pulls a server lost without a word.
describe('a worker on a frozen server', () => {
  it('renews its pulls after three missed heartbeats, and takes jobs again once the server is back', async () => {
    await using server = await startNatsServer();
    // Pings far apart: the client must not call the connection stale (that is the reconnect path).
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url, pingIntervalMs: 60_000 },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'FROZEN', subjects: ['frozen.>'] });
    const done: number[] = [];
    // fetchExpiresMs 1000: the pulls ask for an idle heartbeat every 500 ms; three missed
    // (1.5 s of silence) renew them.
    await using worker = await streams.createWorker<number>({
      stream: 'FROZEN',
      consumer: 'frozen',
      fetchExpiresMs: 1_000,
      handler: (job) => {
        done.push(job.data);
      },
    });
    worker.start();
    await streams.publish('frozen.job', '1');
    await waitUntil(() => done.length === 1, 10_000, 'the first job');
    expect(worker.stats.fetchErrors).toBe(0);
    const pid = server.pid as number;
    await freeze(pid);
    const stoppedAt = performance.now();
    let frozenMs = 0;
    try {
      await waitUntil(
        () => worker.progress().lastFetchError === 'heartbeats missed',
        10_000,
        'the pulls renewed after missed heartbeats',
      );
      frozenMs = performance.now() - stoppedAt;
    } finally {
      thaw(pid);
    }
    // Three periods of silence since the last heartbeat, which came at most one period before
    // the freeze.
    expect(frozenMs).toBeGreaterThan(2 * 500);
    expect(worker.stats.fetchErrors).toBeGreaterThanOrEqual(1);
    await streams.publish('frozen.job', '2');
    await waitUntil(() => done.length === 2, 10_000, 'a job published after the freeze');
    expect(done).toEqual([1, 2]);
    // The next good pull clears the failure.
    await waitUntil(() => worker.stats.fetchErrors === 0, 10_000, 'fetch errors cleared');
    expect(worker.progress()).toMatchObject({ healthy: true, lastFetchError: undefined });
    const info = await waitForValue(
      () => streams.jsm.consumers.info('FROZEN', 'frozen'),
      (i) => i.num_ack_pending === 0,
      5_000,
      'both jobs acked',
    );
    expect(info.num_redelivered).toBe(0);
    expect(info.delivered.consumer_seq).toBe(2); // each job delivered once
  });
});
