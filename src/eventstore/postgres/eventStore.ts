import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from 'pino';
import { decodeJson, encodeJson, JsonEncodingError, type JsonObject } from '../../shared/json.js';
import {
  assertValidEvents,
  assertValidExpectedRevision,
  assertValidStreamName,
  clampPageSize,
  ConcurrencyError,
  EventStoreError,
  IdempotencyConflictError,
  InvalidAppendError,
  isUuid,
  MAX_EVENT_BYTES,
  MAX_PAGE_SIZE,
  type AppendResult,
  type Batch,
  type EventMetadata,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
  type GlobalFilter,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
  type Subscription,
} from '../port.js';
import { NOTIFY_CHANNEL } from './schema.js';
import { SharedTail, type TailPage } from './sharedTail.js';

export interface PostgresEventStoreOptions {
  /** Polling fallback when no notification arrives. */
  pollIntervalMs?: number;
  /** After a batch, subscribers wait this long before reading again, so batches grow under load. */
  subscriberCoalesceMs?: number;
  /** Append statements in flight at most; appends beyond it are grouped into the next statement. */
  maxAppendsInFlight?: number;
  /**
   * While one append statement is in flight, another starts only once this many events are
   * waiting; until then they wait and share the next statement and commit.
   */
  pipelineMinEvents?: number;
  logger?: Logger;
}

interface EventRow {
  position: string;
  event_id: string;
  stream_name: string;
  stream_revision: string;
  event_type: string;
  schema_version: number;
  data: string;
  metadata: string;
  /** ISO 8601 in UTC with milliseconds, formatted by PostgreSQL. */
  recorded_at: string;
}

// recorded_at as the ISO text the port carries, instead of a Date parsed per event and formatted
// back (postgres-date's parse was 3 % of the runners' samples, and toISOString 1.2 µs a call).
const EVENT_COLUMNS = `position::text, event_id::text, stream_name, stream_revision::text, event_type, schema_version, data::text, metadata::text,
  to_char(recorded_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as recorded_at`;
const DEFAULT_BATCH_SIZE = 500;
const PENDING_RETRY_MIN_MS = 10;
const PENDING_RETRY_MAX_MS = 50;
const LISTENER_RECONNECT_MAX_MS = 5_000;
const EMPTY_BATCH_INTERVAL_MS = 50;
const NOTIFY_COALESCE_MS = 2;
const MAX_APPENDS_PER_GROUP = 64;
const MAX_EVENTS_PER_GROUP = 4_000;
// Reads and exact appends for one 'any' or 'stream_exists' append while its stream keeps moving.
const LOOSE_APPEND_ATTEMPTS = 20;
const DEFAULT_PIPELINE_MIN_EVENTS = 64;
// Events the shared tail holds at most (about 1 KiB each once decoded, so about 40 MB), and reads
// at once. Pages of one subscriber batch keep the projections on the tail together; larger pages
// (2,000 and 4,000, measured) let the fastest run ahead, evict the slowest, and cost it its shared
// decoding. A projection evicted reads for itself and falls further behind: with room for 10,000,
// bench:projections at 16 writers (about 20,000 events/s) evicted `transactions` (13,565 and
// 18,712 applied/s); with 40,000 both kept up (21,288 and 22,054).
const TAIL_CAPACITY = 40_000;
// Past capacity, what a live subscription still needs is kept, up to this (about 100 MB). On a
// saturated machine (bench:projections, reduced, two pairs of runs) `transactions` applied 61-62 %
// of what the writer appended when evicted at 40,000, and 75-76 % with this; drain 9.0 -> 3.7 s.
const TAIL_HOLD_MAX = 100_000;
const TAIL_PAGE_EVENTS = 1_000;

interface AppendRow {
  next_revision: string | null;
  last_position: string | null;
  duplicate: boolean | null;
  error_code: string | null;
  error_detail: string | null;
}

