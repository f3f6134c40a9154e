import { describe, expect, it } from 'vitest';
import { allMigrations } from '../src/shared/postgres/migrations.js';

/**
 * Migrations that have shipped. Databases out there have run them, under these names and in this
 * order (Kysely runs migrations in name order), so the list only ever grows at its end: a shipped
 * migration is never renamed, removed or preceded by a new one. Change a schema with a new,
 * later-named migration, and add its name here.
 */
const SHIPPED = [
  '2026-11-25-0001-event-store',
  '2026-11-25-0100-projection-checkpoints',
  '2026-11-25-0101-account-balances',
  '2026-11-25-0102-account-transactions',
  '2026-11-25-0103-transfers',
  '2026-11-25-0104-customers',
  '2026-11-25-0200-transfer-deadlines',
  '2026-11-25-0300-event-store-append-many',
  '2026-11-25-0301-event-store-drop-type-index',
  '2026-11-26-0302-event-store-append-core',
  '2026-11-26-0400-account-transactions-keyed-by-position',
  '2026-11-26-0500-event-store-append-set-based',
  '2026-11-26-0600-event-store-append-checks-ids-on-refusal',
];

describe('migrations', () => {
  it('keeps every shipped migration, in the order databases ran them; new ones come after', () => {
    const inRunOrder = Object.keys(allMigrations()).sort();
    expect(inRunOrder.slice(0, SHIPPED.length)).toEqual(SHIPPED);
  });

  it('names each migration with a date and a sequence number, so the run order is the written order', () => {
    for (const name of Object.keys(allMigrations())) expect(name).toMatch(/^\d{4}-\d{2}-\d{2}-\d{4}-[a-z0-9-]+$/);
  });
});
