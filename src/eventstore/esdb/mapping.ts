/**
 * Pure translation between the event store port and `@eventstore/db-client` v6. Nothing here talks
 * to a server, so all of it is unit tested.
 *
 * Glossary (EventStoreDB):
 * - `$all` position: `{ commit, prepare }`. Events written through gRPC are implicitly committed
 *   prepares, whose commit and prepare positions are both the record's log position, so the port
 *   keeps only `commit` and rebuilds `{ commit: p, prepare: p }` when it has to hand one back.
 * - System events: types starting with `$` (`$metadata`, `$>` links, projection output).
 */
import {
  ANY,
  NO_STREAM,
  STREAM_EXISTS,
  eventTypeFilter,
  excludeSystemEvents,
  jsonEvent,
  streamNameFilter,
  type AllStreamResolvedEvent,
  type AppendExpectedRevision,
  type EventData,
  type Filter,
  type JSONEventType,
  type Position,
  type ResolvedEvent,
} from '@eventstore/db-client';
import { assertJsonObject, decodeJson, encodeJson, JsonEncodingError, reviveBigints, type JsonObject } from '../../shared/json.js';
import {
  ConcurrencyError,
  EventStoreError,
  InvalidAppendError,
  MAX_EVENT_BYTES,
  type EventMetadata,
  type EventToAppend,
  type ExpectedRevision,
  type GlobalFilter,
  type RecordedEvent,
} from '../port.js';

// ---------------------------------------------------------------------------------------------
// Expected revisions and errors
// ---------------------------------------------------------------------------------------------

export function toClientExpectedRevision(expected: ExpectedRevision): AppendExpectedRevision {
  switch (expected) {
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      return expected;
  }
}

/** The client reports a missing stream as `'no_stream'`, or as `-1n` when it does not throw. */
export function toActualRevision(actual: unknown): bigint | undefined {
  if (typeof actual === 'bigint') return actual >= 0n ? actual : undefined;
  if (typeof actual === 'number' && Number.isSafeInteger(actual)) return actual >= 0 ? BigInt(actual) : undefined;
  if (typeof actual === 'string' && /^[0-9]+$/.test(actual)) return BigInt(actual);
  return undefined;
}

