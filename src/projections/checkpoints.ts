import { sql, type Kysely } from 'kysely';
import type { EventStore, GlobalFilter } from '../eventstore/port.js';
import type { Projection } from './projection.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists projection_checkpoints (
      name text primary key,
      position bigint not null default 0,
      updated_at timestamptz not null default now(),
      last_event_at timestamptz,
      failing_event_id text,
      failing_error text
    )`.execute(db);
}

export interface CheckpointStatus {
  name: string;
  position: bigint;
  updatedAt: Date | null;
  failingEventId: string | null;
  failingError: string | null;
  lagEvents: number | null;
  lagSeconds: number;
}

const LAG_COUNT_BOUND = 10_000_000;

/** How long ago the first event past `position` that `filter` takes was recorded: 0 when there is none. */
export async function ageOfNextEventMs(store: EventStore, position: bigint, filter: GlobalFilter | undefined, nowMs = Date.now()): Promise<number> {
  const [next] = await store.readAll({ after: position, maxCount: 1, filter });
  return next ? Math.max(0, nowMs - Date.parse(next.metadata.recordedAt)) : 0;
}

/** Checkpoint, failure and lag of each projection: events behind the head and seconds behind it. */
export async function projectionStatuses(db: Kysely<unknown>, store: EventStore, projections: readonly Projection[]): Promise<CheckpointStatus[]> {
  const result = await sql<{ name: string; position: bigint; updated_at: Date; failing_event_id: string | null; failing_error: string | null }>`
    select name, position, updated_at, failing_event_id, failing_error from projection_checkpoints`.execute(db);
  const byName = new Map(result.rows.map((row) => [row.name, row]));
  const statuses: CheckpointStatus[] = [];
  for (const projection of projections) {
    const row = byName.get(projection.name);
    const position = row?.position ?? 0n;
    const lagSeconds = (await ageOfNextEventMs(store, position, projection.filter)) / 1000;
    let lagEvents: number | null = null;
    if (store.kind === 'postgres') {
      const types = [...(projection.filter.eventTypes ?? [])];
      const prefixes = (projection.filter.streamPrefixes ?? []).map((prefix) => `${prefix.replace(/[\\%_]/g, '\\$&')}%`);
      const counted = await sql<{ behind: bigint }>`
        select count(*) as behind from (
          select 1 from ledger_events
           where position > ${position} and position <= ledger_safe_position()
             and (cardinality(${types}::text[]) = 0 or event_type = any(${types}::text[]))
             and (cardinality(${prefixes}::text[]) = 0 or stream_name like any(${prefixes}::text[]))
           limit ${LAG_COUNT_BOUND}) pending`.execute(db);
      lagEvents = Number(counted.rows[0]?.behind ?? 0n);
    }
    statuses.push({
      name: projection.name,
      position,
      updatedAt: row?.updated_at ?? null,
      failingEventId: row?.failing_event_id ?? null,
      failingError: row?.failing_error ?? null,
      lagEvents,
      lagSeconds,
    });
  }
  return statuses;
}
