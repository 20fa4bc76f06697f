import type { Logger } from 'pino';
import { checkOptionsObject, describeValue, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import { asNatskitError } from '../errors/thrown.js';
import { assertJsonSafe, type StandardSchemaV1, validate } from '../kv/codec.js';
import { validateFilter, validateKey, validateStoredKey } from '../kv/names.js';
import type { HealthCheckResult, Service } from '../lifecycle/service.js';
import type { RawEntry, StateBackend } from './backend.js';
import type {
  StateChange,
  StateDeleteOptions,
  StateEntry,
  StateReadOptions,
  StateSetOptions,
  StateStore,
  StateWatcher,
  StateWatchOptions,
} from './types.js';

const SET_KEYS = knownKeys<StateSetOptions<unknown>>({ revision: true, ttlMs: true, schema: true });
const READ_KEYS = knownKeys<StateReadOptions<unknown>>({ schema: true });
const DELETE_KEYS = knownKeys<StateDeleteOptions>({ revision: true });
const WATCH_KEYS = knownKeys<StateWatchOptions<unknown>>({ schema: true, onInitialized: true });

function checkRevision(revision: unknown): void {
  if (revision !== undefined && !(Number.isInteger(revision) && (revision as number) >= 0)) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `revision must be an integer >= 0, got ${describeValue(revision)}`,
      { details: { field: 'revision' } },
    );
  }
}

function checkTtl(ttlMs: unknown): void {
  if (ttlMs === undefined) return;
  if (!Number.isInteger(ttlMs) || (ttlMs as number) < 1_000) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `ttlMs must be an integer of at least 1000, got ${describeValue(ttlMs)}`,
      { details: { field: 'ttlMs' } },
    );
  }
}

/**
 * The state store the app injects (`STATE_STORE`): one front for every backend. Keys, options,
 * schemas and JSON are checked here, once, so a backend only stores text with revisions; the
 * front also owns the watches, which end when it stops.
 */
export class StateStoreService implements StateStore, Service {
  readonly #backend: StateBackend;
  readonly #log: Logger;
  readonly #watchers = new Set<StateWatcher>();
  #state: 'new' | 'running' | 'stopped' = 'new';

  constructor(backend: StateBackend, logger: Logger) {
    this.#backend = backend;
    this.#log = logger.child({ service: 'state', backend: backend.name });
  }

  get backend(): 'nats' | 'sqlite' {
    return this.#backend.name;
  }

  async start(signal: AbortSignal): Promise<void> {
    await this.#backend.start(signal);
    this.#state = 'running';
  }

  #assertOpen(what: string): void {
    if (this.#state !== 'running') {
      throw new NatskitError(
        'INVALID_STATE',
        `state store ${what}: the store is ${this.#state === 'new' ? 'not started' : 'stopped'}`,
      );
    }
  }

  async setState<T = unknown>(
    key: string,
    value: T,
    options: StateSetOptions<T> = {},
  ): Promise<number> {
    this.#assertOpen('setState');
    validateKey(key, this.#backend.keyScope);
    checkOptionsObject('setState options ', options, SET_KEYS);
    checkRevision(options.revision);
    checkTtl(options.ttlMs);
    // No schema, no await: the write path stays short (the SQLite store groups a turn's writes).
    const checked = options.schema
      ? await validate(options.schema, value, { key, direction: 'write' })
      : value;
    assertJsonSafe(checked);
    return await this.#backend.put(key, JSON.stringify(checked), options.revision, options.ttlMs);
  }

  async getState<T = unknown>(key: string, options?: StateReadOptions<T>): Promise<T | null> {
    return (await this.getStateEntry(key, options))?.value ?? null;
  }

  async getStateEntry<T = unknown>(
    key: string,
    options: StateReadOptions<T> = {},
  ): Promise<StateEntry<T> | null> {
    this.#assertOpen('getState');
    validateStoredKey(key, this.#backend.keyScope);
    checkOptionsObject('getState options ', options, READ_KEYS);
    const raw = await this.#backend.get(key);
    if (!raw) return null;
    return {
      key,
      value: await decode(key, raw, options.schema),
      revision: raw.revision,
      created: raw.created,
    };
  }

  async deleteState(key: string, options: StateDeleteOptions = {}): Promise<boolean> {
    this.#assertOpen('deleteState');
    validateStoredKey(key, this.#backend.keyScope);
    checkOptionsObject('deleteState options ', options, DELETE_KEYS);
    checkRevision(options.revision);
    return await this.#backend.delete(key, options.revision);
  }

  async watchState<T = unknown>(
    keyOrFilter: string,
    onChange: (change: StateChange<T>) => void | Promise<void>,
    options: StateWatchOptions<T> = {},
  ): Promise<StateWatcher> {
    this.#assertOpen('watchState');
    validateFilter(keyOrFilter, this.#backend.keyScope);
    if (typeof onChange !== 'function') {
      throw new NatskitError('INVALID_OPTIONS', 'watchState needs an onChange function');
    }
    checkOptionsObject('watchState options ', options, WATCH_KEYS);
    const deliver = async (raw: StateChange<string>): Promise<void> => {
      // A deleted key is no state: the initial state lists live keys only.
      if (raw.initial && raw.type !== 'put' && raw.type !== 'invalid') return;
      let change: StateChange<T>;
      if (raw.type === 'put') {
        try {
          const value = await decode(
            raw.key,
            { json: raw.value, revision: raw.revision, created: raw.created },
            options.schema,
          );
          change = { ...raw, value };
        } catch (err) {
          const { value: _, ...rest } = raw;
          // A schema may throw anything: `error` is always a natskit error.
          const error = asNatskitError(
            err,
            'VALIDATION_FAILED',
            `stored value of key ${raw.key} (revision ${raw.revision}) could not be validated: the schema threw`,
            { key: raw.key, revision: raw.revision, direction: 'read' },
          );
          change = { ...rest, type: 'invalid', error };
        }
      } else {
        change = raw;
      }
      try {
        await onChange(change);
      } catch (err) {
        this.#log.error(
          { err, key: change.key, revision: change.revision },
          'watchState callback threw; the watch goes on',
        );
      }
    };
    const watcher = await this.#backend.watch(
      keyOrFilter,
      deliver,
      options.onInitialized ?? (() => undefined),
    );
    this.#watchers.add(watcher);
    void watcher.done.finally(() => this.#watchers.delete(watcher)).catch(() => undefined);
    return watcher;
  }

  async health(): Promise<HealthCheckResult> {
    if (this.#state !== 'running')
      return { status: 'fail', output: `state store is ${this.#state}` };
    return await this.#backend.health();
  }

  /** Ends the watches, then the backend; later calls fail with `INVALID_STATE`. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    await Promise.allSettled([...this.#watchers].map((w) => w.stop()));
    await this.#backend.stop();
  }
}

/** The stored JSON as a value: `DECODE_FAILED` when it is not JSON, then the schema. */
async function decode<T>(
  key: string,
  raw: RawEntry,
  schema: StandardSchemaV1<unknown, T> | undefined,
): Promise<T> {
  let value: unknown;
  try {
    value = JSON.parse(raw.json);
  } catch (err) {
    throw new NatskitError(
      'DECODE_FAILED',
      `stored value of key ${key} (revision ${raw.revision}) is not JSON: ${(err as Error).message}`,
      { cause: err, details: { key, revision: raw.revision } },
    );
  }
  return schema
    ? await validate(schema, value, { key, revision: raw.revision, direction: 'read' })
    : (value as T);
}
