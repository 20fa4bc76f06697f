// Transactions: P4 p50 of a 3-key transaction vs a single put (target <= 2x); P5 8 workers x 500
// updateWith increments of one key vs a raw @nats-io/kv compare-and-set loop (target >= 50%).
// Run: npm run bench
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { KVStoreService, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { median, time } from './lib.ts';

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  const kv = app.get(KVStoreService);
  const bucket = await kv.bucket<number>('bench_tx', { provision: { history: 1 } });
  const memory = await kv.bucket<number>('bench_tx_mem', {
    provision: { history: 1, storage: 'memory' },
  });

  // P4: sequential, alternating which goes first; on a file and on a memory bucket, because the
  // server syncs the store to disk on every atomic batch commit (3 fsyncs a commit, measured).
  const p4 = async (b: typeof bucket) => {
    for (const k of ['a', 'b', 'c', 'p']) await b.put(k, 0);
    const txMs: number[] = [];
    const putMs: number[] = [];
    for (let i = 0; i < 1_000; i++) {
      const tx = async () =>
        txMs.push(
          await time(() =>
            b.transaction(async (t) => {
              const [a, bb, c] = await t.getMany(['a', 'b', 'c']);
              await t.put('a', (a ?? 0) + 1);
              await t.put('b', (bb ?? 0) + 1);
              await t.put('c', (c ?? 0) + 1);
            }),
          ),
        );
      const put = async () => putMs.push(await time(() => b.put('p', i)));
      for (const step of i % 2 === 0 ? [tx, put] : [put, tx]) await step();
    }
    return { tx: median(txMs), put: median(putMs) };
  };
  const file = await p4(bucket);
  const mem = await p4(memory);

  // P5: 8 workers x 500 increments of one key, each on its own connection.
  const workers = 8;
  const perWorker = 500;
  const managers = await Promise.all(
    Array.from({ length: workers }, () =>
      ServiceManager.start({ logger: { level: 'warn' }, nats: { servers: server.url } }),
    ),
  );
  await bucket.put('counter', 0);
  let natskitAttempts = 0;
  const natskitMs = await time(() =>
    Promise.all(
      managers.map(async (m) => {
        const s = m.get(KVStoreService);
        for (let i = 0; i < perWorker; i++) {
          const r = await s.updateWith<number>('bench_tx', 'counter', (n) => (n ?? 0) + 1, {
            maxAttempts: 1_000,
          });
          natskitAttempts += r.attempts;
        }
      }),
    ),
  );
  const natskitFinal = await bucket.get('counter');

  const conns = await Promise.all(
    Array.from({ length: workers }, () => connect({ servers: server.url })),
  );
  const rawKvs = await Promise.all(
    conns.map((nc) => new Kvm(jetstream(nc)).open('bench_tx', { allow_direct: true } as never)),
  );
  await rawKvs[0]?.put('rawcounter', '0');
  let rawAttempts = 0;
  const rawMs = await time(() =>
    Promise.all(
      rawKvs.map(async (r) => {
        for (let i = 0; i < perWorker; i++) {
          for (;;) {
            rawAttempts++;
            const e = await r.get('rawcounter');
            try {
              await r.update(
                'rawcounter',
                String(Number(e?.string() ?? '0') + 1),
                e?.revision ?? 0,
              );
              break;
            } catch {
              // a conflict: read again (the usual raw CAS loop, no backoff)
            }
          }
        }
      }),
    ),
  );
  const rawFinal = Number((await rawKvs[0]?.get('rawcounter'))?.string());
  await Promise.all(conns.map((c) => c.close()));
  await Promise.all(managers.map((m) => m.stop()));

  const total = workers * perWorker;
  console.log(`nats-server ${server.version}; times in ms`);
  console.log('| measure | natskit | baseline | ratio | target |');
  console.log('|---|---|---|---|---|');
  for (const [name, r] of [
    ['file', file],
    ['memory', mem],
  ] as const) {
    console.log(
      `| P4 p50 (${name} bucket): 3-key transaction vs single put | ${r.tx.toFixed(3)} | ${r.put.toFixed(3)} | ${(r.tx / r.put).toFixed(2)} | <= 2 |`,
    );
  }
  console.log(
    `| P5 ${workers}x${perWorker} increments/s: updateWith vs raw CAS loop | ${Math.round(total / (natskitMs / 1_000))} | ${Math.round(total / (rawMs / 1_000))} | ${(rawMs / natskitMs).toFixed(2)} | >= 0.5 |`,
  );
  console.log(
    `P5 final values: natskit ${natskitFinal} (attempts ${natskitAttempts}), raw ${rawFinal} (attempts ${rawAttempts}); both must be ${total}`,
  );
  if (natskitFinal !== total || rawFinal !== total) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
