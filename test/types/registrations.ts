// Compile-time tests: each @ts-expect-error must be an error, and the rest must compile. Checked by
// `npm run typecheck` (TypeScript 7) and by the snippet check (TypeScript 5.9 and 7).
import { createToken, LOGGER, type Logger, type Service, ServiceManager } from 'natskit';

class Database implements Service {
  async start() {}
}
class Mailer implements Service {
  constructor(
    readonly db: Database,
    readonly logger: Logger,
  ) {}
}
class Plain {} // a service with no lifecycle method at all
const PORT = createToken<number>('Port');

export async function registrations(): Promise<void> {
  await ServiceManager.start({
    services: [
      { token: Database, useClass: Database },
      { token: Mailer, useClass: Mailer, inject: [Database, LOGGER] },
      { token: Plain, useClass: Plain },
      { token: PORT, useValue: 8080 },
      { token: PORT, useFactory: () => 8080 },
    ],
  });
  // @ts-expect-error a class that does not create the token's type
  await ServiceManager.start({ services: [{ token: Database, useClass: Plain }] });
  // @ts-expect-error a value of another type than the token's
  await ServiceManager.start({ services: [{ token: PORT, useValue: 'x' }] });
  await ServiceManager.start({
    // @ts-expect-error inject's tokens in the wrong order for the constructor
    services: [{ token: Mailer, useClass: Mailer, inject: [LOGGER, Database] }],
  });
  // @ts-expect-error useValue and useClass together
  await ServiceManager.start({ services: [{ token: PORT, useValue: 1, useClass: Plain }] });
}

export class Liveness implements Service {
  liveness() {
    return { status: 'pass' as const };
  }
}
