import { sql, type Kysely } from 'kysely';
import { MAX_PAGE_SIZE, type EventStore, type RecordedEvent } from '../eventstore/port.js';
import { useBatchPlanner } from './batchPlanner.js';
import { createShadowTables, shadowTables, type Projection } from './projection.js';
import { ensureCheckpoint, swapLockKey } from './runner.js';

export interface RebuildProgress {
  projection: string;
  events: number;
  position: bigint;
  target: bigint;
}

export interface RebuildResult {
  projection: string;
  events: number;
  position: bigint;
  /** Rows that differ between the rebuilt and the live tables (verify only). */
  differences?: number;
  elapsedMs: number;
}

const UNLOCKED_CATCH_UP_ROUNDS_MAX = 5;
const LOCKED_GAP_EVENTS = 5_000;

/**
 * Held by a rebuild or verify for its whole run, on a session of its own. Every run of a projection
 * builds the same shadow tables: a second run would drop the first one's half-built tables, and the
 * first would then swap in (or compare) the second's.
 */
export const runLockKey = (name: string) => sql`hashtext(${`projection-rebuild:${name}`})`;

export interface RebuildHooks {
  /** Test hook: called in a verify between taking its view of both tables and comparing them. */
  beforeComparison?: () => Promise<void>;
}

export class ProjectionBusyError extends Error {
  constructor(readonly projection: string) {
    super(`a rebuild or verify of ${projection} is already running`);
  }
}

/**
 * Rebuilds a projection from position 0 into shadow tables beside the live ones, then either
 * swaps them in (`rebuild`) or compares them with the live tables (`verify`).
 *
 * The shadow first catches up, unlocked, with the live projection's checkpoint. The last stretch
 * runs under the projection's swap lock, which every live batch takes shared: the live projector
 * pauses for that moment only, and the shadow reaches exactly the live checkpoint. A rebuild
 * renames the tables in the same transaction; readers keep reading the old tables until its
 * commit. A verify takes a read-only snapshot of both at that position, lets the live projector go
 * on, and compares inside the snapshot (compareAtLivePosition).
 *
 * Only one rebuild or verify of a projection runs at a time; another one is refused at once with
 * a ProjectionBusyError.
 */
export async function rebuildProjection(
  db: Kysely<unknown>,
  store: EventStore,
  projection: Projection,
  mode: 'rebuild' | 'verify',
  onProgress?: (progress: RebuildProgress) => void,
  hooks: RebuildHooks = {},
): Promise<RebuildResult> {
  return db.connection().execute(async (session) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${runLockKey(projection.name)}) as locked`.execute(session);
    if (rows[0]?.locked !== true) throw new ProjectionBusyError(projection.name);
    try {
      return await rebuildAlone(db, session, store, projection, mode, onProgress, hooks);
    } finally {
      // A failed unlock means a lost session, and its lock went with it.
      await sql`select pg_advisory_unlock(${runLockKey(projection.name)})`.execute(session).catch(() => undefined);
    }
  });
}

async function rebuildAlone(
  db: Kysely<unknown>,
  session: Kysely<unknown>,
  store: EventStore,
  projection: Projection,
  mode: 'rebuild' | 'verify',
  onProgress: ((progress: RebuildProgress) => void) | undefined,
  hooks: RebuildHooks,
): Promise<RebuildResult> {
  const started = Date.now();
  await createShadowTables(db, projection);
  let position = 0n;
  let events = 0;
  try {
    for (let round = 0; round < UNLOCKED_CATCH_UP_ROUNDS_MAX; round++) {
      const target = await ensureCheckpoint(db, projection.name);
      const applied = await applyUpTo(db, store, projection, position, target, (count, at) => onProgress?.({ projection: projection.name, events: events + count, position: at, target }));
      events += applied.events;
      position = applied.position;
      if (applied.events < LOCKED_GAP_EVENTS) break;
    }
    if (mode === 'verify') {
      const compared = await compareAtLivePosition(db, session, store, projection, position, hooks);
      return { projection: projection.name, events: events + compared.events, position: compared.position, differences: compared.differences, elapsedMs: Date.now() - started };
    }
    // Freshly filled tables have no statistics until autovacuum gets to them, and PostgreSQL plans
    // blind meanwhile (it once chose to scan the whole history table per batch). Before the swap,
    // and outside its lock, so the live projection is not held up.
    for (const table of projection.tables) await sql`analyze ${sql.table(shadowTables(table))}`.execute(db);
    await db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${swapLockKey(projection.name)})`.execute(trx);
      const target = await ensureCheckpoint(trx, projection.name);
      const applied = await applyUpTo(trx, store, projection, position, target);
      events += applied.events;
      position = target;
      for (const table of projection.tables) {
        await sql`alter table ${sql.table(table)} rename to ${sql.table(`${table}__old`)}`.execute(trx);
        await sql`alter table ${sql.table(shadowTables(table))} rename to ${sql.table(table)}`.execute(trx);
        await sql`drop table ${sql.table(`${table}__old`)}`.execute(trx);
      }
    });
    return { projection: projection.name, events, position, elapsedMs: Date.now() - started };
  } finally {
    for (const table of projection.tables) await sql`drop table if exists ${sql.table(shadowTables(table))}`.execute(db);
  }
}

