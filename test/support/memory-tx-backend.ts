import type { StoredMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { NatskitError } from '../../src/errors/natskit-error.js';
import type { BatchAck, BatchMessage } from '../../src/jetstream/atomic-batch.js';
import type { TxBackend } from '../../src/kv/transaction/backend.js';
import { GroupCommitter, type GroupMember } from '../../src/kv/transaction/group-commit.js';

interface Stored {
  readonly subject: string;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * A KV bucket in memory with JetStream's rules for what a transaction relies on: one sequence for
 * the stream, compare-and-set on the last sequence of a subject (also on another subject, for
 * guards), all-or-nothing batches. Pure logic for unit tests of runTransaction; what NATS itself
 * does is tested against real servers.
 */
export class MemoryTxBackend implements TxBackend<number> {
  readonly bucket = 'mem';
  readonly guardSubject = '$NATSKIT.TXGUARD.mem';
  readonly log: Stored[] = [];
  /** Runs before each batch is applied (a concurrent writer, say). */
  beforeBatch: (() => void) | undefined;
  /** Makes the next batch's reply get lost after it was applied (or not). */
  loseNextReply: 'applied' | 'not-applied' | undefined;
  batches = 0;
  /** Group commit as on a real bucket. */
  readonly committer = new GroupCommitter('mem');
  readonly locks = this.committer.locks;
  /** Delays each batch's reply (a server syncing its store), so commits queue behind it. */
  replyDelayMs = 0;

  #seq = 0;

  subject(key: string): string {
    return `$KV.mem.${key}`;
  }

  lastSeq(subject: string): number {
    return this.#last(subject)?.seq ?? 0;
  }

  #last(subject: string): Stored | undefined {
    for (let i = this.log.length - 1; i >= 0; i--) {
      const m = this.log[i] as Stored;
      if (m.subject === subject) return m;
    }
    return undefined;
  }

  /** A write from outside any transaction. */
  put(key: string, value: number | null): number {
    return this.#store(this.subject(key), value === null ? null : enc.encode(String(value)), {
      ...(value === null ? { 'KV-Operation': 'DEL' } : {}),
    });
  }

  value(key: string): number | null {
    const m = this.#last(this.subject(key));
    if (!m || m.headers['KV-Operation']) return null;
    return Number(dec.decode(m.data));
  }

  #store(subject: string, data: Uint8Array | null, h: Readonly<Record<string, string>>): number {
    const seq = ++this.#seq;
    this.log.push({ subject, seq, data: data ?? new Uint8Array(0), headers: h });
    return seq;
  }

  #msg(m: Stored): StoredMsg {
    const header = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) header.set(k, v);
    return { subject: m.subject, seq: m.seq, data: m.data, header, time: new Date() } as StoredMsg;
  }

  #check(m: BatchMessage): boolean {
    const h = m.headers ?? {};
    const expected = h['Nats-Expected-Last-Subject-Sequence'];
    if (expected === undefined) return true;
    const on = h['Nats-Expected-Last-Subject-Sequence-Subject'] ?? m.subject;
    return this.lastSeq(on) === Number(expected);
  }

  validateReadKey(key: string): void {
    if (key.includes(' ')) throw new NatskitError('INVALID_KEY', `bad key ${key}`);
  }
  validateWriteKey(key: string): void {
    if (key.includes(' ') || key.includes(':'))
      throw new NatskitError('INVALID_KEY', `bad key ${key}`);
  }
  async readLast(key: string): Promise<StoredMsg | null> {
    await this.committer.settledFor(key);
    const m = this.#last(this.subject(key));
    this.committer.observe(key, m?.seq ?? 0);
    return m ? this.#msg(m) : null;
  }
  async readNext(key: string, seq: number): Promise<StoredMsg | null> {
    const m = this.log.find((x) => x.subject === this.subject(key) && x.seq >= seq);
    return m ? this.#msg(m) : null;
  }
  async encode(key: string, value: number): Promise<Uint8Array> {
    if (!Number.isFinite(value)) throw new NatskitError('INVALID_VALUE', `bad value for ${key}`);
    return enc.encode(String(value));
  }
  decode(_key: string, m: StoredMsg): number {
    return Number(dec.decode(m.data));
  }
  async ensureAtomic(): Promise<void> {}
  async ensureGuards(): Promise<void> {}
  forgetGuards(): void {}
  forgetAtomic(): void {}
  async writeOne(
    key: string,
    data: Uint8Array | null,
    revision: number | undefined,
  ): Promise<number> {
    const subject = this.subject(key);
    if (revision !== undefined && this.lastSeq(subject) !== revision) {
      throw new NatskitError('KV_REVISION_CONFLICT', `${key} moved`);
    }
    return this.#store(subject, data, data === null ? { 'KV-Operation': 'DEL' } : {});
  }
  commitBatch(member: GroupMember): Promise<BatchAck> {
    return this.committer.submit(member, {
      publishBatch: (messages) => this.publishBatch(messages),
      revisionOf: async (key) => this.lastSeq(this.subject(key)),
    });
  }
  async publishBatch(messages: readonly BatchMessage[]): Promise<BatchAck> {
    this.batches++;
    if (this.replyDelayMs > 0) await new Promise((r) => setTimeout(r, this.replyDelayMs));
    this.beforeBatch?.();
    const lose = this.loseNextReply;
    this.loseNextReply = undefined;
    const ok = messages.every((m) => this.#check(m));
    if (ok && lose !== 'not-applied') {
      for (const m of messages) this.#store(m.subject, m.data, m.headers ?? {});
    }
    if (lose) {
      throw new NatskitError('NATS_UNAVAILABLE', 'reply lost', {
        details: { outcome: 'unknown', lateReply: Promise.resolve(undefined) },
      });
    }
    if (!ok) throw new NatskitError('KV_REVISION_CONFLICT', 'wrong last sequence');
    const seq = this.#seq;
    return { stream: 'KV_mem', seq, count: messages.length, firstSeq: seq - messages.length + 1 };
  }
}
