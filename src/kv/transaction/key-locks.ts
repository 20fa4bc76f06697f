/** One transaction (over all its attempts) as it holds keys of this process. */
export interface LockOwner {
  /** Smaller is older: a retried transaction keeps its age, so it gets ahead. */
  readonly age: number;
  readonly keys: Set<string>;
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
  readonly #waiting = new Map<string, (() => void)[]>();
  /** Reads that had to wait for another transaction. */
  waits = 0;
  #live = 0;
  #blocked = 0;

  /** A transaction begins: see `end`. */
  owner(): LockOwner {
    this.#live++;
    return { age: ++this.#age, keys: new Set() };
  }

  /** The transaction of `owner` is over (committed or failed), its keys released. */
  end(owner: LockOwner): void {
    this.release(owner);
    this.#live--;
  }

  /** Transactions of this process under way and not waiting for a key. */
  get running(): number {
    return this.#live - this.#blocked;
  }

  /** Takes `keys` for `owner` (as far as the rules above allow); resolves once it may read them. */
  async acquire(
    owner: LockOwner,
    keys: readonly string[],
    maxWaitMs = MAX_LOCK_WAIT_MS,
  ): Promise<void> {
    const wanted = [...new Set(keys)].filter((k) => !owner.keys.has(k)).sort();
    if (wanted.length === 0) return;
    const until = performance.now() + maxWaitMs;
    if (owner.keys.size === 0) {
      for (;;) {
        const busy = wanted.find((k) => this.#held.has(k));
        if (busy === undefined) break;
        if (!(await this.#wait(busy, until))) return; // waited long enough: go on unlocked
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
        if (!(await this.#wait(k, until))) return;
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
      for (const wake of ws ?? []) wake();
    }
    owner.keys.clear();
  }

  #take(owner: LockOwner, key: string): void {
    this.#held.set(key, owner);
    owner.keys.add(key);
  }

  /** Waits until `key` is released; false once `until` passed. */
  async #wait(key: string, until: number): Promise<boolean> {
    const left = until - performance.now();
    if (left <= 0) return false;
    this.waits++;
    this.#blocked++;
    let timer: NodeJS.Timeout | undefined;
    const released = await new Promise<boolean>((resolve) => {
      const ws = this.#waiting.get(key) ?? [];
      ws.push(() => resolve(true));
      this.#waiting.set(key, ws);
      timer = setTimeout(() => resolve(false), left);
    });
    clearTimeout(timer);
    this.#blocked--;
    return released;
  }
}
