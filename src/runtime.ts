import { resolve } from 'node:path';
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { EventStore } from './eventstore/port.js';
import { PostgresEventStore } from './eventstore/postgres/eventStore.js';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from './shared/postgres/embedded.js';
import { migrateToLatest } from './shared/postgres/migrations.js';
import { createKysely, createPool } from './shared/postgres/pool.js';
import type { ReadDatabase } from './projections/database.js';

/** The process's connections: PostgreSQL (read models, and events unless EventStoreDB is configured). */
export interface Runtime {
  config: Config;
  logger: Logger;
  databaseUrl: string;
  pool: pg.Pool;
  db: Kysely<ReadDatabase>;
  store: EventStore;
  embedded: EmbeddedPostgresHandle | undefined;
  close(): Promise<void>;
}

export async function openRuntime(config: Config, logger: Logger): Promise<Runtime> {
  let embedded: EmbeddedPostgresHandle | undefined;
  let databaseUrl = config.DATABASE_URL;
  if (!databaseUrl) {
    const dataDir = resolve(config.LEDGER_DATA_DIR);
    logger.info({ dataDir, port: config.EMBEDDED_PG_PORT }, 'DATABASE_URL is not set: starting embedded PostgreSQL');
    embedded = await startEmbeddedPostgres({ dataDir, port: config.EMBEDDED_PG_PORT, onLog: (message) => logger.debug({ postgres: message.trim() }, 'embedded postgres') });
    databaseUrl = embedded.url;
    if (embedded.shared) logger.info({ port: config.EMBEDDED_PG_PORT }, 'embedded PostgreSQL already running (another ledger process started it): using it');
  }
  const pool = createPool(databaseUrl, { max: config.PG_POOL_MAX, statementTimeoutMs: config.PG_STATEMENT_TIMEOUT_MS });
  try {
    await pool.query('select 1').catch((error: Error) => {
      throw new Error(`PostgreSQL is unreachable at DATABASE_URL: ${error.message}`);
    });
    const db = createKysely<ReadDatabase>(pool);
    await migrateToLatest(db as unknown as Kysely<unknown>);
    let store: EventStore;
    if (config.EVENTSTORE_URL) {
      const { EsdbEventStore } = await import('./eventstore/esdb/eventStore.js');
      store = await EsdbEventStore.connect(config.EVENTSTORE_URL, { logger });
      logger.info('event store: EventStoreDB');
    } else {
      store = new PostgresEventStore(pool, databaseUrl, { logger, maxAppendsInFlight: Math.min(config.PG_APPENDS_IN_FLIGHT, config.PG_POOL_MAX), pipelineMinEvents: config.PG_APPEND_PIPELINE_EVENTS });
      logger.info({ embedded: embedded !== undefined }, 'event store: PostgreSQL');
    }
    return {
      config,
      logger,
      databaseUrl,
      pool,
      db,
      store,
      embedded,
      async close() {
        await store.close().catch((error: unknown) => logger.warn({ err: error }, 'closing the event store failed'));
        await pool.end().catch(() => undefined);
        await embedded?.stop();
      },
    };
  } catch (error) {
    await pool.end().catch(() => undefined);
    await embedded?.stop();
    throw error;
  }
}
