// The SQLite store commits the writes of one turn of the event loop as one transaction: each
// caller still gets its own revision and its own error, and only committed writes are answered.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { NatskitError, ServiceManager, STATE_STORE, type StateChange } from '../../src/index.js';
import { waitUntil } from '../support/wait.js';

const quiet = { logger: { level: 'silent' as const } };
const settle = (p: Promise<number>) =>
  p.then(
    (revision) => ({ revision }),
    (err: unknown) => ({ error: NatskitError.is(err) ? err.code : String(err) }),
  );

/** What the file holds, read by a connection of its own once the store is closed. */
function stored(path: string) {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare('SELECT key, revision, op FROM natskit_state ORDER BY revision').all();
    const meta = db.prepare("SELECT value FROM natskit_meta WHERE name = 'revision'").get();
    return { rows: rows.map((r) => [r.key, r.revision, r.op]), revision: meta?.value };
  } finally {
    db.close();
  }
}

describe('SQLite state store: grouped writes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natskit-grouped-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const start = (name: string) =>
    ServiceManager.start({ ...quiet, state: { backend: 'sqlite', path: join(dir, name) } });

  it('200 writes asked in one turn are one commit: the write-ahead log grows by one transaction, not 200', async () => {
    await using app = await start('one-commit.db');
    const store = app.get(STATE_STORE);
    await store.setState('warm', 0);
    const wal = join(dir, 'one-commit.db-wal');
    const before = (await stat(wal)).size;
    const revisions = await Promise.all(
      Array.from({ length: 200 }, (_, i) => store.setState(`job.${i}`, { i })),
    );
    const grown = (await stat(wal)).size - before;
    // One commit writes each changed page once (a few pages of 4 KiB); 200 commits write the
    // meta and table pages 200 times (over 1.6 MB).
    expect(grown, `WAL grew by ${grown} bytes`).toBeLessThan(200 * 1_024);
    // Each caller its own revision, in the order asked.
    expect(revisions).toEqual(revisions.map((_, i) => (revisions[0] as number) + i));
    for (const [i, r] of revisions.entries()) {
      expect((await store.getStateEntry(`job.${i}`))?.revision).toBe(r);
    }
  });

  it('a member that fails (a revision conflict) fails alone; the others see the writes before them', async () => {
    const app = await start('member.db');
    const store = app.get(STATE_STORE);
    const seen: StateChange<unknown>[] = [];
    const watch = await store.watchState('g.>', (c) => void seen.push(c));
    const r0 = await store.setState('g.a', 'a0');
    const results = await Promise.all([
      settle(store.setState('g.a', 'a1', { revision: r0 })),
      settle(store.setState('g.a', 'stale', { revision: r0 })), // r0 is gone: the one before won
      settle(store.setState('g.b', 'b1', { revision: 0 })),
      settle(store.setState('g.b', 'b again', { revision: 0 })), // created a moment ago
      settle(store.deleteState('g.c', { revision: 5 }).then(() => 0)),
      settle(store.setState('g.d', 'd1')),
    ]);
    expect(results).toEqual([
      { revision: r0 + 1 },
      { error: 'KV_REVISION_CONFLICT' },
      { revision: r0 + 2 },
      { error: 'KV_REVISION_CONFLICT' },
      { error: 'KV_REVISION_CONFLICT' },
      { revision: r0 + 3 },
    ]);
    expect(await store.getState('g.a')).toBe('a1');
    expect(await store.getState('g.b')).toBe('b1');
    expect(await store.getState('g.d')).toBe('d1');
    // Watchers get the committed writes only, in revision order.
    await waitUntil(() => seen.length >= 4, 5_000);
    expect(seen.map((c) => [c.key, c.revision])).toEqual([
      ['g.a', r0],
      ['g.a', r0 + 1],
      ['g.b', r0 + 2],
      ['g.d', r0 + 3],
    ]);
    // The next write takes the next number; the file holds the committed writes, counter included.
    expect(await store.setState('g.e', 'e1')).toBe(r0 + 4);
    await watch.stop();
    await app.stop();
    expect(stored(join(dir, 'member.db'))).toEqual({
      rows: [
        ['g.a', r0 + 1, 'PUT'],
        ['g.b', r0 + 2, 'PUT'],
        ['g.d', r0 + 3, 'PUT'],
        ['g.e', r0 + 4, 'PUT'],
      ],
      revision: r0 + 4,
    });
  });

  it('an error that makes SQLite roll the whole group back (SQLITE_FULL) fails every write of it: none is stored, no revision is given twice', async () => {
    const path = join(dir, 'full.db');
    // The store's own connection, to cap its file size (max_page_count holds per connection).
    const prepare = vi.spyOn(DatabaseSync.prototype, 'prepare');
    const app = await start('full.db');
    const db = prepare.mock.contexts[0] as DatabaseSync;
    prepare.mockRestore();
    const store = app.get(STATE_STORE);
    const seen: StateChange<unknown>[] = [];
    const watch = await store.watchState('f.>', (c) => void seen.push(c));
    const r0 = await store.setState('f.warm', 0);
    const { page_count: pages } = db.prepare('PRAGMA page_count').get() as { page_count: number };
    db.exec(`PRAGMA max_page_count = ${pages + 3}`);
    const big = 'x'.repeat(200_000); // some 50 pages: the file may grow by 3
    const errors: unknown[] = [];
    const keep = (p: Promise<number>) =>
      p.catch((err: unknown) => {
        errors.push(err);
        throw err;
      });
    const results = await Promise.all([
      settle(keep(store.setState('f.a', 'small'))),
      settle(keep(store.setState('f.b', big))), // SQLITE_FULL: SQLite rolls the transaction back
      settle(keep(store.setState('f.c', 'small'))),
    ]);
    // f.a's write went with the transaction, and f.c was not run alone after it.
    expect(await store.getStateEntry('f.a')).toBeNull();
    expect(await store.getStateEntry('f.c')).toBeNull();
    expect(results).toEqual([
      { error: 'STORAGE_FAILED' },
      { error: 'STORAGE_FAILED' },
      { error: 'STORAGE_FAILED' },
    ]);
    for (const err of errors) {
      expect((err as NatskitError).details).toMatchObject({ sqliteCode: 13 }); // SQLITE_FULL
      expect((err as NatskitError).cause).toBeInstanceOf(Error);
    }
    expect(db.isTransaction).toBe(false);
    // A lone write that does not fit fails the same way.
    expect(await settle(store.setState('f.b', big))).toEqual({ error: 'STORAGE_FAILED' });
    db.exec('PRAGMA max_page_count = 1073741823');
    // Revisions go on from the last stored one, each given once.
    const next = [await store.setState('f.d', 'd'), await store.setState('f.e', 'e')];
    expect(next).toEqual([r0 + 1, r0 + 2]);
    await waitUntil(() => seen.length >= 3, 5_000, 'watcher sees 3 changes');
    expect(seen.map((c) => [c.key, c.revision])).toEqual([
      ['f.warm', r0],
      ['f.d', r0 + 1],
      ['f.e', r0 + 2],
    ]);
    await watch.stop();
    await app.stop();
    expect(stored(path)).toEqual({
      rows: [
        ['f.warm', r0, 'PUT'],
        ['f.d', r0 + 1, 'PUT'],
        ['f.e', r0 + 2, 'PUT'],
      ],
      revision: r0 + 2,
    });
    // Reopened, the store goes on from there.
    await using again = await start('full.db');
    expect(await again.get(STATE_STORE).setState('f.f', 'f')).toBe(r0 + 3);
  });

  it('after a failed write the revision goes on from what the file holds, never from below it', async () => {
    const prepare = vi.spyOn(DatabaseSync.prototype, 'prepare');
    await using app = await start('reread.db');
    const db = prepare.mock.contexts[0] as DatabaseSync;
    prepare.mockRestore();
    const store = app.get(STATE_STORE);
    const r0 = await store.setState('r.a', 'a');
    // A write the store did not make (as the group commit's autocommit slip once did): revision
    // r0 + 1 is in the file, counter included.
    db.prepare(
      "INSERT INTO natskit_state (key, revision, op, value, created) VALUES ('r.x', ?, 'PUT', '1', 0)",
    ).run(r0 + 1);
    db.prepare("UPDATE natskit_meta SET value = ? WHERE name = 'revision'").run(r0 + 1);
    expect(await settle(store.setState('r.a', 'stale', { revision: r0 + 5 }))).toEqual({
      error: 'KV_REVISION_CONFLICT',
    });
    expect(await store.setState('r.b', 'b')).toBe(r0 + 2);
  });

  it('SIGKILL while 16 writers write: every acknowledged write is there after the restart', async () => {
    const path = join(dir, 'crash-grouped.db');
    const child = spawn(process.execPath, [
      'test/fixtures/state-writer.mjs',
      path,
      '2000',
      'normal',
      '16',
    ]);
    const acked = new Map<string, { i: number; revision: number }>();
    const lines = createInterface({ input: child.stdout });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    let count = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      let killed = false;
      // A writer that dies first (no build to run, say) fails the test with what it said.
      child.on('exit', (code, signal) => {
        if (!killed)
          reject(new Error(`the writer exited (${code ?? signal}) after ${count} acks: ${stderr}`));
      });
      lines.on('line', (line) => {
        if (line === 'ready') return;
        const [key, i, revision] = line.split(' ');
        acked.set(key as string, { i: Number(i), revision: Number(revision) });
        if (++count === 3_000) {
          killed = true;
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await exited;
    expect(child.signalCode).toBe('SIGKILL');
    expect(acked.size).toBe(16 * 7);
    await using app = await start('crash-grouped.db');
    const store = app.get(STATE_STORE);
    for (const [key, ack] of acked) {
      const entry = await store.getStateEntry<{ i: number; key: string; pad: string }>(key);
      expect(entry, key).not.toBeNull();
      expect(entry?.value.i, key).toBeGreaterThanOrEqual(ack.i);
      expect(entry?.revision, key).toBeGreaterThanOrEqual(ack.revision);
      expect(entry?.value.pad.length, key).toBe(2_000);
    }
  }, 60_000);
});
