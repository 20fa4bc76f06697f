import type { Logger } from 'pino';
import { createToken, type Token } from './service.js';

/** Token of the manager's root logger (pino, secrets redacted). */
export const LOGGER: Token<Logger> = createToken<Logger>('Logger');
