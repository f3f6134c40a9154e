/**
 * The event store port on EventStoreDB (`@eventstore/db-client` v6, gRPC).
 *
 * Choices worth knowing:
 * - Every read requires the leader, so a reader sees its own writes on a cluster.
 * - An append first reads the few events where a retry of the same batch would already be (the
 *   revisions after an exact expected revision, or the stream's tail for `any`/`stream_exists`).
 *   That is how `duplicate` is reported and how a reused id with other content is refused; the
 *   server itself only compares ids. A concurrent retry that slips between that read and the append
 *   is still deduplicated by the server but reported as `duplicate: false` (best effort).
 * - `readAll` filters on this side: the v6 client sends no filter with `readAll` (only
 *   `subscribeToAll` takes one). It scans `$all` in pages until it has `maxCount` matches or reaches
 *   the end.
 * - Streaming reads carry no gRPC deadline in this client, so each read has its own time limit.
 */
import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  START,
  type AllStreamResolvedEvent,
  type ReadPosition,
  type ReadRevision,
  type StreamingRead,
} from '@eventstore/db-client';
import { encodeCanonicalJson } from '../../shared/json.js';
import {
  assertValidEvents,
  assertValidExpectedRevision,
  assertValidStreamName,
  clampPageSize,
  EventStoreError,
  IdempotencyConflictError,
  InvalidAppendError,
  MAX_PAGE_SIZE,
  type AppendResult,
  type Batch,
  type EventStore,
  type EventToAppend,
  type ExpectedRevision,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
  type Subscription,
} from '../port.js';
import {
  commitPositionOf,
  decodeRecordedEvent,
  encodeEvent,
  isMaxAppendSizeExceeded,
  isStreamNotFound,
  isSystemEvent,
  planFilter,
  toClientExpectedRevision,
  toClientPosition,
  toConcurrencyError,
  type AnyResolvedEvent,
} from './mapping.js';
import { DEFAULT_SUBSCRIPTION_TUNING, EsdbCatchUpSubscription, type EsdbLogger, type SubscriptionTuning } from './subscription.js';
import { TimeoutError, withTimeout } from '../../shared/timeout.js';

export type { EsdbLogger } from './subscription.js';

export interface EsdbEventStoreOptions {
  logger?: EsdbLogger;
  /** Time limit of one read. */
  readTimeoutMs?: number;
  subscription?: Partial<SubscriptionTuning>;
}

export interface EsdbConnectOptions extends EsdbEventStoreOptions {
  /** Time limit of the reachability check in `connect`. */
  connectTimeoutMs?: number;
}

const DEFAULT_READ_TIMEOUT_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** `readAll` and `headPosition` give up rather than scan more than this many pages of `$all`. */
const MAX_SCAN_PAGES = 10_000;
const HEAD_SCAN_PAGE_SIZE = 100;
const CONNECTION_STRING = /^esdb(\+discover)?:\/\/\S+$/;
const NO_LOGGER: EsdbLogger = { warn: () => undefined };

export class EsdbEventStore implements EventStore {
  readonly kind = 'eventstoredb' as const;
  private readonly logger: EsdbLogger;
  private readonly readTimeoutMs: number;
  private readonly tuning: SubscriptionTuning;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;

  constructor(
    private readonly client: EventStoreDBClient,
    options: EsdbEventStoreOptions = {},
  ) {
    this.logger = options.logger ?? NO_LOGGER;
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.tuning = { ...DEFAULT_SUBSCRIPTION_TUNING, ...options.subscription };
  }

  /**
   * Connects to `url` (the EVENTSTORE_URL setting) and checks that the server answers a read of `$all`
   * within `connectTimeoutMs`. Throws an Error with a one-line message otherwise.
   */
  static async connect(url: string, options: EsdbConnectOptions = {}): Promise<EsdbEventStore> {
    const text = typeof url === 'string' ? url.trim() : '';
    if (!CONNECTION_STRING.test(text)) {
      throw new Error(`EVENTSTORE_URL must be an esdb:// or esdb+discover:// connection string, got ${describeUrl(text)}`);
    }
    let client: EventStoreDBClient;
    try {
      client = EventStoreDBClient.connectionString(text);
    } catch (error) {
      throw new Error(`EVENTSTORE_URL is not a valid EventStoreDB connection string (${describeUrl(text)}): ${oneLine(error)}`);
    }
    const store = new EsdbEventStore(client, options);
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    try {
      await store.collect(client.readAll({ maxCount: 1, direction: BACKWARDS, fromPosition: END, requiresLeader: true }), timeoutMs);
    } catch (error) {
      await withTimeout(client.dispose(), 1_000).catch(() => undefined);
      throw new Error(`EventStoreDB at ${describeUrl(text)} (EVENTSTORE_URL) is unreachable: ${oneLine(error)}`);
    }
    return store;
  }

