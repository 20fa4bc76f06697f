import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { NatskitError } from '../errors/natskit-error.js';

/** One write waiting for its group: the work, what to do once committed, and its caller. */
interface Pending {
  readonly op: () => unknown;
  readonly committed: ((result: unknown) => void) | undefined;
  readonly resolve: (result: unknown) => void;
  readonly reject: (err: unknown) => void;
}

/** The transaction control statements, prepared once per database: `exec` parses each time. */
type Control = Record<'begin' | 'commit' | 'savepoint' | 'release' | 'undo', StatementSync>;
const controls = new WeakMap<DatabaseSync, Control>();

function control(db: DatabaseSync): Control {
  let c = controls.get(db);
  if (!c) {
    c = {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      savepoint: db.prepare('SAVEPOINT w'),
      release: db.prepare('RELEASE w'),
      undo: db.prepare('ROLLBACK TO w'),
    };
    controls.set(db, c);
  }
  return c;
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

/** What the store does around each transaction of the writer. */
export interface WriterHooks {
  /** Runs inside the transaction, after its writes, before COMMIT (a throw fails the group). */
  readonly beforeCommit: () => void;
  /** The transaction committed (`true`) or was rolled back (`false`). */
  readonly settled: (committed: boolean) => void;
}

/** A group's writes beyond this many are committed in the next group: keeps a commit short. */
const MAX_GROUP = 1_000;

/**
 * Group commit for the SQLite store: the writes asked for in one turn of the event loop run in
 * one transaction, committed once (one WAL append, one fsync with `synchronous: 'full'`) at the
 * end of the turn. Each write runs inside a savepoint of its own, in the order asked: a write that
 * fails (a revision conflict, an SQLite error) is rolled back alone and rejects its caller only;
 * the others see the writes before them, as sequential writes would. Every caller resolves only
 * after the COMMIT succeeded, so what is acknowledged is on disk as the `synchronous` option
 * says; a failed COMMIT (or BEGIN) rejects every write of the group, and none of it is stored.
 */
export class SqliteGroupWriter {
  #queue: Pending[] = [];
  #scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly db: () => DatabaseSync,
    private readonly failure: (what: string, err: unknown) => NatskitError,
    private readonly hooks: WriterHooks,
  ) {}

  /**
   * Queues `op` for this turn's transaction; resolves with its result once committed.
   * `committed` runs right after the COMMIT, in the order the writes were asked (before any
   * caller resumes): where a write's effects are announced (watchers, timers).
   */
  run<R>(op: () => R, committed?: (result: R) => void): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({
        op,
        committed: committed as ((result: unknown) => void) | undefined,
        resolve: resolve as (result: unknown) => void,
        reject,
      });
      this.#scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Commits what is queued now (also called on stop, so no write is left waiting). */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    while (this.#queue.length > 0) this.#commit(this.#queue.splice(0, MAX_GROUP));
  }

  #commit(group: Pending[]): void {
    let db: DatabaseSync;
    let c: Control;
    try {
      db = this.db();
      c = control(db);
      c.begin.run();
    } catch (err) {
      const e = NatskitError.is(err) ? err : this.failure('write', err);
      for (const p of group) p.reject(e);
      return;
    }
    let outcomes: Outcome[];
    if (group.length === 1) {
      // Alone in its group: the transaction is its savepoint.
      const p = group[0] as Pending;
      try {
        outcomes = [{ ok: true, value: p.op() }];
      } catch (err) {
        try {
          db.exec('ROLLBACK');
        } catch {
          // already rolled back by SQLite
        }
        this.hooks.settled(false);
        p.reject(NatskitError.is(err) ? err : this.failure('write', err));
        return;
      }
    } else {
      outcomes = group.map((p) => this.#member(p, c));
    }
    try {
      this.hooks.beforeCommit();
      c.commit.run();
    } catch (err) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // a failed COMMIT may have rolled back already
      }
      this.hooks.settled(false);
      const e = this.failure('commit', err);
      for (const p of group) p.reject(e);
      return;
    }
    this.hooks.settled(true);
    group.forEach((p, i) => {
      const o = outcomes[i];
      if (o?.ok) {
        p.committed?.(o.value);
        p.resolve(o.value);
      } else {
        p.reject(o?.err);
      }
    });
  }

  /** Runs one write of a group in a savepoint of its own: a failed one is undone alone. */
  #member(p: Pending, c: Control): Outcome {
    try {
      c.savepoint.run();
      const value = p.op();
      c.release.run();
      return { ok: true, value };
    } catch (err) {
      try {
        c.undo.run();
        c.release.run();
      } catch {
        // SQLite may have rolled the whole transaction back (e.g. SQLITE_FULL): COMMIT says so
      }
      return { ok: false, err: NatskitError.is(err) ? err : this.failure('write', err) };
    }
  }
}
