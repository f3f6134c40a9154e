import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * One pg type parser set for every pool: int8 and numeric become bigint (money never passes
 * through Number). Read-model tables keep money in int8 columns; a count(*) is an int8 too, so
 * callers convert counts with Number() on purpose.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => BigInt(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

export interface PoolOptions {
  max: number;
  statementTimeoutMs: number;
  applicationName?: string;
}

export function createPool(connectionString: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    types,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs,
    // Our own transactions must stay short: an open transaction holds back every event subscriber.
    idle_in_transaction_session_timeout: 60_000,
    application_name: options.applicationName ?? 'ledger',
    // Every statement here is short and by key, yet a plan estimated from stale statistics can cost
    // past jit_above_cost: the history settling updates then spent 160 ms compiling to run 2 ms
    // (auto_explain in the transfers benchmark, every batch). JIT pays only for long analytic scans.
    options: '-c jit=off',
    onConnect: raiseAllocatorThresholds,
  });
  // An idle client that loses its connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  // A checked-out client whose connection dies between queries (for example idle in a transaction)
  // emits 'error' too; the failure reaches its owner through the next query instead.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * glibc gives a server backend's freed heap back to the kernel once more than 128 KiB lie free at
 * its top, so a backend whose statements peak above that (a group append, a batch of read-model
 * rows) grows and shrinks its heap with brk on every statement: page faults to grow, a TLB
 * shootdown to shrink. On this project's virtual machines that was 12.6 % of PostgreSQL's CPU in
 * the projections benchmark. Freeing one block that glibc had to mmap raises the backend's mmap
 * and trim thresholds to that block's size and twice it, for the connection's lifetime, so the
 * heap stays grown. 8 MiB: below glibc's 32 MiB cap, above any one statement's peak here.
 */
const ALLOCATOR_WARM_UP_SQL = `select length(repeat('x', ${8 * 1024 * 1024}))`;

export async function raiseAllocatorThresholds(client: pg.ClientBase): Promise<void> {
  // Awaited by the pool before the client is handed out; a failure costs only the optimisation.
  await client.query(ALLOCATOR_WARM_UP_SQL).catch(() => undefined);
}

export function createKysely<Database>(pool: pg.Pool): Kysely<Database> {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
