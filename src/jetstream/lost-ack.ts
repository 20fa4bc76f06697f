import type { JetStreamManager, MsgRequest, PubAck } from '@nats-io/jetstream';

/** The expectations a publish can carry that place its message at a known position. */
export interface PlacedExpectations {
  readonly lastSequence?: number;
  readonly lastSubjectSequence?: number;
  readonly streamName?: string;
}

/**
 * After a retried publish failed its expectation: the first attempt's ack, if that attempt was
 * stored and only its acknowledgement was lost. The server checks expectations before its
 * duplicate window (measured on 2.15.1), so the retry's message id alone does not say so; the
 * message right after the expected position does. Undefined when it is not ours (a real
 * conflict) or cannot be read (then the expectation error stands).
 */
export async function storedAttempt(
  jsm: JetStreamManager,
  subject: string,
  msgId: string,
  expect: PlacedExpectations,
): Promise<PubAck | undefined> {
  const { lastSubjectSequence, lastSequence } = expect;
  if (lastSubjectSequence === undefined && lastSequence === undefined) return undefined;
  try {
    const stream = expect.streamName ?? (await jsm.streams.find(subject));
    // STREAM.MSG.GET takes `next_by_subj` (no direct get needed); the client's type omits it.
    const query =
      lastSubjectSequence !== undefined
        ? ({ next_by_subj: subject, seq: lastSubjectSequence + 1 } as unknown as MsgRequest)
        : { seq: (lastSequence as number) + 1 };
    const m = await jsm.streams.getMessage(stream, query);
    return m?.header?.get('Nats-Msg-Id') === msgId
      ? { stream, seq: m.seq, duplicate: true }
      : undefined;
  } catch {
    return undefined;
  }
}
