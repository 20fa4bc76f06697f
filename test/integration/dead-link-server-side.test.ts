import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { RetentionPolicy } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import {
  ConnectionService,
  endpoint,
  endpointClient,
  endpoints,
  ServiceManager,
  StreamService,
} from '../../src/index.js';
import { startFaultProxy, startNatsServer } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

describe('dead links, the server side', () => {
  it("with the server's ping_interval at 1 s the server drops the dead connection itself: after the replacement every endpoint request is answered (none routed to the dead connection's subscription)", async () => {
    // With the defaults (2 min, 2 pings) the server keeps it for minutes: dead-link.test.ts logs
    // the endpoint requests that time out after the replacement.
    await using server = await startNatsServer({
      jetstream: false,
      extraConfig: 'ping_interval: "1s"\nping_max: 2',
    });
    await using proxy = await startFaultProxy({ target: server.url });
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: proxy.url },
      services: [
        endpoints({
          name: 'ss',
          version: '1.0.0',
          endpoints: () => ({ echo: endpoint({ handler: ({ data }) => data }) }),
        }),
      ],
    });
    const outside = await connect({ servers: server.url });
    await using _outside = { [Symbol.asyncDispose]: () => outside.close() };
    const echo = endpointClient<number, number>(outside, 'ss.echo', { timeoutMs: 500 });
    expect(await echo.request(1)).toBe(1);
    let replaced: number | undefined;
    const off = app.get(ConnectionService).onStatus((s) => {
      if (s.state === 'connected') replaced ??= performance.now();
    });
    proxy.blackhole({ connection: 1 });
    await waitUntil(() => replaced !== undefined, 20_000);
    off();
    // Ten answers in a row: no request routed to the dead connection's subscription any more.
    let inRow = 0;
    let timedOut = 0;
    const until = performance.now() + 20_000;
    while (inRow < 10 && performance.now() < until) {
      const ok = await echo.request(1).then(
        () => true,
        () => false,
      );
      inRow = ok ? inRow + 1 : 0;
      if (!ok) timedOut++;
      await sleep(50);
    }
    const cleanMs = performance.now() - (replaced as number);
    console.log(
      `server side: ${timedOut} requests timed out; all answered again ${Math.round(cleanMs)} ms after the replacement`,
    );
    expect(inRow).toBe(10);
  });

  it('a worker stopped (drained) while its link is black-holed: the stop ends within its drain deadline plus the ack timeout, and once the link is replaced every job is handled (at least once)', async () => {
    await using server = await startNatsServer();
    await using proxy = await startFaultProxy({ target: server.url });
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: proxy.url },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({
      name: 'DRAINDL',
      subjects: ['draindl.>'],
      retention: RetentionPolicy.Workqueue,
    });
    for (let n = 0; n < 8; n++) await streams.publish('draindl.x', JSON.stringify({ n }));
    const handled = new Map<number, number>();
    let running = 0;
    const options = {
      stream: 'DRAINDL',
      consumer: 'draindl',
      concurrency: 4,
      ackWaitMs: 4_000,
      drainTimeoutMs: 3_000,
      handler: async (job: { data: { n: number } }) => {
        running++;
        await sleep(1_000); // a job's length: what the drain waits for
        handled.set(job.data.n, (handled.get(job.data.n) ?? 0) + 1);
        running--;
      },
    };
    const first = await streams.createWorker<{ n: number }>(options);
    first.start();
    await waitUntil(() => running === 4, 10_000);
    let replaced: number | undefined;
    const off = app.get(ConnectionService).onStatus((s) => {
      if (s.state === 'connected') replaced ??= performance.now();
    });
    proxy.blackhole({ connection: 1 });
    const stopping = performance.now();
    const result = await first.stop();
    const stopMs = performance.now() - stopping;
    // The jobs finish within the drain deadline; their acks wait for the server's confirmation
    // (at most requestTimeoutMs, 5 s), which comes once the link is replaced.
    expect(stopMs).toBeLessThan(3_000 + 5_000 + 2_000);
    await waitUntil(() => replaced !== undefined, 20_000);
    off();
    // A second worker on the same consumer takes what the first left or whose ack was lost.
    await using second = await streams.createWorker<{ n: number }>(options);
    second.start();
    await waitUntil(() => handled.size === 8, 30_000);
    const twice = [...handled.values()].filter((n) => n > 1).length;
    console.log(
      `worker drain across a black hole: stop took ${Math.round(stopMs)} ms (${result.finished} finished, ${result.naked} naked), 8 of 8 handled, ${twice} twice`,
    );
  });
});
