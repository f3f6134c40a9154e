import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { pino } from 'pino';
import { sql, type Kysely } from 'kysely';
import { afterEach } from 'vitest';
import type { GlobalFilter, RecordedEvent } from '../../src/eventstore/port.js';
import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import { createShadowTables, liveTables, shadowTables, type Projection, type TableNames } from '../../src/projections/projection.js';
import { PROJECTIONS } from '../../src/projections/registry.js';
import { ProjectionRunner, type RunnerOptions } from '../../src/projections/runner.js';
import { createKysely, createPool } from '../../src/shared/postgres/pool.js';
import type { CommandContext } from '../../src/write/commandHandler.js';
import { accountStream, customerStream, emailReservationStream, transferStream } from '../../src/write/streams.js';
import { createWriteSide, type WriteSide } from '../../src/write/writeSide.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** The key of every read-model table, so snapshots list rows in a stable order. */
const TABLE_KEYS: Record<string, string> = {
  account_balances: 'account_id',
  account_holds: 'hold_key',
  account_transactions: 'id',
  transaction_balances: 'account_id',
  transfers: 'transfer_id',
  customers: 'customer_id',
};

export interface ProjectionEnv {
  database: TestDatabase;
  pool: pg.Pool;
  db: Kysely<unknown>;
  store: PostgresEventStore;
  write: WriteSide;
  /** Builds a runner on this database; closed with the environment. */
  runner(projection: Projection, options?: Partial<RunnerOptions> & { db?: Kysely<unknown> }): ProjectionRunner;
  close(): Promise<void>;
}

/** A fresh migrated database with an event store, a Kysely handle and the write side. */
/**
 * One projection environment per test: `open()` makes it; after each test its cleanups run, newest
 * first, then it closes.
 */
export function projectionEnvPerTest(): { open: () => Promise<ProjectionEnv>; current: () => ProjectionEnv; cleanups: (() => Promise<void>)[] } {
  let env: ProjectionEnv | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    await env?.close();
    env = undefined;
  });
  return {
    open: async () => (env = await openProjectionEnv()),
    current: () => {
      if (env === undefined) throw new Error('no projection environment is open');
      return env;
    },
    cleanups,
  };
}

export async function openProjectionEnv(prefix = 'proj'): Promise<ProjectionEnv> {
  const database = await createTestDatabase(prefix);
  const pool = createPool(database.url, { max: 16, statementTimeoutMs: 30_000, applicationName: 'projection-test' });
  const db = createKysely<unknown>(pool);
  const store = new PostgresEventStore(pool, database.url, { pollIntervalMs: 100 });
  const write = createWriteSide(store, { retryLimit: 8 });
  const runners: ProjectionRunner[] = [];
  return {
    database,
    pool,
    db,
    store,
    write,
    runner(projection, { db: runnerDb, ...options } = {}) {
      const runner = new ProjectionRunner(projection, runnerDb ?? db, store, database.url, { batchSize: 50, logger: silentLogger, lockRetryMs: 200, ...options });
      runners.push(runner);
      return runner;
    },
    async close() {
      await Promise.all(runners.map((runner) => runner.stop().catch(() => undefined)));
      await store.close();
      await db.destroy();
      await database.drop();
    },
  };
}

/** A second pool on the same database, named so its sessions can be found (and killed) by name. */
export function namedKysely(env: ProjectionEnv, applicationName: string): { pool: pg.Pool; db: Kysely<unknown> } {
  const pool = createPool(env.database.url, { max: 6, statementTimeoutMs: 30_000, applicationName });
  // A session killed while it sits idle in a transaction reports on the client itself; a dead process would not care.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return { pool, db: createKysely<unknown>(pool) };
}

// ---------------------------------------------------------------------------------------------
// Domain traffic through the write side
// ---------------------------------------------------------------------------------------------

const CURRENCY = 'EUR';

function context(): CommandContext {
  const key = randomUUID();
  return { idempotencyKey: key, requestHash: key, actor: 'teller:projection-test', correlationId: randomUUID() };
}

const now = () => new Date().toISOString();
const inMinutes = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

export async function registerActiveCustomer(write: WriteSide): Promise<string> {
  const customerId = randomUUID();
  const email = `${customerId}@example.com`;
  await write.emails.handle(emailReservationStream(email), { type: 'ReserveEmail', data: { emailNormalized: email, customerId, now: now() } }, context());
  await write.customers.handle(customerStream(customerId), { type: 'RegisterCustomer', data: { customerId, email, firstName: 'Ada', lastName: 'Lovelace', now: now() } }, context());
  await write.customers.handle(customerStream(customerId), { type: 'ActivateCustomer', data: { customerId, now: now() } }, context());
  return customerId;
}

export async function openAccount(write: WriteSide, customerId: string): Promise<string> {
  const accountId = randomUUID();
  const result = await write.accounts.handle(
    accountStream(accountId),
    { type: 'OpenAccount', data: { accountId, customerId, customerStatus: 'active', currency: CURRENCY, accountType: 'checking', overdraftLimitMinor: 0n, now: now() } },
    context(),
  );
  if (result.events[0]?.type !== 'AccountOpened') throw new Error(`account ${accountId} was not opened`);
  return accountId;
}

