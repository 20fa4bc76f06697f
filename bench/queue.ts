// The job queue: the natskit worker vs the raw @nats-io/jetstream consume() loop (and BullMQ on
// Redis, when a redis-server can be had), on the same fresh servers, in one run.
// Throughput: N jobs already queued, concurrency 1, 16 and 64, no-op and 5 ms jobs, each job
// acknowledged and confirmed (ackAck). Pickup latency: publish to handler start, one job every
// 5 ms (light load). Targets: natskit/raw >= 0.9 for throughput, <= 1.1 for latency.
// Run: npm run bench   (BENCH_ROUNDS=3 by default: throughput is the median round; latency
// percentiles pool the samples of every round)
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';
import { RetentionPolicy, ServiceManager, StreamService } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { median } from './lib.ts';
import { startBullmq } from './queue-bullmq.ts';
import { type QueueSide, waitFor } from './queue-side.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
/** BENCH_QUEUE_ONLY='5ms c64' runs that throughput row alone, 'latency' the latency rows alone. */
const only = process.env.BENCH_QUEUE_ONLY;
const CONCURRENCY = [1, 16, 64] as const;
const KINDS = ['noop', '5ms'] as const;
type Kind = (typeof KINDS)[number];
const LATENCY_JOBS = 300;
const LATENCY_GAP_MS = 5;

/** Jobs per throughput run: about a second of work for each setting. */
const jobsFor = (c: number, kind: Kind) => (kind === 'noop' ? 5_000 : Math.min(5_000, 200 * c));
const workOf = (kind: Kind) => (kind === 'noop' ? () => Promise.resolve() : () => sleep(5));

/** A NATS side: the stream and its jobs are the same for the raw client and natskit. */
function natsSide(
  name: string,
  nc: NatsConnection,
  jsm: JetStreamManager,
  startWorker: (
    stream: string,
    concurrency: number,
    onJob: (data: { t: number }) => Promise<void>,
  ) => Promise<() => Promise<void>>,
): QueueSide {
  let streams = 0;
  const js = jetstream(nc);
  const fresh = async () => {
    const stream = `Q_${name}_${++streams}`;
    await jsm.streams.add({
      name: stream,
      subjects: [`${stream.toLowerCase()}.>`],
      retention: RetentionPolicy.Workqueue,
    });
    return stream;
  };
  const publish = (stream: string) =>
    js.publish(`${stream.toLowerCase()}.job`, JSON.stringify({ t: performance.now() }));
  return {
    name,
    async throughput(concurrency, jobs, work) {
      const stream = await fresh();
      for (let i = 0; i < jobs; i += 500) {
        await Promise.all(Array.from({ length: Math.min(500, jobs - i) }, () => publish(stream)));
      }
      let done = 0;
      const t0 = performance.now();
      const stop = await startWorker(stream, concurrency, async () => {
        await work();
        done++;
      });
      await waitFor(() => done >= jobs);
      const ms = performance.now() - t0;
      await stop();
      await jsm.streams.delete(stream);
      return (jobs / ms) * 1_000;
    },
    async latency(concurrency, jobs, gapMs, record) {
      const stream = await fresh();
      let done = 0;
      const stop = await startWorker(stream, concurrency, async (data) => {
        record(performance.now() - data.t);
        done++;
      });
      for (let i = 0; i < jobs; i++) {
        await publish(stream);
        await sleep(gapMs);
      }
      await waitFor(() => done >= jobs);
      await stop();
      await jsm.streams.delete(stream);
    },
  };
}

/** The raw client as a user would write a bounded worker: consume() and a pool of slots. */
function rawWorker(nc: NatsConnection, jsm: JetStreamManager) {
  return async (
    stream: string,
    concurrency: number,
    onJob: (data: { t: number }) => Promise<void>,
  ) => {
    await jsm.consumers.add(stream, {
      durable_name: 'raw',
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(30_000),
    });
    const consumer = await jetstream(nc).consumers.get(stream, 'raw');
    const messages = await consumer.consume({ max_messages: concurrency });
    const running = new Set<Promise<void>>();
    let freed: () => void = () => undefined;
    const loop = (async () => {
      for await (const m of messages) {
        while (running.size >= concurrency) await new Promise<void>((r) => (freed = r));
        const job: Promise<void> = (async () => {
          await onJob(m.json());
          await m.ackAck();
        })().finally(() => {
          running.delete(job);
          freed();
        });
        running.add(job);
      }
    })();
    return async () => {
      await messages.close();
      await loop;
      await Promise.all(running);
    };
  };
}