interface PendingAppend {
  streamName: string;
  kind: number;
  expected: string | null;
  expectedRevision: ExpectedRevision;
  payload: string;
  eventCount: number;
  enqueuedAtMs: number;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

interface PendingStreamRead {
  streamName: string;
  fromRevision: bigint;
  limit: number;
  resolve: (events: RecordedEvent[]) => void;
  reject: (error: unknown) => void;
}

// Forward stream reads in flight at once, and most streams one grouped read carries.
const STREAM_READS_IN_FLIGHT = 4;
const STREAM_READS_PER_STATEMENT = 200;
const GROUPED_EVENTS_PER_STREAM = 100;

export class PostgresEventStore implements EventStore {
  readonly kind = 'postgres' as const;
  private readonly wakeups = new EventEmitter();
  private readonly pollIntervalMs: number;
  private readonly logger: Logger | undefined;
  private listener: pg.Client | undefined;
  private notifier: pg.Client | undefined;
  private listenerStarting: Promise<void> | undefined;
  private notifyInFlight = false;
  private notifyAgain = false;
  private closed = false;
  private readonly subscriptions = new Set<Subscription>();
  private readonly pendingAppends: PendingAppend[] = [];
  /** The last loose (`any`, `stream_exists`) append queued per stream, which the next one waits for. */
  private readonly looseAppends = new Map<string, Promise<AppendResult>>();
  private readonly pendingStreamReads: PendingStreamRead[] = [];
  private streamReadsInFlight = 0;
  private flushesInFlight = 0;
  private readonly maxFlushesInFlight: number;
  private readonly pipelineMinEvents: number;
  private pendingEvents = 0;
  private readonly coalesceMs: number;
  /** The newest stretch of the log, read once for all caught-up subscriptions (see sharedTail.ts). */
  private readonly tail = new SharedTail(this.pageReader(undefined, TAIL_PAGE_EVENTS), TAIL_PAGE_EVENTS, TAIL_CAPACITY, TAIL_HOLD_MAX);
  /** Names this store's NOTIFYs, so its listener can tell them from other writers'. */
  private readonly notifierId = `${process.pid}:${randomUUID()}`;

  constructor(
    private readonly pool: pg.Pool,
    private readonly connectionString: string,
    options: PostgresEventStoreOptions = {},
  ) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.coalesceMs = options.subscriberCoalesceMs ?? 5;
    // Leave half the pool to reads and subscriptions.
    this.maxFlushesInFlight = options.maxAppendsInFlight ?? Math.max(1, Math.floor(pool.options.max / 2));
    this.pipelineMinEvents = options.pipelineMinEvents ?? DEFAULT_PIPELINE_MIN_EVENTS;
    this.logger = options.logger;
    this.wakeups.setMaxListeners(1_000);
    // First listener: the tail learns of every wake-up before any subscriber acts on it.
    this.wakeups.on('wake', () => this.tail.wake());
  }

  async append(streamName: string, events: readonly EventToAppend[], options: { expectedRevision: ExpectedRevision }): Promise<AppendResult> {
    assertValidStreamName(streamName);
    assertValidEvents(events);
    assertValidExpectedRevision(options.expectedRevision);
    const payload = encodeEventsForAppend(events);
    const expectedRevision = options.expectedRevision;
    if (expectedRevision === 'any' || expectedRevision === 'stream_exists') return this.appendAtCurrentRevision(streamName, events, payload, expectedRevision);
    return this.enqueueAppend(streamName, payload, events.length, expectedRevision).catch(async (error: unknown) => {
      // A retry that looked for its events while its original was still open, then found the
      // revision moved by that very original: asked again, it is the duplicate it is, as it would
      // have been a moment later. Costs a lookup on conflicts only.
      if (!(error instanceof ConcurrencyError) || (await this.storedEventIds(events.map((event) => event.id))).length === 0) throw error;
      return this.enqueueAppend(streamName, payload, events.length, expectedRevision);
    });
  }

  private enqueueAppend(streamName: string, payload: string, eventCount: number, expectedRevision: ExpectedRevision): Promise<AppendResult> {
    const [kind, expected] = expectedRevisionParameters(expectedRevision);
    return new Promise<AppendResult>((resolve, reject) => {
      this.pendingAppends.push({ streamName, kind, expected, expectedRevision, payload, eventCount, enqueuedAtMs: Date.now(), resolve, reject });
      this.pendingEvents += eventCount;
      this.startFlushes();
    });
  }

  /**
   * 'any' and 'stream_exists' append at the revision read just before, as an exact expectation.
   * Taken as they are, a statement that got its positions (its transaction id) and then waited on a
   * stream's row could put a later revision below one committed meanwhile, and subscribers would
   * see the stream out of order. An exact expectation cannot: its revision's writer committed
   * before the revision was read. A conflict reads again (bounded); events already stored (a
   * retry) are answered as the loose expectation answers them, as a duplicate, writing nothing.
   */
  private appendAtCurrentRevision(streamName: string, events: readonly EventToAppend[], payload: string, expectedRevision: 'any' | 'stream_exists'): Promise<AppendResult> {
    // One at a time per stream in this process: loose appends racing each other for one revision
    // would only conflict among themselves (40 at once ran out of attempts). Across processes the
    // attempts remain the bound.
    const previous = this.looseAppends.get(streamName);
    const run = (previous ? previous.then(() => undefined, () => undefined) : Promise.resolve()).then(() => this.appendAtRevisionRead(streamName, events, payload, expectedRevision));
    this.looseAppends.set(streamName, run);
    const forget = () => {
      if (this.looseAppends.get(streamName) === run) this.looseAppends.delete(streamName);
    };
    run.then(forget, forget);
    return run;
  }

