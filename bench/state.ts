// The state store's two backends side by side, in one run: setState/getState p50 on NATS KV
// (a fresh nats-server, file storage) and on the embedded SQLite file (synchronous normal and
// full), with the raw @nats-io/kv client's put and get on the same server as the floor.
// Run: npm run bench   (BENCH_ROUNDS=3 by default; the median round is reported)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { ServiceManager, STATE_STORE, type StateStore } from 'natskit';
import { startNatsServer } from 'natskit/testing';
import { median, time } from './lib.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const N = 2_000;

async function main(): Promise<void> {
  await using server = await startNatsServer();
  const dir = await mkdtemp(join(tmpdir(), 'natskit-bench-state-'));
  const quiet = { logger: { level: 'warn' as const } };
  await using natsApp = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
  await using normalApp = await ServiceManager.start({
    ...quiet,
    state: { backend: 'sqlite', path: join(dir, 'normal.db') },
  });
  await using fullApp = await ServiceManager.start({
    ...quiet,
    state: { backend: 'sqlite', path: join(dir, 'full.db'), synchronous: 'full' },
  });
  const nc = await connect({ servers: server.url });
  // The same config as the state bucket: history 5, delete markers for a second.
  const raw = await new Kvm(jetstream(nc)).create('bench_raw_state', {
    history: 5,
    markerTTL: 1_000,
  });
  const stores: [string, StateStore][] = [
    ['NATS KV', natsApp.get(STATE_STORE)],
    ['SQLite (synchronous normal)', normalApp.get(STATE_STORE)],
    ['SQLite (synchronous full)', fullApp.get(STATE_STORE)],
  ];
  const results = new Map<string, number[]>();
  const record = (name: string, v: number) => {
    results.set(name, [...(results.get(name) ?? []), v]);
  };
  for (let round = 0; round < rounds; round++) {
    const put = new Map<string, number[]>();
    const get = new Map<string, number[]>();
    const sample = (m: Map<string, number[]>, name: string, v: number) => {
      m.set(name, [...(m.get(name) ?? []), v]);
    };
    for (let i = 0; i < N; i++) {
      const key = `job.${i % 100}`;
      const value = { status: 'running', attempt: i, worker: 'w-1' };
      // Rotate who goes first.
      const sides = [...stores.slice(i % 3), ...stores.slice(0, i % 3)];
      for (const [name, store] of sides) {
        sample(put, name, await time(() => store.setState(key, value)));
        sample(get, name, await time(() => store.getState(key)));
      }
      sample(put, 'raw', await time(() => raw.put(key, JSON.stringify(value))));
      sample(get, 'raw', await time(async () => (await raw.get(key))?.json()));
    }
    for (const [name, xs] of put) record(`put ${name}`, median(xs));
    for (const [name, xs] of get) record(`get ${name}`, median(xs));
  }
  await nc.close();
  await rm(dir, { recursive: true, force: true });

  const m = (name: string) => median(results.get(name) ?? []);
  console.log(
    `state store: nats-server ${server.version}, ${rounds} round(s) of ${N} puts and gets, median round; p50 in ms`,
  );
  console.log('| backend | setState p50 | getState p50 | put vs NATS KV |');
  console.log('|---|---|---|---|');
  const natsPut = m('put NATS KV');
  for (const [name] of stores) {
    console.log(
      `| ${name} | ${m(`put ${name}`).toFixed(3)} | ${m(`get ${name}`).toFixed(3)} | ${(m(`put ${name}`) / natsPut).toFixed(2)}x |`,
    );
  }
  console.log(
    `| raw @nats-io/kv on the same server (floor) | ${m('put raw').toFixed(3)} | ${m('get raw').toFixed(3)} | ${(m('put raw') / natsPut).toFixed(2)}x |`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
