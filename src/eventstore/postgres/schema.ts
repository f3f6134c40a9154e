import { sql, type Kysely } from 'kysely';

/**
 * Event store schema. See docs/architecture.md, "The PostgreSQL event store".
 *
 * position = (writing transaction's xid8 << 20) | index of the event inside that transaction.
 * Readers only read positions below `pg_snapshot_xmin(pg_current_snapshot()) << 20`: every
 * transaction under that xmin has ended, so no event can later appear below a position a reader
 * has passed. Ordering by position is ordering by (transaction id, index): one bigint, one index,
 * no global lock, no sequence.
 */
export const POSITION_SHIFT_BITS = 20;
export const MAX_EVENTS_PER_TRANSACTION = 1 << POSITION_SHIFT_BITS;
export const NOTIFY_CHANNEL = 'ledger_events';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists ledger_streams (
      stream_name text primary key,
      revision bigint not null check (revision >= 0)
    )`.execute(db);
  await sql`
    create table if not exists ledger_events (
      position bigint primary key,
      event_id uuid not null unique,
      stream_name text not null,
      stream_revision bigint not null,
      event_type text not null,
      schema_version smallint not null,
      data jsonb not null,
      metadata jsonb not null,
      recorded_at timestamptz not null default now(),
      unique (stream_name, stream_revision)
    )`.execute(db);

  // Errors use custom SQLSTATEs so the adapter can map them without parsing messages:
  //   LE001 wrong expected revision (detail = actual revision or empty for "no stream")
  //   LE002 an event id reused with other content or in another place
  //   LE003 too many events in one transaction
  await sql`
    create or replace function ledger_append(
      p_stream text,
      p_expected_kind smallint, -- 0 exact, 1 any, 2 no stream, 3 stream exists
      p_expected bigint,
      p_events jsonb            -- [{id, type, schemaVersion, data, metadata}]
    ) returns table (next_revision bigint, last_position bigint, duplicate boolean)
    language plpgsql as $fn$
    declare
      v_count int := jsonb_array_length(p_events);
      v_current bigint;
      v_start bigint;
      v_offset int;
      v_base bigint;
      v_existing int;
      v_matching int;
      v_offsets int;
      v_ids uuid[];
      v_first_revision bigint;
      v_last_revision bigint;
      v_last_position bigint;
    begin
      -- Idempotent retry: every id already stored, in this stream, consecutive, same type and data.
      -- The cheap index probe comes first; the full comparison runs only for a real retry.
      select array_agg((x.value->>'id')::uuid) into v_ids from jsonb_array_elements(p_events) x;
      if exists (select 1 from ledger_events e where e.event_id = any (v_ids)) then
        select count(*)::int,
               (count(*) filter (where e.stream_name = p_stream and e.event_type = x.value->>'type' and e.data = x.value->'data'))::int,
               count(distinct e.stream_revision - x.ordinality)::int,
               min(e.stream_revision), max(e.stream_revision), max(e.position)
          into v_existing, v_matching, v_offsets, v_first_revision, v_last_revision, v_last_position
          from jsonb_array_elements(p_events) with ordinality x
          join ledger_events e on e.event_id = (x.value->>'id')::uuid;
        if v_existing > 0 then
          if v_existing <> v_count or v_matching <> v_count or v_offsets <> 1 then
            raise exception using errcode = 'LE002', message = 'event id reused with different content or position';
          end if;
          if (p_expected_kind = 0 and v_first_revision <> p_expected + 1)
             or (p_expected_kind = 2 and v_first_revision <> 0)
             or (p_expected_kind = 3 and v_first_revision = 0) then
            select revision into v_current from ledger_streams where stream_name = p_stream;
            raise exception using errcode = 'LE001', message = 'wrong expected revision', detail = coalesce(v_current::text, '');
          end if;
          return query select v_last_revision, v_last_position, true;
          return;
        end if;
      end if;

      if p_expected_kind = 2 then
        insert into ledger_streams (stream_name, revision) values (p_stream, v_count - 1)
          on conflict (stream_name) do nothing;
        if not found then
          select revision into v_current from ledger_streams where stream_name = p_stream;
          raise exception using errcode = 'LE001', message = 'wrong expected revision', detail = coalesce(v_current::text, '');
        end if;
        v_start := 0;
      elsif p_expected_kind = 1 then
        insert into ledger_streams as s (stream_name, revision) values (p_stream, v_count - 1)
          on conflict (stream_name) do update set revision = s.revision + v_count
          returning s.revision - v_count + 1 into v_start;
      else
        update ledger_streams set revision = revision + v_count
         where stream_name = p_stream and (p_expected_kind = 3 or revision = p_expected)
         returning revision - v_count + 1 into v_start;
        if not found then
          select revision into v_current from ledger_streams where stream_name = p_stream;
          raise exception using errcode = 'LE001', message = 'wrong expected revision', detail = coalesce(v_current::text, '');
        end if;
      end if;

      v_offset := coalesce(nullif(current_setting('ledger.tx_event_index', true), '')::int, 0);
      if v_offset + v_count > ${sql.raw(String(MAX_EVENTS_PER_TRANSACTION))} then
        raise exception using errcode = 'LE003', message = 'too many events in one transaction';
      end if;
      perform set_config('ledger.tx_event_index', (v_offset + v_count)::text, true);
      v_base := (pg_current_xact_id()::text::bigint << ${sql.raw(String(POSITION_SHIFT_BITS))}) + v_offset;

      insert into ledger_events (position, event_id, stream_name, stream_revision, event_type, schema_version, data, metadata)
      select v_base + x.ordinality - 1,
             (x.value->>'id')::uuid,
             p_stream,
             v_start + x.ordinality - 1,
             x.value->>'type',
             coalesce((x.value->>'schemaVersion')::smallint, 1),
             x.value->'data',
             coalesce(x.value->'metadata', '{}'::jsonb)
        from jsonb_array_elements(p_events) with ordinality x;

      return query select v_start + v_count - 1, v_base + v_count - 1, false;
    end
    $fn$`.execute(db);

  // Everything below this position is final: no transaction that could still commit holds a lower one.
  await sql`
    create or replace function ledger_safe_position() returns bigint
    language sql stable as $fn$
      select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << ${sql.raw(String(POSITION_SHIFT_BITS))}) - 1
    $fn$`.execute(db);
}

/**
 * Appends to several streams in one statement and one commit (group commit, as TigerBeetle batches
 * everything). Each append runs in its own subtransaction, so one append's conflict fails only that
 * append; the caller orders appends by stream name so concurrent calls lock rows in the same order.
 */
export async function upAppendMany(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function ledger_append_many(p_appends jsonb)
    returns table (idx int, next_revision bigint, last_position bigint, duplicate boolean, error_code text, error_detail text)
    language plpgsql as $fn$
    declare
      v_append jsonb;
      v_index int := 0;
      v_result record;
      v_code text;
      v_detail text;
    begin
      for v_append in select value from jsonb_array_elements(p_appends) loop
        begin
          select * into v_result from ledger_append(v_append->>'stream', (v_append->>'kind')::smallint, (v_append->>'expected')::bigint, v_append->'events');
          idx := v_index; next_revision := v_result.next_revision; last_position := v_result.last_position; duplicate := v_result.duplicate;
          error_code := null; error_detail := null;
          return next;
        exception when others then
          get stacked diagnostics v_code = returned_sqlstate, v_detail = pg_exception_detail;
          idx := v_index; next_revision := null; last_position := null; duplicate := null;
          error_code := v_code; error_detail := v_detail;
          return next;
        end;
        v_index := v_index + 1;
      end loop;
    end
    $fn$`.execute(db);
}