  private async appendAtRevisionRead(streamName: string, events: readonly EventToAppend[], payload: string, expectedRevision: 'any' | 'stream_exists'): Promise<AppendResult> {
    for (let attempt = 1; attempt <= LOOSE_APPEND_ATTEMPTS; attempt++) {
      const current = await this.streamRevision(streamName);
      // No stream to exist: the loose form refuses it, or finds the events stored, without writing.
      if (current === undefined && expectedRevision === 'stream_exists') return this.enqueueAppend(streamName, payload, events.length, expectedRevision);
      try {
        return await this.enqueueAppend(streamName, payload, events.length, current ?? 'no_stream');
      } catch (error) {
        if (!(error instanceof ConcurrencyError)) throw error;
        const stored = await this.storedEventIds(events.map((event) => event.id));
        if (stored.length > 0) return this.enqueueAppend(streamName, payload, events.length, expectedRevision);
      }
    }
    throw new ConcurrencyError(streamName, expectedRevision, await this.streamRevision(streamName));
  }

  oldestAppendWaitMs(nowMs = Date.now()): number {
    const oldest = this.pendingAppends[0];
    return oldest ? Math.max(0, nowMs - oldest.enqueuedAtMs) : 0;
  }

  /**
   * Group commit: appends that arrive while a statement is in flight go together in the next
   * statement and commit. An append that finds nothing in flight goes alone at once, so a quiet
   * system pays no added latency.
   *
   * A second statement starts only once enough events wait to be worth a second backend. Small
   * appends are bound by the commit, not by CPU: one statement carrying the 15 that arrived during
   * the last commit is cheaper for the server than 8 carrying 2 each (measured: deposits over HTTP
   * went from about 1,100/s at 8 single statements in flight to about 2,000/s).
   */
  private startFlushes(): void {
    while (
      this.pendingAppends.length > 0 &&
      this.flushesInFlight < this.maxFlushesInFlight &&
      (this.flushesInFlight === 0 || this.pendingEvents >= this.pipelineMinEvents)
    ) {
      const group: PendingAppend[] = [];
      let events = 0;
      while (this.pendingAppends.length > 0 && group.length < MAX_APPENDS_PER_GROUP && (group.length === 0 || events + this.pendingAppends[0]!.eventCount <= MAX_EVENTS_PER_GROUP)) {
        const next = this.pendingAppends.shift()!;
        events += next.eventCount;
        group.push(next);
      }
      this.pendingEvents -= events;
      this.flushesInFlight += 1;
      // The slot frees only after the callers just answered have run on: an in-process caller
      // that appends again at once (a stream's next queued command, a subscriber's next step)
      // joins the next group instead of racing it with a statement of its own.
      void this.flush(group).finally(() =>
        setImmediate(() => {
          this.flushesInFlight -= 1;
          this.startFlushes();
        }),
      );
    }
  }

  private async flush(group: PendingAppend[]): Promise<void> {
    if (group.length === 1) {
      const append = group[0]!;
      try {
        append.resolve(await this.appendAlone(append));
      } catch (error) {
        append.reject(error);
      }
      return;
    }
    // Same lock order in every group, so concurrent groups cannot deadlock on stream rows.
    const ordered = [...group].sort((left, right) => (left.streamName < right.streamName ? -1 : left.streamName > right.streamName ? 1 : 0));
    const body = ordered.map((append) => `{"stream":${JSON.stringify(append.streamName)},"kind":${append.kind},"expected":${append.expected === null ? 'null' : `"${append.expected}"`},"events":${append.payload}}`).join(',');
    let rows: (AppendRow & { idx: number })[];
    try {
      const result = await this.pool.query({
        name: 'ledger_append_many',
        text: 'select idx, next_revision::text, last_position::text, duplicate, error_code, error_detail from ledger_append_many($1::jsonb)',
        values: [`[${body}]`],
      });
      rows = result.rows;
    } catch (error) {
      const code = (error as { code?: string }).code;
      // A concurrent retry of the same ids (23505), a lock cycle with someone else's transaction
      // (40P01), or a value or size one member alone is at fault for (data exceptions, class 22;
      // program limits, class 54) fails the whole group, which wrote nothing: each member is tried
      // alone, so that only its own append carries its error.
      if (code === '23505' || code === '40P01' || code?.startsWith('22') || code?.startsWith('54')) ordered.forEach((append) => this.appendAlone(append).then(append.resolve, append.reject));
      else ordered.forEach((append) => append.reject(error));
      return;
    }
    let announced = false;
    for (const row of rows) {
      const append = ordered[row.idx]!;
      if (row.error_code === null) {
        if (!row.duplicate && !announced) {
          announced = true;
          this.announceAppend();
        }
        append.resolve(appendResult(row, append.eventCount));
      } else {
        append.reject(translateAppendError({ code: row.error_code, detail: row.error_detail ?? '' }, append.streamName, append.expectedRevision));
      }
    }
  }

