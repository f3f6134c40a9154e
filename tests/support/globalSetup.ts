import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../src/shared/postgres/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A PostgreSQL URL whose user may create databases; each test file makes its own database. */
    databaseAdminUrl: string;
  }
}

let embedded: EmbeddedPostgresHandle | undefined;

/** With DATABASE_URL the tests use that server; without it, the same embedded PostgreSQL the ledger uses. */
export async function setup(project: TestProject): Promise<void> {
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    const dataDir = resolve(process.env.LEDGER_TEST_DATA_DIR ?? '.test-data');
    console.warn(`[setup] DATABASE_URL is not set: starting embedded PostgreSQL in ${dataDir}`);
    embedded = await startEmbeddedPostgres({ dataDir, port: Number(process.env.LEDGER_TEST_PG_PORT ?? 54_330), database: 'postgres', durable: false });
    adminUrl = embedded.url;
  }
  if (!process.env.REDIS_URL) console.warn('[skip] Redis tests: REDIS_URL is not set');
  if (!process.env.EVENTSTORE_URL) console.warn('[skip] EventStoreDB tests: EVENTSTORE_URL is not set');
  project.provide('databaseAdminUrl', adminUrl);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
}
