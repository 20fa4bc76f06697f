/** What {@link withDeadline} resolves with when the deadline passed first. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * Settles like `work`, or resolves with {@link TIMED_OUT} once `ms` passed; the timer is cleared
 * either way. `work` keeps running after a timeout: the caller decides what to do with it.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