  private async appendAlone(append: PendingAppend): Promise<AppendResult> {
    let row: AppendRow | undefined;
    for (let attempt = 0; !row; attempt++) {
      try {
        // Named, so each connection parses and plans it once.
        const result = await this.pool.query<AppendRow>({
          name: 'ledger_try_append',
          text: 'select next_revision::text, last_position::text, duplicate, error_code, error_detail from ledger_try_append($1, $2, $3, $4::jsonb)',
          values: [append.streamName, append.kind, append.expected, append.payload],
        });
        row = result.rows[0];
        if (!row) throw new EventStoreError('ledger_try_append returned no row');
      } catch (error) {
        const code = (error as { code?: string }).code;
        const constraint = (error as { constraint?: string }).constraint;
        // Two concurrent retries of the same ids: the loser sees the winner's row on its next try.
        if (code === '23505' && constraint === 'ledger_events_event_id_key' && attempt === 0) continue;
        throw translateAppendError(error, append.streamName, append.expectedRevision);
      }
    }
    if (row.error_code !== null) throw translateAppendError({ code: row.error_code, detail: row.error_detail ?? '' }, append.streamName, append.expectedRevision);
    if (!row.duplicate) this.announceAppend();
    return appendResult(row, append.eventCount);
  }

  async readStream(streamName: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    assertValidStreamName(streamName);
    const limit = clampPageSize(options.maxCount);
    if (options.direction === 'backwards') return this.readStreamPage(streamName, options.fromRevision ?? BigInt(Number.MAX_SAFE_INTEGER), limit, 'backwards');
    return new Promise<RecordedEvent[]>((resolve, reject) => {
      this.pendingStreamReads.push({ streamName, fromRevision: options.fromRevision ?? 0n, limit, resolve, reject });
      this.startStreamReads();
    });
  }

  /**
   * Forward stream reads are grouped like appends: a read that finds few in flight goes alone at
   * once; reads arriving while STREAM_READS_IN_FLIGHT statements run share the next one. A cold
   * cache (a restart under load) otherwise sends one statement per stream and fills the pool, and
   * the appends wait behind the reads.
   */
  private startStreamReads(): void {
    while (this.pendingStreamReads.length > 0 && this.streamReadsInFlight < STREAM_READS_IN_FLIGHT) {
      const group = this.pendingStreamReads.splice(0, STREAM_READS_PER_STATEMENT);
      this.streamReadsInFlight += 1;
      void this.readStreams(group).finally(() => {
        this.streamReadsInFlight -= 1;
        this.startStreamReads();
      });
    }
  }

  /** Settles every read of the group exactly once. */
  private async readStreams(group: PendingStreamRead[]): Promise<void> {
    const readAlone = (read: PendingStreamRead) => this.readStreamPage(read.streamName, read.fromRevision, read.limit, 'forwards').then(read.resolve, read.reject);
    if (group.length === 1) return readAlone(group[0]!);
    let pages: RecordedEvent[][];
    try {
      // Each stream gives the group at most GROUPED_EVENTS_PER_STREAM events, so one statement holds
      // at most 200 x 100 rows; a stream that has more is read again alone, in full.
      const result = await this.pool.query<EventRow & { read_index: number }>({
        name: 'ledger_read_streams',
        text: `select r.read_index, e.* from unnest($1::text[], $2::int8[], $3::int4[]) with ordinality as r(stream_name, from_revision, max_count, read_index)
          cross join lateral (
            select ${EVENT_COLUMNS} from ledger_events
            where ledger_events.stream_name = r.stream_name and ledger_events.stream_revision >= r.from_revision
            order by ledger_events.stream_revision asc limit least(r.max_count, ${GROUPED_EVENTS_PER_STREAM})) e
          order by r.read_index, e.stream_revision::int8`,
        values: [group.map((read) => read.streamName), group.map((read) => read.fromRevision.toString()), group.map((read) => read.limit)],
      });
      pages = group.map((): RecordedEvent[] => []);
      for (const row of result.rows) pages[Number(row.read_index) - 1]!.push(toRecordedEvent(row));
    } catch (error) {
      for (const read of group) read.reject(error);
      return;
    }
    const cut: PendingStreamRead[] = [];
    group.forEach((read, index) => {
      if (read.limit > GROUPED_EVENTS_PER_STREAM && pages[index]!.length === GROUPED_EVENTS_PER_STREAM) cut.push(read);
      else read.resolve(pages[index]!);
    });
    // One after another: the group holds one of the STREAM_READS_IN_FLIGHT statements, not more.
    for (const read of cut) await readAlone(read);
  }