  // -------------------------------------------------------------------------------------------
  // Writing
  // -------------------------------------------------------------------------------------------

  async append(streamName: string, events: readonly EventToAppend[], options: { expectedRevision: ExpectedRevision }): Promise<AppendResult> {
    assertValidStreamName(streamName);
    assertValidEvents(events);
    const expected = options?.expectedRevision;
    assertValidExpectedRevision(expected);
    const encoded = events.map((event) => encodeEvent(event).eventData);

    const retry = await this.findRetriedBatch(streamName, events, expected);
    if (retry) return { nextExpectedRevision: retry.revision, position: retry.position, duplicate: true };

    let result;
    try {
      result = await this.client.appendToStream(streamName, encoded, { expectedRevision: toClientExpectedRevision(expected), requiresLeader: true });
    } catch (error) {
      const conflict = toConcurrencyError(error, streamName, expected);
      if (conflict) throw conflict;
      if (isMaxAppendSizeExceeded(error)) throw new InvalidAppendError(`the batch exceeds the server's MaxAppendSize: ${oneLine(error)}`);
      throw error;
    }
    if (!result.success) {
      // Only when the client is configured with throwOnAppendFailure=false (a connection string
      // may say so). Its nextExpectedRevision is then not the stream's (the client reports 1n
      // whatever it is), so the stream is asked.
      const actualRevision = await this.streamRevision(streamName);
      throw toConcurrencyError({ type: 'wrong-expected-version', actualVersion: actualRevision ?? 'no_stream' }, streamName, expected)!;
    }
    const position = result.position?.commit;
    if (position !== undefined && position > 0n) return { nextExpectedRevision: result.nextExpectedRevision, position, duplicate: false };
    // The server reports no position for a write it recognised as already committed.
    const [last] = await this.readStream(streamName, { fromRevision: result.nextExpectedRevision, maxCount: 1 });
    if (!last) throw new EventStoreError(`append to ${streamName} succeeded but revision ${result.nextExpectedRevision} cannot be read`);
    return { nextExpectedRevision: result.nextExpectedRevision, position: last.position, duplicate: true };
  }

  /**
   * The stored copy of this batch when the append is a retry, undefined when it is not. Throws
   * IdempotencyConflictError when an id of the batch is stored there with other content or order.
   */
  private async findRetriedBatch(streamName: string, events: readonly EventToAppend[], expected: ExpectedRevision): Promise<RecordedEvent | undefined> {
    const count = events.length;
    let stored: RecordedEvent[];
    if (typeof expected === 'bigint') stored = await this.readStream(streamName, { fromRevision: expected + 1n, maxCount: count });
    else if (expected === 'no_stream') stored = await this.readStream(streamName, { fromRevision: 0n, maxCount: count });
    else stored = (await this.readStream(streamName, { direction: 'backwards', maxCount: count })).reverse();

    const storedIds = new Map(stored.map((event, index) => [event.id.toLowerCase(), index]));
    const overlapping = events.filter((event) => storedIds.has(event.id.toLowerCase()));
    if (overlapping.length === 0) return undefined;
    if (overlapping.length !== count || stored.length !== count) {
      throw new IdempotencyConflictError(overlapping[0]!.id, `only part of the batch is stored at the revisions it would occupy in ${streamName}`);
    }
    events.forEach((event, index) => {
      const copy = stored[index]!;
      if (copy.id.toLowerCase() !== event.id.toLowerCase()) throw new IdempotencyConflictError(event.id, `stored in ${streamName} in another order`);
      // Key order is not content: jsonb, which the PostgreSQL adapter compares, ignores it too.
      if (copy.type !== event.type || copy.schemaVersion !== (event.schemaVersion ?? 1) || encodeCanonicalJson(copy.data) !== encodeCanonicalJson(event.data)) {
        throw new IdempotencyConflictError(event.id, `stored in ${streamName} at revision ${copy.revision} with other type or data`);
      }
    });
    return stored.at(-1);
  }

  // -------------------------------------------------------------------------------------------
  // Reading
  // -------------------------------------------------------------------------------------------

  async readStream(streamName: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    assertValidStreamName(streamName);
    const maxCount = clampPageSize(options.maxCount);
    const direction = options.direction ?? 'forwards';
    if (direction !== 'forwards' && direction !== 'backwards') throw new EventStoreError(`direction must be forwards or backwards, got ${String(direction)}`);
    let fromRevision: ReadRevision = direction === 'forwards' ? START : END;
    if (options.fromRevision !== undefined) {
      if (typeof options.fromRevision !== 'bigint' || options.fromRevision < 0n) throw new EventStoreError(`fromRevision must be a non-negative bigint`);
      fromRevision = options.fromRevision;
    }
    try {
      const resolved = await this.collect(
        this.client.readStream(streamName, { direction: direction === 'forwards' ? FORWARDS : BACKWARDS, fromRevision, maxCount, requiresLeader: true }),
        this.readTimeoutMs,
      );
      return resolved.map(decodeRecordedEvent);
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw error;
    }
  }

