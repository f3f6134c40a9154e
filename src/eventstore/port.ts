/**
 * The event store port. Both adapters (PostgreSQL, EventStoreDB) implement it and both run the
 * same contract suite (tests/eventstore/contract.ts).
 *
 * Glossary:
 * - revision: 0-based index of an event inside its stream.
 * - position: the event's place in the global log, a bigint that only grows in the order readers
 *   see events. Opaque: compare positions, never do arithmetic on them.
 */
import type { JsonObject } from '../shared/json.js';

export type ExpectedRevision = 'any' | 'no_stream' | 'stream_exists' | bigint;

export interface EventMetadataInput {
  correlationId?: string;
  causationId?: string;
  /** The principal that caused the event, for example `teller:42` or `system:process-manager`. */
  actor?: string;
  /** Anything else a reader needs (idempotency key, request fingerprint). Must be JSON. */
  extra?: JsonObject;
}

export interface EventMetadata extends EventMetadataInput {
  /** ISO-8601 UTC time the store recorded the event. */
  recordedAt: string;
}

export interface EventToAppend {
  /** Client-chosen UUID. Re-appending the same id with the same content is a no-op. */
  id: string;
  type: string;
  data: JsonObject;
  schemaVersion?: number;
  metadata?: EventMetadataInput;
}

export interface RecordedEvent<Data extends JsonObject = JsonObject> {
  id: string;
  streamName: string;
  revision: bigint;
  position: bigint;
  type: string;
  schemaVersion: number;
  data: Data;
  metadata: EventMetadata;
}

export interface AppendResult {
  /** Revision of the last event in the stream after the append. */
  nextExpectedRevision: bigint;
  /** Global position of the last appended event. */
  position: bigint;
  /**
   * Set by a store that gives the events of one append consecutive global positions (PostgreSQL):
   * the first event's, so event i of the append is at firstPosition + i. Left out by a store whose
   * positions have gaps (EventStoreDB's are log offsets), and for a duplicate.
   */
  firstPosition?: bigint;
  /** True when every event was already stored (an idempotent retry). */
  duplicate: boolean;
}

export interface ReadStreamOptions {
  direction?: 'forwards' | 'backwards';
  /** Inclusive. Defaults to the start (forwards) or the end (backwards). */
  fromRevision?: bigint;
  /** Bounded by MAX_PAGE_SIZE. */
  maxCount?: number;
}

export interface GlobalFilter {
  /** Keep events whose stream name starts with one of these prefixes. */
  streamPrefixes?: readonly string[];
  /** Keep events of one of these types. */
  eventTypes?: readonly string[];
}

export interface ReadAllOptions {
  /** Exclusive: events strictly after this position. Omit (or 0n) to read from the start. */
  after?: bigint;
  maxCount?: number;
  filter?: GlobalFilter;
}

export interface SubscribeOptions {
  /** Exclusive checkpoint; the subscription delivers events strictly after it. */
  after?: bigint;
  filter?: GlobalFilter;
  /** Events per delivered batch, bounded by MAX_PAGE_SIZE. The next batch is read only after the handler resolves. */
  batchSize?: number;
  /** Called each time the subscription reaches the head of the log. */
  onCaughtUp?: (position: bigint) => void;
}

export interface Batch {
  /** May be empty when only the checkpoint moved (nothing matched the filter). */
  events: RecordedEvent[];
  /**
   * Checkpoint to store once the batch is applied. It may be past the last event when filtered
   * events were skipped, so a resumed subscription does not re-scan them.
   */
  checkpoint: bigint;
}

export interface Subscription {
  /** Stops after the batch in flight; resolves once the handler has returned. */
  stop(): Promise<void>;
  /** Settles when the subscription ends: resolves on stop, rejects with the handler's or the store's error. */
  readonly done: Promise<void>;
}

export interface EventStore {
  readonly kind: 'postgres' | 'eventstoredb';
  append(streamName: string, events: readonly EventToAppend[], options: { expectedRevision: ExpectedRevision }): Promise<AppendResult>;
  readStream(streamName: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /** Current revision of a stream, or undefined if it does not exist. */
  streamRevision(streamName: string): Promise<bigint | undefined>;
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Position of the newest event a reader can see now (0n for an empty log). */
  headPosition(): Promise<bigint>;
  subscribe(options: SubscribeOptions, handler: (batch: Batch) => Promise<void>): Subscription;
  /**
   * Which of these event ids are stored, in any stream. Only on a store that also refuses every
   * reuse of a stored id, wherever it is (an IdempotencyConflictError, or a duplicate for a retry
   * in place): PostgreSQL, where ids are unique across the log. EventStoreDB compares ids only where
   * a retry would land, so it has no such method. The command handler forgets older idempotency
   * keys only on a store that has it.
   */
  storedEventIds?(ids: readonly string[]): Promise<string[]>;
  /**
   * How long the oldest append still queued in this process has waited to be sent, in ms (0 when
   * none waits). Only on a store that queues appends itself (PostgreSQL's group commit); admission
   * reads it to refuse new work while the database is not keeping up with the appends.
   */
  oldestAppendWaitMs?(nowMs?: number): number;
  close(): Promise<void>;
}

export const MAX_PAGE_SIZE = 1_000;
export const MAX_EVENTS_PER_APPEND = 1_000;
/** Bound on one event's serialised data plus metadata. */
export const MAX_EVENT_BYTES = 64 * 1024;
export const MAX_STREAM_NAME_LENGTH = 200;
export const MAX_EVENT_TYPE_LENGTH = 100;
const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:@-]*$/;
const EVENT_TYPE = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NIL_UUID = '00000000-0000-0000-0000-000000000000';

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

