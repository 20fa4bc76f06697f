import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { NatskitError } from '../errors/natskit-error.js';
import type { BatchMessage } from './atomic-batch.js';
import { DEFAULT_API_PREFIX, writeSubject } from './domain.js';
import { headerBytes, msgHeaders } from './headers.js';
import { inboxOf } from './inbox.js';

/** Options of {@link publishFastIngest}. */
export interface FastIngestOptions {
  /** How long the server may stay silent (no flow ack, no final ack) before the outcome is unknown. */
  readonly timeoutMs: number;
  /** Messages between the server's flow acks, as asked (the server may lower it). @defaultValue 250 */
  readonly flow?: number;
  /** The JetStream API prefix: through a domain, KV subjects are sent under it. */
  readonly apiPrefix?: string;
  /** Aborting it stops the batch where it is: the outcome of what was sent is then unknown. */
  readonly signal?: AbortSignal | undefined;
}

/** What a fast-ingest batch did. */
export interface FastIngestResult {
  /**
   * Per message: `true` when the server's final ack covers it and no error or gap was reported
   * for it; `false` when it was refused, lost, or its outcome is unknown (it may be stored).
   */
  readonly stored: readonly boolean[];
  /** Stream sequence of the last stored message (from the final ack); undefined without one. */
  readonly lastSeq: number | undefined;
}

/** The server's per-message reply subject: `<inbox>.<flow>.<gap mode>.<batch seq>.<op>.$FI`. */
const OP = Object.freeze({ start: 0, append: 1, eob: 3, ping: 4 });
/** Pings per `timeoutMs` while waiting for an ack: a lost ack costs a third of the deadline. */
const PINGS = 3;

interface Frame {
  type?: 'ack' | 'gap' | 'err';
  seq?: number;
  msgs?: number;
  last_seq?: number;
  batch?: string;
  count?: number;
  error?: unknown;
}

/**
 * Publishes messages as one fast-ingest batch (nats-server >= 2.14, stream with
 * `allow_batched`): each message is stored as it arrives, the server paces the sender with flow
 * acks, and an end-of-batch marker (not stored) ends it. Not atomic. Gap mode `ok`: a message
 * the server refuses (too large, stream full) is reported on its own reply subject and the batch
 * goes on. The result says which messages are certainly stored; the caller decides what to do
 * with the others. Written by hand because the client's `startFastIngest` ends the whole batch on
 * the first refused message and does not say which one it was.
 *
 * @throws NatskitError `INVALID_OPTIONS` (no messages), `VALUE_TOO_LARGE` (a message over the
 * connection's `max_payload`: checked before anything is sent).
 */
export async function publishFastIngest(
  nc: NatsConnection,
  messages: readonly BatchMessage[],
  options: FastIngestOptions,
): Promise<FastIngestResult> {
  if (messages.length === 0) {
    throw new NatskitError('INVALID_OPTIONS', 'a fast-ingest batch needs at least one message');
  }
  const maxPayload = nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
  for (const m of messages) {
    const bytes = m.data.length + (m.headers ? headerBytes(Object.entries(m.headers)) : 0);
    if (bytes > maxPayload) {
      throw new NatskitError(
        'VALUE_TOO_LARGE',
        `fast ingest: the message to ${m.subject} is ${bytes} bytes; the connection takes at most ${maxPayload}`,
        { details: { subject: m.subject, bytes, limit: maxPayload } },
      );
    }
  }
  const prefix = options.apiPrefix ?? DEFAULT_API_PREFIX;
  const batch = new FastBatch(nc, messages, options.flow ?? 250, options.timeoutMs, prefix);
  return await batch.run(options.signal);
}

class FastBatch {
  readonly #inbox: string;
  readonly #refused = new Set<number>();
  #acked = 0;
  #window: number;
  #final: Frame | undefined;
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(
    readonly nc: NatsConnection,
    readonly messages: readonly BatchMessage[],
    readonly flow: number,
    readonly timeoutMs: number,
    readonly apiPrefix: string,
  ) {
    this.#inbox = inboxOf(nc);
    this.#window = flow * 2;
  }

