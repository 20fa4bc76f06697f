import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { ConnectionService, ServiceManager, StreamService } from '../../src/index.js';
import { startNatsCluster, startNatsServer } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const ACK_WAIT_MS = 60_000; // a job a stopped worker held cannot come back within a test
/** The consumer every round's worker shares. */
const CONSUMER = {
  stream: 'STOPS',
  consumer: 'stops',
  concurrency: 8,
  ackWaitMs: ACK_WAIT_MS,
  fetchExpiresMs: 1_000,
};

/**
 * Stops a worker mid-stream `rounds` times while a producer runs. Right after each stop no
 * worker runs, and the server keeps a job given back (naked) as ack pending until it delivers
 * it again: so the consumer's ack pending must be exactly the `naked` that stop returned; a job
 * the worker neither ran nor gave back shows as one more. At the end a last worker must get
 * every job left at once (a held job would wait out the ack wait), each job handled once.
 */
async function stopRounds(streams: StreamService, rounds: number) {
  const handled = new Map<number, number>();
  // Each round stops right after its n-th job: the slot it freed has just been asked for, so
  // the stop meets a pull the server is answering.
  let jobsThisRound = 0;
  let stopAfter = 0;
  let stopNow: () => void = () => undefined;
  const options = {
    ...CONSUMER,
    handler: async (job: { data: { id: number } }) => {
      await sleep(1 + (job.data.id % 5));
      handled.set(job.data.id, (handled.get(job.data.id) ?? 0) + 1);
      if (++jobsThisRound === stopAfter) setImmediate(stopNow);
    },
  };
  const info = () => streams.jsm.consumers.info('STOPS', 'stops');
  let published = 0;
  let producing = true;
  const producer = (async () => {
    while (producing) {
      const batch = Array.from({ length: 20 }, () => published++);
      await Promise.all(batch.map((id) => streams.publish('stops.job', JSON.stringify({ id }))));
      await sleep(2);
    }
  })();
  const unaccounted: string[] = [];
  let naked = 0;
  try {
    for (let round = 1; round <= rounds; round++) {
      jobsThisRound = 0;
      stopAfter = 5 + ((round * 37) % 60); // a different point of the stream each round
      const due = new Promise<void>((resolve) => {
        stopNow = resolve;
      });
      const worker = await streams.createWorker<{ id: number }>(options);
      worker.start();
      await due;
      const result = await worker.stop();
      naked += result.naked;
      const ackPending = (await info()).num_ack_pending;
      if (ackPending !== result.naked) {
        unaccounted.push(
          `round ${round}: ack pending ${ackPending}, stop returned ${JSON.stringify(result)}`,
        );
      }
    }
  } finally {
    producing = false;
    await producer;
  }
  const t0 = performance.now();
  await using last = await streams.createWorker<{ id: number }>(options);
  last.start();
  await waitUntil(() => handled.size === published, 15_000).catch(() => undefined);
  const lastMs = performance.now() - t0;
  console.log(
    `${rounds} stops: ${naked} jobs given back, ${unaccounted.length} stops left jobs unaccounted${unaccounted.length ? `\n${unaccounted.join('\n')}` : ''}; the last worker took ${Math.round(lastMs)} ms for ${published - handled.size} missing`,
  );
  return {
    unaccounted,
    missing: published - handled.size,
    twice: [...handled.values()].filter((n) => n !== 1).length,
    lastMs,
    ackPending: (await info()).num_ack_pending,
  };
}