  private async readStreamPage(streamName: string, from: bigint, limit: number, direction: 'forwards' | 'backwards'): Promise<RecordedEvent[]> {
    const backwards = direction === 'backwards';
    const result = await this.pool.query<EventRow>({
      name: backwards ? 'ledger_read_stream_backwards' : 'ledger_read_stream',
      text: `select ${EVENT_COLUMNS} from ledger_events
        where stream_name = $1 and stream_revision ${backwards ? '<=' : '>='} $2
        order by ledger_events.stream_revision ${backwards ? 'desc' : 'asc'} limit $3`,
      values: [streamName, from.toString(), limit],
    });
    return result.rows.map(toRecordedEvent);
  }

  async storedEventIds(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    if (ids.length > MAX_PAGE_SIZE) throw new EventStoreError(`at most ${MAX_PAGE_SIZE} ids per lookup, got ${ids.length}`);
    for (const id of ids) if (!isUuid(id)) throw new EventStoreError(`event id must be a UUID, got ${JSON.stringify(id)}`);
    const result = await this.pool.query<{ id: string }>({
      name: 'ledger_stored_event_ids',
      text: 'select event_id::text as id from ledger_events where event_id = any($1::uuid[])',
      values: [ids],
    });
    return result.rows.map((row) => row.id);
  }

  async streamRevision(streamName: string): Promise<bigint | undefined> {
    assertValidStreamName(streamName);
    const result = await this.pool.query<{ revision: string }>('select revision::text from ledger_streams where stream_name = $1', [streamName]);
    const row = result.rows[0];
    return row ? BigInt(row.revision) : undefined;
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const limit = clampPageSize(options.maxCount);
    const { clause, parameters } = rangeClause('ledger_safe_position()', options.filter, 3);
    const result = await this.pool.query<EventRow>(
      `select ${EVENT_COLUMNS} from ledger_events
        where ${clause}
        order by ledger_events.position limit $2`,
      [(options.after ?? 0n).toString(), limit, ...parameters],
    );
    return result.rows.map(toRecordedEvent);
  }

  async headPosition(): Promise<bigint> {
    const result = await this.pool.query<{ position: string | null }>(
      'select max(position)::text as position from ledger_events where position <= ledger_safe_position()',
    );
    return BigInt(result.rows[0]?.position ?? '0');
  }

