// Transactions: P4 p50 of a 3-key transaction vs a single put (target <= 2x); P4b p50 of the same
// transaction vs it hand-written on the raw client (3 direct gets, one atomic batch with
// expectations), concurrency 1 (target <= 1.1: group commit costs a lone transaction nothing);
// P5 8 workers x 500
// updateWith increments of one key vs a raw @nats-io/kv compare-and-set loop (target >= 50%).
// Run: npm run bench
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, headers, type NatsConnection, nuid } from '@nats-io/transport-node';
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

  // P4b: the same 3-key transaction, natskit vs hand-written on the raw client, alternating.
  const rawNc = await connect({ servers: server.url });
  const rawJsm = await jetstreamManager(rawNc, { checkAPI: false });
  const p4b = async (b: typeof bucket) => {
    for (const k of ['a', 'b', 'c']) await b.put(k, 0);
    const txMs: number[] = [];
    const rawMs: number[] = [];
    for (let i = 0; i < 500; i++) {
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
      const raw = async () => rawMs.push(await time(() => rawTransaction(rawNc, rawJsm, b.name)));
      for (const step of i % 2 === 0 ? [tx, raw] : [raw, tx]) await step();
    }
    return { tx: median(txMs), raw: median(rawMs) };
  };
  const file4b = await p4b(bucket);
  const mem4b = await p4b(memory);
  await rawNc.close();

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
  for (const [name, r] of [
    ['file', file4b],
    ['memory', mem4b],
  ] as const) {
    console.log(
      `| P4b p50 (${name} bucket): 3-key transaction vs the same on the raw client | ${r.tx.toFixed(3)} | ${r.raw.toFixed(3)} | ${(r.tx / r.raw).toFixed(2)} | <= 1.1 |`,
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

/**
 * A 3-key transaction as a user of the raw client writes it: three direct gets, then one atomic
 * batch (ADR-50) whose messages expect the revisions read. A conflict would throw (none here:
 * one client at a time).
 */
async function rawTransaction(
  nc: NatsConnection,
  jsm: JetStreamManager,
  bucket: string,
): Promise<void> {
  const keys = ['a', 'b', 'c'];
  const read = await Promise.all(
    keys.map((k) => jsm.direct.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${k}` })),
  );
  const id = nuid.next();
  const reply = await new Promise<string>((resolve, reject) => {
    const inbox = `_INBOX.${nuid.next()}`;
    const sub = nc.subscribe(inbox, {
      max: 1,
      callback: (err, m) => (err ? reject(err) : resolve(m.string())),
    });
    keys.forEach((k, i) => {
      const h = headers();
      h.set('Nats-Batch-Id', id);
      h.set('Nats-Batch-Sequence', String(i + 1));
      h.set('Nats-Expected-Last-Subject-Sequence', String(read[i]?.seq ?? 0));
      if (i === keys.length - 1) h.set('Nats-Batch-Commit', '1');
      const value = String(Number(read[i]?.string() ?? '0') + 1);
      nc.publish(`$KV.${bucket}.${k}`, value, {
        headers: h,
        ...(i === keys.length - 1 ? { reply: inbox } : {}),
      });
    });
    void sub;
  });
  if (reply.includes('"error"')) throw new Error(reply);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