describe('worker stop under load', () => {
  it('on one server: after each of many stops mid-stream, ack pending is exactly what stop gave back, and the next worker gets every job at once', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'STOPS',
      subjects: ['stops.>'],
      retention: RetentionPolicy.Workqueue,
    });
    const r = await stopRounds(streams, 20);
    expect(r.unaccounted).toEqual([]);
    expect(r.missing).toBe(0);
    expect(r.lastMs).toBeLessThan(ACK_WAIT_MS / 4);
    expect(r.ackPending).toBe(0);
    expect(r.twice).toBe(0);
  });

  it('StreamService.stop stops its workers at once: four idle workers take one fetch period, not four', async () => {
    // Each stop waits for its open pull to end; one after another, each worker's pull would have
    // been renewed meanwhile (they expire together: the workers started together).
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'IDLE', subjects: ['idle.>'] });
    const workers = await Promise.all(
      [1, 2, 3, 4].map((n) =>
        streams.createWorker({
          stream: 'IDLE',
          consumer: `idle${n}`,
          fetchExpiresMs: 1_000,
          handler: () => undefined,
        }),
      ),
    );
    for (const w of workers) w.start();
    await sleep(1_500); // the first pulls expired and were renewed, together
    const t0 = performance.now();
    await streams.stop();
    const ms = performance.now() - t0;
    console.log(`four idle workers stopped in ${Math.round(ms)} ms`);
    expect(workers.every((w) => !w.running)).toBe(true);
    expect(ms).toBeLessThan(2_000 + 500);
  });

  it('a job delivered while stopping is given back when the pulls end, not when the running jobs finish', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'HOLD', subjects: ['hold.>'] });
    const FETCH_EXPIRES_MS = 1_000;
    const options = {
      stream: 'HOLD',
      consumer: 'hold',
      concurrency: 3, // the pull open at the stop asks for 2: job 2 does not end it
      ackWaitMs: ACK_WAIT_MS,
      fetchExpiresMs: FETCH_EXPIRES_MS,
    };
    const info = () => streams.jsm.consumers.info('HOLD', 'hold');
    // The long job runs until the test lets it go, well within the drain deadline.
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let longStarted = false;
    const a = await streams.createWorker<{ id: number }>({
      ...options,
      drainTimeoutMs: 30_000,
      handler: async (job) => {
        if (job.data.id !== 1) throw new Error(`worker A ran job ${job.data.id}`);
        longStarted = true;
        await released;
      },
    });
    let stopped: Promise<{ finished: number; naked: number }> | undefined;
    try {
      a.start();
      await streams.publish('hold.job', JSON.stringify({ id: 1 }));
      await waitUntil(() => longStarted, 5_000, 'the long job started');
      // The free slot's pull waits on the server.
      await waitForValue(info, (i) => i.num_waiting === 1, 5_000, 'one pull waiting');
      const t0 = performance.now();
      stopped = a.stop();
      await streams.publish('hold.job', JSON.stringify({ id: 2 }));
      // Job 2 went to A's open pull: both jobs are with A.
      await waitForValue(
        info,
        (i) => i.num_ack_pending === 2 && i.num_pending === 0,
        5_000,
        'job 2 delivered to the stopping worker',
      );
      const byB: number[] = [];
      let job2At: number | undefined;
      let job2Deliveries = 0;
      await using b = await streams.createWorker<{ id: number }>({
        ...options,
        handler: (job) => {
          byB.push(job.data.id);
          if (job.data.id === 2) {
            job2At ??= performance.now() - t0;
            job2Deliveries = job.deliveryCount;
          }
        },
      });
      b.start();
      // A's pull ends by `fetchExpiresMs` after the stop (its 408; 1 s of margin past that at
      // most): job 2 must be given back then, while the long job still runs.
      await waitUntil(() => job2At !== undefined, FETCH_EXPIRES_MS + 2_000, 'job 2 reached B');
      console.log(`job 2 reached another worker ${Math.round(job2At ?? -1)} ms after stop()`);
      expect(job2At).toBeLessThan(FETCH_EXPIRES_MS + 1_500);
      // Naked once, after A's pull ended: a nak into the open pull would have come back to A.
      expect(job2Deliveries).toBe(2);
      expect(a.stats.nakedOnStop).toBe(1);
      release();
      expect(await stopped).toEqual({ finished: 1, naked: 1 });
      expect(byB).toEqual([2]);
      expect((await info()).num_ack_pending).toBe(0);
    } finally {
      release();
      await stopped;
    }
  });

  it('on a 3-node cluster, the consumer led by another node than the client is on: no stop leaves a job held until its ack wait', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: cluster.urls[0] as string },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'STOPS',
      subjects: ['stops.>'],
      retention: RetentionPolicy.Workqueue,
      num_replicas: 3,
    });
    await (await streams.createWorker({ ...CONSUMER, handler: () => undefined })).stop(); // creates the consumer
    // The deliveries cross a route: move the consumer's leader off the client's node.
    const nc = app.get(ConnectionService).nc;
    const leader = async () =>
      cluster.indexOf((await streams.jsm.consumers.info('STOPS', 'stops')).cluster?.leader ?? '');
    for (let i = 0; i < 10 && (await leader()) === 0; i++) {
      await nc.request('$JS.API.CONSUMER.LEADER.STEPDOWN.STOPS.stops', '', { timeout: 5_000 });
      await sleep(500);
    }
    expect(await leader()).not.toBe(0);
    const r = await stopRounds(streams, 25);
    expect(r.unaccounted).toEqual([]);
    expect(r.missing).toBe(0);
    expect(r.lastMs).toBeLessThan(ACK_WAIT_MS / 4);
    expect(r.twice).toBe(0);
  });
});
