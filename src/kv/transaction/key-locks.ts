/** One transaction (over all its attempts) as it holds keys of this process. */
export interface LockOwner {
  /** Smaller is older: a retried transaction keeps its age, so it gets ahead. */
  readonly age: number;
  readonly keys: Set<string>;
}

/** A read waiting for a key: woken with true when the key is released, false when it gives up. */
interface Waiter {
  readonly owner: LockOwner;
  readonly done: (released: boolean) => void;
}

/** How long a read waits for another transaction of this process before it goes on unlocked. */
export const MAX_LOCK_WAIT_MS = 1_000;

/**
 * Keys that transactions of this process are reading and about to commit. Transactions are
 * optimistic across processes; within one, racing on a key is a certain conflict (both read
 * revision n, one commits n+1, the other is refused and runs again), so a read waits for the
 * transaction that holds the key to commit, then reads what it wrote.
 *
 * No deadlock: a transaction that holds no key waits until every key it asks for is free and
 * takes them at once (nobody waits for it meanwhile); one that holds keys waits only for a
 * younger holder, and goes on without the lock when the holder is older (the commit still
 * checks every revision: the lock is an optimisation, never what makes a commit correct). Waits
 * only ever point from older to younger holders, so they form no cycle. A wait is also bounded
 * by `MAX_LOCK_WAIT_MS` (a transaction function that awaits another transaction of the bucket
 * must not hang).
 */
export class KeyLocks {
  #age = 0;
  readonly #held = new Map<string, LockOwner>();
  readonly #waiting = new Map<string, Waiter[]>();
  /**
   * Transactions that ended. A read they started can still be waiting when they end (a function
   * that threw while a `tx.get` it did not await waited for a key): it must take nothing then,
   * or nobody would ever release the key.
   */
  readonly #ended = new WeakSet<LockOwner>();
  /** Transactions whose commit was acknowledged: they only have to return, they run no more. */
  readonly #answered = new Set<LockOwner>();
  /** Owners with reads waiting now, so `end` finds them without scanning every key. */
  readonly #waitingOwners = new Map<LockOwner, number>();
  /** Reads that had to wait for another transaction. */
  waits = 0;
  #live = 0;
  #blocked = 0;

  /** A transaction begins: see `end`. */
  owner(): LockOwner {
    this.#live++;
    return { age: ++this.#age, keys: new Set() };
  }

  /**
   * The transaction of `owner` is over (committed or failed), its keys released. Reads of it
   * still waiting stop waiting now and take no key, now or later.
   */
  end(owner: LockOwner): void {
    if (this.#ended.has(owner)) return;
    this.#ended.add(owner);
    this.#answered.delete(owner);
    this.release(owner);
    if (this.#waitingOwners.has(owner)) {
      for (const ws of [...this.#waiting.values()]) {
        for (const w of ws.filter((x) => x.owner === owner)) w.done(false);
      }
    }
    this.#live--;
  }

  /** Keys held now (for tests: none once every transaction ended). */
  get held(): number {
    return this.#held.size;
  }

  /** Reads waiting for a key now (for tests: none once every transaction ended). */
  get waiting(): number {
    let n = 0;
    for (const ws of this.#waiting.values()) n += ws.length;
    return n;
  }

  /**
   * The commit of `owner` was acknowledged: until it ends it no longer counts as running (a
   * commit that queued behind its batch must not be held for a transaction that is done).
   */
  answered(owner: LockOwner): void {
    if (!this.#ended.has(owner)) this.#answered.add(owner);
  }

  /** Transactions of this process under way, not waiting for a key, their commit not answered. */
  get running(): number {
    return this.#live - this.#blocked - this.#answered.size;
  }

  /** Takes `keys` for `owner` (as far as the rules above allow); resolves once it may read them. */
  async acquire(
    owner: LockOwner,
    keys: readonly string[],
    maxWaitMs = MAX_LOCK_WAIT_MS,
  ): Promise<void> {
    const wanted = [...new Set(keys)].filter((k) => !owner.keys.has(k)).sort();
    if (wanted.length === 0 || this.#ended.has(owner)) return;
    const until = performance.now() + maxWaitMs;
    if (owner.keys.size === 0) {
      for (;;) {
        const busy = wanted.find((k) => this.#held.has(k));
        if (busy === undefined) break;
        // Waited long enough (go on unlocked), or the transaction ended meanwhile.
        if (!(await this.#wait(owner, busy, until))) return;
      }
      for (const k of wanted) this.#take(owner, k);
      return;
    }
    for (const k of wanted) {
      for (;;) {
        const holder = this.#held.get(k);
        if (holder === undefined) {
          this.#take(owner, k);
          break;
        }
        if (holder.age < owner.age) break; // an older holder: never wait for it
        if (!(await this.#wait(owner, k, until))) return;
      }
    }
  }

  /** Frees every key of `owner` and wakes who waits for them. */
  release(owner: LockOwner): void {
    for (const k of owner.keys) {
      if (this.#held.get(k) !== owner) continue;
      this.#held.delete(k);
      const ws = this.#waiting.get(k);
      this.#waiting.delete(k);
      for (const w of ws ?? []) w.done(true);
    }
    owner.keys.clear();
  }

  #take(owner: LockOwner, key: string): void {
    if (this.#ended.has(owner)) return; // woken after it ended: nobody would release the key
    this.#held.set(key, owner);
    owner.keys.add(key);
  }

  /**
   * Waits until `key` is released; false once `until` passed or `owner` ended. Whatever ends the
   * wait removes it from the table at once: a read that gave up leaves nothing behind.
   */
  #wait(owner: LockOwner, key: string, until: number): Promise<boolean> {
    const left = until - performance.now();
    if (left <= 0 || this.#ended.has(owner)) return Promise.resolve(false);
    this.waits++;
    this.#blocked++;
    this.#waitingOwners.set(owner, (this.#waitingOwners.get(owner) ?? 0) + 1);
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let over = false;
      const w: Waiter = {
        owner,
        done: (released) => {
          if (over) return;
          over = true;
          clearTimeout(timer);
          this.#blocked--;
          const n = (this.#waitingOwners.get(owner) ?? 1) - 1;
          if (n > 0) this.#waitingOwners.set(owner, n);
          else this.#waitingOwners.delete(owner);
          // On release the key's list is gone already; otherwise this waiter leaves it alone.
          const ws = this.#waiting.get(key);
          const at = ws ? ws.indexOf(w) : -1;
          if (ws && at >= 0) {
            ws.splice(at, 1);
            if (ws.length === 0) this.#waiting.delete(key);
          }
          resolve(released);
        },
      };
      const ws = this.#waiting.get(key) ?? [];
      ws.push(w);
      this.#waiting.set(key, ws);
      timer = setTimeout(() => w.done(false), left);
    });
  }
}
