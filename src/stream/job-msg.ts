import type { DeliveryInfo, JsMsg, PullOptions } from '@nats-io/jetstream';
import { type Msg, type MsgHdrs, type NatsConnection, nanos } from '@nats-io/transport-node';
import { type AckInfo, toDeliveryInfo } from '../jetstream/ack-subject.js';

const encoder = new TextEncoder();
const ACK = encoder.encode('+ACK');
const NAK = encoder.encode('-NAK');
const WPI = encoder.encode('+WPI');
const TERM = encoder.encode('+TERM');

/**
 * A message a worker received from its own pull requests, with the client's `JsMsg` interface
 * (the client's own implementation is not exported). The acknowledgements are the JetStream
 * protocol's: `+ACK`, `-NAK` (with a delay), `+WPI`, `+TERM`; every one but `+WPI` is final, and
 * a second final one is not sent.
 */
export class JobMsg implements JsMsg {
  readonly info: DeliveryInfo;
  readonly #msg: Msg;
  readonly #nc: NatsConnection;
  readonly #ackTimeoutMs: number;
  #acked = false;

  constructor(nc: NatsConnection, msg: Msg, ack: AckInfo, ackTimeoutMs: number) {
    this.#nc = nc;
    this.#msg = msg;
    this.info = toDeliveryInfo(ack);
    this.#ackTimeoutMs = ackTimeoutMs;
  }

  get redelivered(): boolean {
    return this.info.redelivered;
  }
  get seq(): number {
    return this.info.streamSequence;
  }
  get headers(): MsgHdrs | undefined {
    return this.#msg.headers;
  }
  get data(): Uint8Array {
    return this.#msg.data;
  }
  get subject(): string {
    return this.#msg.subject;
  }
  get sid(): number {
    return this.#msg.sid;
  }
  get time(): Date {
    return new Date(Math.floor(this.info.timestampNanos / 1e6));
  }
  get timestamp(): string {
    return this.time.toISOString();
  }
  get timestampNanos(): bigint {
    // The exact token: the parsed number lost the nanoseconds. The subject was checked on arrival.
    const t = (this.#msg.reply ?? '').split('.');
    return BigInt(t[t.length === 9 ? 7 : 9] ?? 0);
  }

  #send(payload: Uint8Array, final: boolean): void {
    if (this.#acked) return;
    this.#acked = final;
    this.#msg.respond(payload);
  }

  ack(): void {
    this.#send(ACK, true);
  }

  nak(millis?: number): void {
    this.#send(
      millis ? encoder.encode(`-NAK ${JSON.stringify({ delay: nanos(millis) })}`) : NAK,
      true,
    );
  }

  working(): void {
    this.#send(WPI, false);
  }

  term(reason = ''): void {
    this.#send(reason ? encoder.encode(`+TERM ${reason}`) : TERM, true);
  }

  next(subj: string, ro: Partial<PullOptions> = { batch: 1 }): void {
    const args = {
      batch: ro.batch || 1,
      no_wait: ro.no_wait || false,
      ...(ro.expires && ro.expires > 0 ? { expires: nanos(ro.expires) } : {}),
    };
    this.#msg.respond(encoder.encode(`+NXT ${JSON.stringify(args)}`), { reply: subj });
  }

  /** Acknowledges and waits for the server to confirm it; false when already acknowledged. */
  async ackAck(opts?: Partial<{ timeout: number }>): Promise<boolean> {
    if (this.#acked || !this.#msg.reply) return false;
    this.#acked = true;
    await this.#nc.request(this.#msg.reply, ACK, { timeout: opts?.timeout ?? this.#ackTimeoutMs });
    return true;
  }

  json<T>(): T {
    return this.#msg.json<T>();
  }

  string(): string {
    return this.#msg.string();
  }
}
