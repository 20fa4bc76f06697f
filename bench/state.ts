// The state store's two backends side by side, in one run: setState/getState p50 on NATS KV
// (a fresh nats-server, file storage) and on the embedded SQLite file (synchronous normal and
// full), with the raw @nats-io/kv client's put and get on the same server as the floor.
// Then throughput with concurrent writers (each awaiting its own setState in a loop), where the
// SQLite store commits the writes of one event-loop turn in one transaction, and the same with a
// watcher on every key (what the watch path costs per write).
// Run: npm run bench   (BENCH_ROUNDS=3 by default; the median round is reported)
import { readFileSync } from 'node:fs';
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
/** Concurrent writers in the throughput rows. */
const WRITERS = [1, 16, 64];
/** Writes per throughput measurement. */
const WRITES = 4_000;

/** CPU milliseconds a process used so far (user + system), from /proc; 0 where unreadable. */
function processCpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1_000) / 100; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

/** CPU microseconds per write of the last {@link throughput} run: this process plus the server. */
let lastCpuPerWrite = 0;

/**
 * setState per second with `writers` loops, each awaiting its own writes. Also records the CPU
 * each write cost (this process, plus the nats-server process when `serverPid` is given).
 */
async function throughput(store: StateStore, writers: number, serverPid?: number): Promise<number> {
  const each = Math.ceil(WRITES / writers);
  const cpu0 = process.cpuUsage();
  const server0 = serverPid ? processCpuMs(serverPid) : 0;
  const ms = await time(() =>
    Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < each; i++) {
          await store.setState(`job.${w}.${i % 10}`, { status: 'running', attempt: i });
        }
      }),
    ),
  );
  const cpu = process.cpuUsage(cpu0);
  const serverMs = serverPid ? processCpuMs(serverPid) - server0 : 0;
  lastCpuPerWrite = (cpu.user + cpu.system + serverMs * 1_000) / (each * writers);
  return (each * writers * 1_000) / ms;
}

/** Latencies of `n` sequential setState calls. */
async function sequential(store: StateStore, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await time(() => store.setState(`job.${i % 100}`, { status: 'running', attempt: i })));
  }
  return out;
}

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
    // Throughput: the sides one after another, in a rotating order.
    const sides = [...stores.slice(round % 3), ...stores.slice(0, round % 3)];
    for (const writers of WRITERS) {
      for (const [name, store] of sides) {
        const pid = name === 'NATS KV' ? server.pid : undefined;
        record(`tput ${writers} ${name}`, await throughput(store, writers, pid));
        record(`cpu ${writers} ${name}`, lastCpuPerWrite);
      }
    }
    // Sequential p50 with each side alone (no other store's calls in between), rotating order.
    for (const [name, store] of sides)
      record(`alone p50 ${name}`, median(await sequential(store, N)));
    // The watch path: one watcher on every key, its callback doing nothing.
    const sqlite = normalApp.get(STATE_STORE);
    await using _w = await sqlite.watchState('job.>', () => undefined);
    record('watched p50', median(await sequential(sqlite, N)));
    record('tput watched', await throughput(sqlite, 16));
    record('cpu watched', lastCpuPerWrite);
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
  console.log('');
  console.log(
    'setState p50 with each backend in a loop of its own (no calls of the others between):',
  );
  console.log('| backend | setState p50 | NATS KV / this |');
  console.log('|---|---|---|');
  for (const [name] of stores) {
    const v = m(`alone p50 ${name}`);
    console.log(`| ${name} | ${v.toFixed(3)} | ${(m('alone p50 NATS KV') / v).toFixed(1)}x |`);
  }
  console.log('');
  console.log('setState throughput (writes/s), concurrent writers each awaiting its own writes:');
  console.log(`| backend | ${WRITERS.map((w) => `${w} writer(s)`).join(' | ')} |`);
  console.log(`|---|${WRITERS.map(() => '---|').join('')}`);
  for (const [name] of stores) {
    const cells = WRITERS.map((w) => {
      const v = m(`tput ${w} ${name}`);
      return `${v.toFixed(0)} (${(v / m(`tput ${w} NATS KV`)).toFixed(1)}x NATS)`;
    });
    console.log(`| ${name} | ${cells.join(' | ')} |`);
  }
  console.log('');
  console.log(
    'CPU per setState in microseconds (NATS: this process plus the nats-server process):',
  );
  console.log(`| backend | ${WRITERS.map((w) => `${w} writer(s)`).join(' | ')} |`);
  console.log(`|---|${WRITERS.map(() => '---|').join('')}`);
  for (const [name] of stores) {
    const cells = WRITERS.map((w) => {
      const v = m(`cpu ${w} ${name}`);
      return `${v.toFixed(1)} (${(m(`cpu ${w} NATS KV`) / v).toFixed(1)}x less than NATS)`;
    });
    console.log(`| ${name} | ${cells.join(' | ')} |`);
  }
  console.log('');
  console.log(
    `SQLite (normal) with one watcher on every key: setState p50 ${m('watched p50').toFixed(3)} ms, 16 writers ${m('tput watched').toFixed(0)}/s, ${m('cpu watched').toFixed(1)} us CPU a write (without: ${m(`tput 16 ${stores[1]?.[0]}`).toFixed(0)}/s, ${m(`cpu 16 ${stores[1]?.[0]}`).toFixed(1)} us)`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
