// What each state backend does beyond the shared contract: SQLite's file (persistence, one
// process, crash safety, limits) and NATS's bucket (shared with other clients, older servers).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ConnectionService,
  KVStoreService,
  NatskitError,
  ServiceManager,
  STATE_STORE,
  type StateChange,
} from '../../src/index.js';
import { startNatsServer } from '../../src/testing/index.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const code = (err: unknown) => (NatskitError.is(err) ? err.code : String(err));

describe('SQLite state store', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natskit-sqlite-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const sqlite = (name: string, extra: object = {}) => ({
    ...quiet,
    state: { backend: 'sqlite' as const, path: join(dir, name), ...extra },
  });

  it('runs with no NATS at all, and keeps its state across restarts (revisions go on increasing)', async () => {
    const path = 'nested/folder/persist.db'; // its folder is created
    let last: number;
    {
      await using app = await ServiceManager.start(sqlite(path));
      expect(() => app.get(ConnectionService)).toThrow(); // no NATS module
      const store = app.get(STATE_STORE);
      expect(store.backend).toBe('sqlite');
      await store.setState('a', { n: 1 });
      last = await store.setState('b', [1, 2]);
      await store.setState('gone', 1);
      await store.deleteState('gone');
    }
    await using again = await ServiceManager.start(sqlite(path));
    const store = again.get(STATE_STORE);
    expect(await store.getState('a')).toEqual({ n: 1 });
    expect(await store.getStateEntry('b')).toMatchObject({ value: [1, 2], revision: last });
    expect(await store.getState('gone')).toBeNull();
    expect(await store.setState('c', 3)).toBeGreaterThan(last + 1); // the delete had one too
  });

  it('a value that expired while the store was closed is gone at the next start', async () => {
    {
      await using app = await ServiceManager.start(sqlite('ttl-closed.db'));
      await app.get(STATE_STORE).setState('short', 'v', { ttlMs: 1_000 });
      await app.get(STATE_STORE).setState('long', 'v');
    }
    await sleep(1_200);
    await using app = await ServiceManager.start(sqlite('ttl-closed.db'));
    const store = app.get(STATE_STORE);
    expect(await store.getState('short')).toBeNull();
    expect(await store.getState('long')).toBe('v');
    const seen: StateChange<string>[] = [];
    await using _w = await store.watchState<string>('>', (c) => void seen.push(c));
    await store.setState('marker', 'm');
    while (seen.length < 2) await sleep(10);
    expect(seen.map((c) => [c.key, c.type])).toEqual([
      ['long', 'put'],
      ['marker', 'put'],
    ]);
  });

  it('an expiry timer that fires before the wall clock says the value is due waits again, and the purge still reaches watchers', async () => {
    // Node timers may fire a millisecond early by Date.now(); an NTP step back makes it seconds.
    await using app = await ServiceManager.start(sqlite('ttl-early.db'));
    const store = app.get(STATE_STORE);
    const seen: StateChange<string>[] = [];
    await using _w = await store.watchState<string>('short', (c) => void seen.push(c));
    const realNow = Date.now.bind(Date);
    await store.setState('short', 'v', { ttlMs: 1_000 });
    const stepped = vi.spyOn(Date, 'now').mockImplementation(() => realNow() - 700);
    try {
      await waitUntil(() => seen.length === 2, 4_000); // due at 1.7 s real time
    } finally {
      stepped.mockRestore();
    }
    expect(seen.map((c) => c.type)).toEqual(['put', 'purge']);
    expect(await store.getState('short')).toBeNull();
  });

  it('the file belongs to one process: a second opener fails with STORAGE_FAILED, in this process or another', async () => {
    await using app = await ServiceManager.start(sqlite('locked.db'));
    await app.get(STATE_STORE).setState('k', 1);
    const err = await ServiceManager.start(sqlite('locked.db')).catch((e) => e);
    expect(code(err)).toBe('STORAGE_FAILED');
    expect((err as Error).message).toMatch(/in use by another process/);
    const child = spawn(process.execPath, [
      'test/fixtures/state-writer.mjs',
      join(dir, 'locked.db'),
      '10',
      'normal',
    ]);
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    const exit = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(exit).not.toBe(0);
    expect(stderr).toMatch(/STORAGE_FAILED|in use by another process/);
    expect(await app.get(STATE_STORE).getState('k')).toBe(1);
  });

  it('values up to maxValueBytes are stored; one byte more is VALUE_TOO_LARGE and writes nothing', async () => {
    await using app = await ServiceManager.start(sqlite('limit.db', { maxValueBytes: 100 }));
    const store = app.get(STATE_STORE);
    const exact = 'x'.repeat(98); // JSON adds the two quotes: 100 bytes
    await store.setState('k', exact);
    expect(await store.getState('k')).toBe(exact);
    const err = await store.setState('k', `${exact}y`).catch((e) => e);
    expect(code(err)).toBe('VALUE_TOO_LARGE');
    expect(await store.getState('k')).toBe(exact);
    // Multi-byte characters count as bytes.
    expect(code(await store.setState('k', 'é'.repeat(50)).catch((e) => e))).toBe('VALUE_TOO_LARGE');
  });

  it("':memory:' works and starts empty every time", async () => {
    for (let i = 0; i < 2; i++) {
      await using app = await ServiceManager.start({
        ...quiet,
        state: { backend: 'sqlite', path: ':memory:' },
      });
      const store = app.get(STATE_STORE);
      expect(await store.getState('k')).toBeNull();
      await store.setState('k', i);
    }
  });

  it('bad options are refused before anything starts', async () => {
    for (const state of [
      { backend: 'redis' },
      { backend: 'sqlite' },
      { backend: 'sqlite', path: '' },
      { backend: 'sqlite', path: 'x.db', synchronous: 'sometimes' },
      { backend: 'sqlite', path: 'x.db', maxValueBytes: 0 },
      { backend: 'nats', bucket: 'bad bucket' },
      'sqlite',
    ]) {
      const err = await ServiceManager.start({ ...quiet, state: state as never }).catch((e) => e);
      expect(['INVALID_OPTIONS', 'INVALID_BUCKET'], JSON.stringify(state)).toContain(code(err));
    }
  });

  it('survives SIGKILL mid-write: every acknowledged write is there, whole, and the file is intact', async () => {
    const runs: [padBytes: number, synchronous: 'normal' | 'full', acks: number][] = [
      [100, 'normal', 400],
      [200_000, 'normal', 60],
      [900_000, 'full', 20],
      [30_000, 'full', 100],
    ];
    for (const [padBytes, synchronous, acksBeforeKill] of runs) {
      const path = join(dir, `crash-${padBytes}-${synchronous}.db`);
      const child = spawn(process.execPath, [
        'test/fixtures/state-writer.mjs',
        path,
        String(padBytes),
        synchronous,
      ]);
      const acked = new Map<string, { i: number; revision: number }>();
      let maxRevision = 0;
      let count = 0;
      const lines = createInterface({ input: child.stdout });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        // A writer that dies before the kill fails the test with what it said (it used to leave
        // the test waiting for lines until its 120 s timeout).
        let killed = false;
        child.on('exit', (code, signal) => {
          if (!killed)
            reject(
              new Error(
                `${padBytes}/${synchronous}: the writer exited (${code ?? signal}) after ${count} acks: ${stderr}`,
              ),
            );
        });
        let readyAt = 0;
        lines.on('line', (line) => {
          if (line === 'ready') {
            readyAt = performance.now();
            return;
          }
          const [key, i, revision] = line.split(' ');
          acked.set(key as string, { i: Number(i), revision: Number(revision) });
          maxRevision = Math.max(maxRevision, Number(revision));
          // Killed while it goes on writing: the kill lands inside a write most of the time.
          // On a machine whose disk is busy a synchronous write can take a second: after 5 s of
          // writing, 8 acknowledged writes are enough (the full counts took over 120 s once).
          const slow = count >= 8 && performance.now() - readyAt > 5_000;
          if (++count === acksBeforeKill || slow) {
            killed = true;
            child.kill('SIGKILL');
            resolve();
          }
        });
      });
      await exited;
      expect(child.signalCode).toBe('SIGKILL');
      {
        await using app = await ServiceManager.start({
          ...quiet,
          state: { backend: 'sqlite', path, maxValueBytes: 4 * 1024 * 1024 },
        });
        const store = app.get(STATE_STORE);
        for (const [key, ack] of acked) {
          const entry = await store.getStateEntry<{
            i: number;
            key: string;
            pad: string;
            length: number;
          }>(key);
          const label = `${padBytes}/${synchronous} ${key}`;
          expect(entry, label).not.toBeNull();
          // The acknowledged write, or a later one the kill let through: never an older one.
          expect(entry?.value.i, label).toBeGreaterThanOrEqual(ack.i);
          expect(entry?.revision, label).toBeGreaterThanOrEqual(ack.revision);
          expect(entry?.value.key, label).toBe(key);
          expect(entry?.value.pad.length, label).toBe(entry?.value.length);
        }
        expect(await store.setState('after', 1)).toBeGreaterThan(maxRevision);
      }
      const db = new DatabaseSync(path);
      expect(db.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
      db.close();
    }
  }, 120_000);
});

