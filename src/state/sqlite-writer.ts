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
 * fails and leaves the transaction open (a revision conflict, an SQLite error undone with its
 * statement) is rolled back alone and rejects its caller only; the others see the writes before
 * them, as sequential writes would. An error after which SQLite rolled the whole transaction back
 * (SQLITE_FULL, IOERR, NOMEM can) has undone the writes before it too: every write of the group
 * is rejected with that error and the writes after it are not run, so none of the group is
 * stored. Every caller resolves only after the COMMIT succeeded, so what is acknowledged is on
 * disk as the `synchronous` option says; a failed COMMIT (or BEGIN) rejects every write of the
 * group, and none of it is stored.
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
    const outcomes: Outcome[] = [];
    let fatal: { what: string; err: unknown } | undefined;
    if (group.length === 1) {
      // Alone in its group: the transaction is its savepoint.
      try {
        outcomes.push({ ok: true, value: (group[0] as Pending).op() });
      } catch (err) {
        fatal = { what: 'write', err };
      }
    } else {
      for (const p of group) {
        const o = this.#member(p, c, db);
        if ('fatal' in o) {
          fatal = { what: 'write', err: o.fatal };
          break; // a SAVEPOINT now would open a transaction of its own, committed by its RELEASE
        }
        outcomes.push(o);
      }
    }
    if (!fatal) {
      try {
        this.hooks.beforeCommit();
        c.commit.run();
      } catch (err) {
        fatal = { what: 'commit', err };
      }
    }
    if (fatal) {
      this.#abandon(db, group, fatal.what, fatal.err);
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

  /**
   * Runs one write of a group in a savepoint of its own: a failed one is undone alone. Returns
   * `fatal` when the transaction cannot go on: SQLite rolled it back (the writes before are gone
   * too), or the savepoint could not be undone (its half-done write would be committed).
   */
  #member(p: Pending, c: Control, db: DatabaseSync): Outcome | { fatal: unknown } {
    try {
      c.savepoint.run();
    } catch (err) {
      return { fatal: err };
    }
    try {
      const value = p.op();
      c.release.run();
      return { ok: true, value };
    } catch (err) {
      if (!db.isTransaction) return { fatal: err };
      try {
        c.undo.run();
        c.release.run();
      } catch {
        return { fatal: err };
      }
      return { ok: false, err: NatskitError.is(err) ? err : this.failure('write', err) };
    }
  }

  /** Rolls the group's transaction back and rejects every write of it: none of them is stored. */
  #abandon(db: DatabaseSync, group: Pending[], what: string, err: unknown): void {
    try {
      if (db.isTransaction) db.exec('ROLLBACK');
    } catch {
      // nothing more to undo with: the next BEGIN fails and says so
    }
    this.hooks.settled(false);
    const e = group.length === 1 && NatskitError.is(err) ? err : this.failure(what, err);
    for (const p of group) p.reject(e);
  }
}
