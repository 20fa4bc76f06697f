/** What a health check reports, after the IETF health check draft. */
export type HealthStatus = 'pass' | 'warn' | 'fail';

/** One health check's result. */
export interface HealthCheckResult {
  readonly status: HealthStatus;
  /** Why, when not `pass`. */
  readonly output?: string;
  /** A measured value, e.g. the RTT. */
  readonly observedValue?: unknown;
  /** The unit of `observedValue`, e.g. `ms`. */
  readonly observedUnit?: string;
}
