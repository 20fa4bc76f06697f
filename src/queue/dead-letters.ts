import type { JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import { describeThrown, thrownProperty } from '../errors/thrown.js';
import type { Codec } from '../kv/codec.js';
import type { PublishOptions } from '../stream/publish-options.js';
import { H, type QueueNames } from './names.js';
import type { AttemptRecord, DeadJob, DeadReason } from './types.js';

/** How many failed attempts a job's history keeps (the dead stream's per-subject limit). */
export const MAX_HISTORY = 50;

/** What the dead letters need: the publish edge and the manager. */
export interface DeadLetterContext {
  readonly names: QueueNames;
  readonly jsm: () => JetStreamManager;
  readonly publish: (
    subject: string,
    data: Uint8Array | string,
    o: PublishOptions,
  ) => Promise<unknown>;
}

/** A dead letter as stored: JSON, the payload in base64. */
interface Envelope {
  readonly v: 1;
  readonly id: string;
  readonly reason: DeadReason;
  readonly error: string;
  readonly code: string | undefined;
  readonly history: readonly AttemptRecord[];
  readonly payload: string;
  /** Every header the job carried but the server's (`Nats-*`): the caller's and natskit's. */
  readonly headers: Readonly<Record<string, string>>;
  readonly deadAt: string;
}

/** A caught value as an attempt's error: its description and its natskit code, if any. */
export function describeFailure(err: unknown): { error: string; code: string | undefined } {
  const code = NatskitError.is(err) ? thrownProperty(err, 'code') : undefined;
  return { error: describeThrown(err), code: typeof code === 'string' ? code : undefined };
}

/** Records one failed attempt of job `id` (a message on its attempts subject). */
export async function recordAttempt(
  ctx: DeadLetterContext,
  id: string,
  record: AttemptRecord,
  msgId: string,
): Promise<void> {
  await ctx.publish(ctx.names.attempts(id), JSON.stringify(record), { msgId });
}

/** The failed attempts of job `id`, oldest first. */
export async function readHistory(ctx: DeadLetterContext, id: string): Promise<AttemptRecord[]> {
  const out: AttemptRecord[] = [];
  for await (const m of bySubject(ctx, ctx.names.attempts(id))) {
    out.push(m.json<AttemptRecord>());
  }
  return out;
}

/** Forgets job `id`'s attempts (it completed, or its dead letter holds them now). */
export async function clearHistory(ctx: DeadLetterContext, id: string): Promise<void> {
  await ctx.jsm().streams.purge(ctx.names.deadStream, { filter: ctx.names.attempts(id) });
}

/** Messages of the dead stream on `subject` (wildcards allowed), in stream order. */
async function* bySubject(ctx: DeadLetterContext, subject: string): AsyncGenerator<StoredMsg> {
  const jsm = ctx.jsm();
  let seq = 1;
  for (;;) {
    const m = await jsm.direct.getMessage(ctx.names.deadStream, { seq, next_by_subj: subject });
    if (!m) return;
    yield m;
    seq = m.seq + 1;
  }
}

/** The headers to keep with a dead job: all but the server's own. */
export function keptHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of h?.keys() ?? [])
    if (!k.toLowerCase().startsWith('nats-')) out[k] = h?.get(k) ?? '';
  return out;
}

/** What a dead letter is made of. */
export interface DeadInput {
  readonly id: string;
  /** The job's stream sequence: with the id, it deduplicates a dead letter written twice. */
  readonly seq: number;
  readonly reason: DeadReason;
  readonly error: unknown;
  readonly payload: Uint8Array;
  readonly headers: MsgHdrs | undefined;
}

/** Moves a job to the dead letters with its history, then forgets the history. */
export async function deadLetter(ctx: DeadLetterContext, input: DeadInput): Promise<void> {
  const history = await readHistory(ctx, input.id);
  const { error, code } = describeFailure(input.error);
  const envelope: Envelope = {
    v: 1,
    id: input.id,
    reason: input.reason,
    error,
    code,
    history,
    payload: Buffer.from(input.payload).toString('base64'),
    headers: keptHeaders(input.headers),
    deadAt: new Date().toISOString(),
  };
  await ctx.publish(ctx.names.dead(input.id), JSON.stringify(envelope), {
    msgId: `dead:${input.id}:${input.seq}`,
  });
  await clearHistory(ctx, input.id);
}

/** A stored dead letter as a {@link DeadJob}. */
export function toDeadJob<D>(m: StoredMsg, codec: Codec<D>): DeadJob<D> {
  const e = m.json<Envelope>();
  const payload = new Uint8Array(Buffer.from(e.payload, 'base64'));
  let data: D | undefined;
  try {
    data = codec.decode(payload);
  } catch {
    data = undefined; // an undecodable payload is why some jobs are dead: `payload` has it
  }
  const headers = Object.fromEntries(
    Object.entries(e.headers).filter(([k]) => !k.startsWith(H.prefix)),
  );
  return {
    id: e.id,
    reason: e.reason,
    error: e.error,
    code: e.code,
    history: e.history,
    data,
    payload,
    headers,
    deadAt: new Date(e.deadAt),
    seq: m.seq,
  };
}

/** Every dead job, oldest first. */
export async function listDead<D>(ctx: DeadLetterContext, codec: Codec<D>): Promise<DeadJob<D>[]> {
  const out: DeadJob<D>[] = [];
  for await (const m of bySubject(ctx, ctx.names.dead('*'))) out.push(toDeadJob(m, codec));
  return out;
}

/**
 * Publishes the dead job's original payload and headers to the ready subject (fresh attempts:
 * a new message), then removes its dead letters up to the one redriven. A redrive repeated after
 * a failure between the two steps is deduplicated by its message id.
 */
export async function redrive(
  ctx: DeadLetterContext,
  id: string,
  /** Runs once the dead letter is found, before the job is published again. */
  before?: () => Promise<void>,
): Promise<boolean> {
  const jsm = ctx.jsm();
  const subject = ctx.names.dead(id);
  const m = await jsm.direct.getMessage(ctx.names.deadStream, { last_by_subj: subject });
  if (!m) return false;
  await before?.();
  const e = m.json<Envelope>();
  const headers = Object.fromEntries(Object.entries(e.headers).filter(([k]) => k !== H.runAt));
  await ctx.publish(ctx.names.ready(id), new Uint8Array(Buffer.from(e.payload, 'base64')), {
    msgId: `redrive:${id}:${m.seq}`,
    headers,
  });
  await jsm.streams.purge(ctx.names.deadStream, { filter: subject, seq: m.seq + 1 });
  return true;
}

/** The ids of every dead job. */
export async function deadIds(ctx: DeadLetterContext): Promise<string[]> {
  const ids = new Set<string>();
  for await (const m of bySubject(ctx, ctx.names.dead('*'))) ids.add(m.json<Envelope>().id);
  return [...ids];
}