  #reply(seq: number, op: number): string {
    return `${this.#inbox}.${this.flow}.ok.${seq}.${op}.$FI`;
  }

  #to(m: BatchMessage): string {
    return writeSubject(this.apiPrefix, m.subject);
  }

  async run(signal?: AbortSignal): Promise<FastIngestResult> {
    const sub = this.nc.subscribe(`${this.#inbox}.>`, {
      // An error here is the subscription's end (the connection closed): the outcome is unknown.
      callback: (err, m) => (err ? this.#end(undefined) : this.#frame(m)),
    });
    const abort = () => this.#end(undefined);
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const n = this.messages.length;
      for (let i = 0; i < n && !this.#ended; i++) {
        const seq = i + 1;
        while (seq - this.#acked > this.#window && !this.#ended) {
          if (!(await this.#await(seq - 1))) return this.#result(false);
        }
        const m = this.messages[i] as BatchMessage;
        const headers = m.headers ? msgHeaders(Object.entries(m.headers)) : undefined;
        this.nc.publish(this.#to(m), m.data, {
          reply: this.#reply(seq, seq === 1 ? OP.start : OP.append),
          ...(headers ? { headers } : {}),
        });
      }
      if (!this.#ended) {
        const first = this.messages[0] as BatchMessage;
        this.nc.publish(this.#to(first), new Uint8Array(0), { reply: this.#reply(n + 1, OP.eob) });
      }
      while (!this.#ended) if (!(await this.#await(n))) return this.#result(false);
      return this.#result(true);
    } finally {
      signal?.removeEventListener('abort', abort);
      sub.unsubscribe();
    }
  }

  /** Waits for the next frame, pinging when the server is silent; false once `timeoutMs` passed. */
  async #await(seq: number): Promise<boolean> {
    for (let ping = 0; ping < PINGS; ping++) {
      let timer: NodeJS.Timeout | undefined;
      const woke = await new Promise<boolean>((resolve) => {
        this.#wake = () => resolve(true);
        timer = setTimeout(() => resolve(false), this.timeoutMs / PINGS);
      });
      clearTimeout(timer);
      this.#wake = undefined;
      if (woke) return true;
      // A ping asks the server to repeat its latest flow ack (one may have been lost).
      const first = this.messages[0] as BatchMessage;
      this.nc.publish(this.#to(first), new Uint8Array(0), { reply: this.#reply(seq, OP.ping) });
    }
    return false;
  }

  #frame(m: Msg): void {
    const tokens = m.subject.split('.');
    const seq = Number(tokens[tokens.length - 3]);
    const op = Number(tokens[tokens.length - 2]);
    let f: Frame;
    try {
      f = m.json<Frame>();
    } catch {
      f = { error: {} }; // unreadable: counts as a refusal, so nothing is taken as stored
    }
    if (f.error) {
      // A refused message (either shape of error reply: a refusal of the message, or of the
      // batch it names), or a refused end of batch: then no final ack will come.
      if (op === OP.eob) this.#end(undefined);
      else this.#refused.add(seq);
    } else if (typeof f.batch === 'string') {
      this.#end(f);
    } else if (f.type === 'gap') {
      // Messages [last_seq, seq) never reached the stream.
      for (let s = f.last_seq ?? 0; s < (f.seq ?? 0); s++) this.#refused.add(s);
    } else if (f.type === 'ack') {
      if (typeof f.msgs === 'number' && f.msgs > 0) this.#window = f.msgs * 2;
      if (typeof f.seq === 'number' && f.seq > this.#acked) this.#acked = f.seq;
    }
    this.#wake?.();
  }

  #end(final: Frame | undefined): void {
    this.#final = final;
    this.#ended = true;
    this.#wake?.();
  }

  #result(complete: boolean): FastIngestResult {
    const final = complete ? this.#final : undefined;
    const count = final?.count ?? 0;
    const stored = this.messages.map((_, i) => i + 1 <= count && !this.#refused.has(i + 1));
    return { stored, lastSeq: final ? final.seq : undefined };
  }
}
