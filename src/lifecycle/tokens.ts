import type { Logger } from 'pino';
import { createToken, type Token } from './service.js';
import type { ServiceManager } from './service-manager.js';

/** Token of the manager's root logger (pino, secrets redacted). */
export const LOGGER: Token<Logger> = createToken<Logger>('Logger');
/** Token of the ServiceManager itself. */
export const SERVICE_MANAGER: Token<ServiceManager> = createToken<ServiceManager>('ServiceManager');