export async function deposit(write: WriteSide, accountId: string, amountMinor: bigint): Promise<void> {
  await write.accounts.handle(
    accountStream(accountId),
    { type: 'Deposit', data: { accountId, transactionId: randomUUID(), currency: CURRENCY, amountMinor, reference: 'salary', description: 'monthly salary', now: now() } },
    context(),
  );
}

/** Drives a transfer the way the process manager does; returns its final status. */
export async function transfer(write: WriteSide, fromAccountId: string, toAccountId: string, amountMinor: bigint): Promise<'completed' | 'failed'> {
  const transferId = randomUUID();
  const stream = transferStream(transferId);
  const facts = { transferId, currency: CURRENCY, amountMinor };
  await write.transfers.handle(
    stream,
    { type: 'RequestTransfer', data: { ...facts, fromAccountId, toAccountId, description: 'rent', deadlineAt: inMinutes(10), holdExpiresAt: inMinutes(20), now: now() } },
    context(),
  );
  const hold = await write.accounts.handle(accountStream(fromAccountId), { type: 'PlaceTransferHold', data: { ...facts, accountId: fromAccountId, expiresAt: inMinutes(20), now: now() } }, context());
  const placed = hold.events[0];
  if (placed?.type === 'TransferHoldRejected') {
    await write.transfers.handle(stream, { type: 'FailTransfer', data: { transferId, reason: placed.data.reason, now: now() } }, context());
    return 'failed';
  }
  const credit = await write.accounts.handle(
    accountStream(toAccountId),
    { type: 'CreditTransfer', data: { ...facts, accountId: toAccountId, fromAccountId, description: 'rent', now: now() } },
    context(),
  );
  const credited = credit.events[0];
  if (credited?.type === 'TransferCreditRejected') {
    await write.transfers.handle(stream, { type: 'StartCompensation', data: { transferId, reason: credited.data.reason, now: now() } }, context());
    await write.accounts.handle(accountStream(fromAccountId), { type: 'ReleaseTransferHold', data: { accountId: fromAccountId, transferId, now: now() } }, context());
    await write.transfers.handle(stream, { type: 'FailTransfer', data: { transferId, reason: credited.data.reason, now: now() } }, context());
    return 'failed';
  }
  await write.accounts.handle(accountStream(fromAccountId), { type: 'CaptureTransferHold', data: { accountId: fromAccountId, transferId, toAccountId, now: now() } }, context());
  await write.transfers.handle(stream, { type: 'CompleteTransfer', data: { transferId, now: now() } }, context());
  return 'completed';
}

/**
 * One customer's realistic month: two accounts, deposits and withdrawals, holds captured and
 * released, a completed transfer, a transfer refused for funds, a transfer compensated because the
 * destination closed, a freeze, an overdraft change and a suspension. Every projection branch runs.
 */
export async function customerMonth(write: WriteSide): Promise<{ customerId: string; accountIds: string[] }> {
  const customerId = await registerActiveCustomer(write);
  const [main, savings, closing] = [await openAccount(write, customerId), await openAccount(write, customerId), await openAccount(write, customerId)];
  await deposit(write, main, 100_00n);
  await write.accounts.handle(
    accountStream(main),
    { type: 'Withdraw', data: { accountId: main, transactionId: randomUUID(), currency: CURRENCY, amountMinor: 20_00n, reference: null, description: 'cash', now: now() } },
    context(),
  );
  const captured = randomUUID();
  const released = randomUUID();
  for (const [holdId, amountMinor] of [[captured, 10_00n], [released, 5_00n]] as const) {
    await write.accounts.handle(
      accountStream(main),
      { type: 'PlaceHold', data: { accountId: main, holdId, currency: CURRENCY, amountMinor, expiresAt: inMinutes(30), reference: 'card', description: 'hotel', now: now() } },
      context(),
    );
  }
  await write.accounts.handle(accountStream(main), { type: 'CaptureHold', data: { accountId: main, holdId: captured, amountMinor: 4_00n, now: now() } }, context());
  await write.accounts.handle(accountStream(main), { type: 'ReleaseHold', data: { accountId: main, holdId: released, now: now() } }, context());
  if ((await transfer(write, main, savings, 30_00n)) !== 'completed') throw new Error('the funded transfer should complete');
  if ((await transfer(write, savings, main, 1_000_000_00n)) !== 'failed') throw new Error('the unfunded transfer should fail');
  await write.accounts.handle(accountStream(closing), { type: 'CloseAccount', data: { accountId: closing, now: now() } }, context());
  if ((await transfer(write, main, closing, 1_00n)) !== 'failed') throw new Error('a transfer to a closed account should be compensated');
  await write.accounts.handle(accountStream(savings), { type: 'FreezeAccount', data: { accountId: savings, reason: 'review', now: now() } }, context());
  await write.accounts.handle(accountStream(savings), { type: 'UnfreezeAccount', data: { accountId: savings, now: now() } }, context());
  await write.accounts.handle(accountStream(main), { type: 'SetOverdraftLimit', data: { accountId: main, overdraftLimitMinor: 50_00n, now: now() } }, context());
  await write.customers.handle(customerStream(customerId), { type: 'SuspendCustomer', data: { customerId, reason: 'kyc', now: now() } }, context());
  await write.customers.handle(customerStream(customerId), { type: 'ReactivateCustomer', data: { customerId, now: now() } }, context());
  return { customerId, accountIds: [main, savings, closing] };
}

