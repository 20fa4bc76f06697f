import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  nanos,
  nuid,
  type QueuedIterator,
  type Status,
  type Subscription,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { NatskitError } from '../../errors/natskit-error.js';
import { parseAckSubject } from '../../jetstream/ack-subject.js';
import { ApiCode, isApiError } from '../../jetstream/api-errors.js';
import { HeartbeatWatchdog } from '../../jetstream/heartbeat-watchdog.js';

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
  /** Called each time a broken consumer is replaced (reconnect, node lost, consumer deleted). */
  readonly onResume?: (() => void) | undefined;
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
  /** Why this consumer must be replaced; undefined while healthy. */
  broken?: string;
  /** `num_pending` when created. */
  readonly pendingAtOpen: number;
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

const backoffMs = (n: number) => BACKOFF_MS[Math.min(n, BACKOFF_MS.length - 1)] ?? 2_000;

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
 * The first consumer is created before {@link LiveConsumer.open} resolves (its errors are the
 * caller's), so a message stored after it resolved is delivered even if a newer write replaces it
 * at once.
 */
export class LiveConsumer implements Live {
  readonly messages: AsyncGenerator<LiveMsg>;
  readonly #nc: NatsConnection;
  readonly #jsm: JetStreamManager;
  readonly #o: LiveOptions;
  readonly #snapshot: boolean;
  readonly #pullPrefix: string;
  readonly #inboxPrefix: string | undefined;
  readonly #queue: LiveMsg[] = [];
  readonly #watchdog: HeartbeatWatchdog;
  readonly #statuses: QueuedIterator<Status>;
  readonly #onAbort = () => this.#wake();
  #initialPending = 0;
  /** The first stream sequence not yet yielded. */
  #next: number;
  #gen: Generation | undefined;
  #wake: () => void = () => undefined;
  #closed = false;

  /** Creates the first consumer, then returns the live consumer that reads it. */
  static async open(
    nc: NatsConnection,
    jsm: JetStreamManager,
    o: LiveOptions,
  ): Promise<LiveConsumer> {
    const live = new LiveConsumer(nc, jsm, o);
    try {
      live.#gen = await live.#openGeneration();
    } catch (err) {
      await live.close();
      throw err;
    }
    live.#initialPending = live.#gen.pendingAtOpen;
    return live;
  }

  private constructor(nc: NatsConnection, jsm: JetStreamManager, o: LiveOptions) {
    this.#nc = nc;
    this.#jsm = jsm;
    this.#o = o;
    this.#snapshot = o.snapshotUpTo !== undefined;
    this.#next = this.#snapshot ? 1 : o.startSeq;
    this.#pullPrefix = `${jsm.getOptions().apiPrefix ?? '$JS.API'}.CONSUMER.MSG.NEXT.${o.stream}.`;
    // A connection handed in may use its own inbox prefix (permissions): replies must go there.
    // The client offers no public accessor for it.
    this.#inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#watchdog = new HeartbeatWatchdog(
      HEARTBEAT_MS,
      3,
      () => (this.#gen?.outstanding ?? 0) > 0,
      () => this.#break(this.#gen, 'heartbeats missed'),
    );
    o.signal.addEventListener('abort', this.#onAbort);
    // Messages sent while the client was away are lost, and its pull may be gone with them.
    this.#statuses = nc.status() as QueuedIterator<Status>;
    void this.#followReconnects();
    this.messages = this.#run();
  }

  get initialPending(): number {
    return this.#initialPending;
  }

  async #followReconnects(): Promise<void> {
    for await (const s of this.#statuses)
      if (s.type === 'reconnect') this.#break(this.#gen, 'reconnected');
  }

  #woken(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Marks a consumer for replacement and wakes the reader. */
  #break(g: Generation | undefined, why: string): void {
    if (!g || g.broken) return;
    g.broken = why;
    this.#wake();
  }

  /** Asks for as many messages as the buffer has room for, unless a pull is in flight. */
  #pull(g: Generation): void {
    if (g.broken || g.outstanding > 0 || this.#queue.length > this.#o.bufferSize / 2) return;
    const batch = this.#o.bufferSize - this.#queue.length;
    g.outstanding = batch;
    this.#watchdog.touch();
    this.#nc.publish(
      `${this.#pullPrefix}${g.name}`,
      JSON.stringify({ batch, expires: nanos(EXPIRES_MS), idle_heartbeat: nanos(HEARTBEAT_MS) }),
      { reply: g.sub.getSubject() },
    );
  }

  #onMessage(g: Generation, msg: Msg): void {
    if (g.broken || g !== this.#gen) return;
    this.#watchdog.touch();
    const code = msg.headers?.code ?? 0;
    if (code === 100) {
      // An idle heartbeat names the last delivery sequence sent: more than we got means a
      // message was lost on the way (a reconnect), so start again after the last one we have.
      const last = Number(msg.headers?.get('Nats-Last-Consumer') || 0);
      if (last > g.dseq) this.#break(g, `missed deliveries ${g.dseq + 1}..${last}`);
      return;
    }
    if (code === 404 || code === 408) {
      g.outstanding = 0; // the pull ended (expired)
      this.#wake();
      return;
    }
    if (code !== 0) {
      this.#break(g, `status ${code} ${msg.headers?.description ?? ''}`.trim());
      return;
    }
    const info = msg.reply ? parseAckSubject(msg.reply) : undefined;
    if (!info) return;
    if (info.dseq !== g.dseq + 1) {
      this.#break(g, `delivery sequence ${info.dseq} after ${g.dseq}`);
      return;
    }
    g.dseq = info.dseq;
    g.outstanding = Math.max(0, g.outstanding - 1);
    this.#queue.push({
      subject: msg.subject,
      seq: info.seq,
      data: msg.data,
      headers: msg.headers,
      time: new Date(Math.floor(info.ts / 1e6)),
      pending: info.pending,
    });
    this.#wake();
  }

  /** Best effort: its server may be the one that died; the server removes it when inactive. */
  async #retire(g: Generation): Promise<void> {
    g.sub.unsubscribe();
    await this.#jsm.consumers.delete(this.#o.stream, g.name).catch(() => undefined);
  }

  /** A new consumer starting at the first sequence not yet yielded (or the snapshot). */
  async #openGeneration(): Promise<Generation> {
    const name = `natskit_watch_${nuid.next()}`;
    const info = await this.#jsm.consumers.add(this.#o.stream, {
      name,
      ack_policy: AckPolicy.None,
      ...(this.#snapshot
        ? { deliver_policy: DeliverPolicy.LastPerSubject }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.#next }),
      filter_subject: this.#o.filter,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(INACTIVE_MS),
    });
    const g: Generation = {
      name,
      dseq: 0,
      outstanding: 0,
      pendingAtOpen: info.num_pending,
      sub: this.#nc.subscribe(createInbox(this.#inboxPrefix), {
        callback: (err, msg) => {
          if (err) this.#break(g, `subscription: ${err.message}`);
          else this.#onMessage(g, msg);
        },
      }),
    };
    this.#watchdog.touch();
    return g;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.signal.removeEventListener('abort', this.#onAbort);
    this.#watchdog.stop();
    this.#statuses.stop();
    const g = this.#gen;
    this.#gen = undefined;
    if (g) await this.#retire(g);
  }

  /** Waits `ms` (with jitter), or less when woken (abort). */
  async #pause(ms: number): Promise<void> {
    const w = this.#woken();
    const t = setTimeout(this.#wake, ms * (0.5 + Math.random()));
    await w;
    clearTimeout(t);
  }

  async *#run(): AsyncGenerator<LiveMsg> {
    const o = this.#o;
    let failures = 0;
    let streamGone = 0;
    // Consumers replaced in a row before delivering anything: the next one waits a little, so a
    // fault that keeps recurring cannot become a loop creating consumers.
    let fruitless = 0;
    try {
      while (!o.signal.aborted) {
        const g = this.#gen;
        if (g?.broken) {
          o.log.debug(
            { stream: o.stream, consumer: g.name, reason: g.broken, next: this.#next },
            'watch consumer replaced',
          );
          fruitless = g.dseq === 0 ? fruitless + 1 : 0;
          o.onResume?.();
          if (fruitless === 5) {
            o.log.warn(
              { stream: o.stream, reason: g.broken },
              'watch consumers keep failing before delivering; retrying with backoff',
            );
          }
          void this.#retire(g);
          this.#gen = undefined;
          this.#queue.length = 0; // received after `next`, read again from the new consumer
          if (fruitless > 1) await this.#pause(backoffMs(fruitless - 2));
          continue;
        }
        if (!g) {
          try {
            const fresh = await this.#openGeneration();
            if (this.#closed) {
              await this.#retire(fresh);
              return;
            }
            this.#gen = fresh;
            failures = 0;
            streamGone = 0;
          } catch (err) {
            this.#throwIfFinal(err, ++streamGone);
            if (!isApiError(err, ApiCode.StreamNotFound)) streamGone = 0;
            if (failures === 0) {
              o.log.warn(
                { err, stream: o.stream },
                'watch consumer could not be created; retrying',
              );
            }
            await this.#pause(backoffMs(failures++));
          }
          continue;
        }
        // A snapshot ends with the last message at or below its bound (or with none at all).
        if (this.#snapshot && g.dseq === 0 && g.pendingAtOpen === 0) return;
        const m = this.#queue.shift();
        if (m) {
          if (this.#snapshot && m.seq > (o.snapshotUpTo ?? 0)) return;
          this.#pull(g);
          if (m.seq >= this.#next) {
            this.#next = m.seq + 1;
            yield m;
          }
          if (this.#snapshot && m.pending === 0) return;
          continue;
        }
        this.#pull(g);
        const w = this.#woken();
        if (this.#queue.length === 0 && !g.broken && !o.signal.aborted) await w;
      }
    } finally {
      await this.close();
    }
  }

  /**
   * A closed connection, or a stream found missing three times in a row (a leader election
   * answers with timeouts or no responders, not with this), ends the watch.
   */
  #throwIfFinal(err: unknown, streamMissing: number): void {
    if (this.#nc.isClosed()) {
      throw new NatskitError('NATS_UNAVAILABLE', 'watch: the connection is closed', { cause: err });
    }
    if (isApiError(err, ApiCode.StreamNotFound) && streamMissing >= 3) {
      throw new NatskitError('KV_BUCKET_NOT_FOUND', `watch: stream ${this.#o.stream} is gone`, {
        cause: err,
      });
    }
  }
}
