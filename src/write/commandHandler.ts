import { uuidV5Namer } from '../shared/uuidV5.js';
import type { Decider } from '../domain/decider.js';
import type { JsonObject } from '../shared/json.js';
import { ConcurrencyError, IdempotencyConflictError, MAX_EVENTS_PER_APPEND, MAX_PAGE_SIZE, type AppendResult, type EventStore, type RecordedEvent } from '../eventstore/port.js';
import { HttpProblem } from '../shared/http/problem.js';
import { isSameRequest, type RequestFingerprints } from '../shared/requestFingerprint.js';

/**
 * Runs commands against streams: load (from cache), fold, decide, append with the exact expected
 * revision.
 *
 * - Commands to one stream queue up in this process and are decided one after another over the
 *   same state, then appended together in one append (TigerBeetle's batching): a hot account does
 *   not fight itself for the revision.
 * - Another process may still win the revision; then the stream is reloaded and the batch decided
 *   again, a bounded number of times with jitter, then the commands fail with a 409.
 * - Idempotency is durable: a command's events get ids derived from its idempotency key, and the
 *   key and request fingerprint travel in the event metadata. A repeat finds them in the stream.
 * - A cached stream remembers its newest commands (rememberedPerStream) when the store can say
 *   which event ids it holds and refuses any reuse of one (PostgreSQL). A repeat of a forgotten
 *   command is then caught either way: decided anew, its events carry the stored ids and the
 *   append is refused; refused or decided to need nothing, its first id is looked up. Both send
 *   the handler to read the whole stream, which remembers every command again, and decide again.
 */
export interface DomainEvent {
  type: string;
  data: JsonObject;
}

export interface CommandContext {
  /** Principal-scoped idempotency key. */
  idempotencyKey: string;
  /** Fingerprint of the request (method, path, body). The same key with another request is refused. */
  requestHash: string;
  /** The same, insensitive to JSON key order and null members (see RequestFingerprints). */
  canonicalRequestHash?: string;
  actor: string;
  correlationId: string;
  causationId?: string;
}

export interface CommandResult<Event extends DomainEvent> {
  events: Event[];
  /** The events' ids, in order: derived from (stream, idempotency key, index), or as stored for a replay. */
  eventIds: string[];
  /**
   * Global position of this command's last event (a replay answers the same); for a command that
   * recorded nothing, the stream's last position when it was decided.
   */
  position: bigint;
  /** True when this answer replays an earlier request with the same key. */
  replayed: boolean;
}

/** The global positions of one append's events: `last` the append's, `of(i)` event i's. */
interface AppendedPositions {
  last: bigint;
  of(index: number): bigint;
}

/** What a stream remembers of each command it carried: enough to refuse or replay a repeat. */
interface RecordedCommand {
  requestHash: string;
  canonicalRequestHash?: string;
  firstRevision: bigint;
  lastRevision: bigint;
  position: bigint;
}

/**
 * The commands a stream remembers. One object is shared by every copy of a stream's cached state
 * (a refresh makes a new copy, not a new map), so the flag travels with the map it describes: a
 * trim through one copy is seen by a batch still holding another.
 */
interface RememberedCommands {
  byKey: Map<string, RecordedCommand>;
  /** `byKey` holds every command the stream carried; false once older ones were forgotten. */
  complete: boolean;
}

interface CachedStream<State> {
  state: State;
  revision: bigint | undefined;
  /** Position of the stream's last event, 0n for a new stream. */
  position: bigint;
  commands: RememberedCommands;
}

interface Pending<State, Command, Event extends DomainEvent> {
  decide: (state: State) => Event[];
  command: Command;
  context: CommandContext;
  resolve: (result: CommandResult<Event>) => void;
  reject: (error: unknown) => void;
}

export interface CommandHandlerOptions {
  retryLimit: number;
  /** Streams kept folded in memory; the least recently used are dropped past it. */
  cacheSize?: number;
  /** Commands decided together in one append. */
  batchSize?: number;
  /** Commands waiting per stream; past it new commands are refused with a 503. */
  queueLimit?: number;
  /**
   * Commands a cached stream remembers, the newest, on a store with `storedEventIds`; on any other
   * store a cached stream remembers every command it carried.
   */
  rememberedPerStream?: number;
}

/** Without a bound, 1,000 transfers/s left 140,861 remembered commands after 40 s, and they held 38 MB after 50 s. */
const REMEMBERED_PER_STREAM = 32;

// Never change it: stored event ids were derived from it, and a repeat must derive the same ids.
export const EVENT_ID_NAMESPACE = '6f1c9c2e-5a0b-4d55-9a52-2f1a1c0b7e11';
const eventIdName = uuidV5Namer(EVENT_ID_NAMESPACE);