export class EventStoreError extends Error {
  override name = 'EventStoreError';
}

/** The stream is not at the expected revision. `actualRevision` is undefined when the stream does not exist. */
export class ConcurrencyError extends EventStoreError {
  override name = 'ConcurrencyError';
  constructor(
    readonly streamName: string,
    readonly expectedRevision: ExpectedRevision,
    readonly actualRevision: bigint | undefined,
  ) {
    super(`stream ${streamName} expected revision ${String(expectedRevision)} but is at ${actualRevision === undefined ? 'no stream' : String(actualRevision)}`);
  }
}

/** An event id was reused with different content, or in a different place. */
export class IdempotencyConflictError extends EventStoreError {
  override name = 'IdempotencyConflictError';
  constructor(readonly eventId: string, detail: string) {
    super(`event ${eventId} was already appended with different content or position: ${detail}`);
  }
}

/** The caller passed something the store refuses to write. Nothing was written. */
export class InvalidAppendError extends EventStoreError {
  override name = 'InvalidAppendError';
}

// ---------------------------------------------------------------------------------------------
// Validation shared by the adapters, so both refuse exactly the same input
// ---------------------------------------------------------------------------------------------

export function assertValidStreamName(streamName: unknown): asserts streamName is string {
  if (typeof streamName !== 'string' || streamName.length === 0 || streamName.length > MAX_STREAM_NAME_LENGTH || !STREAM_NAME.test(streamName)) {
    throw new InvalidAppendError(`invalid stream name ${JSON.stringify(streamName)}: 1-${MAX_STREAM_NAME_LENGTH} characters of [A-Za-z0-9_.:@-], not starting with a symbol`);
  }
}

const MAX_REVISION = 2n ** 63n - 1n;

export function assertValidExpectedRevision(expected: unknown): asserts expected is ExpectedRevision {
  if (expected === 'any' || expected === 'no_stream' || expected === 'stream_exists') return;
  // Revisions are signed 64-bit integers in both stores.
  if (typeof expected === 'bigint' && expected >= 0n && expected <= MAX_REVISION) return;
  throw new InvalidAppendError(`invalid expected revision ${String(expected)}`);
}

export function clampPageSize(maxCount: number | undefined, fallback = MAX_PAGE_SIZE): number {
  if (maxCount === undefined) return fallback;
  if (!Number.isInteger(maxCount) || maxCount < 1) throw new EventStoreError(`maxCount must be a positive integer, got ${maxCount}`);
  return Math.min(maxCount, MAX_PAGE_SIZE);
}

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export function assertValidEvents(events: readonly EventToAppend[]): void {
  if (!Array.isArray(events) || events.length === 0) throw new InvalidAppendError('an append needs at least one event');
  if (events.length > MAX_EVENTS_PER_APPEND) throw new InvalidAppendError(`an append takes at most ${MAX_EVENTS_PER_APPEND} events, got ${events.length}`);
  const seen = new Set<string>();
  for (const event of events) {
    if (!isUuid(event.id)) throw new InvalidAppendError(`event id must be a UUID, got ${JSON.stringify(event.id)}`);
    // EventStoreDB fails an append carrying it with an unknown error; refused here for both stores.
    if (event.id === NIL_UUID) throw new InvalidAppendError(`event id must not be the nil UUID ${NIL_UUID}`);
    const id = event.id.toLowerCase();
    if (seen.has(id)) throw new InvalidAppendError(`event id ${id} appears twice in one append`);
    seen.add(id);
    if (typeof event.type !== 'string' || event.type.length > MAX_EVENT_TYPE_LENGTH || !EVENT_TYPE.test(event.type)) {
      throw new InvalidAppendError(`invalid event type ${JSON.stringify(event.type)}`);
    }
    if (event.schemaVersion !== undefined && (!Number.isInteger(event.schemaVersion) || event.schemaVersion < 1 || event.schemaVersion > 32_767)) {
      throw new InvalidAppendError(`schemaVersion must be an integer from 1 to 32767`);
    }
  }
}
