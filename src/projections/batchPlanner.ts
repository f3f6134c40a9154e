import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * A batch touches read-model rows by key only, so it is planned as nested loops over the keys
 * through indexes. Left to its estimates, PostgreSQL plans blind on a table without statistics (a
 * new deployment, a rebuild's fresh tables): a hash join or a sequential scan of the whole table for
 * every batch. Measured in bench:transfers on a fresh database: the history status update took
 * 8.3 ms a batch with 408 full scans of the table in 30 s; on a 300,000-row copy without statistics
 * the same update took 31 ms as a hash join, 0.5 ms as a loop. With joins alone turned off, the
 * loop still scanned the table once (materialised) when it looked small: 22 ms for 108 rows.
 * `enable_*` only adds a prohibitive cost: where no index serves, PostgreSQL still scans.
 */
const BATCH_PLANNER_SETTINGS = { enable_hashjoin: 'off', enable_mergejoin: 'off', enable_seqscan: 'off' } as const;

/** Conditions that are always true and set the batch planner settings for the rest of the transaction. */
export function batchPlannerConditions(): RawBuilder<unknown> {
  return sql.join(
    Object.entries(BATCH_PLANNER_SETTINGS).map(([name, value]) => sql`(select set_config(${name}, ${value}, true)) is not null`),
    sql` and `,
  );
}

/** Sets the batch planner settings for the rest of the current transaction, in a statement of its own. */
export async function useBatchPlanner(trx: Kysely<unknown>): Promise<void> {
  await sql`select 1 where ${batchPlannerConditions()}`.execute(trx);
}