  subscribe(options: SubscribeOptions, handler: (batch: Batch) => Promise<void>): Subscription {
    const batchSize = clampPageSize(options.batchSize, DEFAULT_BATCH_SIZE);
    const readPage = this.pageReader(options.filter, batchSize);
    let stopped = false;
    let wake: (() => void) | undefined;
    // A wake-up that arrives while a read is in flight must not be lost, or we would sleep a full poll interval.
    let wakeRequested = false;
    const onWake = () => {
      if (wake) wake();
      else wakeRequested = true;
    };
    this.wakeups.on('wake', onWake);
    void this.ensureListener();

    /** Resolves true when a wake-up ended the sleep, false when the timer did. */
    const sleep = (ms: number) => {
      if (wakeRequested) {
        wakeRequested = false;
        return Promise.resolve(true);
      }
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => finish(false), ms);
        function finish(woken: boolean) {
          clearTimeout(timer);
          wake = undefined;
          resolve(woken);
        }
        wake = () => finish(true);
      });
    };

    const taker = {};
    /** The next batch: from the shared tail when it reaches back to the checkpoint, else read here. */
    const nextPage = async (checkpoint: bigint): Promise<{ events: RecordedEvent[]; nextCheckpoint: bigint; drained: boolean; pending: boolean }> => {
      const slice = await this.tail.takeFresh(checkpoint, batchSize, options.filter, taker);
      if (slice) return { events: slice.events, nextCheckpoint: slice.checkpoint, drained: slice.drained && !slice.more, pending: slice.drained && slice.pending };
      const page = await readPage(checkpoint);
      const drained = page.events.length < batchSize;
      // When the page was short, nothing else matches up to `safe`: filtered-out events need no re-scan.
      const nextCheckpoint = drained && page.safe > checkpoint ? page.safe : (page.events.at(-1)?.position ?? checkpoint);
      // Caught up: from here on the shared tail can serve this subscription. (Not from a
      // checkpoint beyond the horizon: a tail started there would serve nobody else.)
      if (drained && nextCheckpoint <= page.safe) this.tail.startAt(nextCheckpoint);
      return { events: page.events, nextCheckpoint, drained, pending: page.pending };
    };

    const run = async () => {
      let checkpoint = options.after ?? 0n;
      let pendingDelayMs = PENDING_RETRY_MIN_MS;
      let wasCaughtUp = false;
      let lastEmptyBatchMs = 0;
      while (!stopped && !this.closed) {
        wakeRequested = false;
        const { events, nextCheckpoint, drained, pending } = await nextPage(checkpoint);
        let deferred = false;
        if (events.length > 0) {
          assertIncreasing(checkpoint, events);
          await handler({ events, checkpoint: nextCheckpoint });
          checkpoint = nextCheckpoint;
        } else if (nextCheckpoint > checkpoint && (!drained || Date.now() - lastEmptyBatchMs >= EMPTY_BATCH_INTERVAL_MS)) {
          // Nothing matched the filter up to `safe`: say so (rarely, unless behind the head), so a
          // filtered subscriber's checkpoint keeps up with the log and readers waiting for a
          // position are not held back.
          lastEmptyBatchMs = Date.now();
          await handler({ events: [], checkpoint: nextCheckpoint });
          checkpoint = nextCheckpoint;
        } else if (nextCheckpoint > checkpoint) {
          deferred = true;
        }
        if (!drained || stopped) continue;
        if (!wasCaughtUp || events.length > 0) options.onCaughtUp?.(checkpoint);
        wasCaughtUp = true;
        if (events.length > 0) {
          // Under load, wait a moment so the next batch carries many events and one commit, instead
          // of a read and a commit for every append (the subscriber's group commit). Then take
          // again: only an empty take may sleep, so a wake-up that came meanwhile is not lost.
          if (this.coalesceMs > 0) await new Promise((resolve) => setTimeout(resolve, this.coalesceMs));
          continue;
        }
        let woken: boolean;
        if (pending || deferred) {
          // Committed-or-running rows above the horizon: an older transaction is still open. Poll soon.
          woken = await sleep(pendingDelayMs);
          pendingDelayMs = Math.min(pendingDelayMs * 2, PENDING_RETRY_MAX_MS);
        } else {
          pendingDelayMs = PENDING_RETRY_MIN_MS;
          woken = await sleep(this.pollIntervalMs);
        }
        // A wake-up (an append, a notification) already told the tail to read again, once for all
        // its subscriptions; a timer did not, and a poll must read.
        if (!woken) this.tail.wake();
      }
    };

    const done = run().finally(() => {
      this.wakeups.off('wake', onWake);
      this.subscriptions.delete(subscription);
    });
    const subscription: Subscription = {
      done,
      stop: async () => {
        stopped = true;
        wake?.();
        await done.catch(() => undefined);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /**
   * Reads one page of the log after a position, up to the safe horizon, for a filter. One round
   * trip: the horizon and the page come from the same statement (the same snapshot, so everything
   * up to its horizon is visible to it). `head > safe` (a backward probe of the primary key,
   * whatever the statistics say) tells whether rows wait above the horizon.
   */
  private pageReader(filter: GlobalFilter | undefined, limit: number): (after: bigint) => Promise<TailPage> {
    const { clause, parameters } = rangeClause('h.safe', filter, 3);
    const pageQuery = `select h.safe::text as horizon_safe, (h.head > h.safe) as horizon_pending, e.*
        from (select ledger_safe_position() as safe, (select max(position) from ledger_events) as head) h
        left join lateral (
          select ${EVENT_COLUMNS} from ledger_events
           where ${clause}
           order by ledger_events.position limit $2
        ) e on true`;
    // Named, so each connection parses and plans it once rather than on every page.
    const pageStatement = `ledger_subscribe_${createHash('sha1').update(pageQuery).digest('hex').slice(0, 16)}`;
    return async (after) => {
      const result = await this.pool.query<Partial<EventRow> & { horizon_safe: string; horizon_pending: boolean | null }>({
        name: pageStatement,
        text: pageQuery,
        values: [after.toString(), limit, ...parameters],
      });
      const first = result.rows[0]!;
      return {
        safe: BigInt(first.horizon_safe),
        pending: first.horizon_pending === true,
        events: first.position === null ? [] : result.rows.map((row) => toRecordedEvent(row as EventRow)),
      };
    };
  }

  /**
   * Wakes every local subscriber at once and tells other processes through one coalesced NOTIFY,
   * sent on a connection of its own so appends never wait for it.
   */
  private announceAppend(): void {
    this.wakeups.emit('wake');
    if (this.notifyInFlight) {
      this.notifyAgain = true;
      return;
    }
    this.notifyInFlight = true;
    // A short delay lets a burst of appends share one notification.
    const send = (): void => {
      this.notifyAgain = false;
      this.notify()
        .catch((error: unknown) => this.logger?.warn({ err: error }, 'event store notify failed; subscribers fall back to polling'))
        .finally(() => {
          if (this.notifyAgain && !this.closed) setTimeout(send, NOTIFY_COALESCE_MS);
          else this.notifyInFlight = false;
        });
    };
    setTimeout(send, NOTIFY_COALESCE_MS);
  }

  private async notify(): Promise<void> {
    if (!this.notifier) {
      const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: 5_000, application_name: 'ledger notifier' });
      client.on('error', () => {
        if (this.notifier === client) this.notifier = undefined;
      });
      await client.connect();
      // A notification carries no data to keep: its commit need not wait for a WAL flush.
      await client.query('set synchronous_commit = off');
      if (this.closed) {
        await client.end();
        return;
      }
      this.notifier = client;
    }
    await this.notifier.query('select pg_notify($1, $2)', [NOTIFY_CHANNEL, this.notifierId]);
  }

  private ensureListener(): Promise<void> {
    if (this.listener || this.closed) return Promise.resolve();
    this.listenerStarting ??= this.startListener(0).finally(() => {
      this.listenerStarting = undefined;
    });
    return this.listenerStarting;
  }

  private async startListener(attempt: number): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: 5_000 });
    try {
      await client.connect();
      // Our own announcement already woke our subscribers when we appended: a second wake would
      // only cost every subscription another empty read.
      client.on('notification', (message) => {
        if (message.payload !== this.notifierId) this.wakeups.emit('wake');
      });
      client.on('error', (error) => {
        this.logger?.warn({ err: error }, 'event store listener lost; reconnecting');
        this.listener = undefined;
        client.end().catch(() => undefined);
        // Whatever was announced while disconnected is found by reading: wake everyone.
        this.wakeups.emit('wake');
        if (!this.closed && this.subscriptions.size > 0) void this.ensureListener();
      });
      await client.query(`listen ${NOTIFY_CHANNEL}`);
      if (this.closed) {
        await client.end();
        return;
      }
      this.listener = client;
      this.wakeups.emit('wake');
    } catch (error) {
      await client.end().catch(() => undefined);
      const delayMs = Math.min(100 * 2 ** attempt, LISTENER_RECONNECT_MAX_MS);
      this.logger?.warn({ err: error, delayMs }, 'event store listener could not connect; retrying');
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return this.startListener(attempt + 1);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
    await this.listenerStarting?.catch(() => undefined);
    const listener = this.listener;
    const notifier = this.notifier;
    this.listener = undefined;
    this.notifier = undefined;
    await listener?.end().catch(() => undefined);
    await notifier?.end().catch(() => undefined);
  }
}