export function eventIdFor(streamName: string, idempotencyKey: string, index: number): string {
  return eventIdName(`${streamName}\u0000${idempotencyKey}\u0000${index}`);
}

export function deterministicId(...parts: string[]): string {
  return eventIdName(parts.join('\u0000'));
}

/**
 * A stream kept changing under a command past the handler's retries: nothing was written, and the
 * command may be tried again. A 409 over HTTP; the process manager retries it itself.
 */
export class StreamContendedError extends HttpProblem {
  constructor() {
    super(409, 'concurrency_conflict', 'the resource kept changing concurrently; retry the request');
  }
}

export class CommandHandler<State, Command, Event extends DomainEvent> {
  private readonly cache = new Map<string, CachedStream<State>>();
  private readonly queues = new Map<string, Pending<State, Command, Event>[]>();
  private readonly cacheSize: number;
  private readonly batchSize: number;
  private readonly queueLimit: number;
  private readonly rememberedPerStream: number;

  constructor(
    private readonly store: EventStore,
    private readonly decider: Decider<State, Command, Event>,
    private readonly isEvent: (event: { type: string }) => boolean,
    private readonly options: CommandHandlerOptions,
  ) {
    this.cacheSize = options.cacheSize ?? 10_000;
    this.batchSize = Math.min(options.batchSize ?? 100, MAX_EVENTS_PER_APPEND);
    this.queueLimit = options.queueLimit ?? 1_000;
    this.rememberedPerStream = store.storedEventIds ? Math.max(1, options.rememberedPerStream ?? REMEMBERED_PER_STREAM) : Number.POSITIVE_INFINITY;
  }

