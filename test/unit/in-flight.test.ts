import { describe, expect, it } from 'vitest';
import { InFlightRequests } from '../../src/connection/in-flight.js';
import { isTransient, NotConnectedError, RequestInterruptedError } from '../../src/retry/retry.js';

/** A request whose settling the test controls. */
function pending<T>() {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('InFlightRequests', () => {
  it('sends at once while connected', async () => {
    const r = new InFlightRequests();
    r.connected();
    let sent = 0;
    expect(await r.run(async () => ++sent, 1_000)).toBe(1);
  });

  it('holds a request issued while the connection is down until it is back, and sends it once', async () => {
    const r = new InFlightRequests();
    r.connected();
    r.disconnected();
    let sent = 0;
    const run = r.run(async () => ++sent, 5_000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent).toBe(0); // the client would drop it now
    r.connected();
    expect(await run).toBe(1);
    expect(sent).toBe(1);
  });

  it('rejects with a transient NotConnectedError, nothing sent, when the connection stays down', async () => {
    const r = new InFlightRequests();
    let sent = 0;
    const err = await r.run(async () => ++sent, 30).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotConnectedError);
    expect(isTransient(err)).toBe(true);
    expect(sent).toBe(0);
  });

  it('interrupts a request in flight across a loss as soon as the connection is back', async () => {
    const r = new InFlightRequests();
    r.connected();
    const reply = pending<string>();
    const run = r.run(() => reply.promise, 1_000);
    r.disconnected();
    r.connected();
    expect(await run.catch((e: unknown) => e)).toBeInstanceOf(RequestInterruptedError);
  });

  it('lets waiting requests go when released (a closed connection fails them itself)', async () => {
    const r = new InFlightRequests();
    const run = r.run(async () => 'sent', 60_000);
    r.release();
    expect(await run).toBe('sent');
  });
});