function expectedRevisionParameters(expected: ExpectedRevision): [number, string | null] {
  switch (expected) {
    case 'any':
      return [1, null];
    case 'no_stream':
      return [2, null];
    case 'stream_exists':
      return [3, null];
    default:
      return [0, expected.toString()];
  }
}

function encodeEventsForAppend(events: readonly EventToAppend[]): string {
  const parts: string[] = [];
  for (const event of events) {
    let data: string;
    let metadata: string;
    try {
      data = encodeJson(requireObject(event.data, 'data'));
      metadata = encodeJson(storedMetadata(event));
    } catch (error) {
      if (error instanceof JsonEncodingError) throw new InvalidAppendError(`event ${event.id}: ${error.message}`);
      throw error;
    }
    const bytes = Buffer.byteLength(data) + Buffer.byteLength(metadata);
    if (bytes > MAX_EVENT_BYTES) throw new InvalidAppendError(`event ${event.id} is ${bytes} bytes; the limit is ${MAX_EVENT_BYTES}`);
    parts.push(
      `{"id":${JSON.stringify(event.id.toLowerCase())},"type":${JSON.stringify(event.type)},"schemaVersion":${event.schemaVersion ?? 1},"data":${data},"metadata":${metadata}}`,
    );
  }
  return `[${parts.join(',')}]`;
}

function requireObject(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JsonEncodingError(`${what} must be a JSON object`);
  return value as JsonObject;
}

function storedMetadata(event: EventToAppend): JsonObject {
  const metadata = event.metadata ?? {};
  const stored: JsonObject = {};
  if (metadata.correlationId !== undefined) stored.correlationId = metadata.correlationId;
  if (metadata.causationId !== undefined) stored.causationId = metadata.causationId;
  if (metadata.actor !== undefined) stored.actor = metadata.actor;
  if (metadata.extra !== undefined) stored.extra = requireObject(metadata.extra, 'metadata.extra');
  return stored;
}

