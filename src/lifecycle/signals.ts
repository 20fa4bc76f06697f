import type { Logger } from 'pino';

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/**
 * Installs SIGTERM/SIGINT listeners: the first signal runs `stop` and exits with 0 when it
 * succeeded, 1 when not; a second signal exits with 1 at once. Returns the uninstaller.
 */
export function installSignalHandlers(stop: () => Promise<void>, logger: Logger): () => void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    received = true;
    logger.info({ signal }, 'signal received, stopping');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop after signal failed');
        process.exit(1);
      },
    );
  };
  for (const s of SIGNALS) process.on(s, handler);
  return () => {
    for (const s of SIGNALS) process.off(s, handler);
  };
}
