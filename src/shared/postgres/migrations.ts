import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import * as eventStoreSchema from '../../eventstore/postgres/schema.js';
import { readModelMigrations } from '../../projections/migrations.js';
import * as processManager from '../../write/transfers/processManager.js';

/**
 * Every migration, named with a date prefix so they sort in the order they were written.
 * Each read model owns its migration file and contributes it through projections/migrations.ts.
 * Migrations take Kysely<any>-style handles and raw SQL so they stay frozen in time.
 */
export function allMigrations(): Record<string, Migration> {
  return {
    '2026-11-25-0001-event-store': { up: eventStoreSchema.up },
    ...readModelMigrations,
    '2026-11-25-0200-transfer-deadlines': { up: processManager.up },
    '2026-11-25-0300-event-store-append-many': { up: eventStoreSchema.upAppendMany },
    '2026-11-25-0301-event-store-drop-type-index': { up: eventStoreSchema.upDropTypeIndex },
    '2026-11-26-0302-event-store-append-core': { up: eventStoreSchema.upAppendCore },
    '2026-11-26-0500-event-store-append-set-based': { up: eventStoreSchema.upAppendSetBased },
    '2026-11-26-0600-event-store-append-checks-ids-on-refusal': { up: eventStoreSchema.upAppendChecksIdsOnRefusal },
  };
}

class StaticMigrationProvider implements MigrationProvider {
  constructor(private readonly migrations: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.migrations;
  }
}

/** Idempotent and safe when several processes start at once: Kysely's migrator holds an advisory lock. */
export async function migrateToLatest(db: Kysely<unknown>): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: new StaticMigrationProvider(allMigrations()),
    migrationTableName: 'ledger_migration',
    migrationLockTableName: 'ledger_migration_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    const cause = error instanceof Error ? error.message : String(error ?? '');
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${cause}`);
  }
  await assertPositionsAhead(db);
}

export async function migrationsApplied(db: Kysely<unknown>): Promise<boolean> {
  const expected = Object.keys(allMigrations());
  const applied = await sql<{ name: string }>`select name from ledger_migration`.execute(db).catch(() => ({ rows: [] as { name: string }[] }));
  const names = new Set(applied.rows.map((row) => row.name));
  return expected.every((name) => names.has(name));
}

/**
 * Event positions embed the writing transaction id. A database restored into a new cluster can
 * start with lower transaction ids than the stored events, and new events would sort before old
 * ones. Refuse to run rather than corrupt the order (docs/architecture.md says how to recover).
 */
async function assertPositionsAhead(db: Kysely<unknown>): Promise<void> {
  const result = await sql<{ ahead: boolean; max_xid: string | null; next_xid: string }>`
    select coalesce(max(position) >> ${sql.raw(String(eventStoreSchema.POSITION_SHIFT_BITS))}, 0) < pg_snapshot_xmax(pg_current_snapshot())::text::bigint as ahead,
           (max(position) >> ${sql.raw(String(eventStoreSchema.POSITION_SHIFT_BITS))})::text as max_xid,
           pg_snapshot_xmax(pg_current_snapshot())::text as next_xid
      from ledger_events`.execute(db);
  const row = result.rows[0];
  if (row && !row.ahead) {
    throw new Error(
      `event store positions are ahead of this cluster's transaction ids (stored ${row.max_xid}, next ${row.next_xid}); this database was restored into a new cluster: raise the xid epoch with pg_resetwal --epoch before starting`,
    );
  }
}
