// Issue 23's measurement: a black hole on the app's live NATS connection mid-load (the proxy keeps
// its sockets open and forwards nothing; new connections pass). Prints how long until the
// connection was replaced, how long /readyz said 200, how long writes stalled, what failed and
// whether anything was lost. Run after a build:
//   node bench/dead-link.ts            (natskit's defaults)
//   DEAD_LINK_MS=off node bench/dead-link.ts   (detection off: the client's own pings alone)
//   DEAD_LINK_MS=3000 node bench/dead-link.ts  (another bound)
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import { ConnectionService, KVStoreService, ServiceManager, StreamService } from 'natskit';
import { startFaultProxy, startNatsServer } from 'natskit/testing';

const deadLinkMs = process.env.DEAD_LINK_MS;
const LIMIT_MS = 150_000;

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using proxy = await startFaultProxy({ target: server.url });
  await using app = await ServiceManager.start({
    logger: { level: 'silent' },
    health: { port: 0 },
    nats: {
      servers: proxy.url,
      ...(deadLinkMs === undefined
        ? {}
        : { deadLinkTimeoutMs: deadLinkMs === 'off' ? false : Number(deadLinkMs) }),
    },
  });
  const conn = app.get(ConnectionService);
  const kv = app.get(KVStoreService);
  const streams = app.get(StreamService);
  const bucket = await kv.bucket<number>('deadlink', { provision: { history: 1 } });
  await streams.ensureStream({
    name: 'DLJOBS',
    subjects: ['dljobs.>'],
    retention: RetentionPolicy.Workqueue,
  });
  const handled = new Map<number, number>();
  await using worker = await streams.createWorker<{ n: number }>({
    stream: 'DLJOBS',
    consumer: 'dl',
    handler: async (job) => {
      handled.set(job.data.n, (handled.get(job.data.n) ?? 0) + 1);
    },
  });

  worker.start();
  const acks: { at: number; key: string; value: number }[] = [];
  const failures: string[] = [];
  let running = true;
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let n = 0; running; n++) {
      try {
        await bucket.put(`w${w}.${n}`, n);
        acks.push({ at: performance.now(), key: `w${w}.${n}`, value: n });
      } catch (err) {
        failures.push((err as { code?: string }).code ?? 'error');
      }
    }
  });
  let jobs = 0;
  const producer = (async () => {
    while (running) {
      await streams.publish('dljobs.x', JSON.stringify({ n: jobs })).then(
        () => jobs++,
        () => undefined,
      );
      await sleep(50);
    }
  })();

  await sleep(2_000);
  const live = proxy.connections.filter((c) => c.open);
  const t0 = performance.now();
  for (const c of live) proxy.blackhole({ connection: c.id });
  let notReadyAt: number | undefined;
  let replacedAt: number | undefined;
  const off = conn.onStatus((s) => {
    if (s.state === 'connected' && replacedAt === undefined) replacedAt = performance.now();
  });
  const probeUrl = app.probeUrl as string;
  while (replacedAt === undefined && performance.now() - t0 < LIMIT_MS) {
    const res = await fetch(`${probeUrl}/readyz`);
    await res.arrayBuffer();
    if (res.status !== 200 && notReadyAt === undefined) notReadyAt = performance.now();
    await sleep(100);
  }
  off();
  const back = replacedAt ?? performance.now();
  const end = performance.now() + 5_000;
  while (!acks.some((a) => a.at > back) && performance.now() < end) await sleep(20);
  const resumedAt = acks.find((a) => a.at > back)?.at;
  await sleep(1_000);
  running = false;
  await Promise.all([...writers, producer]);
  const deadline = performance.now() + 20_000;
  while (handled.size < jobs && performance.now() < deadline) await sleep(50);

  const before = acks.filter((a) => a.at < t0).at(-1)?.at ?? t0;
  const lost = (await bucket.bulkGet(acks.map((a) => a.key))).filter(
    (v, i) => v !== acks[i]?.value,
  ).length;
  const s = (ms: number | undefined) =>
    ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`;
  console.log(
    JSON.stringify({
      deadLinkTimeoutMs: deadLinkMs ?? 'default',
      replacedAfter: s(replacedAt === undefined ? undefined : replacedAt - t0),
      readyzFellAfter: s(notReadyAt === undefined ? undefined : notReadyAt - t0),
      writesStalled: s((resumedAt ?? Number.NaN) - before),
      writesResumedAfterReconnect: s(resumedAt === undefined ? undefined : resumedAt - back),
      failedCalls: failures.length,
      failureCodes: [...new Set(failures)],
      acknowledgedWrites: acks.length,
      lostWrites: lost,
      jobsPublished: jobs,
      jobsHandled: handled.size,
      jobsHandledTwice: [...handled.values()].filter((n) => n > 1).length,
    }),
  );
}

await main();
