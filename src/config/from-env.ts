import { NatskitError } from '../errors/natskit-error.js';
import { LOG_LEVELS, type LoggerOptions } from '../logging/logger.js';

/** NATS connection settings read from the environment. Paths are file paths, never contents. */
export interface NatsEnvConfig {
  /**
   * From `NATS_URL`: a comma-separated server list. Credentials in it (`nats://user:pass@host`,
   * `nats://token@host`) are used by the connection (see `ConnectionOptions.servers`).
   */
  readonly servers: readonly string[];
  /** `NATS_TOKEN` */
  readonly token?: string;
  /** `NATS_USER` */
  readonly user?: string;
  /** `NATS_PASSWORD` */
  readonly password?: string;
  /** `NATS_CREDS`: path of a `.creds` file. */
  readonly credsFile?: string;
  /** `NATS_NKEY`: path of a file holding an nkey seed. */
  readonly nkeySeedFile?: string;
  /** `NATS_CA`, `NATS_CERT`, `NATS_KEY`: TLS file paths. */
  readonly tls?: {
    readonly caFile?: string;
    readonly certFile?: string;
    readonly keyFile?: string;
  };
  /** `NATS_NAME`: the connection name. */
  readonly name?: string;
}

/** What {@link fromEnv} found. Fields are absent when their variables are. */
export interface EnvConfig {
  readonly nats?: NatsEnvConfig;
  readonly logger?: LoggerOptions;
}

/**
 * Reads the conventional variables: `NATS_URL`, `NATS_TOKEN`, `NATS_USER`, `NATS_PASSWORD`,
 * `NATS_CREDS`, `NATS_NKEY`, `NATS_CA`, `NATS_CERT`, `NATS_KEY`, `NATS_NAME` and `LOG_LEVEL`.
 *
 * @throws NatskitError `INVALID_OPTIONS` naming the variable when a value is malformed.
 */
export function fromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): EnvConfig {
  const get = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const invalid = (name: string, why: string) =>
    new NatskitError('INVALID_OPTIONS', `environment variable ${name} ${why}`, {
      details: { field: name },
    });

  const out: { nats?: NatsEnvConfig; logger?: LoggerOptions } = {};
  const url = get('NATS_URL');
  if (url !== undefined) {
    const servers = url
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const s of servers) {
      if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(s) && !/^([^\s@/]+@)?[^\s:/@]+(:\d+)?$/.test(s)) {
        throw invalid('NATS_URL', 'must be a comma-separated list of nats:// URLs or host:port');
      }
    }
    const tls = Object.fromEntries(
      (
        [
          ['caFile', get('NATS_CA')],
          ['certFile', get('NATS_CERT')],
          ['keyFile', get('NATS_KEY')],
        ] as const
      ).filter(([, v]) => v !== undefined),
    );
    const fields = {
      token: get('NATS_TOKEN'),
      user: get('NATS_USER'),
      password: get('NATS_PASSWORD'),
      credsFile: get('NATS_CREDS'),
      nkeySeedFile: get('NATS_NKEY'),
      name: get('NATS_NAME'),
    };
    out.nats = {
      servers,
      ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
    };
  }
  const level = get('LOG_LEVEL');
  if (level !== undefined) {
    if (!LOG_LEVELS.includes(level))
      throw invalid('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got '${level}'`);
    out.logger = { level: level as NonNullable<LoggerOptions['level']> };
  }
  return out;
}
