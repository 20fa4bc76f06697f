import { NotConnectedError, RequestInterruptedError } from '../retry/retry.js';

interface InFlight {
  readonly interrupted: () => void;
  /** The connection was lost after the request was sent. */
  lost: boolean;
}

/**
 * The built-in services' requests across the loss and return of the connection.
 *
 * The client does not keep what is published while the connection is down: each reconnect
 * attempt resets its outbound buffer (NATS is at most once), so a request sent then is never
 * seen by the server, and its caller waits for the whole request timeout although the server
 * is back (measured: 5.1 s for a put issued the moment a restarted server accepted connections,
 * while the load resumed within 0.5 s). So a request is only sent on a live connection: one
 * issued while the connection is down waits for it to come back (within `waitMs`), and one in
 * flight when the connection is lost is rejected with {@link RequestInterruptedError} as soon
 * as it is back (its reply went with the server that had it), to be retried at once.
 *
 * The state follows the connection's status events, which trail the client by a few
 * microtasks; a request sent in that gap is marked lost by the disconnect event and retried.
 */
export class InFlightRequests {
  /** Told of every request that failed, with when it was sent (the link watch probes on timeouts). */
  onFailure: ((err: unknown, sentAt: number) => void) | undefined;
  #connected = false;
  #released = false;
  readonly #inFlight = new Set<InFlight>();
  /** Requests waiting for the connection; each is called once it is back (or released). */
  readonly #waiting = new Set<() => void>();

  /**
   * Sends `send()` once the connection is up, and settles like it, or rejects with
   * {@link RequestInterruptedError} when the connection is lost and comes back while it is in
   * flight, or with {@link NotConnectedError} (nothing sent) when the connection is not back
   * within `waitMs`.
   */
  run<R>(send: () => Promise<R>, waitMs: number): Promise<R> {
    if (this.#connected || this.#released) return this.#track(send);
    return new Promise<R>((resolve, reject) => {
      const go = () => {
        clearTimeout(timer);
        this.#waiting.delete(go);
        this.#track(send).then(resolve, reject);
      };
      const timer = setTimeout(() => {
        this.#waiting.delete(go);
        reject(new NotConnectedError(waitMs));
      }, waitMs);
      this.#waiting.add(go);
    });
  }

  #track<R>(send: () => Promise<R>): Promise<R> {
    const sentAt = this.onFailure ? performance.now() : 0;
    let request: Promise<R>;
    try {
      request = send();
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#released) return request;
    return new Promise<R>((resolve, reject) => {
      const entry: InFlight = {
        lost: !this.#connected,
        interrupted: () => {
          request.catch(() => undefined); // it times out later; nobody waits for it
          reject(new RequestInterruptedError());
        },
      };
      this.#inFlight.add(entry);
      request.then(
        (value) => {
          this.#inFlight.delete(entry);
          resolve(value);
        },
        (err: unknown) => {
          this.#inFlight.delete(entry);
          this.onFailure?.(err, sentAt);
          reject(err);
        },
      );
    });
  }

  /** The connection is up (first connect, or back after a loss). */
  connected(): void {
    this.#connected = true;
    for (const r of this.#inFlight) {
      if (!r.lost) continue;
      this.#inFlight.delete(r);
      r.interrupted();
    }
    for (const go of [...this.#waiting]) go();
  }

  /** The connection was lost: what is in flight now will get no reply. */
  disconnected(): void {
    this.#connected = false;
    for (const r of this.#inFlight) r.lost = true;
  }

  /**
   * The connection is closed or no longer followed: waiting requests are sent now (they fail
   * with the client's own error on a closed connection), and nothing is tracked any more.
   */
  release(): void {
    this.#released = true;
    for (const go of [...this.#waiting]) go();
    this.#inFlight.clear();
  }
}
