// Bulk ingest of 10,000 keys on one fresh nats-server (2.14+), in one run: natskit's bulkPut
// (fast-ingest batch, per-key revisions) against the raw @nats-io/jetstream client's best
// ingest with per-batch acknowledgement, 1,000-message atomic batches (`startBatch`), and the
// client's own fast ingest (`startFastIngest`, one awaited `add` per message) as a floor.
// Target (issue 20, item 3): bulkPut at least 1.2x the atomic batches (raw time / natskit time).
// Run: npm run bench   (BENCH_ROUNDS=5 by default; the median round is reported)
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startFastIngest } from '@nats-io/jetstream/internal';
import { connect } from '@nats-io/transport-node';
import { KVStoreService, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { median, time } from './lib.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const N = 10_000;

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  const kv = app.get(KVStoreService);
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const enc = new TextEncoder();
  const results = new Map<string, number[]>();
  const record = (name: string, v: number) => results.set(name, [...(results.get(name) ?? []), v]);

  for (let round = 0; round < rounds; round++) {
    // Fresh buckets of the same config; the raw ones get atomic and batched publish by update.
    const mine = await kv.bucket<{ n: number }>(`natskit_${round}`, { provision: { history: 1 } });
    const rawBucket = async (name: string) => {
      await kv.createBucket(name, { history: 1 });
      const c = (await jsm.streams.info(`KV_${name}`)).config;
      await jsm.streams.update(`KV_${name}`, { ...c, allow_atomic: true, allow_batched: true });
    };
    await rawBucket(`atomic_${round}`);
    await rawBucket(`fast_${round}`);
    const entries = Array.from({ length: N }, (_, i) => ({ key: `k${i}`, value: { n: i } }));
    const messages = (bucket: string) =>
      entries.map((e) => ({
        subject: `$KV.${bucket}.${e.key}`,
        data: enc.encode(JSON.stringify(e.value)),
      }));
    const atomic = messages(`atomic_${round}`);
    const fast = messages(`fast_${round}`);

    const sides: [string, () => Promise<void>][] = [
      [
        'natskit bulkPut',
        async () => {
          const r = await mine.bulkPut(entries);
          if (r.some((x) => !x.ok)) throw new Error('bulkPut failed');
        },
      ],
      [
        'raw atomic batches of 1000',
        async () => {
          for (let s = 0; s < N; s += 1_000) {
            const chunk = atomic.slice(s, s + 1_000);
            const [first, ...rest] = chunk;
            const last = rest.pop();
            if (!first || !last) throw new Error('short chunk');
            const batch = await js.startBatch(first.subject, first.data);
            for (const m of rest) batch.add(m.subject, m.data);
            const ack = await batch.commit(last.subject, last.data);
            if (ack.count !== 1_000) throw new Error('short batch');
          }
        },
      ],
      [
        'raw fast ingest',
        async () => {
          const [first, ...rest] = fast;
          if (!first) throw new Error('no messages');
          const fi = await startFastIngest(nc, first.subject, first.data, {
            allowGaps: false,
            ackInterval: 250,
            maxOutstandingAcks: 3,
          });
          for (const m of rest) await fi.add(m.subject, m.data);
          const ack = await fi.end();
          if (ack.count !== N) throw new Error(`fast ingest stored ${ack.count}`);
        },
      ],
    ];
    // Rotate who goes first.
    for (const [name, run] of [...sides.slice(round % 3), ...sides.slice(0, round % 3)]) {
      record(name, await time(run));
    }
    for (const b of [`natskit_${round}`, `atomic_${round}`, `fast_${round}`])
      await kv.deleteBucket(b);
  }
  await nc.close();

  const m = (name: string) => median(results.get(name) ?? []);
  const natskit = m('natskit bulkPut');
  console.log(
    `bulk ingest of ${N} keys: nats-server ${server.version}, ${rounds} round(s), median round; times in ms`,
  );
  console.log('| side | ms | keys/s | raw / natskit time | rounds (ms) |');
  console.log('|---|---|---|---|---|');
  for (const name of results.keys()) {
    const v = m(name);
    const all = (results.get(name) ?? []).map((x) => x.toFixed(0)).join(', ');
    console.log(
      `| ${name} | ${v.toFixed(1)} | ${((N * 1_000) / v).toFixed(0)} | ${(v / natskit).toFixed(2)} | ${all} |`,
    );
  }
  console.log('target: raw atomic batches of 1000 / natskit bulkPut >= 1.2');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
