-- Where a transfer's time goes, from a database kept by `bench:transfers -- --keep-database`:
--   psql "$DATABASE_URL_OF_KEPT_DB" -f bench/transfer-stages.sql
-- recorded_at is the appending transaction's start, so each gap is "the previous step's append
-- committed, was seen, decided, and the next append started": a stage's own commit is in the next gap.
with steps as (
  select data->>'transferId' as transfer_id, event_type, recorded_at, (data->>'at')::timestamptz as decided_at
    from ledger_events
   where event_type in ('TransferRequested', 'HoldPlaced', 'TransferCredited', 'HoldCaptured', 'TransferCompleted')
), per_transfer as (
  select transfer_id,
         min(recorded_at) filter (where event_type = 'TransferRequested') as requested,
         min(recorded_at) filter (where event_type = 'HoldPlaced') as held,
         min(recorded_at) filter (where event_type = 'TransferCredited') as credited,
         min(recorded_at) filter (where event_type = 'HoldCaptured') as captured,
         min(recorded_at) filter (where event_type = 'TransferCompleted') as completed
    from steps group by transfer_id
), gaps as (
  select extract(epoch from held - requested) * 1000 as requested_to_held,
         extract(epoch from credited - held) * 1000 as held_to_credited,
         extract(epoch from captured - credited) * 1000 as credited_to_captured,
         extract(epoch from completed - captured) * 1000 as captured_to_completed,
         extract(epoch from completed - requested) * 1000 as requested_to_completed
    from per_transfer where completed is not null
)
select stage, round(percentile_cont(0.5) within group (order by ms)::numeric, 1) as p50_ms,
       round(percentile_cont(0.9) within group (order by ms)::numeric, 1) as p90_ms,
       round(percentile_cont(0.99) within group (order by ms)::numeric, 1) as p99_ms, count(*)
  from gaps cross join lateral (values
    (1, 'requested → held', requested_to_held), (2, 'held → credited', held_to_credited),
    (3, 'credited → captured', credited_to_captured), (4, 'captured → completed', captured_to_completed),
    (5, 'requested → completed', requested_to_completed)) as v(n, stage, ms)
 group by n, stage order by n;
