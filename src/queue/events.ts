import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { checkOptionsObject, knownKeys } from '../config/validate.js';
import { NatskitError } from '../errors/natskit-error.js';
import type { QueueNames } from './names.js';
import type { EventsOptions, QueueEvent, QueueEvents } from './types.js';

const EVENT_TYPES = ['completed', 'failed', 'dead', 'progress'] as const;
const EVENTS_KEYS = knownKeys<EventsOptions>({ types: true, id: true });

/** `queue.<name>.events.<type>.<id>`: core NATS, not stored. */
export function eventSubject(n: QueueNames, type: QueueEvent['type'] | '*', id: string): string {
  return `queue.${n.queue}.events.${type}.${id}`;
}

/** Wire form: the event with its dates as strings. */
type Wire = Omit<QueueEvent, 'at'> & { at: string };

/**
 * Publishes an event (fire and forget: at most once, to whoever listens now). A failure to
 * publish (the connection closed) never fails the job it is about.
 */
export function emit(nc: NatsConnection, n: QueueNames, event: QueueEvent, log: Logger): void {
  try {
    nc.publish(
      eventSubject(n, event.type, event.id),
      JSON.stringify({ ...event, at: event.at.toISOString() }),
    );
  } catch (err) {
    log.debug({ err, type: event.type, id: event.id }, 'queue event not published');
  }
}

/**
 * Listens to a queue's events from any process. The listener is user code: what it throws is
 * logged, never thrown into the subscription.
 */
export function listen(
  nc: NatsConnection,
  n: QueueNames,
  listener: (e: QueueEvent) => void,
  options: EventsOptions | undefined,
  log: Logger,
  onClose: () => void,
): QueueEvents {
  checkOptionsObject('events options', options, EVENTS_KEYS);
  if (typeof listener !== 'function') {
    throw new NatskitError('INVALID_OPTIONS', 'events: the listener must be a function', {
      details: { field: 'listener' },
    });
  }
  const types = options?.types ?? EVENT_TYPES;
  if (!Array.isArray(types) || types.some((t) => !EVENT_TYPES.includes(t))) {
    throw new NatskitError(
      'INVALID_OPTIONS',
      `events options.types must list ${EVENT_TYPES.join(', ')}`,
      {
        details: { field: 'types' },
      },
    );
  }
  const id = options?.id ?? '*';
  const subs: Subscription[] = types.map((type) =>
    nc.subscribe(eventSubject(n, type, id), {
      callback: (err, msg) => {
        if (err) return;
        let event: QueueEvent;
        try {
          const w = msg.json<Wire>();
          event = { ...w, at: new Date(w.at) } as QueueEvent;
        } catch {
          return; // not an event natskit wrote
        }
        try {
          listener(event);
        } catch (thrown) {
          log.error({ err: thrown, type: event.type, id: event.id }, 'queue event listener threw');
        }
      },
    }),
  );
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    for (const s of subs) s.unsubscribe();
    onClose();
  };
  return {
    ready: nc.flush().then(() => undefined),
    close,
    [Symbol.dispose]: close,
  };
}
