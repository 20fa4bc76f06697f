import { performance } from 'node:perf_hooks';
import type { Container } from 'inversify';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';
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

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
    throw new NatskitError(
      'SERVICE_START_FAILED',
      `${service} could not be created: ${message(err)}`,
      { cause: err, service },
    );
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
      const err = new NatskitError(
        'SERVICE_START_TIMEOUT',
        `${service} did not start within ${timeoutMs} ms`,
        { service, details: { timeoutMs } },
      );
      ac.abort(err);
      // A start that ignores its signal and finishes late is stopped then, not leaked.
      pending.then(
        () => stopLate(node, instance, ctx.logger),
        () => undefined,
      );
      throw err;
    }
    ctx.started({ node, instance });
    ctx.logger.info({ service, ms: Math.round(performance.now() - t0) }, 'service started');
  } catch (err) {
    if (NatskitError.is(err, 'SERVICE_START_TIMEOUT') && err.service === service) throw err;
    // A natskit error keeps its code (AUTH_FAILED, CAPABILITY_MISSING...), so callers can
    // branch on it; anything else is SERVICE_START_FAILED. Either way the service is named.
    const code = NatskitError.is(err) ? err.code : 'SERVICE_START_FAILED';
    throw new NatskitError(code, `${service} failed to start: ${message(err)}`, {
      cause: err,
      service,
      ...(NatskitError.is(err) && err.details ? { details: err.details } : {}),
    });
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
