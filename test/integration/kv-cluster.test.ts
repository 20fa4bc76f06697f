import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { KVStoreService, ServiceManager } from '../../src/index.js';
import { startNatsCluster } from '../../src/testing/index.js';
import { waitForValue, waitUntil } from '../support/wait.js';

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

    const observer = await connect({ servers: [...cluster.urls] });
    const jsm = await jetstreamManager(observer);
    const leader = (await jsm.streams.info('KV_ckv')).cluster?.leader ?? '';
    const watchHost = async () => {
      for await (const c of jsm.consumers.list('KV_ckv')) {
        if (c.name.startsWith('natskit_watch_')) return c.cluster?.leader ?? '';
      }
      return '';
    };
    // Read before the writers start, so the kill follows the 20th commit at once.
    const hostAtKill = await watchHost();

    // Two apps move units from y to x, 40 transactions each, while the leader dies.
    let committed = 0;
    let inFlight = 0;
    const mover = async (service: KVStoreService, count: number) => {
      for (let i = 0; i < count; i++) {
        for (;;) {
          inFlight++;
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
          } finally {
            inFlight--;
          }
          await sleep(200);
        }
      }
    };
    const running = Promise.all([mover(kv, 40), mover(b.get(KVStoreService), 40)]);
    await waitUntil(() => committed >= 20 && seen.length >= 20, 20_000, '20 commits watched');

    const killed = cluster.indexOf(leader);
    expect(killed).toBeGreaterThanOrEqual(0); // the leader is known, and it is a node we run
    // The kill lands while both apps are in the middle of their transactions.
    const committedAtKill = committed;
    const inFlightAtKill = inFlight;
    await cluster.stop(killed, { signal: 'SIGKILL' });
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(committedAtKill).toBeLessThan(80);
    // Another node took over the stream while the transactions went on.
    const after = await waitForValue(
      () => jsm.streams.info('KV_ckv').catch(() => undefined),
      (i) => Boolean(i?.cluster?.leader) && i?.cluster?.leader !== leader,
      30_000,
      'a new stream leader after the kill',
    );
    await running;
    console.log(
      `cluster kv: leader ${leader} killed with ${inFlightAtKill} transaction(s) in flight and ` +
        `${committedAtKill}/80 committed; ${after?.cluster?.leader} took over`,
    );

    const [x, y] = (await kv.bulkGet<number>('ckv', ['x', 'y'], { retry })) as number[];
    expect(committed).toBe(80);
    expect(x).toBe(80);
    expect(y).toBe(-80); // nothing lost, nothing applied twice
    const upTo = (n: number) =>
      waitUntil(
        () => seen.length >= n,
        20_000,
        `the watch saw ${n} revisions (it saw ${seen.length})`,
      );
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
    await waitForValue(
      () => jsm.streams.info('KV_ckv').catch(() => undefined),
      (info) => {
        const replicas = info?.cluster?.replicas ?? [];
        return (
          Boolean(info?.cluster?.leader) &&
          replicas.length === 2 &&
          replicas.every((r) => r.current)
        );
      },
      30_000,
      'the restarted node caught up (a leader and two current replicas)',
    );
    const host = await watchHost();
    expect(host).toBeTruthy();
    expect(cluster.indexOf(host)).toBeGreaterThanOrEqual(0);
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
