import type { HealthCheckResult } from '../lifecycle/service.js';
import type { StateChange, StateWatcher } from './types.js';

/** A stored value as a backend holds it: the JSON text. */
export interface RawEntry {
  readonly json: string;
  readonly revision: number;
  readonly created: Date;
}

/**
 * What a state backend does; the StateStoreService in front of it checks keys, options, schemas
 * and JSON the same way for every backend, so the semantics cannot drift apart.
 */
export interface StateBackend {
  readonly name: 'nats' | 'sqlite';
  /** The bucket whose key length limit applies (the same for both, so state can move). */
  readonly keyScope: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** `revision`: undefined (any), 0 (only if absent), n (only if the last change is n). */
  put(
    key: string,
    json: string,
    revision: number | undefined,
    ttlMs: number | undefined,
  ): Promise<number>;
  get(key: string): Promise<RawEntry | null>;
  /** `revision`: only if the key's last change is this one. */
  delete(key: string, revision: number | undefined): Promise<boolean>;
  /** Changes with the JSON text as their value: the initial state first, then updates. */
  watch(
    filter: string,
    onChange: (change: StateChange<string>) => Promise<void>,
    onInitialized: () => void,
  ): Promise<StateWatcher>;
  health(): Promise<HealthCheckResult>;
}
