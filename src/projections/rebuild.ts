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
 * pauses for that moment only, the shadow reaches exactly the live checkpoint, and the rename (or
 * the comparison) happens at one position. Readers keep reading the old tables until the commit.
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
): Promise<RebuildResult> {
  return db.connection().execute(async (session) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${runLockKey(projection.name)}) as locked`.execute(session);
    if (rows[0]?.locked !== true) throw new ProjectionBusyError(projection.name);
    try {
      return await rebuildAlone(db, store, projection, mode, onProgress);
    } finally {
      // A failed unlock means a lost session, and its lock went with it.
      await sql`select pg_advisory_unlock(${runLockKey(projection.name)})`.execute(session).catch(() => undefined);
    }
  });
}

async function rebuildAlone(
  db: Kysely<unknown>,
  store: EventStore,
  projection: Projection,
  mode: 'rebuild' | 'verify',
  onProgress?: (progress: RebuildProgress) => void,
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
    // Freshly filled tables have no statistics until autovacuum gets to them, and PostgreSQL plans
    // blind meanwhile (it once chose to scan the whole history table per batch). Before the swap,
    // and outside its lock, so the live projection is not held up.
    if (mode === 'rebuild') for (const table of projection.tables) await sql`analyze ${sql.table(shadowTables(table))}`.execute(db);
    let differences: number | undefined;
    await db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${swapLockKey(projection.name)})`.execute(trx);
      const target = await ensureCheckpoint(trx, projection.name);
      const applied = await applyUpTo(trx, store, projection, position, target);
      events += applied.events;
      position = target;
      if (mode === 'verify') {
        differences = 0;
        for (const table of projection.tables) differences += await countDifferences(trx, table, shadowTables(table));
        return;
      }
      for (const table of projection.tables) {
        await sql`alter table ${sql.table(table)} rename to ${sql.table(`${table}__old`)}`.execute(trx);
        await sql`alter table ${sql.table(shadowTables(table))} rename to ${sql.table(table)}`.execute(trx);
        await sql`drop table ${sql.table(`${table}__old`)}`.execute(trx);
      }
    });
    return { projection: projection.name, events, position, ...(differences === undefined ? {} : { differences }), elapsedMs: Date.now() - started };
  } finally {
    for (const table of projection.tables) await sql`drop table if exists ${sql.table(shadowTables(table))}`.execute(db);
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
