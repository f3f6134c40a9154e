import { sql, type Kysely, type Transaction } from 'kysely';
import type { GlobalFilter, RecordedEvent } from '../eventstore/port.js';

/**
 * A read model's projection. `apply` writes the rows for a batch of events inside the batch's
 * transaction; the runner commits the checkpoint in the same transaction. `apply` must be
 * idempotent per event (it may see an event again after a crash before the commit was known), and
 * write only to the tables it is given, so a rebuild can aim it at shadow tables.
 */
export interface Projection {
  name: string;
  /** The live tables this projection owns, in creation order. */
  tables: readonly string[];
  filter: GlobalFilter;
  /**
   * Side effects of a batch that must not run inside its transaction (the process manager's
   * commands). They run before the transaction and must be idempotent: after a crash they run again.
   */
  beforeTransaction?(events: readonly RecordedEvent[]): Promise<void>;
  apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames): Promise<void>;
}

/** Maps a projection's live table name to the table it should write (itself, or a shadow copy). */
export type TableNames = (table: string) => string;
export const liveTables: TableNames = (table) => table;
export const shadowTables: TableNames = (table) => `${table}__next`;

/** Reads the current rows for `keys` so a batch can fold its events over them. */
export async function loadRows<Row>(trx: Transaction<unknown> | Kysely<unknown>, table: string, keyColumn: string, keys: readonly string[]): Promise<Map<string, Row>> {
  const rows = new Map<string, Row>();
  if (keys.length === 0) return rows;
  const result = await sql<Row & Record<string, unknown>>`select * from ${sql.table(table)} where ${sql.ref(keyColumn)} = any(${[...keys]}::text[])`.execute(trx);
  for (const row of result.rows) rows.set(String(row[keyColumn]), row);
  return rows;
}

/** One multi-row upsert for a batch's changed rows. */
export async function upsertRows(trx: Transaction<unknown>, table: string, keyColumn: string, rows: readonly Record<string, unknown>[]): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]!);
  const values = rows.map((row) => sql`(${sql.join(columns.map((column) => sql`${toSqlValue(row[column])}`))})`);
  const updates = columns.filter((column) => column !== keyColumn).map((column) => sql`${sql.ref(column)} = excluded.${sql.ref(column)}`);
  await sql`insert into ${sql.table(table)} (${sql.join(columns.map((column) => sql.ref(column)))}) values ${sql.join(values)}
    on conflict (${sql.ref(keyColumn)}) do update set ${sql.join(updates)}`.execute(trx);
}

function toSqlValue(value: unknown): unknown {
  if (Array.isArray(value) || (typeof value === 'object' && value !== null && !(value instanceof Date))) {
    return JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item));
  }
  return value;
}

/** Creates empty copies of a projection's tables (columns, defaults, constraints and indexes). */
export async function createShadowTables(db: Kysely<unknown> | Transaction<unknown>, projection: Projection): Promise<void> {
  for (const table of projection.tables) {
    await sql`drop table if exists ${sql.table(shadowTables(table))}`.execute(db);
    await sql`create table ${sql.table(shadowTables(table))} (like ${sql.table(table)} including all)`.execute(db);
  }
}
