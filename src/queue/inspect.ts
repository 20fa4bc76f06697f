import type { ConsumerInfo, JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { ApiCode, isApiError } from '../jetstream/api-errors.js';
import type { Codec } from '../kv/codec.js';
import { type DeadLetterContext, keptHeaders, readHistory, toDeadJob } from './dead-letters.js';
import { H, type QueueNames } from './names.js';
import type { ResultStore } from './results.js';
import type { JobInfo, QueueCounts } from './types.js';

/** What inspection reads from. */
export interface InspectContext<D> {
  readonly names: QueueNames;
  readonly jsm: JetStreamManager;
  readonly dead: DeadLetterContext;
  readonly codec: Codec<D>;
  readonly results: ResultStore | undefined;
}

async function consumerInfo(
  jsm: JetStreamManager,
  n: QueueNames,
): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(n.stream, n.consumer);
  } catch (err) {
    if (isApiError(err, ApiCode.ConsumerNotFound)) return undefined; // no worker yet
    throw err;
  }
}

/** Messages per subject matching `filter` (the server lists each subject). */
async function countSubjects(
  jsm: JetStreamManager,
  stream: string,
  filter: string,
): Promise<number> {
  const info = await jsm.streams.info(stream, { subjects_filter: filter });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/**
 * Jobs by state. With the shared consumer: every ready job is either not yet delivered
 * (`num_pending`: waiting) or delivered and not yet acked (`num_ack_pending`: active, a job
 * waiting out a retry backoff included), and every other message of the work-queue stream is a
 * schedule (delayed). Before any worker made the consumer, nothing is active.
 */
export async function countJobs<D>(ctx: InspectContext<D>): Promise<QueueCounts> {
  const { jsm, names } = ctx;
  const dead = await countSubjects(jsm, names.deadStream, names.dead('*'));
  const c = await consumerInfo(jsm, names);
  if (!c) {
    const waiting = await countSubjects(jsm, names.stream, names.readyAll);
    const delayed = await countSubjects(jsm, names.stream, names.delayed('*'));
    return { waiting, active: 0, delayed, dead };
  }
  const messages = (await jsm.streams.info(names.stream)).state.messages;
  const ready = c.num_pending + c.num_ack_pending;
  return {
    waiting: c.num_pending,
    active: c.num_ack_pending,
    delayed: Math.max(0, messages - ready),
    dead,
  };
}

function dateOf(m: StoredMsg, name: string): Date | undefined {
  const v = m.header?.get(name);
  const d = v ? new Date(v) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

function decoded<D>(codec: Codec<D>, data: Uint8Array): D | undefined {
  try {
    return codec.decode(data);
  } catch {
    return undefined; // it will be dead-lettered as undecodable when a worker gets it
  }
}

/** A job's place, before its history is read. */
type Located<D, R> = Omit<JobInfo<D, R>, 'history' | 'progress'> & {
  readonly history?: JobInfo<D, R>['history'];
};

/**
 * Where job `id` is now: ready (waiting, or active once delivered), scheduled, dead, or its
 * stored outcome. `unknown` when none holds it: never added, completed on a queue without
 * results, or its outcome expired. Each place is read in turn, so a job that moves meanwhile
 * may be reported in the state it just left. The history is read after the state (a worker
 * drops it before storing the outcome), so a job seen completed never shows a stale history.
 */
export async function getJob<D, R>(ctx: InspectContext<D>, id: string): Promise<JobInfo<D, R>> {
  const located = await locate<D, R>(ctx, id);
  const history = located.history ?? (await readHistory(ctx.dead, id));
  const progress = ctx.results ? await ctx.results.getProgress(id) : undefined;
  return { ...located, history, progress };
}

async function locate<D, R>(ctx: InspectContext<D>, id: string): Promise<Located<D, R>> {
  const { jsm, names } = ctx;
  const base = { id, outcome: undefined };
  const fromMsg = (m: StoredMsg) => {
    const attempts = Number(m.header?.get(H.attempts));
    return {
      data: decoded(ctx.codec, m.data),
      headers: Object.fromEntries(
        Object.entries(keptHeaders(m.header)).filter(([k]) => !k.startsWith(H.prefix)),
      ),
      attempts: Number.isInteger(attempts) ? attempts : undefined,
      addedAt: dateOf(m, H.addedAt),
      runAt: dateOf(m, H.runAt),
    };
  };
  const ready = await jsm.streams.getMessage(names.stream, { last_by_subj: names.ready(id) });
  if (ready) {
    const c = await consumerInfo(jsm, names);
    const delivered = c !== undefined && ready.seq <= c.delivered.stream_seq;
    return { ...base, ...fromMsg(ready), state: delivered ? 'active' : 'waiting' };
  }
  const scheduled = await jsm.streams.getMessage(names.stream, { last_by_subj: names.delayed(id) });
  if (scheduled) return { ...base, ...fromMsg(scheduled), state: 'delayed' };
  const deadMsg = await jsm.streams.getMessage(names.deadStream, { last_by_subj: names.dead(id) });
  if (deadMsg) {
    const d = toDeadJob(deadMsg, ctx.codec);
    return {
      ...base,
      state: 'dead',
      data: d.data,
      headers: d.headers,
      attempts: undefined,
      addedAt: undefined,
      runAt: undefined,
      history: d.history,
      error: d.error,
    };
  }
  const outcome = ctx.results ? await ctx.results.get<R>(id) : undefined;
  const none = {
    data: undefined,
    headers: {},
    attempts: undefined,
    addedAt: undefined,
    runAt: undefined,
  };
  if (outcome && outcome.state !== 'pending') {
    return { ...base, ...none, state: outcome.state, outcome };
  }
  return { ...base, ...none, state: 'unknown' };
}