function natskitWorker(streams: StreamService) {
  return async (
    stream: string,
    concurrency: number,
    onJob: (data: { t: number }) => Promise<void>,
  ) => {
    let acked = 0;
    const worker = await streams.createWorker<{ t: number }>({
      stream,
      consumer: 'natskit',
      concurrency,
      handler: (job) => onJob(job.data),
    });
    worker.start();
    return async () => {
      acked = worker.stats.processed;
      await worker.stop();
      if (acked === 0) throw new Error('natskit worker processed nothing');
    };
  };
}

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  const nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  await using bull = await startBullmq();
  const sides: QueueSide[] = [
    natsSide('raw', nc, jsm, rawWorker(nc, jsm)),
    natsSide('natskit', nc, jsm, natskitWorker(app.get(StreamService))),
    ...(bull.side ? [bull.side] : []),
  ];
  const results = new Map<string, number[]>();
  const record = (k: string, v: number) => results.set(k, [...(results.get(k) ?? []), v]);

  for (let round = 0; round < rounds; round++) {
    // Alternate who goes first, so neither side always runs on a warmer machine.
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const c of CONCURRENCY) {
      for (const kind of KINDS) {
        if (only && only !== `${kind} c${c}`) continue; // 'latency' skips them all
        for (const side of order) {
          record(
            `${side.name} ${kind} c${c}`,
            await side.throughput(c, jobsFor(c, kind), workOf(kind)),
          );
        }
      }
    }
    for (const c of only && only !== 'latency' ? [] : [1, 16]) {
      for (const side of order) {
        // Every sample of every round, pooled: a p99 of one round's 300 is 3 samples.
        await side.latency(c, LATENCY_JOBS, LATENCY_GAP_MS, (ms) =>
          record(`${side.name} latency c${c}`, ms),
        );
      }
    }
  }
  await nc.close();
  report(results, server.version, bull.note);
}

function report(results: Map<string, number[]>, version: string, bullNote: string): void {
  const pct = (xs: number[] = [], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)] ?? Number.NaN;
  const m = (k: string) => {
    const lat = /^(\S+ latency c\d+) (p50|p99)$/.exec(k);
    return lat
      ? pct(results.get(lat[1] as string), lat[2] === 'p50' ? 0.5 : 0.99)
      : median(results.get(k) ?? []);
  };
  const other = (k: string, digits: number) =>
    results.has(`bullmq ${k.replace(/ p\d\d$/, '')}`) ? m(`bullmq ${k}`).toFixed(digits) : '-';
  console.log(
    `\nqueue: nats-server ${version}, ${rounds} round(s): jobs/s the median round, latency percentiles of all rounds' samples; ${bullNote}`,
  );
  console.log('| jobs/s | natskit | raw consume() | natskit/raw | target | BullMQ |');
  console.log('|---|---|---|---|---|---|');
  for (const c of CONCURRENCY) {
    for (const kind of KINDS) {
      const k = `${kind} c${c}`;
      if (!results.has(`natskit ${k}`)) continue;
      const n = m(`natskit ${k}`);
      const r = m(`raw ${k}`);
      console.log(
        `| ${kind}, concurrency ${c} | ${n.toFixed(0)} | ${r.toFixed(0)} | ${(n / r).toFixed(2)} | >= 0.9 | ${other(k, 0)} |`,
      );
    }
  }
  console.log('| pickup latency, ms | natskit | raw consume() | natskit/raw | target | BullMQ |');
  console.log('|---|---|---|---|---|---|');
  for (const c of [1, 16]) {
    for (const p of ['p50', 'p99']) {
      const k = `latency c${c} ${p}`;
      if (!results.has(`natskit latency c${c}`)) continue;
      const n = m(`natskit ${k}`);
      const r = m(`raw ${k}`);
      console.log(
        `| ${p}, concurrency ${c} | ${n.toFixed(2)} | ${r.toFixed(2)} | ${(n / r).toFixed(2)} | <= 1.1 | ${other(k, 2)} |`,
      );
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
