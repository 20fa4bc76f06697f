import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { startNatsCluster } from '../../src/testing/index.js';

describe('KV and transactions on a 3-node cluster', () => {
  it('an R3 bucket keeps transactions exact, and its watch ordered without gap or duplicate, when the stream leader is killed', async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    const nats = { servers: [...cluster.urls], reconnectTimeWaitMs: 100, reconnectJitterMs: 50 };
    await using a = await ServiceManager.start({ logger: { level: 'silent' }, nats });
    await using b = await ServiceManager.start({ logger: { level: 'silent' }, nats });
    const kv = a.get(KVStoreService);
    const retry = { retries: 30, minDelayMs: 100, maxDelayMs: 1_000 };
    // History 10: a watch sees every revision only while the stream keeps it (docs/kv.md).
    await kv.createBucket('ckv', { replicas: 3, history: 10 });
    await kv.bulkPut('ckv', [
      { key: 'x', value: 0 },
      { key: 'y', value: 0 },
    ]);

    const seen: number[] = [];
    const watcher = await kv.watch<number>('ckv', 'x', {
      include: 'updates',
      onChange: (c) => {
        if (c.type === 'put') seen.push(c.value);
      },
    });

    // Two apps move units from y to x, 40 transactions each, while the leader dies.
    let committed = 0;
    const mover = async (service: KVStoreService) => {
      for (let i = 0; i < 40; i++) {
        for (;;) {
          try {
            await service.transaction<number>(
              'ckv',
              async (tx) => {
                const [x, y] = await tx.getMany(['x', 'y']);
                await tx.put('x', (x ?? 0) + 1);
                await tx.put('y', (y ?? 0) - 1);
              },
              { maxAttempts: 50 },
            );
            committed++;
            break;
          } catch (err) {
            // During the election reads and commits can find no leader for a moment; the
            // transaction was not applied (no responders / conflict), so it is safe to run again.
            if ((err as { code?: string }).code !== 'NATS_UNAVAILABLE') throw err;
            await sleep(200);
          }
        }
      }
    };
    const running = Promise.all([mover(kv), mover(b.get(KVStoreService))]);
    const ready = Date.now() + 20_000;
    while ((committed < 20 || seen.length < 20) && Date.now() < ready) await sleep(10);

    const observer = await connect({ servers: [...cluster.urls] });
    const jsm = await jetstreamManager(observer);
    const leader = (await jsm.streams.info('KV_ckv')).cluster?.leader ?? '';
    await cluster.stop(cluster.indexOf(leader), { signal: 'SIGKILL' });
    await running;

    const [x, y] = (await kv.bulkGet<number>('ckv', ['x', 'y'], { retry })) as number[];
    expect(committed).toBe(80);
    expect(x).toBe(80);
    expect(y).toBe(-80); // nothing lost, nothing applied twice
    const t0 = Date.now();
    while (seen.length < 80 && Date.now() - t0 < 10_000) await sleep(50);
    // Known defect (docs/cluster.md, open): after the leader failover the watch can stall (about
    // a third to a half of the runs, for more than 60 s). What holds every time: in order, no
    // duplicate, no gap: a prefix of 1..80. Completeness is reported, not asserted.
    console.log(`cluster watch: ${seen.length}/80 revisions within 10 s of the last commit`);
    await watcher.stop();
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
    expect(seen.length).toBeGreaterThanOrEqual(20); // everything before the kill
    const health = await kv.healthCheck('ckv');
    expect(health.replicas).toBe(3);
    expect(health.leader).toBeTruthy();
    expect(health.leader).not.toBe(leader);
    await observer.close();
  });
});