function translateAppendError(error: unknown, streamName: string, expected: ExpectedRevision): unknown {
  const { code, detail } = error as { code?: string; detail?: string };
  switch (code) {
    case 'LE001':
      return new ConcurrencyError(streamName, expected, detail ? BigInt(detail) : undefined);
    case 'LE002':
      return new IdempotencyConflictError(streamName, 'an event id of this append is already stored with other content or in another place');
    case 'LE003':
      return new InvalidAppendError('too many events in one transaction');
    case '22P02':
    case '22P05':
    case '22023':
      return new InvalidAppendError(`the store refused the event content (${code})`);
    default:
      return error;
  }
}

/**
 * The WHERE clause of a log read after `$1` up to `upperBound`, parameters from `firstParameter`.
 * A filtered read must walk the primary key in position order and stop at its limit. Written as
 * plain conditions, a database without statistics (every new one, for its first minutes) had the
 * planner take the position range for 0.5 % of the log and the filter for rarer still, and fetch
 * the whole range after the position to sort it: 40-170 ms for one lag check in the transfers
 * benchmark, and a catch-up that sorts the rest of the log for every page. Inside one CASE, the
 * bound and the filter are a single condition of unknown selectivity, so the planner walks the key.
 */
function rangeClause(upperBound: string, filter: GlobalFilter | undefined, firstParameter: number): { clause: string; parameters: unknown[] } {
  const conditions: string[] = [];
  const parameters: unknown[] = [];
  if (filter?.streamPrefixes && filter.streamPrefixes.length > 0) {
    parameters.push(filter.streamPrefixes.map((prefix) => `${prefix.replace(/[\\%_]/g, '\\$&')}%`));
    conditions.push(`stream_name like any($${firstParameter + parameters.length - 1}::text[])`);
  }
  if (filter?.eventTypes && filter.eventTypes.length > 0) {
    parameters.push(filter.eventTypes);
    conditions.push(`event_type = any($${firstParameter + parameters.length - 1}::text[])`);
  }
  if (conditions.length === 0) return { clause: `position > $1 and position <= ${upperBound}`, parameters };
  return { clause: `position > $1 and (case when position <= ${upperBound} and ${conditions.join(' and ')} then true else false end)`, parameters };
}

/** An append's events get consecutive positions (see the schema), so the first follows from the last. */
function appendResult(row: Pick<AppendRow, 'next_revision' | 'last_position' | 'duplicate'>, eventCount: number): AppendResult {
  const position = BigInt(row.last_position!);
  const duplicate = row.duplicate === true;
  return duplicate
    ? { nextExpectedRevision: BigInt(row.next_revision!), position, duplicate }
    : { nextExpectedRevision: BigInt(row.next_revision!), position, firstPosition: position - BigInt(eventCount - 1), duplicate };
}

function toRecordedEvent(row: EventRow): RecordedEvent {
  const event = {
    id: row.event_id,
    streamName: row.stream_name,
    revision: BigInt(row.stream_revision),
    position: BigInt(row.position),
    type: row.event_type,
    schemaVersion: row.schema_version,
    data: decodeJson<JsonObject>(row.data),
  } as RecordedEvent;
  // Metadata is decoded when first read, since projections rarely look at it; JSON decoding was
  // the runners' largest cost after the apply itself. Once read it stays, as a plain property.
  Object.defineProperty(event, 'metadata', {
    enumerable: true,
    configurable: true,
    get() {
      const metadata = decodeMetadata(row.metadata, row.recorded_at);
      Object.defineProperty(event, 'metadata', { value: metadata, enumerable: true, configurable: false, writable: false });
      return metadata;
    },
  });
  return event;
}

function decodeMetadata(text: string, recordedAt: string): EventMetadata {
  const stored = decodeJson<JsonObject>(text);
  const metadata: EventMetadata = { recordedAt };
  if (typeof stored.correlationId === 'string') metadata.correlationId = stored.correlationId;
  if (typeof stored.causationId === 'string') metadata.causationId = stored.causationId;
  if (typeof stored.actor === 'string') metadata.actor = stored.actor;
  if (typeof stored.extra === 'object' && stored.extra !== null && !Array.isArray(stored.extra)) metadata.extra = stored.extra as JsonObject;
  return metadata;
}

function assertIncreasing(after: bigint, events: readonly RecordedEvent[]): void {
  let previous = after;
  for (const event of events) {
    if (event.position <= previous) throw new EventStoreError(`global order broken: ${event.position} after ${previous}`);
    previous = event.position;
  }
}
