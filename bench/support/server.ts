/**
 * The PostgreSQL server every benchmark runs against: DATABASE_URL when it is set, else a durable
 * embedded PostgreSQL in ./.bench-data. Each benchmark makes its own database and drops it.
 */
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/shared/postgres/embedded.js';

export interface Server {
  adminUrl: string;
  kind: 'DATABASE_URL' | 'embedded';
  stop(): Promise<void>;
}

export async function openServer(port: number): Promise<Server> {
  const databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl) return { adminUrl: databaseUrl, kind: 'DATABASE_URL', stop: async () => undefined };
  console.log(`DATABASE_URL is not set: starting a durable embedded PostgreSQL in ./.bench-data on port ${port}`);
  const handle = await startEmbeddedPostgres({ dataDir: './.bench-data', port, durable: true, database: 'postgres' });
  return { adminUrl: handle.urlFor('postgres'), kind: 'embedded', stop: () => handle.stop() };
}

export function urlFor(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(adminUrl: string, database: string): Promise<void> {
  await withAdmin(adminUrl, (client) => client.query(`create database ${client.escapeIdentifier(database)}`));
}

export async function dropDatabase(adminUrl: string, database: string): Promise<void> {
  await withAdmin(adminUrl, (client) => client.query(`drop database if exists ${client.escapeIdentifier(database)} with (force)`)).catch((error: unknown) =>
    console.error(`dropping ${database} failed`, error),
  );
}

