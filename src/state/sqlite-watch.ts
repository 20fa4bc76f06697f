import type { Logger } from 'pino';
import type { StateChange, StateWatcher } from './types.js';

/** Whether `key` matches a NATS-style filter: `*` is one token, a final `>` one or more. */
export function keyMatcher(filter: string): (key: string) => boolean {
  const f = filter.split('.');
  if (!f.includes('*') && !f.includes('>')) return (key) => key === filter;
  if (!f.includes('*') && f.indexOf('>') === f.length - 1) {
    // `a.b.>`, the common case: a prefix test, no split per key (keys have no empty token).
    const prefix = filter.slice(0, -1);
    return (key) => key.length > prefix.length && key.startsWith(prefix);
  }
  return (key) => {
    const k = key.split('.');
    for (let i = 0; i < f.length; i++) {
      const t = f[i];
      if (t === '>') return k.length > i;
      if (i >= k.length || (t !== '*' && t !== k[i])) return false;
    }
    return k.length === f.length;
  };
}

/** The literal part of a filter before its first wildcard (`''` for `>`). */
export function literalPrefix(filter: string): string {
  const f = filter.split('.');
  const first = f.findIndex((t) => t === '*' || t === '>');
  return first === -1
    ? filter
    : f
        .slice(0, first)
        .map((t) => `${t}.`)
        .join('');
}

/** Changes waiting for one watcher beyond this are folded to the last change of each key. */
const MAX_BACKLOG = 10_000;

/**
 * One watch of the SQLite store: its initial state was read in the same turn of the event loop
 * as it was registered for updates, so nothing falls between them. Changes are delivered in
 * order, one at a time; a watcher that falls more than 10,000 changes behind gets the last change
 * of each key instead of every one (as a KV watch over a bucket with a short history would).
 */
export class SqliteWatcher implements StateWatcher {
  readonly matches: (key: string) => boolean;
  readonly done: Promise<void>;
  #lastRevision = 0;
  #queue: StateChange<string>[] = [];
  #wake: (() => void) | undefined;
  #stopped = false;
  #folded = false;
  readonly #log: Logger;

  constructor(
    filter: string,
    initial: StateChange<string>[],
    deliver: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
    onEnd: () => void,
    log: Logger,
  ) {
    this.matches = keyMatcher(filter);
    this.#log = log;
    // From the next microtask: the caller has the watcher before its first change.
    this.done = Promise.resolve()
      .then(() => this.#run(initial, deliver, onInitialized))
      .finally(onEnd);
  }

  get lastRevision(): number {
    return this.#lastRevision;
  }

  /** A committed change of a matching key. */
  push(change: StateChange<string>): void {
    if (this.#stopped) return;
    this.#queue.push(change);
    if (this.#queue.length > MAX_BACKLOG) this.#fold();
    this.#wake?.();
  }

  #fold(): void {
    const last = new Map<string, StateChange<string>>();
    for (const c of this.#queue) last.set(c.key, c);
    this.#queue = [...last.values()].sort((a, b) => a.revision - b.revision);
    if (!this.#folded) {
      this.#folded = true;
      this.#log.warn(
        { backlog: MAX_BACKLOG, keys: this.#queue.length },
        'state watcher fell behind; it gets the last change of each key from now on',
      );
    }
  }

  async #run(
    initial: StateChange<string>[],
    deliver: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
  ): Promise<void> {
    for (const c of initial) {
      if (this.#stopped) return;
      this.#lastRevision = c.revision;
      await deliver(c);
    }
    if (this.#stopped) return;
    try {
      onInitialized();
    } catch (err) {
      this.#log.error({ err }, 'onInitialized threw; the watch goes on');
    }
    while (!this.#stopped) {
      const c = this.#queue.shift();
      if (!c) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      this.#lastRevision = c.revision;
      await deliver(c);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#queue = [];
    this.#wake?.();
    await this.done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