  async streamRevision(streamName: string): Promise<bigint | undefined> {
    const [last] = await this.readStream(streamName, { direction: 'backwards', maxCount: 1 });
    return last?.revision;
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const maxCount = clampPageSize(options.maxCount);
    const after = options.after ?? 0n;
    if (typeof after !== 'bigint' || after < 0n) throw new EventStoreError(`after must be a non-negative bigint, got ${String(after)}`);
    const plan = planFilter(options.filter);
    const matches: RecordedEvent[] = [];
    let highestSeen = after;
    let from: ReadPosition = after > 0n ? toClientPosition(after) : START;
    for (let page = 0; matches.length < maxCount; page++) {
      if (page >= MAX_SCAN_PAGES) throw new EventStoreError(`readAll scanned ${MAX_SCAN_PAGES} pages of $all without filling a page; narrow the filter`);
      const resolved: AllStreamResolvedEvent[] = await this.collect(
        this.client.readAll({ fromPosition: from, maxCount: MAX_PAGE_SIZE, direction: FORWARDS, resolveLinkTos: false, requiresLeader: true }),
        this.readTimeoutMs,
      );
      for (const item of resolved) {
        const position = commitPositionOf(item);
        // A read from a position includes the event at that position: skip it and anything earlier.
        if (position === undefined || position <= highestSeen) continue;
        highestSeen = position;
        if (!item.event || !plan.matches(item.event.streamId, item.event.type)) continue;
        matches.push(decodeRecordedEvent(item));
        if (matches.length === maxCount) break;
      }
      const last = resolved.at(-1);
      const lastPosition = last ? commitPositionOf(last) : undefined;
      if (resolved.length < MAX_PAGE_SIZE || lastPosition === undefined) break;
      from = last!.event?.position ?? toClientPosition(lastPosition);
    }
    return matches;
  }

  async headPosition(): Promise<bigint> {
    let from: ReadPosition = END;
    let lowestSeen: bigint | undefined;
    for (let page = 0; page < MAX_SCAN_PAGES; page++) {
      const resolved: AllStreamResolvedEvent[] = await this.collect(
        this.client.readAll({ fromPosition: from, maxCount: HEAD_SCAN_PAGE_SIZE, direction: BACKWARDS, resolveLinkTos: false, requiresLeader: true }),
        this.readTimeoutMs,
      );
      for (const item of resolved) {
        const position = commitPositionOf(item);
        if (position === undefined || (lowestSeen !== undefined && position >= lowestSeen)) continue;
        lowestSeen = position;
        if (item.event && !isSystemEvent(item.event.streamId, item.event.type)) return position;
      }
      const last = resolved.at(-1);
      if (resolved.length < HEAD_SCAN_PAGE_SIZE || !last || lowestSeen === undefined) return 0n;
      from = last.event?.position ?? toClientPosition(lowestSeen);
    }
    throw new EventStoreError(`headPosition scanned ${MAX_SCAN_PAGES} pages of system events`);
  }

  // -------------------------------------------------------------------------------------------
  // Subscribing
  // -------------------------------------------------------------------------------------------

  subscribe(options: SubscribeOptions, handler: (batch: Batch) => Promise<void>): Subscription {
    if (this.closed) throw new EventStoreError('the event store is closed');
    const subscription = new EsdbCatchUpSubscription(this.client, options, handler, this.logger, this.tuning);
    this.subscriptions.add(subscription);
    void subscription.done.catch(() => undefined).finally(() => this.subscriptions.delete(subscription));
    return subscription;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
    await this.client.dispose();
  }

  // -------------------------------------------------------------------------------------------

  /** Drains a streaming read within `timeoutMs`, cancelling it when time runs out. */
  private async collect<E extends AnyResolvedEvent>(read: StreamingRead<E>, timeoutMs: number): Promise<E[]> {
    const items: E[] = [];
    const drain = (async () => {
      for await (const item of read) items.push(item);
      return items;
    })();
    try {
      return await withTimeout(drain, timeoutMs);
    } catch (error) {
      if (error instanceof TimeoutError) {
        drain.catch(() => undefined);
        await read.cancel().catch(() => undefined);
        read.destroy();
        throw new EventStoreError(`EventStoreDB did not answer a read within ${timeoutMs} ms`);
      }
      throw error;
    }
  }
}


/** The URL without credentials, for error messages. */
export function describeUrl(url: string): string {
  if (url.length === 0) return 'an empty value';
  const withoutCredentials = url.replace(/^([a-z+]+:\/\/)[^@/]*@/i, '$1***@');
  return JSON.stringify(withoutCredentials.length > 200 ? `${withoutCredentials.slice(0, 200)}…` : withoutCredentials);
}

function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, ' ').trim() || (error instanceof Error ? error.name : 'unknown error');
}