export async function customerMonths(write: WriteSide, customers: number): Promise<{ customerId: string; accountIds: string[] }[]> {
  return Promise.all(Array.from({ length: customers }, () => customerMonth(write)));
}

// ---------------------------------------------------------------------------------------------
// Reading the log and the read models
// ---------------------------------------------------------------------------------------------

export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until every stored event is below the safe horizon, and returns the newest position. */
export async function settledHead(db: Kysely<unknown>): Promise<bigint> {
  let head = 0n;
  await waitUntil(async () => {
    const { rows } = await sql<{ head: bigint | null; safe: bigint }>`select (select max(position) from ledger_events) as head, ledger_safe_position() as safe`.execute(db);
    head = rows[0]!.head ?? 0n;
    return rows[0]!.safe >= head;
  }, 'every event is below the safe horizon');
  return head;
}

/** Every event a projection subscribes to, in log order (optionally only those up to `upTo`). */
export async function readEverything(store: PostgresEventStore, filter: GlobalFilter, upTo?: bigint): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  for (let page = 0; page < 1_000; page++) {
    const next = await store.readAll({ after: events.at(-1)?.position ?? 0n, maxCount: 1_000, filter });
    events.push(...next.filter((event) => upTo === undefined || event.position <= upTo));
    if (next.length < 1_000) return events;
  }
  throw new Error('more events than a test should write');
}

export async function checkpointOf(db: Kysely<unknown>, name: string): Promise<{ position: bigint; failing_event_id: string | null } | undefined> {
  const { rows } = await sql<{ position: bigint; failing_event_id: string | null }>`select position, failing_event_id from projection_checkpoints where name = ${name}`.execute(db);
  return rows[0];
}

export async function waitForCheckpoints(db: Kysely<unknown>, projections: readonly Projection[], position: bigint, timeoutMs = 15_000): Promise<void> {
  await waitUntil(async () => {
    for (const projection of projections) if (((await checkpointOf(db, projection.name))?.position ?? 0n) < position) return false;
    return true;
  }, `checkpoints of ${projections.map((projection) => projection.name).join(', ')} reach ${position}`, timeoutMs);
}

/** All rows of the projections' tables, as JSON text in key order, so equal snapshots are byte-identical. */
export async function snapshot(db: Kysely<unknown>, projections: readonly Projection[] = PROJECTIONS, tables: TableNames = liveTables): Promise<Record<string, string[]>> {
  const result: Record<string, string[]> = {};
  for (const projection of projections) {
    for (const table of projection.tables) {
      const key = TABLE_KEYS[table];
      if (!key) throw new Error(`no key known for table ${table}; add it to TABLE_KEYS`);
      const { rows } = await sql<{ row: string }>`select to_jsonb(t)::text as row from ${sql.table(tables(table))} t order by ${sql.ref(key)}`.execute(db);
      result[table] = rows.map((row) => row.row);
    }
  }
  return result;
}

/**
 * Rebuilds the projection into its `__next` shadow tables from the log in one transaction: the
 * reference a clean run must match. With `upTo`, only the events up to that position.
 */
export async function buildReference(env: ProjectionEnv, projection: Projection, upTo?: bigint): Promise<number> {
  const events = await readEverything(env.store, projection.filter, upTo);
  await createShadowTables(env.db, projection);
  if (events.length > 0) await env.db.transaction().execute((trx) => projection.apply(trx, events, shadowTables));
  return events.length;
}

/** Rows in the live tables but not the shadow tables, or the other way round (duplicates count). */
export async function differencesFromReference(db: Kysely<unknown>, projection: Projection): Promise<Record<string, number>> {
  const differences: Record<string, number> = {};
  for (const table of projection.tables) {
    const live = sql.table(table);
    const shadow = sql.table(shadowTables(table));
    const { rows } = await sql<{ missing: bigint; extra: bigint }>`select
        (select count(*) from (select * from ${shadow} except all select * from ${live}) d) as missing,
        (select count(*) from (select * from ${live} except all select * from ${shadow}) d) as extra`.execute(db);
    differences[table] = Number(rows[0]!.missing + rows[0]!.extra);
  }
  return differences;
}

export function noDifferences(projection: Projection): Record<string, number> {
  return Object.fromEntries(projection.tables.map((table) => [table, 0]));
}