/**
 * Filtered reads walk the primary key in position order and filter as they go: the order is what
 * a subscriber needs, and a type index tempted the planner into scan-and-sort plans whenever its
 * statistics were stale (after a bulk load, a 1,000-event page took a second). One index fewer
 * also makes every append cheaper.
 */
export async function upDropTypeIndex(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists ledger_events_type_position`.execute(db);
}

/**
 * Group commit without subtransactions. `ledger_append_core` checks everything that can refuse an
 * append (idempotent retry, id reuse, expected revision, size) before it writes, and returns the
 * refusal instead of raising it, so `ledger_append_many` no longer needs an exception block (a
 * subtransaction, with its own xid and WAL) per append. What still raises (a unique violation from
 * a concurrent retry of the same ids, a deadlock) fails the whole statement, and the adapter then
 * appends each member alone.
 */
export async function upAppendCore(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function ledger_append_core(
      p_stream text,
      p_expected_kind smallint, -- 0 exact, 1 any, 2 no stream, 3 stream exists
      p_expected bigint,
      p_events jsonb,           -- [{id, type, schemaVersion, data, metadata}]
      p_offset int,             -- events this transaction has already appended
      out next_revision bigint, out last_position bigint, out duplicate boolean, out error_code text, out error_detail text
    )
    -- Every lookup here is a point lookup by a unique key. Without this, a plan cached while the
    -- table was small (a fresh database, before autovacuum's first analyze) scans the whole table
    -- for every append: measured at a third of the throughput a minute into a new ledger.
    language plpgsql set enable_seqscan = off as $fn$
    declare
      v_count int := jsonb_array_length(p_events);
      v_current bigint;
      v_start bigint;
      v_base bigint;
      v_existing int;
      v_matching int;
      v_offsets int;
      v_first_revision bigint;
      v_last_revision bigint;
      v_last_position bigint;
      v_ids uuid[];
    begin
      duplicate := false;
      select array_agg((x.value->>'id')::uuid) into v_ids from jsonb_array_elements(p_events) x;
      if exists (select 1 from ledger_events e where e.event_id = any (v_ids)) then
        select count(*)::int,
               (count(*) filter (where e.stream_name = p_stream and e.event_type = x.value->>'type' and e.data = x.value->'data'))::int,
               count(distinct e.stream_revision - x.ordinality)::int,
               min(e.stream_revision), max(e.stream_revision), max(e.position)
          into v_existing, v_matching, v_offsets, v_first_revision, v_last_revision, v_last_position
          from jsonb_array_elements(p_events) with ordinality x
          join ledger_events e on e.event_id = (x.value->>'id')::uuid;
        if v_existing > 0 then
          if v_existing <> v_count or v_matching <> v_count or v_offsets <> 1 then
            error_code := 'LE002';
            return;
          end if;
          if (p_expected_kind = 0 and v_first_revision <> p_expected + 1)
             or (p_expected_kind = 2 and v_first_revision <> 0)
             or (p_expected_kind = 3 and v_first_revision = 0) then
            select revision into v_current from ledger_streams where stream_name = p_stream;
            error_code := 'LE001';
            error_detail := coalesce(v_current::text, '');
            return;
          end if;
          next_revision := v_last_revision;
          last_position := v_last_position;
          duplicate := true;
          return;
        end if;
      end if;

      if p_offset + v_count > ${sql.raw(String(MAX_EVENTS_PER_TRANSACTION))} then
        error_code := 'LE003';
        return;
      end if;

      if p_expected_kind = 2 then
        insert into ledger_streams (stream_name, revision) values (p_stream, v_count - 1)
          on conflict (stream_name) do nothing;
        if not found then
          select revision into v_current from ledger_streams where stream_name = p_stream;
          error_code := 'LE001';
          error_detail := coalesce(v_current::text, '');
          return;
        end if;
        v_start := 0;
      elsif p_expected_kind = 1 then
        insert into ledger_streams as s (stream_name, revision) values (p_stream, v_count - 1)
          on conflict (stream_name) do update set revision = s.revision + v_count
          returning s.revision - v_count + 1 into v_start;
      else
        update ledger_streams set revision = revision + v_count
         where stream_name = p_stream and (p_expected_kind = 3 or revision = p_expected)
         returning revision - v_count + 1 into v_start;
        if not found then
          select revision into v_current from ledger_streams where stream_name = p_stream;
          error_code := 'LE001';
          error_detail := coalesce(v_current::text, '');
          return;
        end if;
      end if;

      v_base := (pg_current_xact_id()::text::bigint << ${sql.raw(String(POSITION_SHIFT_BITS))}) + p_offset;
      insert into ledger_events (position, event_id, stream_name, stream_revision, event_type, schema_version, data, metadata)
      select v_base + x.ordinality - 1,
             (x.value->>'id')::uuid,
             p_stream,
             v_start + x.ordinality - 1,
             x.value->>'type',
             coalesce((x.value->>'schemaVersion')::smallint, 1),
             x.value->'data',
             coalesce(x.value->'metadata', '{}'::jsonb)
        from jsonb_array_elements(p_events) with ordinality x;
      next_revision := v_start + v_count - 1;
      last_position := v_base + v_count - 1;
    end
    $fn$`.execute(db);

  // What the adapter calls for one append: refusals come back as a row, not as an error, because
  // node-postgres closes a pooled connection on any query error and a busy stream's concurrency
  // conflicts would otherwise cost a new server process each.
  await sql`
    create or replace function ledger_try_append(p_stream text, p_expected_kind smallint, p_expected bigint, p_events jsonb,
      out next_revision bigint, out last_position bigint, out duplicate boolean, out error_code text, out error_detail text)
    language plpgsql as $fn$
    declare
      v_offset int := coalesce(nullif(current_setting('ledger.tx_event_index', true), '')::int, 0);
    begin
      select r.next_revision, r.last_position, r.duplicate, r.error_code, r.error_detail
        into next_revision, last_position, duplicate, error_code, error_detail
        from ledger_append_core(p_stream, p_expected_kind, p_expected, p_events, v_offset) r;
      if error_code is null and not duplicate then
        perform set_config('ledger.tx_event_index', (v_offset + jsonb_array_length(p_events))::text, true);
      end if;
    end
    $fn$`.execute(db);

  // The raising form, for SQL callers (and transactions that append several times: the event
  // index inside the transaction lives in a transaction-local setting, so appends never collide).
  await sql`
    create or replace function ledger_append(p_stream text, p_expected_kind smallint, p_expected bigint, p_events jsonb)
    returns table (next_revision bigint, last_position bigint, duplicate boolean)
    language plpgsql as $fn$
    declare
      r record;
    begin
      select * into r from ledger_try_append(p_stream, p_expected_kind, p_expected, p_events);
      if r.error_code = 'LE002' then
        raise exception using errcode = 'LE002', message = 'event id reused with different content or position';
      elsif r.error_code = 'LE001' then
        raise exception using errcode = 'LE001', message = 'wrong expected revision', detail = r.error_detail;
      elsif r.error_code = 'LE003' then
        raise exception using errcode = 'LE003', message = 'too many events in one transaction';
      end if;
      return query select r.next_revision, r.last_position, r.duplicate;
    end
    $fn$`.execute(db);

  await sql`
    create or replace function ledger_append_many(p_appends jsonb)
    returns table (idx int, next_revision bigint, last_position bigint, duplicate boolean, error_code text, error_detail text)
    language plpgsql as $fn$
    declare
      v_append jsonb;
      v_offset int := coalesce(nullif(current_setting('ledger.tx_event_index', true), '')::int, 0);
      r record;
    begin
      idx := 0;
      for v_append in select value from jsonb_array_elements(p_appends) loop
        r := ledger_append_core(v_append->>'stream', (v_append->>'kind')::smallint, (v_append->>'expected')::bigint, v_append->'events', v_offset);
        next_revision := r.next_revision; last_position := r.last_position; duplicate := r.duplicate;
        error_code := r.error_code; error_detail := r.error_detail;
        if r.error_code is null and not r.duplicate then
          v_offset := v_offset + jsonb_array_length(v_append->'events');
        end if;
        return next;
        idx := idx + 1;
      end loop;
      perform set_config('ledger.tx_event_index', v_offset::text, true);
    end
    $fn$`.execute(db);
}

