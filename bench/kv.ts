// natskit vs the raw @nats-io/kv client, on the same fresh nats-server, in one run.
// P1 get/put p50 latency (target natskit/raw: get <= 1.05, put <= 1.03), P2 bulkPut of 10k keys
// vs raw puts with 256 in flight (target >= 2x), P3 bulkGet of 1000 keys vs raw gets with 256 in
// flight (>= 4x).
// P1 runs a third side too: an app with Prometheus metrics on (every operation timed and counted),
// which must stay within 1.05x raw as well.
// Run: npm run bench   (BENCH_ROUNDS=3 by default; the median round is reported)
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { KVStoreService, ServiceManager } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { inFlight, median, time } from './lib.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const p50 = median;

async function main(): Promise<void> {
  await using server = await startNatsServer();
  await using app = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
  });
  const kv = app.get(KVStoreService);
  await using metered = await ServiceManager.start({
    logger: { level: 'warn' },
    nats: { servers: server.url },
    metrics: true,
  });
  const kvMetered = metered.get(KVStoreService);
  const nc = await connect({ servers: server.url });
  const kvm = new Kvm(jetstream(nc));
  const results: Record<string, number[]> = {};
  const record = (name: string, value: number) => {
    results[name] ??= [];
    results[name].push(value);
  };

  for (let round = 0; round < rounds; round++) {
    // Two fresh buckets with the same config; the raw handle uses direct get too (a fair fight).
    const nb = `natskit_${round}`;
    const rb = `raw_${round}`;
    const mine = await kv.bucket<{ n: number }>(nb, { provision: { history: 1 } });
    await kv.createBucket(rb, { history: 1 });
    const raw = await kvm.open(rb, { allow_direct: true } as never);
    const mb = `metered_${round}`;
    const withMetrics = await kvMetered.bucket<{ n: number }>(mb, { provision: { history: 1 } });
    const value = (n: number) => ({ n });
    const enc = (n: number) => JSON.stringify(value(n));

    // P1: sequential latency, interleaved so both see the same machine state.
    const getN: number[] = [];
    const getR: number[] = [];
    const putN: number[] = [];
    const putR: number[] = [];
    const getM: number[] = [];
    const putM: number[] = [];
    for (let i = 0; i < 50; i++) {
      await mine.put(`w${i}`, value(i));
      await withMetrics.put(`w${i}`, value(i));
      await raw.put(`w${i}`, enc(i));
    }
    for (let i = 0; i < 2_000; i++) {
      const k = `k${i % 100}`;
      const natskitPut = async () => putN.push(await time(() => mine.put(k, value(i))));
      const rawPut = async () => putR.push(await time(() => raw.put(k, enc(i))));
      const natskitGet = async () => getN.push(await time(() => mine.get(k)));
      const rawGet = async () =>
        getR.push(await time(async () => JSON.parse((await raw.get(k))?.string() ?? 'null')));
      const meteredPut = async () => putM.push(await time(() => withMetrics.put(k, value(i))));
      const meteredGet = async () => getM.push(await time(() => withMetrics.get(k)));
      // Rotate who goes first, so no side always runs right after another's write.
      const puts = [natskitPut, rawPut, meteredPut];
      const gets = [natskitGet, rawGet, meteredGet];
      const shift = i % 3;
      for (const step of [
        ...puts.slice(shift),
        ...puts.slice(0, shift),
        ...gets.slice(shift),
        ...gets.slice(0, shift),
      ]) {
        await step();
      }
    }
    record('P1 get p50 natskit+metrics ms', p50(getM));
    record('P1 put p50 natskit+metrics ms', p50(putM));
    await kvMetered.deleteBucket(mb);
    record('P1 get p50 natskit ms', p50(getN));
    record('P1 get p50 raw ms', p50(getR));
    record('P1 put p50 natskit ms', p50(putN));
    record('P1 put p50 raw ms', p50(putR));
    // Each round's own ratios too: their spread says how much one run's figure can be trusted.
    record('P1 get ratio', p50(getN) / p50(getR));
    record('P1 put ratio', p50(putN) / p50(putR));
    record('P1 get ratio, metrics on', p50(getM) / p50(getR));
    record('P1 put ratio, metrics on', p50(putM) / p50(putR));

    // P2: 10k keys written.
    const entries = Array.from({ length: 10_000 }, (_, i) => ({ key: `b${i}`, value: value(i) }));
    const bulkMs = await time(async () => {
      const res = await mine.bulkPut(entries);
      if (res.some((r) => !r.ok)) throw new Error('bulkPut failed');
    });
    const rawPutMs = await time(() =>
      inFlight(entries, 256, (e) => raw.put(e.key, enc(e.value.n))),
    );
    record('P2 bulkPut 10k natskit ms', bulkMs);
    record('P2 raw 256-in-flight puts 10k ms', rawPutMs);

    // P3: 1000 keys read, both sides decoding the values; repeated within the round (interleaved)
    // so one slow repetition (JIT warm-up, a GC) does not decide it.
    const keys = entries.slice(0, 1_000).map((e) => e.key);
    const jsm = await jetstream(nc).jetstreamManager();
    const subjects = keys.map((k) => `$KV.${nb}.${k}`);
    const bulkGetReps: number[] = [];
    const rawGetReps: number[] = [];
    const floorReps: number[] = [];
    for (let rep = 0; rep < 7; rep++) {
      bulkGetReps.push(
        await time(async () => {
          const got = await mine.bulkGet(keys);
          if (got.length !== 1_000 || got.some((v) => v === null))
            throw new Error('bulkGet missed keys');
        }),
      );
      rawGetReps.push(
        await time(() =>
          inFlight(keys, 256, async (k) => {
            const e = await raw.get(k);
            if (!e) throw new Error('raw get missed a key');
            e.json();
          }),
        ),
      );
      floorReps.push(
        await time(async () => {
          let n = 0;
          for await (const _ of await jsm.direct.getLastMessagesFor(`KV_${nb}`, {
            multi_last: subjects,
          }))
            n++;
          if (n !== 1_000) throw new Error('multi_last missed keys');
        }),
      );
    }
    record('P3 bare multi_last 1000 ms', median(floorReps));
    record('P3 bulkGet 1000 natskit ms', median(bulkGetReps));
    record('P3 raw 256-in-flight gets 1000 ms', median(rawGetReps));

    await kv.deleteBucket(nb);
    await kv.deleteBucket(rb);
  }
  await nc.close();

  const m = (name: string) => median(results[name] ?? []);
  // A latency row's ratio is natskit/raw (lower is better); a throughput row's is raw/natskit time.
  const row = (name: string, natskit: string, raw: string, latency: boolean, target: string) => {
    const n = m(natskit);
    const r = m(raw);
    return [name, n, r, latency ? n / r : r / n, target] as const;
  };
  const rows = [
    row('P1 get p50', 'P1 get p50 natskit ms', 'P1 get p50 raw ms', true, '<= 1.05 (natskit/raw)'),
    row('P1 put p50', 'P1 put p50 natskit ms', 'P1 put p50 raw ms', true, '<= 1.03 (natskit/raw)'),
    row(
      'P1 get p50, metrics on',
      'P1 get p50 natskit+metrics ms',
      'P1 get p50 raw ms',
      true,
      '<= 1.05 (natskit/raw)',
    ),
    row(
      'P1 put p50, metrics on',
      'P1 put p50 natskit+metrics ms',
      'P1 put p50 raw ms',
      true,
      '<= 1.05 (natskit/raw)',
    ),
    row(
      'P2 bulkPut 10k',
      'P2 bulkPut 10k natskit ms',
      'P2 raw 256-in-flight puts 10k ms',
      false,
      '>= 2 (raw/natskit time)',
    ),
    row(
      'P3 bulkGet 1000',
      'P3 bulkGet 1000 natskit ms',
      'P3 raw 256-in-flight gets 1000 ms',
      false,
      '>= 4 (raw/natskit time)',
    ),
  ];
  console.log(`nats-server ${server.version}, ${rounds} round(s), median round; times in ms`);
  console.log(
    `(floor: one bare multi_last request for the same 1000 keys: ${m('P3 bare multi_last 1000 ms').toFixed(3)} ms)`,
  );
  const spread = (name: string) => {
    const xs = results[name] ?? [];
    return `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
  };
  console.log(
    `(P1 ratios per round: get ${spread('P1 get ratio')}, put ${spread('P1 put ratio')}; metrics on: get ${spread('P1 get ratio, metrics on')}, put ${spread('P1 put ratio, metrics on')})`,
  );
  console.log('| measure | natskit | raw | ratio | target |');
  console.log('|---|---|---|---|---|');
  for (const [name, n, r, ratio, target] of rows) {
    console.log(
      `| ${name} | ${n.toFixed(3)} | ${r.toFixed(3)} | ${ratio.toFixed(2)} | ${target} |`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