  /** Decides `command` against the stream's current state and appends what it decided. */
  handle(streamName: string, command: Command, context: CommandContext, decide?: (state: State) => Event[]): Promise<CommandResult<Event>> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(streamName);
      const idle = queue === undefined;
      if (!queue) {
        queue = [];
        this.queues.set(streamName, queue);
      }
      if (queue.length >= this.queueLimit) {
        reject(new HttpProblem(503, 'stream_busy', 'too many commands are waiting for this resource; retry shortly', { 'retry-after': '1' }));
        return;
      }
      queue.push({ command, context, resolve, reject, decide: decide ?? ((state) => this.decider.decide(command, state)) });
      if (idle) void this.drain(streamName);
    });
  }

  /** The folded state of a stream, as the next command would see it. */
  async load(streamName: string): Promise<{ state: State; revision: bigint | undefined }> {
    const cached = await this.refresh(streamName, this.cache.get(streamName));
    this.remember(streamName, cached);
    return { state: cached.state, revision: cached.revision };
  }

  /**
   * The cached state when there is one, else a fresh load. For facts that never change once
   * recorded (an account's owner and currency): they cannot be stale.
   */
  async peek(streamName: string): Promise<{ state: State; revision: bigint | undefined }> {
    const cached = this.cache.get(streamName);
    if (cached && cached.revision !== undefined) return { state: cached.state, revision: cached.revision };
    return this.load(streamName);
  }

  /** Whether this process's cached stream remembers a command with this key; no I/O. */
  remembers(streamName: string, idempotencyKey: string): boolean {
    return this.cache.get(streamName)?.commands.byKey.has(idempotencyKey) === true;
  }

  /** What the stream remembers of an earlier command with this idempotency key, if any. */
  async findCommand(streamName: string, idempotencyKey: string): Promise<RequestFingerprints | undefined> {
    let cached = await this.refresh(streamName, this.cache.get(streamName));
    let found = cached.commands.byKey.get(idempotencyKey);
    if (!found && (await this.mayHaveForgotten(streamName, cached, [idempotencyKey]))) {
      cached = await this.refresh(streamName, undefined);
      found = cached.commands.byKey.get(idempotencyKey);
    }
    this.remember(streamName, cached);
    return found;
  }

  /** Whether the stream forgot one of these keys: their commands' first events are stored. */
  private async mayHaveForgotten(streamName: string, cached: CachedStream<State>, keys: readonly string[]): Promise<boolean> {
    if (cached.commands.complete || !this.store.storedEventIds) return false;
    const unknown = [...new Set(keys)].filter((key) => !cached.commands.byKey.has(key));
    if (unknown.length === 0) return false;
    return (await this.store.storedEventIds(unknown.map((key) => eventIdFor(streamName, key, 0)))).length > 0;
  }

  private async drain(streamName: string): Promise<void> {
    const queue = this.queues.get(streamName)!;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0, this.batchSize);
        try {
          await this.runBatch(streamName, batch);
        } catch (error) {
          // Only a bug gets here (a decider's evolve throwing on its own decision): its callers are
          // answered, not left waiting for ever, the stream is read afresh next time, and the
          // commands queued behind go on. Settling an already settled command does nothing.
          this.cache.delete(streamName);
          for (const pending of batch) pending.reject(error);
        }
      }
    } finally {
      this.queues.delete(streamName);
    }
  }

  private async runBatch(streamName: string, batch: Pending<State, Command, Event>[]): Promise<void> {
    // A cached stream is trusted: the append's expected revision proves it current, and a stale
    // cache costs one conflict and an incremental read, not a read before every command.
    // A stream not in the cache is first assumed new: creating commands (the common case for an
    // unknown stream: a transfer's client-chosen id, a new account) then append at once, with
    // expected revision 'no_stream', instead of reading an empty stream first. Any other command
    // refuses on the empty state, and refusals are decided again on fresh state below; an existing
    // stream fails the append (or finds the events already stored) and is read then.
    let cached = this.cache.get(streamName) ?? this.emptyStream();
    let stale = false;
    // Whether the state decided on was read from the store during this batch. An append proves a
    // cached state current; a refusal or a no-op proves nothing, so those are decided again on
    // fresh state before they are answered (another process may have moved the stream).
    let verified = false;
    // Read the whole stream next time, to find commands it forgot. A whole read gives the batch
    // remembered commands of its own, complete until the batch's own `remember` on the way out (no
    // other copy shares them), so it happens at most once per batch.
    let readWhole = false;
    for (let attempt = 1; ; attempt++) {
      if (stale) {
        try {
          cached = await this.refresh(streamName, readWhole ? undefined : cached);
          verified = true;
          readWhole = false;
        } catch (error) {
          batch.forEach((pending) => pending.reject(error));
          return;
        }
      }
      const outcome = this.decideBatch(streamName, cached, batch);
      if (!verified && outcome.decidedNothingFor > 0) {
        // Read what is new and decide again: this is not a conflict, so it costs no attempt.
        stale = true;
        attempt -= 1;
        continue;
      }
      if (outcome.decidedNothingFor > 0 && !cached.commands.complete) {
        // A refusal or a no-op may be a repeat of a command this stream forgot: its answer is the stored one.
        let forgot: boolean;
        try {
          forgot = await this.mayHaveForgotten(streamName, cached, batch.map((pending) => pending.context.idempotencyKey));
        } catch (error) {
          batch.forEach((pending) => pending.reject(error));
          return;
        }
        if (forgot) {
          stale = true;
          readWhole = true;
          attempt -= 1;
          continue;
        }
      }
      if (outcome.toAppend.length === 0) {
        this.remember(streamName, cached);
        outcome.settle({ last: cached.position, of: () => cached.position });
        return;
      }
      try {
        const result = await this.store.append(streamName, outcome.toAppend, { expectedRevision: cached.revision ?? 'no_stream' });
        if (result.duplicate) {
          // These events were already stored: the state decided on was not current. Read it and
          // decide again, so a repeat is answered from what the stream recorded.
          stale = true;
          readWhole = !cached.commands.complete;
          if (!verified || readWhole) attempt -= 1;
          continue;
        }
        // The append wrote exactly what we decided, so the new state needs no re-read.
        const positions = await this.appendedPositions(streamName, outcome, result);
        cached = outcome.apply(result.nextExpectedRevision, positions);
        this.remember(streamName, cached);
        outcome.settle(positions);
        return;
      } catch (error) {
        // An id reused elsewhere in a stream that forgot commands: the repeat of a forgotten one.
        if (error instanceof IdempotencyConflictError && !cached.commands.complete) {
          stale = true;
          readWhole = true;
          attempt -= 1;
          continue;
        }
        // Another writer moved the stream (or already wrote a repeat of one of these commands, which
        // can happen between any re-read and the append, not only before the first): catch up from
        // the cache and decide again, where the repeat is answered from what the stream recorded.
        const retryable = error instanceof ConcurrencyError || error instanceof IdempotencyConflictError;
        if (retryable && attempt < this.options.retryLimit) {
          stale = true;
          if (attempt > 1) await jitter(attempt);
          continue;
        }
        this.cache.delete(streamName);
        const failure = error instanceof ConcurrencyError ? new StreamContendedError() : error;
        batch.forEach((pending) => pending.reject(failure));
        return;
      }
    }
  }

  /** Decides each pending command in order over the evolving state; collects what to append. */
  private decideBatch(streamName: string, cached: CachedStream<State>, batch: Pending<State, Command, Event>[]) {
    let state = cached.state;
    // New keys are layered over the stream's map and merged into it only once the append succeeded.
    const added = new Map<string, RecordedCommand>();
    const toAppend: { id: string; type: string; data: JsonObject; metadata: { correlationId: string; causationId?: string; actor: string; extra: JsonObject } }[] = [];
    const settlements: ((positions: AppendedPositions) => void)[] = [];
    const fresh: { recorded: RecordedCommand; lastIndex: number }[] = [];
    const replays: { pending: Pending<State, Command, Event>; recorded: RecordedCommand }[] = [];
    const nextRevision = cached.revision === undefined ? 0n : cached.revision + 1n;
    let decidedNothingFor = 0;

    for (const pending of batch) {
      const { context } = pending;
      const earlier = added.get(context.idempotencyKey) ?? cached.commands.byKey.get(context.idempotencyKey);
      if (earlier) {
        if (!isSameRequest(earlier, context)) {
          settlements.push(() => pending.reject(new HttpProblem(422, 'idempotency_key_reused', 'this idempotency key was already used with a different request')));
        } else {
          replays.push({ pending, recorded: earlier });
        }
        continue;
      }
      let events: Event[];
      try {
        events = pending.decide(state);
      } catch (error) {
        decidedNothingFor += 1;
        settlements.push(() => pending.reject(error));
        continue;
      }
      if (events.length === 0) decidedNothingFor += 1;
      if (toAppend.length + events.length > MAX_EVENTS_PER_APPEND) {
        settlements.push(() => pending.reject(new HttpProblem(503, 'stream_busy', 'retry shortly', { 'retry-after': '1' })));
        continue;
      }
      for (const event of events) state = this.decider.evolve(state, event);
      const eventIds = events.map((_event, index) => eventIdFor(streamName, context.idempotencyKey, index));
      events.forEach((event, index) => {
        // Built property by property: a conditional spread inside the literal is several times slower.
        const metadata: (typeof toAppend)[number]['metadata'] = { correlationId: context.correlationId, actor: context.actor, extra: { idempotencyKey: context.idempotencyKey, requestHash: context.requestHash, ...(context.canonicalRequestHash === undefined ? {} : { canonicalRequestHash: context.canonicalRequestHash }) } };
        if (context.causationId) metadata.causationId = context.causationId;
        toAppend.push({ id: eventIds[index]!, type: event.type, data: event.data, metadata });
      });
      if (events.length > 0) {
        const firstRevision = nextRevision + BigInt(toAppend.length - events.length);
        const recorded: RecordedCommand = { requestHash: context.requestHash, ...(context.canonicalRequestHash === undefined ? {} : { canonicalRequestHash: context.canonicalRequestHash }), firstRevision, lastRevision: firstRevision + BigInt(events.length - 1), position: -1n };
        added.set(context.idempotencyKey, recorded);
        fresh.push({ recorded, lastIndex: toAppend.length - 1 });
      }
      const lastIndex = events.length > 0 ? toAppend.length - 1 : undefined;
      settlements.push((positions) => pending.resolve({ events, eventIds, position: lastIndex === undefined ? positions.last : positions.of(lastIndex), replayed: false }));
    }

    return {
      toAppend,
      /** Commands refused, or decided to need no event, on this state. */
      decidedNothingFor,
      /** Some command's last event is not the append's last: its position has to be found. */
      positionsVary: fresh.some(({ lastIndex }) => lastIndex < toAppend.length - 1),
      apply: (revision: bigint, positions: AppendedPositions): CachedStream<State> => {
        for (const { recorded, lastIndex } of fresh) recorded.position = positions.of(lastIndex);
        for (const [key, recorded] of added) cached.commands.byKey.set(key, recorded);
        return { state, revision, position: positions.last, commands: cached.commands };
      },
      settle: (positions: AppendedPositions) => {
        settlements.forEach((settle) => settle(positions));
        for (const { pending, recorded } of replays) {
          this.replay(streamName, recorded).then(({ events, eventIds }) => pending.resolve({ events, eventIds, position: recorded.position, replayed: true }), pending.reject);
        }
      },
    };
  }

  /**
   * Where each event of a successful append landed, so each command answers its own last event's
   * position, as a repeat read back from the stream does. A store with consecutive positions says
   * so in the result; on another, a batch of several commands reads its events back once (if that
   * read fails, they answer the append's last position, which is past their own: still safe to
   * wait for, only not what a repeat answers).
   */
  private async appendedPositions(streamName: string, outcome: { toAppend: readonly unknown[]; positionsVary: boolean }, result: AppendResult): Promise<AppendedPositions> {
    const last = result.position;
    const { firstPosition } = result;
    if (firstPosition !== undefined) return { last, of: (index) => firstPosition + BigInt(index) };
    if (!outcome.positionsVary) return { last, of: () => last };
    const count = outcome.toAppend.length;
    const stored = await this.store.readStream(streamName, { fromRevision: result.nextExpectedRevision - BigInt(count - 1), maxCount: count }).catch(() => []);
    if (stored.length !== count || stored.at(-1)!.position !== last) return { last, of: () => last };
    return { last, of: (index) => stored[index]!.position };
  }

  /** Re-reads the events an earlier command wrote, so a repeat gets the same answer. */
  private async replay(streamName: string, recorded: RecordedCommand): Promise<{ events: Event[]; eventIds: string[] }> {
    const count = Number(recorded.lastRevision - recorded.firstRevision + 1n);
    const stored = await this.store.readStream(streamName, { fromRevision: recorded.firstRevision, maxCount: count });
    return { events: stored.map((event) => ({ type: event.type, data: event.data }) as Event), eventIds: stored.map((event) => event.id) };
  }

  /** Brings a cached stream up to date by reading only what was appended since. */
  private emptyStream(): CachedStream<State> {
    return { state: this.decider.initialState(), revision: undefined, position: 0n, commands: { byKey: new Map<string, RecordedCommand>(), complete: true } };
  }

  private async refresh(streamName: string, cached: CachedStream<State> | undefined): Promise<CachedStream<State>> {
    let current: CachedStream<State> = cached ?? this.emptyStream();
    let state = current.state;
    let revision = current.revision;
    let position = current.position;
    const added = new Map<string, RecordedCommand>();
    for (;;) {
      const page = await this.store.readStream(streamName, { fromRevision: revision === undefined ? 0n : revision + 1n, maxCount: MAX_PAGE_SIZE });
      for (const recorded of page) {
        if (revision !== undefined && recorded.revision !== revision + 1n) throw new Error(`stream ${streamName} skipped from ${revision} to ${recorded.revision}`);
        if (!this.isEvent(recorded)) throw new Error(`stream ${streamName} holds an unknown event type ${recorded.type}`);
        state = this.decider.evolve(state, { type: recorded.type, data: recorded.data } as Event);
        revision = recorded.revision;
        position = recorded.position;
        rememberCommand(current.commands.byKey, added, recorded);
      }
      if (page.length < MAX_PAGE_SIZE) break;
    }
    for (const [key, recorded] of added) current.commands.byKey.set(key, recorded);
    current = { state, revision, position, commands: current.commands };
    return current;
  }

  private remember(streamName: string, cached: CachedStream<State>): void {
    const existing = this.cache.get(streamName);
    // A read that raced with an append must not replace the newer state the append left.
    if (existing && (existing.revision ?? -1n) > (cached.revision ?? -1n)) return;
    this.cache.delete(streamName);
    this.cache.set(streamName, cached);
    // Oldest first (a map keeps insertion order): a repeat of a recent command needs no lookup.
    const { byKey } = cached.commands;
    let excess = byKey.size - this.rememberedPerStream;
    if (excess > 0) cached.commands.complete = false;
    for (const key of byKey.keys()) {
      if (excess-- <= 0) break;
      byKey.delete(key);
    }
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined || this.queues.has(oldest)) break;
      this.cache.delete(oldest);
    }
  }
}

function rememberCommand(known: ReadonlyMap<string, RecordedCommand>, added: Map<string, RecordedCommand>, recorded: RecordedEvent): void {
  const extra = recorded.metadata.extra;
  const key = extra?.idempotencyKey;
  const requestHash = extra?.requestHash;
  const canonicalRequestHash = typeof extra?.canonicalRequestHash === 'string' ? extra.canonicalRequestHash : undefined;
  if (typeof key !== 'string' || typeof requestHash !== 'string') return;
  const existing = added.get(key) ?? known.get(key);
  if (existing && existing.requestHash === requestHash && existing.lastRevision + 1n === recorded.revision) {
    added.set(key, { ...existing, lastRevision: recorded.revision, position: recorded.position });
    return;
  }
  added.set(key, { requestHash, ...(canonicalRequestHash === undefined ? {} : { canonicalRequestHash }), firstRevision: recorded.revision, lastRevision: recorded.revision, position: recorded.position });
}

async function jitter(attempt: number): Promise<void> {
  const delayMs = Math.random() * Math.min(5 * 2 ** attempt, 200);
  await new Promise((resolve) => setTimeout(resolve, delayMs));
}