/**
 * Set-based group commit. `ledger_append_many` ran `ledger_append_core` once per append: four
 * statements each, 0.21 ms an append, most of PostgreSQL's CPU under the transfers benchmark. Now
 * a group's stream checks are one statement per kind of expected revision and its events one
 * insert, whatever the group's size. The append-by-append path stays, as `ledger_append_each`, for
 * what the set-based one does not decide: a stream twice in one group, an event id already stored
 * (an idempotent retry, or a reuse to refuse), an empty append, or more events than a transaction
 * may hold. Joins are nested loops over the group, in its order (the adapter sorts it by stream),
 * so stream rows are locked in the same order as before.
 */
export async function upAppendSetBased(db: Kysely<unknown>): Promise<void> {
  // The loop that 0302 installed as ledger_append_many keeps its body under its new name.
  await sql`alter function ledger_append_many(jsonb) rename to ledger_append_each`.execute(db);

  await setBasedAppendMany('up-front').execute(db);
}

/**
 * The set-based `ledger_append_many`. `up-front` (migration 0500) first looked up every event id of
 * the group, a probe of the event-id index per event on top of the insert's own uniqueness check:
 * about 11 % of the append backends' CPU. `on-refusal` (0600) looks only at the ids of appends its
 * stream checks refused, the one place a stored id changes the answer (a retried append is a
 * duplicate, not a conflict); a stored id in an accepted append fails the insert, and both send
 * the adapter to the append-by-append path, which decides as before.
 */