describe('NATS state store', () => {
  it('stores JSON other clients read, reads what they write, and flags what is not JSON', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      kv: { stateBucket: 'shared_state' },
    });
    const store = app.get(STATE_STORE);
    expect(store.backend).toBe('nats');
    await store.setState('job.1', { status: 'queued' });
    const nc = await connect({ servers: server.url });
    try {
      const raw = await new Kvm(jetstream(nc)).open('shared_state');
      expect((await raw.get('job.1'))?.json()).toEqual({ status: 'queued' });
      // KVStoreService's own state calls share the bucket.
      expect(await app.get(KVStoreService).getState('job.1')).toEqual({ status: 'queued' });
      await raw.put('job.2', JSON.stringify({ status: 'from raw' }));
      expect(await store.getState('job.2')).toEqual({ status: 'from raw' });
      await raw.put('job.3', 'not json');
      expect(code(await store.getState('job.3').catch((e) => e))).toBe('DECODE_FAILED');
      const seen: StateChange<unknown>[] = [];
      await using _w = await store.watchState('job.*', (c) => void seen.push(c));
      while (seen.length < 3) await sleep(10);
      expect(seen.map((c) => [c.key, c.type])).toEqual([
        ['job.1', 'put'],
        ['job.2', 'put'],
        ['job.3', 'invalid'],
      ]);
    } finally {
      await nc.close();
    }
  });

  it('on nats-server 2.9.10: everything but TTL works; TTL is CAPABILITY_MISSING, never ignored', async () => {
    await using old = await startNatsServer({ version: '2.9' });
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: old.url } });
    const store = app.get(STATE_STORE);
    const r = await store.setState('k', 1, { revision: 0 });
    await store.setState('k', 2, { revision: r });
    expect(await store.getState('k')).toBe(2);
    expect(code(await store.setState('t', 1, { ttlMs: 1_000 }).catch((e) => e))).toBe(
      'CAPABILITY_MISSING',
    );
    expect(await store.getState('t')).toBeNull();
  });

  it('the bucket is created at the first call, not at start: an app that never uses state leaves none', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({ ...quiet, nats: { servers: server.url } });
    const exists = async () =>
      (await app
        .get(KVStoreService)
        .bucket('natskit_state')
        .then(
          () => true,
          (err) => (code(err) === 'KV_BUCKET_NOT_FOUND' ? false : Promise.reject(err)),
        )) as boolean;
    expect(await exists()).toBe(false);
    expect((await app.get(STATE_STORE).health()).status).toBe('pass');
    await app.get(STATE_STORE).setState('k', 1);
    expect(await exists()).toBe(true);
  });

  it('state: false registers no store', async () => {
    await using server = await startNatsServer();
    await using app = await ServiceManager.start({
      ...quiet,
      nats: { servers: server.url },
      state: false,
    });
    expect(() => app.get(STATE_STORE)).toThrow();
  });
});
