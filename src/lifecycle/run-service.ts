import { performance } from 'node:perf_hooks';
import type { Container } from 'inversify';
import type { Logger } from 'pino';
import { NatskitError, supersede } from '../errors/natskit-error.js';
import { describeThrown } from '../errors/thrown.js';
import { TIMED_OUT, withDeadline } from '../timing/deadline.js';
import type { GraphNode } from './graph.js';
import type { Service } from './service.js';

/** A service whose start completed. */
export interface Started {
  readonly node: GraphNode;
  readonly instance: Service;
}

/** What starting a service needs from the manager. */
export interface StartContext {
  readonly container: Container;
  readonly logger: Logger;
  /** The manager's default deadline of a start. */
  readonly startTimeoutMs: number;
  /** Records a service that started (it is stopped, in reverse, from then on). */
  started(s: Started): void;
}

// A hook can throw anything: `null`, an object without `message`, one whose getters throw.
const message = describeThrown;

/**
 * How long a timed-out start may take to settle once its signal is aborted, so that the reason
 * it gives (the last connect error, say) becomes the timeout's cause. A start that honours its
 * signal rejects within milliseconds; one that ignores it only delays the error this long.
 */
const ABORT_SETTLE_MS = 200;

/** The error a timed-out start rejected with once aborted, unless it only echoes the abort. */
async function reasonAfterAbort(pending: Promise<unknown>, aborted: unknown): Promise<unknown> {
  const settled = await withDeadline(
    pending.then(
      () => undefined,
      (err: unknown) => err ?? undefined,
    ),
    ABORT_SETTLE_MS,
  );
  if (settled === TIMED_OUT || settled === aborted) return undefined;
  if (settled instanceof Error && settled.name === 'AbortError') return undefined;
  return settled;
}

/**
 * Creates and starts one service within its deadline. Its signal aborts when the deadline passes
 * or `levelSignal` aborts (a sibling failed, the boot was abandoned).
 *
 * @throws NatskitError `SERVICE_START_TIMEOUT`, the code of a natskit error the service threw
 * (`AUTH_FAILED`...), or `SERVICE_START_FAILED`; the service is named either way.
 */
export async function startService(
  node: GraphNode,
  levelSignal: AbortSignal,
  ctx: StartContext,
): Promise<void> {
  const service = node.name;
  const timeoutMs = node.registration.startTimeoutMs ?? ctx.startTimeoutMs;
  // Creating the instance is part of its start (a service without start() is started then).
  const t0 = performance.now();
  let instance: Service;
  try {
    instance = ctx.container.get(node.registration.token) as Service;
  } catch (err) {
    const what = `${service} could not be created: ${message(err)}`;
    // A natskit error keeps its code (DEPENDENCY_MISSING from a factory's ctx.get...).
    if (NatskitError.is(err))
      throw supersede(err, err.code, what, {
        service,
        ...(err.details ? { details: err.details } : {}),
      });
    throw new NatskitError('SERVICE_START_FAILED', what, { cause: err, service });
  }
  if (typeof instance?.start !== 'function') {
    ctx.started({ node, instance });
    ctx.logger.info({ service, ms: Math.round(performance.now() - t0) }, 'service started');
    return;
  }
  const ac = new AbortController();
  const onLevelAbort = () => ac.abort(levelSignal.reason);
  levelSignal.addEventListener('abort', onLevelAbort, { once: true });
  if (levelSignal.aborted) onLevelAbort();
  const pending = Promise.resolve().then(() => instance.start?.(ac.signal));
  try {
    const outcome = await withDeadline(pending, timeoutMs);
    if (outcome === TIMED_OUT) {
      const what = `${service} did not start within ${timeoutMs} ms`;
      const aborted = new NatskitError('SERVICE_START_TIMEOUT', what, {
        service,
        details: { timeoutMs },
      });
      ac.abort(aborted);
      // A start that ignores its signal and finishes late is stopped then, not leaked.
      pending.then(
        () => stopLate(node, instance, ctx.logger),
        () => undefined,
      );
      // Why it did not start (no server answered, say) is what the user needs to read.
      const reason = await reasonAfterAbort(pending, aborted);
      if (reason === undefined) throw aborted;
      throw new NatskitError('SERVICE_START_TIMEOUT', `${what}: ${message(reason)}`, {
        service,
        cause: NatskitError.is(reason) && reason.cause !== undefined ? reason.cause : reason,
        details: { timeoutMs, ...(NatskitError.is(reason) ? { reason: reason.code } : {}) },
      });
    }
    ctx.started({ node, instance });
    ctx.logger.info({ service, ms: Math.round(performance.now() - t0) }, 'service started');
  } catch (err) {
    if (NatskitError.is(err, 'SERVICE_START_TIMEOUT') && err.service === service) throw err;
    // Aborted because a sibling failed (or the boot was abandoned): not this service's failure,
    // and not to be reported under its name.
    if (levelSignal.aborted && err === levelSignal.reason) throw err;
    // A natskit error keeps its code (AUTH_FAILED, CAPABILITY_MISSING...), so callers can
    // branch on it; anything else is SERVICE_START_FAILED. Either way the service is named.
    const what = `${service} failed to start: ${message(err)}`;
    if (NatskitError.is(err))
      throw supersede(err, err.code, what, {
        service,
        ...(err.details ? { details: err.details } : {}),
      });
    throw new NatskitError('SERVICE_START_FAILED', what, { cause: err, service });
  } finally {
    levelSignal.removeEventListener('abort', onLevelAbort);
  }
}

function stopLate(node: GraphNode, instance: Service, logger: Logger): void {
  logger.warn({ service: node.name }, 'service finished starting after its deadline; stopping it');
  Promise.resolve()
    .then(() => instance.stop?.())
    .catch((err: unknown) => logger.error({ err, service: node.name }, 'late stop failed'));
}

/**
 * Stops one service within `timeoutMs`.
 * @throws NatskitError `SERVICE_STOP_TIMEOUT` (`details.byBudget` when the shutdown budget was
 * what ran out), or `SERVICE_STOP_FAILED` with what the stop threw as `cause`.
 */
export async function stopService(
  s: Started,
  timeoutMs: number,
  byBudget: boolean,
  why: string,
  logger: Logger,
): Promise<void> {
  const service = s.node.name;
  if (typeof s.instance?.stop !== 'function') {
    logger.info({ service, ms: 0, why }, 'service stopped');
    return;
  }
  const t0 = performance.now();
  const pending = Promise.resolve().then(() => s.instance.stop?.());
  try {
    const outcome = await withDeadline(pending, timeoutMs);
    if (outcome === TIMED_OUT) {
      pending.catch((err: unknown) =>
        logger.error({ err, service }, 'stop failed after its deadline'),
      );
      throw new NatskitError(
        'SERVICE_STOP_TIMEOUT',
        `${service} did not stop within ${timeoutMs} ms (${byBudget ? 'the shutdown budget ran out' : 'its stopTimeoutMs'})`,
        { service, details: { timeoutMs, byBudget } },
      );
    }
    logger.info({ service, ms: Math.round(performance.now() - t0), why }, 'service stopped');
  } catch (err) {
    if (NatskitError.is(err, 'SERVICE_STOP_TIMEOUT')) throw err;
    throw new NatskitError('SERVICE_STOP_FAILED', `${service} failed to stop: ${message(err)}`, {
      cause: err,
      service,
    });
  }
}
