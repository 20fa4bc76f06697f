import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ConnectionService, ServiceManager, StreamService } from '../../src/index.js';
import { startNatsCluster } from '../../src/testing/index.js';

describe('streams and workers on a 3-node cluster', () => {
  it('an R3 stream loses nothing and stores nothing twice when its leader is killed mid-run', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    await using app = await ServiceManager.start({
      logger: { level: 'silent' },
      nats: { servers: [...cluster.urls], reconnectTimeWaitMs: 100, reconnectJitterMs: 50 },
    });
    const streams = app.get(StreamService);
    await streams.ensureStream({ name: 'CJOBS', subjects: ['cjobs.>'], num_replicas: 3 });
    const retry = { retries: 30, minDelayMs: 100, maxDelayMs: 1_000 };
    const publish = (i: number) =>
      streams.publish('cjobs.job', JSON.stringify({ id: i }), {
        msgId: `job-${i}`,
        timeoutMs: 2_000,
        retry,
      });
    for (let i = 0; i < 100; i++) await publish(i);

    const seen = new Map<number, number>();
    await using worker = await streams.createWorker<{ id: number }>({
      stream: 'CJOBS',
      consumer: 'cjobs',
      concurrency: 4,
      fetchExpiresMs: 1_000,
      ackWaitMs: 5_000,
      handler: async (job) => {
        await sleep(5);
        seen.set(job.data.id, (seen.get(job.data.id) ?? 0) + 1);
      },
    });
    worker.start();
    while (seen.size < 30) await sleep(10);

    const leader = (await streams.jsm.streams.info('CJOBS')).cluster?.leader ?? '';
    const index = cluster.indexOf(leader);
    expect(index).toBeGreaterThanOrEqual(0);
    await cluster.stop(index, { signal: 'SIGKILL' });
    // Publishing goes on through the failover, carried by retries (no responders, timeouts).
    for (let i = 100; i < 150; i++) await publish(i);

    const deadline = Date.now() + 45_000;
    while (seen.size < 150 && Date.now() < deadline) await sleep(50);
    expect(seen.size).toBe(150); // nothing lost
    const info = await streams.jsm.streams.info('CJOBS');
    expect(info.state.messages).toBe(150); // nothing stored twice, thanks to the message ids
    expect(info.cluster?.leader).not.toBe(leader);
    // Redelivery of a job whose ack was lost in the failover is allowed (at least once), and counted.
    const redelivered = [...seen.values()].filter((n) => n > 1).length;
    expect(redelivered).toBeLessThanOrEqual(10);
    expect(app.get(ConnectionService).status.state).toBe('connected');
    console.log(
      `cluster failover: ${streams.metrics.retries} publish retries, ${redelivered} jobs redelivered`,
    );
  });
});
