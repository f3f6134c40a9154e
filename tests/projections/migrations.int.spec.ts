/**
 * Read-model migrations that reshape live tables must work on the tables as they are found,
 * including after a rebuild swapped in tables whose constraints carry the shadow tables' names.
 */
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upKeyedByPosition } from '../../src/projections/transactions/table.js';
import { createKysely, createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

describe('history rows keyed by position (migration 2026-11-26-0400)', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let db: Kysely<unknown>;

  beforeAll(async () => {
    database = await createTestDatabase('mig');
    pool = createPool(database.url, { max: 2, statementTimeoutMs: 30_000 });
    db = createKysely<unknown>(pool);
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });

  const primaryKey = async () =>
    (
      await sql<{ name: string; columns: string[] }>`
        select c.conname as name, array_agg(a.attname::text) as columns from pg_constraint c
          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
         where c.conrelid = 'account_transactions'::regclass and c.contype = 'p' group by c.conname`.execute(db)
    ).rows[0];

  it('a migrated database keys history rows by position', async () => {
    expect(await primaryKey()).toEqual({ name: 'account_transactions_pkey', columns: ['position'] });
  });

  it('moves the key from id to position under whatever name a rebuild left it, keeps the rows, and is idempotent', async () => {
    // The table as an older version left it after a rebuild: keyed by id, the key named after the shadow table.
    await sql`alter table account_transactions drop constraint account_transactions_pkey`.execute(db);
    await sql`alter table account_transactions add constraint account_transactions__next_pkey primary key (id)`.execute(db);
    await sql`insert into account_transactions (id, account_id, type, currency, amount_minor, balance_after_minor, status, occurred_at, event_id, position)
      values ('e1', 'a1', 'deposit', 'EUR', 100, 100, 'completed', now(), 'e1', 10), ('e2', 'a1', 'deposit', 'EUR', 5, 105, 'completed', now(), 'e2', 11)`.execute(db);

    await upKeyedByPosition(db);
    await upKeyedByPosition(db);

    expect(await primaryKey()).toEqual({ name: 'account_transactions_pkey', columns: ['position'] });
    const rows = await sql<{ id: string }>`select id from account_transactions order by position`.execute(db);
    expect(rows.rows.map((row) => row.id)).toEqual(['e1', 'e2']);
    await expect(sql`insert into account_transactions (id, account_id, type, currency, amount_minor, status, occurred_at, event_id, position)
      values ('e3', 'a1', 'deposit', 'EUR', 1, 'completed', now(), 'e3', 11)`.execute(db)).rejects.toThrow(/duplicate key/);
  });
});