function errorType(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const type = (error as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

/**
 * The client's WrongExpectedVersionError as the port's ConcurrencyError, or undefined for any other
 * error. Matches on the error's `type` tag so a second copy of the client module still matches.
 */
export function toConcurrencyError(error: unknown, streamName: string, expected: ExpectedRevision): ConcurrencyError | undefined {
  if (errorType(error) !== 'wrong-expected-version') return undefined;
  const actual = (error as { actualVersion?: unknown }).actualVersion;
  return new ConcurrencyError(streamName, expected, toActualRevision(actual));
}

export function isStreamNotFound(error: unknown): boolean {
  return errorType(error) === 'stream-not-found';
}

export function isMaxAppendSizeExceeded(error: unknown): boolean {
  return errorType(error) === 'maximum-append-size-exceeded';
}

const TRANSIENT_TYPES = new Set(['unavailable', 'deadline-exceeded', 'not-leader', 'timeout', 'cancelled']);
const TRANSIENT_NODE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);
/** gRPC status codes: CANCELLED 1, DEADLINE_EXCEEDED 4, UNAVAILABLE 14. */
const TRANSIENT_GRPC_CODES = new Set([1, 4, 14]);

/** Whether a subscription that failed with `error` is worth re-opening from its last checkpoint. */
export function isTransientError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const type = errorType(error);
  if (type !== undefined && TRANSIENT_TYPES.has(type)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_NODE_CODES.has(code)) return true;
  if (typeof code === 'number' && TRANSIENT_GRPC_CODES.has(code)) return true;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && /ECONNRESET|connection (reset|dropped|closed|refused)|socket hang up|goaway/i.test(message);
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/** What this adapter stores as an event's custom metadata. */
export interface StoredMetadata extends JsonObject {
  schemaVersion: number;
}

export interface EncodedEvent {
  eventData: EventData;
  /** Bytes of data plus caller metadata, measured as the PostgreSQL adapter measures them. */
  bytes: number;
}

const textEncoder = new TextEncoder();

/** The port metadata without the adapter's own fields, so that both adapters measure the same bytes. */
export function portMetadata(event: EventToAppend): JsonObject {
  const metadata = event.metadata ?? {};
  const stored: JsonObject = {};
  if (metadata.correlationId !== undefined) stored.correlationId = requireString(metadata.correlationId, 'metadata.correlationId');
  if (metadata.causationId !== undefined) stored.causationId = requireString(metadata.causationId, 'metadata.causationId');
  if (metadata.actor !== undefined) stored.actor = requireString(metadata.actor, 'metadata.actor');
  if (metadata.extra !== undefined) stored.extra = requireObject(metadata.extra, 'metadata.extra');
  return stored;
}

export function storedMetadata(event: EventToAppend): StoredMetadata {
  return { ...portMetadata(event), schemaVersion: event.schemaVersion ?? 1 };
}

/**
 * Encodes one event for `appendToStream`, or throws InvalidAppendError. Call after the port's
 * `assertValidEvents`.
 *
 * Data is sent as `application/json` so the server, its UI and projections can read it. The client
 * serialises JSON data with plain `JSON.stringify`, which cannot write a bigint, so the data is handed
 * over already in the codec's wire form (bigints as `{"$bigint":"…"}`): `JSON.stringify` of that tree
 * is byte for byte `encodeJson(data)`. Metadata is handed over as those bytes directly.
 */
export function encodeEvent(event: EventToAppend): EncodedEvent {
  let dataText: string;
  let metadataText: string;
  let measuredMetadataText: string;
  try {
    dataText = encodeJson(requireObject(event.data, 'data'));
    const measured = portMetadata(event);
    measuredMetadataText = encodeJson(measured);
    metadataText = encodeJson({ ...measured, schemaVersion: event.schemaVersion ?? 1 });
  } catch (error) {
    if (error instanceof JsonEncodingError) throw new InvalidAppendError(`event ${event.id}: ${error.message}`);
    throw error;
  }
  if (containsNulCharacter(dataText) || containsNulCharacter(metadataText)) {
    // PostgreSQL's jsonb cannot store U+0000, so the other adapter refuses it; refuse it here too.
    throw new InvalidAppendError(`event ${event.id}: text must not contain the NUL character (U+0000)`);
  }
  const bytes = Buffer.byteLength(dataText) + Buffer.byteLength(measuredMetadataText);
  if (bytes > MAX_EVENT_BYTES) throw new InvalidAppendError(`event ${event.id} is ${bytes} bytes; the limit is ${MAX_EVENT_BYTES}`);
  const eventData = jsonEvent<JSONEventType>({
    id: event.id.toLowerCase(),
    type: event.type,
    data: JSON.parse(dataText) as JsonWireObject,
    metadata: textEncoder.encode(metadataText),
  });
  return { eventData: eventData as EventData, bytes };
}

type JsonWireObject = Record<string, unknown>;

/** True when JSON text holds an escaped U+0000 (`\u0000` preceded by an even number of backslashes). */
export function containsNulCharacter(jsonText: string): boolean {
  return /(^|[^\\])(\\\\)*\\u0000/.test(jsonText);
}

function requireObject(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JsonEncodingError(`${what} must be a JSON object`);
  return value as JsonObject;
}

function requireString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new JsonEncodingError(`${what} must be a string`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/** ESDB reports "no position" as -1, which arrives as 2^64 - 1 through an unsigned field; real ones fit in int64. */
const MAX_REAL_POSITION = 2n ** 63n - 1n;
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export type AnyResolvedEvent = ResolvedEvent | AllStreamResolvedEvent;

/** The commit position of a read or subscribed event, or undefined when the server did not report one. */
export function commitPositionOf(resolved: AnyResolvedEvent): bigint | undefined {
  const candidates = [resolved.event?.position?.commit, resolved.commitPosition];
  for (const candidate of candidates) {
    if (typeof candidate === 'bigint' && candidate > 0n && candidate <= MAX_REAL_POSITION) return candidate;
  }
  return undefined;
}

export function toClientPosition(position: bigint): Position {
  return { commit: position, prepare: position };
}

export function isSystemEvent(streamName: string, type: string): boolean {
  return type.startsWith('$') || streamName.startsWith('$');
}

/** The client's resolved event as a port RecordedEvent. Throws EventStoreError on content it did not write. */
export function decodeRecordedEvent(resolved: AnyResolvedEvent): RecordedEvent {
  const recorded = resolved.event;
  if (!recorded) throw new EventStoreError('EventStoreDB returned a link whose event is missing');
  const where = `${recorded.streamId}@${recorded.revision}`;
  const position = commitPositionOf(resolved);
  if (position === undefined) {
    throw new EventStoreError(`EventStoreDB did not report the global position of ${where}; the adapter needs EventStoreDB 22.6 or newer`);
  }
  const data = decodeJsonPayload(recorded.data, `${where} data`);
  const stored = recorded.metadata === undefined ? {} : decodeJsonPayload(recorded.metadata, `${where} metadata`);
  const metadata: EventMetadata = { recordedAt: recorded.created.toISOString() };
  if (typeof stored.correlationId === 'string') metadata.correlationId = stored.correlationId;
  if (typeof stored.causationId === 'string') metadata.causationId = stored.causationId;
  if (typeof stored.actor === 'string') metadata.actor = stored.actor;
  if (typeof stored.extra === 'object' && stored.extra !== null && !Array.isArray(stored.extra)) metadata.extra = stored.extra as JsonObject;
  const schemaVersion = typeof stored.schemaVersion === 'number' && Number.isInteger(stored.schemaVersion) && stored.schemaVersion >= 1 ? stored.schemaVersion : 1;
  return {
    id: recorded.id,
    streamName: recorded.streamId,
    revision: recorded.revision,
    position,
    type: recorded.type,
    schemaVersion,
    data,
    metadata,
  };
}

/**
 * The client hands JSON back already parsed (`application/json` data, and any metadata that parses)
 * or as bytes (binary content, unparsable metadata). Either way bigints come back from their tags.
 */
export function decodeJsonPayload(payload: unknown, what: string): JsonObject {
  let value: unknown;
  try {
    if (payload instanceof Uint8Array) value = decodeJson(textDecoder.decode(payload));
    else if (typeof payload === 'string') value = decodeJson(payload);
    else value = reviveBigints(payload);
    assertJsonObject(value, what);
  } catch (error) {
    throw new EventStoreError(`${what} is not a JSON object this adapter wrote: ${error instanceof Error ? error.message : String(error)}`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/**
 * How often a filtered subscription hears from the server when nothing matches. Live, the server
 * sends a checkpoint every `maxSearchWindow × checkpointInterval` events of `$all`; catching up, it
 * scans at most `maxSearchWindow` events per page and sends a checkpoint every `checkpointInterval`
 * pages. The client's option names; both must be positive integers.
 */
export interface FilterWindow {
  maxSearchWindow: number;
  checkpointInterval: number;
}

export interface FilterPlan {
  /** Which dimension the server filters on. */
  readonly serverSide: 'streamPrefixes' | 'eventTypes' | 'excludeSystemEvents';
  /** The client filter for `subscribeToAll`; the callback receives the server's checkpoints. */
  toClientFilter(checkpointReached?: (position: Position) => void, window?: FilterWindow): Filter;
  /** The complete port filter, applied to every event on this side as well. Never keeps system events. */
  matches(streamName: string, type: string): boolean;
}

/**
 * EventStoreDB filters a subscription on one dimension only: stream name or event type. With both,
 * the server filters on stream prefixes (usually the narrower one) and this side applies the types.
 * An empty list means no constraint on that dimension, as in the PostgreSQL adapter.
 */
export function planFilter(filter: GlobalFilter | undefined): FilterPlan {
  const prefixes = validatedList(filter?.streamPrefixes, 'streamPrefixes');
  const types = validatedList(filter?.eventTypes, 'eventTypes');
  const typeSet = types ? new Set(types) : undefined;
  const matches = (streamName: string, type: string): boolean => {
    if (isSystemEvent(streamName, type)) return false;
    if (prefixes && !prefixes.some((prefix) => streamName.startsWith(prefix))) return false;
    if (typeSet && !typeSet.has(type)) return false;
    return true;
  };
  const callback = (checkpointReached?: (position: Position) => void, window?: FilterWindow) => ({
    ...(checkpointReached ? { checkpointReached: (_subscription: unknown, position: Position) => checkpointReached(position) } : {}),
    ...(window ? { maxSearchWindow: window.maxSearchWindow, checkpointInterval: window.checkpointInterval } : {}),
  });

  if (prefixes) {
    return { serverSide: 'streamPrefixes', matches, toClientFilter: (reached, window) => streamNameFilter({ prefixes: [...prefixes], ...callback(reached, window) }) };
  }
  if (types) {
    const regex = `^(?:${types.map(escapeRegex).join('|')})$`;
    return { serverSide: 'eventTypes', matches, toClientFilter: (reached, window) => eventTypeFilter({ regex, ...callback(reached, window) }) };
  }
  return { serverSide: 'excludeSystemEvents', matches, toClientFilter: (reached, window) => excludeSystemEvents(callback(reached, window)) };
}

function validatedList(list: readonly string[] | undefined, what: string): string[] | undefined {
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw new EventStoreError(`filter.${what} must be an array of strings`);
  for (const item of list) {
    if (typeof item !== 'string' || item.length === 0) throw new EventStoreError(`filter.${what} must hold non-empty strings`);
  }
  return list.length === 0 ? undefined : [...list];
}

export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}
