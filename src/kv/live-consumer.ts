import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
} from '@nats-io/jetstream';
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  nanos,
  nuid,
  type Subscription,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../errors/natskit-error.js';

/** A message of a live watch, in stream order. */
export interface LiveMsg {
  readonly subject: string;
  /** Stream sequence: the KV revision. */
  readonly seq: number;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly time: Date;
  /** Messages the server still holds for this watch after this one. */
  readonly pending: number;
}

/** Options of {@link openLive}. */
export interface LiveOptions {
  readonly stream: string;
  readonly filter: string;
  /** The first stream sequence wanted (with `snapshotUpTo`: ignored, the snapshot starts it). */
  readonly startSeq: number;
  /**
   * A snapshot instead of a live tail: the last message of each subject whose sequence is at most
   * this (the stream's last sequence when the watch began), then the generator returns. The
   * server sends them in ascending sequence order, so a replaced consumer resumes after the last
   * one yielded; a key changed meanwhile is left to the live part, which delivers the change.
   */
  readonly snapshotUpTo?: number;
  /** Messages held on the client at most; one pull asks for what is free. */
  readonly bufferSize: number;
  /** Stops the generator (it then returns). */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** Restarts after a fault are spaced like this (ms), with jitter, and never give up. */
const BACKOFF_MS = [50, 100, 250, 500, 1_000, 2_000];
/** A consumer the client stopped using (crash, stall) is removed by the server after this. */
const INACTIVE_MS = 30_000;
/** The server sends an idle heartbeat this often; three missed ones replace the consumer. */
const HEARTBEAT_MS = 2_000;
/** How long one pull request waits on the server. */
const EXPIRES_MS = 30_000;

/** One consumer natskit created for the watch, and the pull in flight on it. */
interface Generation {
  readonly name: string;
  readonly sub: Subscription;
  /** Delivery sequence of the last message received: one more is expected next. */
  dseq: number;
  /** Messages the pull in flight may still deliver (0: no pull in flight). */
  outstanding: number;
  lastActivityMs: number;
  /** Why this consumer must be replaced; undefined while healthy. */
  broken?: string;
  /** `num_pending` when created. */
  readonly pendingAtOpen: number;
}

function parseAckSubject(reply: string): {
  seq: number;
  dseq: number;
  ts: number;
  pending: number;
} {
  const t = reply.split('.');
  // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or with domain and
  // account hash after ACK and a random token at the end.
  if (t.length === 9) t.splice(2, 0, '_', '');
  return {
    seq: Number(t[7]),
    dseq: Number(t[8]),
    ts: Number(t[9]),
    pending: Number(t[10]),
  };
}

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

/** The live messages of a watch and how to end them. */
export interface Live {
  /** Iterate once. Returns when the signal is aborted; throws when the watch cannot go on. */
  readonly messages: AsyncGenerator<LiveMsg>;
  /** Removes the consumer and every listener; safe to call more than once. */
  close(): Promise<void>;
  /** Messages the first consumer had to deliver when created (a snapshot's exact size). */
  readonly initialPending: number;
}

/**
 * The live part of a watch: every message of `filter` from `startSeq` on, in stream order, each
 * once, for as long as the signal is not aborted. It is natskit's own ordered consumer, because
 * the client's ordered consumer can wait forever on a consumer whose only server died (a
 * cluster's stream leader killed): here, a gap in the delivery sequence, a consumer deleted, a
 * leadership change, no responders, three missed heartbeats or a reconnect all replace the
 * consumer with a new one starting right after the last message yielded. Creating it is retried
 * with backoff for as long as it takes; only a stream that is gone or a closed connection ends the
 * watch with an error. Memory is bounded: at most `bufferSize` messages are held.
 *
 * The first consumer is created before this resolves (its errors are the caller's), so a message
 * stored after it resolved is delivered even if a newer write replaces it at once.
 */
export async function openLive(
  nc: NatsConnection,
  jsm: JetStreamManager,
  o: LiveOptions,
): Promise<Live> {
  const apiPrefix = jsm.getOptions().apiPrefix ?? '$JS.API';
  // A connection handed in may use its own inbox prefix (permissions): replies must go there.
  const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
  const queue: LiveMsg[] = [];
  const snapshot = o.snapshotUpTo !== undefined;
  let next = snapshot ? 1 : o.startSeq;
  let gen: Generation | undefined;
  let wake: () => void = () => undefined;
  const woken = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
    });
  const breakGen = (g: Generation | undefined, why: string) => {
    if (!g || g.broken) return;
    g.broken = why;
    wake();
  };

  const pull = (g: Generation) => {
    if (g.broken || g.outstanding > 0 || queue.length > o.bufferSize / 2) return;
    const batch = o.bufferSize - queue.length;
    g.outstanding = batch;
    g.lastActivityMs = Date.now();
    nc.publish(
      `${apiPrefix}.CONSUMER.MSG.NEXT.${o.stream}.${g.name}`,
      JSON.stringify({ batch, expires: nanos(EXPIRES_MS), idle_heartbeat: nanos(HEARTBEAT_MS) }),
      { reply: g.sub.getSubject() },
    );
  };

  const onMessage = (g: Generation, msg: Msg) => {
    if (g.broken || g !== gen) return;
    g.lastActivityMs = Date.now();
    const code = msg.headers?.code ?? 0;
    if (code === 100) {
      // An idle heartbeat names the last delivery sequence sent: more than we got means a
      // message was lost on the way (a reconnect), so start again after the last one we have.
      const last = Number(msg.headers?.get('Nats-Last-Consumer') || 0);
      if (last > g.dseq) breakGen(g, `missed deliveries ${g.dseq + 1}..${last}`);
      return;
    }
    if (code === 404 || code === 408) {
      g.outstanding = 0; // the pull ended (expired)
      wake();
      return;
    }
    if (code !== 0) {
      breakGen(g, `status ${code} ${msg.headers?.description ?? ''}`.trim());
      return;
    }
    if (!msg.reply) return;
    const info = parseAckSubject(msg.reply);
    if (info.dseq !== g.dseq + 1) {
      breakGen(g, `delivery sequence ${info.dseq} after ${g.dseq}`);
      return;
    }
    g.dseq = info.dseq;
    g.outstanding = Math.max(0, g.outstanding - 1);
    queue.push({
      subject: msg.subject,
      seq: info.seq,
      data: msg.data,
      headers: msg.headers,
      time: new Date(Math.floor(info.ts / 1e6)),
      pending: info.pending,
    });
    wake();
  };

  /** Best effort: its server may be the one that died; the server removes it when inactive. */
  const retire = async (g: Generation) => {
    g.sub.unsubscribe();
    await jsm.consumers.delete(o.stream, g.name).catch(() => undefined);
  };

  const open = async (): Promise<Generation> => {
    const name = `natskit_watch_${nuid.next()}`;
    const info = await jsm.consumers.add(o.stream, {
      name,
      ack_policy: AckPolicy.None,
      ...(snapshot
        ? { deliver_policy: DeliverPolicy.LastPerSubject }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: next }),
      filter_subject: o.filter,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(INACTIVE_MS),
    });
    const g: Generation = {
      name,
      dseq: 0,
      outstanding: 0,
      lastActivityMs: Date.now(),
      pendingAtOpen: info.num_pending,
      sub: nc.subscribe(createInbox(inboxPrefix), {
        callback: (err, msg) => {
          if (err) breakGen(g, `subscription: ${err.message}`);
          else onMessage(g, msg);
        },
      }),
    };
    return g;
  };

  const first = await open();
  gen = first;
  const onAbort = () => wake();
  o.signal.addEventListener('abort', onAbort);
  // A pull in flight that neither delivers nor sends heartbeats is lost: its server is gone.
  const watchdog = setInterval(() => {
    const g = gen;
    if (g && g.outstanding > 0 && Date.now() - g.lastActivityMs > 3 * HEARTBEAT_MS) {
      breakGen(g, 'heartbeats missed');
    }
  }, HEARTBEAT_MS / 2);
  // Messages sent while the client was away are lost, and its pull may be gone with them.
  const status = nc.status();
  void (async () => {
    for await (const s of status) if (s.type === 'reconnect') breakGen(gen, 'reconnected');
  })();

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    o.signal.removeEventListener('abort', onAbort);
    clearInterval(watchdog);
    (status as { stop?: () => void }).stop?.();
    const g = gen;
    gen = undefined;
    if (g) await retire(g);
  };

  /** Waits `ms` (with jitter), or less when woken (abort). */
  const pause = async (ms: number) => {
    const w = woken();
    const t = setTimeout(wake, ms * (0.5 + Math.random()));
    await w;
    clearTimeout(t);
  };
  const backoffMs = (n: number) => BACKOFF_MS[Math.min(n, BACKOFF_MS.length - 1)] ?? 2_000;

  async function* messages(): AsyncGenerator<LiveMsg> {
    let failures = 0;
    let streamGone = 0;
    // Consumers replaced in a row before delivering anything: the next one waits a little, so a
    // fault that keeps recurring cannot become a loop creating consumers.
    let fruitless = 0;
    try {
      while (!o.signal.aborted) {
        if (gen?.broken) {
          o.log.debug(
            { stream: o.stream, consumer: gen.name, reason: gen.broken, next },
            'watch consumer replaced',
          );
          fruitless = gen.dseq === 0 ? fruitless + 1 : 0;
          if (fruitless === 5) {
            o.log.warn(
              { stream: o.stream, reason: gen.broken },
              'watch consumers keep failing before delivering; retrying with backoff',
            );
          }
          void retire(gen);
          gen = undefined;
          queue.length = 0; // received after `next`, read again from the new consumer
          if (fruitless > 1) await pause(backoffMs(fruitless - 2));
          continue;
        }
        if (!gen) {
          try {
            const g = await open();
            if (closed) {
              await retire(g);
              return;
            }
            gen = g;
            failures = 0;
            streamGone = 0;
          } catch (err) {
            if (nc.isClosed()) {
              throw new NatskitError('NATS_UNAVAILABLE', 'watch: the connection is closed', {
                cause: err,
              });
            }
            // A stream found missing three times in a row is gone (a leader election answers
            // with timeouts or no responders, not with this).
            if (isStreamNotFound(err) && ++streamGone >= 3) {
              throw new NatskitError('KV_BUCKET_NOT_FOUND', `watch: stream ${o.stream} is gone`, {
                cause: err,
              });
            }
            const delay = backoffMs(failures);
            if (failures++ === 0) {
              o.log.warn(
                { err, stream: o.stream },
                'watch consumer could not be created; retrying',
              );
            }
            await pause(delay);
            continue;
          }
        }
        // A snapshot ends with the last message at or below its bound (or with none at all).
        if (snapshot && gen.dseq === 0 && gen.pendingAtOpen === 0) return;
        const m = queue.shift();
        if (m) {
          if (snapshot && m.seq > (o.snapshotUpTo ?? 0)) return;
          pull(gen);
          if (m.seq >= next) {
            next = m.seq + 1;
            yield m;
          }
          if (snapshot && m.pending === 0) return;
          continue;
        }
        pull(gen);
        const w = woken();
        if (queue.length === 0 && !gen.broken && !o.signal.aborted) await w;
      }
    } finally {
      await close();
    }
  }
  return { messages: messages(), close, initialPending: first.pendingAtOpen };
}
