import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
import type { HealthCheckResult } from '../lifecycle/service.js';
import type { RawEntry, StateBackend } from './backend.js';
import { DEFAULT_STATE_BUCKET } from './nats-backend.js';
import { keyMatcher, literalPrefix, SqliteWatcher } from './sqlite-watch.js';
import { SqliteGroupWriter } from './sqlite-writer.js';
import type { SqliteStateOptions, StateChange, StateWatcher } from './types.js';

const SCHEMA_VERSION = 1;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS natskit_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS natskit_state (
  key TEXT PRIMARY KEY,
  revision INTEGER NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('PUT', 'DEL', 'PURGE')),
  value TEXT,
  created INTEGER NOT NULL,
  expires INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS natskit_state_expires ON natskit_state (expires) WHERE expires IS NOT NULL;
INSERT OR IGNORE INTO natskit_meta (name, value) VALUES ('schema', ${SCHEMA_VERSION}), ('revision', 0);
`;

type Statements = Record<
  'row' | 'head' | 'save' | 'upsert' | 'due' | 'soonest' | 'scan' | 'revision',
  StatementSync
>;

interface Row {
  key: string;
  revision: number;
  op: 'PUT' | 'DEL' | 'PURGE';
  value: string | null;
  created: number;
  expires: number | null;
}

/** SQLite's result codes natskit names (the primary code, the low byte of an extended one). */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

function storageError(what: string, err: unknown, path: string): NatskitError {
  const code = ((err as { errcode?: number }).errcode ?? 0) & 0xff;
  const locked = code === SQLITE_BUSY || code === SQLITE_LOCKED;
  return new NatskitError(
    'STORAGE_FAILED',
    locked
      ? `state file ${path} is in use by another process (the SQLite store is for one process)`
      : `state store ${what} failed: ${(err as Error).message}`,
    { cause: err, details: { path, sqliteCode: code } },
  );
}

function conflict(key: string, expected: number, current: number): NatskitError {
  return new NatskitError(
    'KV_REVISION_CONFLICT',
    expected === 0
      ? `state key ${key} exists (revision ${current})`
      : `state key ${key} is not at revision ${expected}`,
    { details: { key, expectedRevision: expected, currentRevision: current } },
  );
}

/**
 * State in one SQLite file through `node:sqlite`: no server. Each write is one transaction in a
 * write-ahead log, so a process killed mid-write leaves the last committed state; the file is
 * locked for this process alone (watchers see this process's writes). Revisions count every
 * write to the store, as a KV bucket's do; an expired value becomes a `PURGE` tombstone with a
 * revision of its own, which watchers receive.
 */
export class SqliteStateBackend implements StateBackend {
  readonly name = 'sqlite' as const;
  readonly keyScope = DEFAULT_STATE_BUCKET;
  readonly #o: SqliteStateOptions;
  readonly #log: Logger;
  readonly #maxValueBytes: number;
  readonly #watchers = new Set<SqliteWatcher>();
  #db: DatabaseSync | undefined;
  #st: Statements | undefined;
  #nextExpiry = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  /** The last revision given out, and the last one committed: the file is this process's alone. */
  #revision = 0;
  #savedRevision = 0;
  readonly #writer = new SqliteGroupWriter(
    () => {
      if (!this.#db) throw new NatskitError('INVALID_STATE', 'the SQLite state store is closed');
      return this.#db;
    },
    (what, err) => storageError(what, err, this.#o.path),
    { beforeCommit: () => this.#saveRevision(), settled: (ok) => this.#settleRevision(ok) },
  );

  constructor(options: SqliteStateOptions, logger: Logger) {
    this.#o = options;
    this.#log = logger.child({ service: 'state', backend: 'sqlite' });
    this.#maxValueBytes = options.maxValueBytes ?? 1_048_576;
  }

  async start(): Promise<void> {
    let sqlite: typeof import('node:sqlite');
    try {
      sqlite = await import('node:sqlite');
    } catch (err) {
      throw new NatskitError(
        'CAPABILITY_MISSING',
        `the SQLite state store needs node:sqlite (Node >= 22.13, or --experimental-sqlite); this is Node ${process.versions.node}`,
        { cause: err },
      );
    }
    const memory = this.#o.path === ':memory:';
    const path = memory ? this.#o.path : resolve(this.#o.path);
    if (!memory) await mkdir(dirname(path), { recursive: true });
    let db: DatabaseSync;
    try {
      db = new sqlite.DatabaseSync(path);
    } catch (err) {
      throw storageError('open', err, path);
    }
    try {
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      if (!memory) db.exec('PRAGMA journal_mode = WAL');
      db.exec(`PRAGMA synchronous = ${this.#o.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      db.exec('BEGIN IMMEDIATE'); // takes the lock now: a second process fails here, not later
      db.exec(SCHEMA);
      db.exec('COMMIT');
      const version = db.prepare("SELECT value FROM natskit_meta WHERE name = 'schema'").get();
      if (version?.value !== SCHEMA_VERSION) {
        throw new NatskitError(
          'STORAGE_FAILED',
          `state file ${path} has schema version ${String(version?.value)}; this natskit reads ${SCHEMA_VERSION}`,
          { details: { path } },
        );
      }
    } catch (err) {
      db.close();
      throw NatskitError.is(err) ? err : storageError('open', err, path);
    }
    this.#db = db;
    this.#st = {
      row: db.prepare('SELECT * FROM natskit_state WHERE key = ?'),
      head: db.prepare('SELECT revision, op FROM natskit_state WHERE key = ?'),
      save: db.prepare("UPDATE natskit_meta SET value = ? WHERE name = 'revision'"),
      upsert: db.prepare(
        `INSERT INTO natskit_state (key, revision, op, value, created, expires)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, op = excluded.op,
           value = excluded.value, created = excluded.created, expires = excluded.expires`,
      ),
      due: db.prepare(
        "SELECT key FROM natskit_state WHERE op = 'PUT' AND expires IS NOT NULL AND expires <= ?",
      ),
      soonest: db.prepare(
        "SELECT MIN(expires) AS at FROM natskit_state WHERE op = 'PUT' AND expires IS NOT NULL",
      ),
      scan: db.prepare(
        "SELECT * FROM natskit_state WHERE op = 'PUT' AND key >= ? AND key < ? ORDER BY revision",
      ),
      revision: db.prepare("SELECT value FROM natskit_meta WHERE name = 'revision'"),
    };
    this.#revision = Number((this.#st.revision.get() as { value: number }).value);
    this.#savedRevision = this.#revision;
    this.#nextExpiry = 0; // whatever expired while the store was closed goes now
    this.#sweep(Date.now());
  }

  get #s(): Statements {
    if (!this.#st) throw new NatskitError('INVALID_STATE', 'the SQLite state store is closed');
    return this.#st;
  }

  /** Runs `fn` in one write transaction; rolled back if it throws. */
  #tx<R>(what: string, fn: () => R): R {
    const db = this.#db;
    if (!db) throw new NatskitError('INVALID_STATE', 'the SQLite state store is closed');
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw storageError(what, err, this.#o.path);
    }
    try {
      const result = fn();
      this.#saveRevision();
      db.exec('COMMIT');
      this.#settleRevision(true);
      return result;
    } catch (err) {
      try {
        if (db.isTransaction) db.exec('ROLLBACK');
      } catch {
        // nothing more to undo with: the next BEGIN fails and says so
      }
      this.#settleRevision(false);
      throw NatskitError.is(err) ? err : storageError(what, err, this.#o.path);
    }
  }

  /** Stores `row` under the next revision; the counter moves only once the row is written. */
  #write(key: string, op: Row['op'], json: string | null, now: number, expires: number | null) {
    const next = this.#revision + 1;
    this.#s.upsert.run(key, next, op, json, now, expires);
    this.#revision = next;
    return next;
  }

  /** The counter goes to the file once per transaction, just before its COMMIT. */
  #saveRevision(): void {
    if (this.#revision !== this.#savedRevision) this.#s.save.run(this.#revision);
  }

  /**
   * After a rolled-back transaction the numbers it used are free again (no caller or watcher was
   * given them); the file's counter is read back rather than trusted, so a number it stored is
   * never given out twice and revisions never run backwards.
   */
  #settleRevision(committed: boolean): void {
    if (committed) {
      this.#savedRevision = this.#revision;
      return;
    }
    try {
      if (!this.#db?.isTransaction) {
        const { value } = this.#s.revision.get() as { value: number };
        this.#savedRevision = Math.max(this.#savedRevision, Number(value));
      }
    } catch (err) {
      this.#log.error({ err }, 'reading the stored revision back failed');
    }
    this.#revision = this.#savedRevision;
  }

  #emit(change: StateChange<string>): void {
    for (const w of this.#watchers) if (w.matches(change.key)) w.push(change);
  }

  /** Turns every value expired by `now` into a PURGE tombstone, and arms the timer for the next. */
  #sweep(now: number): void {
    if (now < this.#nextExpiry) return;
    const purged = this.#tx('expire', () => {
      const out: StateChange<string>[] = [];
      for (const { key } of this.#s.due.all(now) as { key: string }[]) {
        const revision = this.#write(key, 'PURGE', null, now, null);
        out.push({ type: 'purge', key, revision, created: new Date(now), initial: false });
      }
      return out;
    });
    const at = (this.#s.soonest.get() as { at: number | null }).at;
    this.#nextExpiry = at ?? Number.POSITIVE_INFINITY;
    this.#arm();
    for (const c of purged) this.#emit(c);
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!Number.isFinite(this.#nextExpiry)) return;
    const delay = Math.min(2_147_483_647, Math.max(0, this.#nextExpiry - Date.now()));
    this.#timer = setTimeout(() => {
      if (!this.#db) return;
      // Early by the wall clock (a timer may fire a millisecond before Date.now() says it is
      // due, or the clock was stepped back): wait again rather than stop expiring.
      if (Date.now() < this.#nextExpiry) return this.#arm();
      try {
        this.#sweep(Date.now());
      } catch (err) {
        // Reads already hide expired values; the next write or watch sweeps again.
        this.#log.error({ err }, 'expiring state values failed');
      }
    }, delay);
    this.#timer.unref();
  }

  async put(
    key: string,
    json: string,
    revision: number | undefined,
    ttlMs: number | undefined,
  ): Promise<number> {
    const bytes = Buffer.byteLength(json);
    if (bytes > this.#maxValueBytes) {
      throw new NatskitError(
        'VALUE_TOO_LARGE',
        `value for state key ${key} is ${bytes} bytes; the store takes at most ${this.#maxValueBytes}`,
        { details: { key, bytes, maxValueBytes: this.#maxValueBytes } },
      );
    }
    const now = Date.now();
    this.#sweep(now);
    const expires = ttlMs === undefined ? null : now + ttlMs;
    return await this.#writer.run(
      () => {
        const row = this.#s.head.get(key) as Pick<Row, 'revision' | 'op'> | undefined;
        const current = row?.revision ?? 0;
        if (revision !== undefined && (revision === 0 ? row?.op === 'PUT' : current !== revision)) {
          throw conflict(key, revision, current);
        }
        return this.#write(key, 'PUT', json, now, expires);
      },
      (written) => {
        if (expires !== null && expires < this.#nextExpiry) {
          this.#nextExpiry = expires;
          this.#arm();
        }
        if (this.#watchers.size === 0) return;
        this.#emit({
          type: 'put',
          key,
          value: json,
          revision: written,
          created: new Date(now),
          initial: false,
        });
      },
    );
  }

  async get(key: string): Promise<RawEntry | null> {
    const row = this.#s.row.get(key) as Row | undefined;
    if (row?.op !== 'PUT' || (row.expires !== null && row.expires <= Date.now())) return null;
    return { json: row.value ?? 'null', revision: row.revision, created: new Date(row.created) };
  }

  async delete(key: string, revision: number | undefined): Promise<boolean> {
    const now = Date.now();
    this.#sweep(now);
    const written = await this.#writer.run(
      () => {
        const row = this.#s.head.get(key) as Pick<Row, 'revision' | 'op'> | undefined;
        const current = row?.revision ?? 0;
        if (revision !== undefined && current !== revision) throw conflict(key, revision, current);
        if (row?.op !== 'PUT') return undefined; // already absent: nothing to write
        return this.#write(key, 'DEL', null, now, null);
      },
      (done) => {
        if (done === undefined || this.#watchers.size === 0) return;
        this.#emit({ type: 'delete', key, revision: done, created: new Date(now), initial: false });
      },
    );
    return written !== undefined;
  }

  async watch(
    filter: string,
    onChange: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
  ): Promise<StateWatcher> {
    this.#sweep(Date.now());
    // Read and registered in one synchronous step: no write falls between them.
    const prefix = literalPrefix(filter);
    const match = keyMatcher(filter);
    const rows = this.#s.scan.all(prefix, `${prefix}\uffff`) as unknown as Row[];
    const initial = rows
      .filter((r) => match(r.key) && (r.expires === null || r.expires > Date.now()))
      .map(
        (r): StateChange<string> => ({
          type: 'put',
          key: r.key,
          value: r.value ?? 'null',
          revision: r.revision,
          created: new Date(r.created),
          initial: true,
        }),
      );
    const watcher: SqliteWatcher = new SqliteWatcher(
      filter,
      initial,
      onChange,
      onInitialized,
      () => this.#watchers.delete(watcher),
      this.#log,
    );
    this.#watchers.add(watcher);
    return watcher;
  }

  async health(): Promise<HealthCheckResult> {
    try {
      const { value } = this.#s.revision.get() as { value: number };
      return { status: 'pass', observedValue: value, observedUnit: 'revision' };
    } catch (err) {
      return { status: 'fail', output: (err as Error).message };
    }
  }

  async stop(): Promise<void> {
    this.#writer.flush(); // writes already asked for are committed, not dropped
    await Promise.allSettled([...this.#watchers].map((w) => w.stop()));
    clearTimeout(this.#timer);
    this.#st = undefined;
    const db = this.#db;
    this.#db = undefined;
    db?.close();
  }
}