function setBasedAppendMany(idsChecked: 'up-front' | 'on-refusal') {
  return sql`
    create or replace function ledger_append_many(p_appends jsonb)
    returns table (idx int, next_revision bigint, last_position bigint, duplicate boolean, error_code text, error_detail text)
    language plpgsql set enable_seqscan = off set enable_hashjoin = off set enable_mergejoin = off as $fn$
    declare
      v_offset int := coalesce(nullif(current_setting('ledger.tx_event_index', true), '')::int, 0);
      v_streams text[];
      v_kinds smallint[];
      v_expected bigint[];
      v_counts int[];
      v_events jsonb[];
      v_starts bigint[];
      v_offsets bigint[];
      v_picked int[];
      v_picked_starts bigint[];
      v_count int;
      v_base bigint;
      v_written bigint := 0;
      v_current bigint;
      v_i int;
    begin
      select array_agg(a.value->>'stream' order by a.ordinality),
             array_agg((a.value->>'kind')::smallint order by a.ordinality),
             array_agg((a.value->>'expected')::bigint order by a.ordinality),
             array_agg(jsonb_array_length(a.value->'events') order by a.ordinality),
             array_agg(a.value->'events' order by a.ordinality)
        into v_streams, v_kinds, v_expected, v_counts, v_events
        from jsonb_array_elements(p_appends) with ordinality a;
      v_count := coalesce(cardinality(v_streams), 0);
      if v_count = 0 then
        return;
      end if;
      if (select count(distinct s) from unnest(v_streams) s) <> v_count
         or exists (select 1 from unnest(v_counts) c where c < 1)
         or v_offset + (select sum(c) from unnest(v_counts) c) > ${sql.raw(String(MAX_EVENTS_PER_TRANSACTION))}
         ${idsChecked === 'up-front' ? sql`or exists (select 1 from unnest(v_events) ev cross join lateral jsonb_array_elements(ev) x
                     join ledger_events e on e.event_id = (x.value->>'id')::uuid)` : sql``} then
        return query select * from ledger_append_each(p_appends);
        return;
      end if;

      v_starts := array_fill(null::bigint, array[v_count]);
      -- Exact revision (0) and stream exists (3): one update.
      with input as (
        select g as i, v_streams[g] as stream, v_kinds[g] as kind, v_expected[g] as expected, v_counts[g] as c
          from generate_subscripts(v_streams, 1) g where v_kinds[g] in (0, 3) order by g),
      moved as (
        update ledger_streams s set revision = s.revision + input.c from input
         where s.stream_name = input.stream and (input.kind = 3 or s.revision = input.expected)
         returning input.i, s.revision - input.c + 1 as start)
      select array_agg(moved.i), array_agg(moved.start) into v_picked, v_picked_starts from moved;
      for v_i in 1 .. coalesce(cardinality(v_picked), 0) loop
        v_starts[v_picked[v_i]] := v_picked_starts[v_i];
      end loop;
      -- No stream (2): one insert that skips streams that exist.
      with input as (
        select g as i, v_streams[g] as stream, v_counts[g] as c
          from generate_subscripts(v_streams, 1) g where v_kinds[g] = 2 order by g),
      created as (
        insert into ledger_streams (stream_name, revision) select stream, c - 1 from input order by i
          on conflict (stream_name) do nothing returning stream_name)
      select array_agg(input.i) into v_picked from created join input on input.stream = created.stream_name;
      for v_i in 1 .. coalesce(cardinality(v_picked), 0) loop
        v_starts[v_picked[v_i]] := 0;
      end loop;
      -- Any revision (1): one upsert.
      with input as (
        select g as i, v_streams[g] as stream, v_counts[g] as c
          from generate_subscripts(v_streams, 1) g where v_kinds[g] = 1 order by g),
      upserted as (
        insert into ledger_streams as s (stream_name, revision) select stream, c - 1 from input order by i
          on conflict (stream_name) do update set revision = s.revision + excluded.revision + 1
          returning s.stream_name, s.revision)
      select array_agg(input.i), array_agg(upserted.revision - input.c + 1) into v_picked, v_picked_starts
        from upserted join input on input.stream = upserted.stream_name;
      for v_i in 1 .. coalesce(cardinality(v_picked), 0) loop
        v_starts[v_picked[v_i]] := v_picked_starts[v_i];
      end loop;

${idsChecked === 'on-refusal' ? sql`      -- A refused append may be a retry of one already stored, which answers as a duplicate: the
      -- append-by-append path tells the two apart. Raised as the unique violation it is, which sends
      -- the adapter there with nothing written. An accepted append whose ids are stored fails the
      -- insert below the same way.
      if exists (select 1 from generate_subscripts(v_streams, 1) g
                 cross join lateral jsonb_array_elements(v_events[g]) x
                 join ledger_events e on e.event_id = (x.value->>'id')::uuid
                 where v_starts[g] is null) then
        raise exception using errcode = 'unique_violation', message = 'a refused append carries an event id already stored';
      end if;
` : sql``}
      -- Positions follow the group's order, after what this transaction appended before.
      v_offsets := array_fill(null::bigint, array[v_count]);
      for v_i in 1 .. v_count loop
        if v_starts[v_i] is not null then
          v_offsets[v_i] := v_written;
          v_written := v_written + v_counts[v_i];
        end if;
      end loop;
      v_base := (pg_current_xact_id()::text::bigint << ${sql.raw(String(POSITION_SHIFT_BITS))}) + v_offset;
      insert into ledger_events (position, event_id, stream_name, stream_revision, event_type, schema_version, data, metadata)
      select v_base + v_offsets[g] + x.ordinality - 1,
             (x.value->>'id')::uuid,
             v_streams[g],
             v_starts[g] + x.ordinality - 1,
             x.value->>'type',
             coalesce((x.value->>'schemaVersion')::smallint, 1),
             x.value->'data',
             coalesce(x.value->'metadata', '{}'::jsonb)
        from generate_subscripts(v_streams, 1) g
        cross join lateral jsonb_array_elements(v_events[g]) with ordinality x
       where v_starts[g] is not null;

      for v_i in 1 .. v_count loop
        idx := v_i - 1;
        duplicate := false;
        if v_starts[v_i] is not null then
          next_revision := v_starts[v_i] + v_counts[v_i] - 1;
          last_position := v_base + v_offsets[v_i] + v_counts[v_i] - 1;
          error_code := null;
          error_detail := null;
        else
          select revision into v_current from ledger_streams where stream_name = v_streams[v_i];
          next_revision := null;
          last_position := null;
          error_code := 'LE001';
          error_detail := coalesce(v_current::text, '');
        end if;
        return next;
      end loop;
      perform set_config('ledger.tx_event_index', (v_offset + v_written)::text, true);
    end
    $fn$`;
}

export async function upAppendChecksIdsOnRefusal(db: Kysely<unknown>): Promise<void> {
  await setBasedAppendMany('on-refusal').execute(db);
}
