import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Every Redis call is bounded: the API never waits on Redis longer than this. */
export const REDIS_COMMAND_TIMEOUT_MS = 500;
const CONNECT_TIMEOUT_MS = 1_000;
const RETRY_DELAY_MS_MAX = 5_000;
const RETRY_DELAY_MS_BASE = 100;
/** How long startup waits for the first connection before serving with local stand-ins. */
const STARTUP_WAIT_MS = 1_500;

export type RedisState = 'connecting' | 'up' | 'down';

export interface RedisStatus {
  state: RedisState;
  /** CLIENT SETNAME of this process's connection, to find it in CLIENT LIST. */
  connectionName: string;
  /** When the state last changed. */
  sinceIso: string;
  lastError?: string;
}

/**
 * One Redis connection for the process's shared security state (rate-limit counters, the
 * idempotency response cache). Redis is an accelerator, never a dependency: commands fail fast
 * when it is down (no offline queue, one retry, a command timeout) and callers fall back to
 * in-process stand-ins.
 */
export interface RedisHandle {
  client: Redis;
  status(): RedisStatus;
  isUp(): boolean;
  close(): Promise<void>;
}

export async function connectRedis(url: string | undefined, logger: Logger): Promise<RedisHandle | undefined> {
  if (!url) return undefined;
  const connectionName = `ledger-${process.pid}-${randomBytes(4).toString('hex')}`;
  let status: RedisStatus = { state: 'connecting', connectionName, sinceIso: new Date().toISOString() };
  let closed = false;
  const transition = (state: RedisState, error?: Error) => {
    if (closed) return;
    if (state === status.state) {
      if (error) status.lastError = error.message.slice(0, 200);
      return;
    }
    const previous = status.state;
    status = { state, connectionName, sinceIso: new Date().toISOString(), ...(error ? { lastError: error.message.slice(0, 200) } : {}) };
    if (state === 'down') logger.warn({ previous, err: error?.message }, 'redis is down: using in-process rate limits and no idempotency cache');
    else if (state === 'up' && previous === 'down') logger.warn('redis is back up: shared rate limits and the idempotency cache resume');
    else logger.info({ state }, 'redis connection state');
  };

  const client = new Redis(url, {
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    lazyConnect: true,
    connectionName,
    retryStrategy: (attempt: number) => Math.min(RETRY_DELAY_MS_BASE * 2 ** Math.min(attempt, 10), RETRY_DELAY_MS_MAX),
  });
  client.on('ready', () => transition('up'));
  client.on('error', (error: Error) => transition('down', error));
  client.on('close', () => transition('down'));
  client.on('end', () => transition('down'));

  const connected = client.connect().then(
    () => true,
    () => false,
  );
  const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), STARTUP_WAIT_MS).unref());
  if (!(await Promise.race([connected, timedOut]))) transition('down', new Error(`no connection within ${STARTUP_WAIT_MS} ms`));

  return {
    client,
    status: () => ({ ...status }),
    isUp: () => status.state === 'up',
    async close() {
      if (closed) return;
      closed = true;
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      await client.quit().catch(() => client.disconnect());
    },
  };
}