/**
 * Brings the shadow tables to exactly the live checkpoint while the live projection is paused,
 * takes a read-only snapshot there, lets the live projection go on, and compares inside the
 * snapshot. The comparison reads whole tables (16 s of a 17.5 s verify with 2M rows): under the
 * swap lock it paused the live projection that long, and in the transaction that had applied the
 * last events it held a transaction id, below which `ledger_safe_position()` stops, so every
 * subscriber in the cluster waited for it. A read-only transaction never gets a transaction id.
 */
async function compareAtLivePosition(
  db: Kysely<unknown>,
  session: Kysely<unknown>,
  store: EventStore,
  projection: Projection,
  after: bigint,
  hooks: RebuildHooks,
): Promise<{ events: number; position: bigint; differences: number }> {
  // Taken at session level, so that the pause outlasts the commits of the last pages.
  await sql`select pg_advisory_lock(${swapLockKey(projection.name)})`.execute(session);
  let paused = true;
  const resume = async (executor: Kysely<unknown>) => {
    if (!paused) return;
    await sql`select pg_advisory_unlock(${swapLockKey(projection.name)})`.execute(executor);
    paused = false;
  };
  try {
    const target = await ensureCheckpoint(db, projection.name);
    const applied = await applyUpTo(db, store, projection, after, target);
    const differences = await session
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(async (trx) => {
        // The first query takes the snapshot, while the live tables still stand at the target.
        const seen = await sql<{ position: bigint }>`select position from projection_checkpoints where name = ${projection.name}`.execute(trx);
        if (seen.rows[0]?.position !== target) throw new Error(`verify's snapshot of ${projection.name} is at ${seen.rows[0]?.position}, not at ${target}`);
        await resume(trx);
        await hooks.beforeComparison?.();
        let count = 0;
        for (const table of projection.tables) count += await countDifferences(trx, table, shadowTables(table));
        return count;
      });
    return { events: applied.events, position: target, differences };
  } finally {
    // A failed unlock means a lost session, and its lock went with it.
    await resume(session).catch(() => undefined);
  }
}

/**
 * Applies every matching event in (after, target] to the shadow tables, one transaction per page.
 * The next page is read while the current one is applied: reading and applying then overlap
 * instead of taking turns, and the pages are still applied one after another, in order.
 */
async function applyUpTo(
  db: Kysely<unknown>,
  store: EventStore,
  projection: Projection,
  after: bigint,
  target: bigint,
  onPage?: (events: number, position: bigint) => void,
): Promise<{ events: number; position: bigint }> {
  const read = (from: bigint) => {
    const page = store.readAll({ after: from, maxCount: MAX_PAGE_SIZE, filter: projection.filter });
    // Awaited below; this only keeps a failed read-ahead from counting as unhandled meanwhile.
    page.catch(() => undefined);
    return page;
  };
  let position = after;
  let count = 0;
  let next = position < target ? read(position) : undefined;
  while (next) {
    const page = await next;
    const inRange: RecordedEvent[] = page.filter((event) => event.position <= target);
    const more = inRange.length === page.length && page.length === MAX_PAGE_SIZE && inRange.at(-1)!.position < target;
    next = more ? read(inRange.at(-1)!.position) : undefined;
    if (inRange.length > 0) {
      await (db.isTransaction
        ? applyPage(db, projection, inRange)
        : db.transaction().execute(async (trx) => {
            await useBatchPlanner(trx);
            await applyPage(trx, projection, inRange);
          }));
      count += inRange.length;
      position = inRange.at(-1)!.position;
      onPage?.(count, position);
    }
  }
  return { events: count, position: target > position ? target : position };
}

async function applyPage(db: Kysely<unknown>, projection: Projection, events: RecordedEvent[]): Promise<void> {
  await projection.apply(db as never, events, shadowTables);
}

async function countDifferences(db: Kysely<unknown>, live: string, rebuilt: string): Promise<number> {
  const result = await sql<{ differences: bigint }>`
    select count(*) as differences from (
      (select * from ${sql.table(live)} except all select * from ${sql.table(rebuilt)})
      union all
      (select * from ${sql.table(rebuilt)} except all select * from ${sql.table(live)})
    ) difference`.execute(db);
  return Number(result.rows[0]?.differences ?? 0n);
}
