import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { startNatsCluster } from '../../src/testing/index.js';

describe('KV and transactions on a 3-node cluster', () => {
  it("an R3 bucket keeps transactions exact, and its watch complete, in order and without duplicate, when the stream leader and then the watch consumer's node are killed", async () => {
    await using cluster = await startNatsCluster({ size: 3 });
    const nats = { servers: [...cluster.urls], reconnectTimeWaitMs: 100, reconnectJitterMs: 50 };
    await using a = await ServiceManager.start({ logger: { level: 'silent' }, nats });
    await using b = await ServiceManager.start({ logger: { level: 'silent' }, nats });
    const kv = a.get(KVStoreService);
    const retry = { retries: 30, minDelayMs: 100, maxDelayMs: 1_000 };
    // A watch sees every revision only while the stream keeps it (docs/kv.md): a watch whose
    // consumer's node dies finds out after three missed heartbeats (about 6 s), so the bucket
    // keeps more revisions of x (64) than this test writes after a kill (at most 60).
    await kv.createBucket('ckv', { replicas: 3, history: 64 });
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
    const mover = async (service: KVStoreService, count: number) => {
      for (let i = 0; i < count; i++) {
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
    const running = Promise.all([mover(kv, 40), mover(b.get(KVStoreService), 40)]);
    const ready = Date.now() + 20_000;
    while ((committed < 20 || seen.length < 20) && Date.now() < ready) await sleep(10);

    const observer = await connect({ servers: [...cluster.urls] });
    const jsm = await jetstreamManager(observer);
    const leader = (await jsm.streams.info('KV_ckv')).cluster?.leader ?? '';
    const watchHost = async () => {
      for await (const c of jsm.consumers.list('KV_ckv')) {
        if (c.name.startsWith('natskit_watch_')) return c.cluster?.leader ?? '';
      }
      return '';
    };
    const hostAtKill = await watchHost();
    const killed = cluster.indexOf(leader);
    await cluster.stop(killed, { signal: 'SIGKILL' });
    await running;

    const [x, y] = (await kv.bulkGet<number>('ckv', ['x', 'y'], { retry })) as number[];
    expect(committed).toBe(80);
    expect(x).toBe(80);
    expect(y).toBe(-80); // nothing lost, nothing applied twice
    const upTo = async (n: number) => {
      for (const t0 = Date.now(); seen.length < n && Date.now() - t0 < 20_000; ) await sleep(50);
    };
    await upTo(80);
    console.log(
      `cluster watch: ${seen.length}/80 after the stream leader was killed ` +
        `(the watch's consumer ${hostAtKill === leader ? 'was' : 'was not'} on it)`,
    );
    // Every revision once, in order: 1..80.
    expect(seen).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));

    // Second fault, aimed at the watch itself: bring the node back, then kill the node that
    // hosts the watch's consumer (one replica, memory) while another app keeps writing.
    await cluster.restart(killed);
    for (const t0 = Date.now(); Date.now() - t0 < 30_000; await sleep(100)) {
      const info = await jsm.streams.info('KV_ckv').catch(() => undefined);
      const replicas = info?.cluster?.replicas ?? [];
      if (info?.cluster?.leader && replicas.length === 2 && replicas.every((r) => r.current)) break;
    }
    const host = await watchHost();
    expect(host).toBeTruthy();
    await cluster.stop(cluster.indexOf(host), { signal: 'SIGKILL' });
    await mover(b.get(KVStoreService), 20);
    await upTo(100);
    console.log(`cluster watch: ${seen.length}/100 after its consumer's node was killed`);
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    await watcher.stop();
    const health = await kv.healthCheck('ckv');
    expect(health.replicas).toBe(3);
    expect(health.leader).toBeTruthy();
    expect(health.leader).not.toBe(host);
    await observer.close();
  });
});
