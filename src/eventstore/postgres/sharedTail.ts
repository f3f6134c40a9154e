import type { GlobalFilter, RecordedEvent } from '../port.js';

const IDLE_RESTART_MS = 1_000;

/** One unfiltered page of the log up to the safe horizon, as the subscription query returns it. */
export interface TailPage {
  events: RecordedEvent[];
  /** The safe horizon the page was read under. */
  safe: bigint;
  /** Rows wait above the horizon (an older transaction is still open). */
  pending: boolean;
}

export interface TailSlice {
  /** Events after the caller's checkpoint that match its filter, in log order. */
  events: RecordedEvent[];
  /** Where the caller may move its checkpoint once these are applied (past skipped events). */
  checkpoint: bigint;
  /** Fewer than the limit: everything the tail holds past the checkpoint was looked at. */
  drained: boolean;
  pending: boolean;
  /** The tail's last read came back full: the log holds more than it has read, so read again now. */
  more: boolean;
}

/**
 * The newest stretch of the log, read once for every caught-up subscription of this process.
 *
 * Each subscription used to read its own page on every wake-up: four projections and the process
 * manager in one process meant five reads, and five decodings, of the same rows. The tail reads the
 * log unfiltered, one page at a time, and each subscription takes its events from memory, filtered
 * here. It holds every event in (start, covered] (the same safe-horizon rule as a subscription's own
 * read), at most `capacity` of them; a subscription whose checkpoint is outside that range reads
 * for itself, as before.
 *
 * Wake-ups (appends here, NOTIFYs from elsewhere, poll timers) raise a generation; a subscription
 * that has taken everything waits for a read that started after the newest wake-up, so all
 * subscriptions woken by one append share one read. Events are shared between subscriptions:
 * handlers must not change them.
 */
export class SharedTail {
  private events: RecordedEvent[] = [];
  private start: bigint | undefined;
  private covered = 0n;
  private pending = false;
  private more = false;
  private generation = 0;
  private readGeneration = -1;
  private reading: Promise<void> | undefined;
  private lastServedMs = 0;

  /** Where each subscription last took from, and when: the slowest live one is not evicted lightly. */
  private readonly takers = new Map<object, { after: bigint; atMs: number }>();

  /**
   * `capacity`: what it reads ahead to and trims back to. `holdMax`: past capacity it keeps what a
   * subscription that took within the last second still needs, up to this many events; a
   * subscription evicted reads and decodes for itself, and on a busy machine falls further behind.
   */
  constructor(
    private readonly read: (after: bigint) => Promise<TailPage>,
    private readonly pageSize: number,
    private readonly capacity: number,
    private readonly holdMax = capacity,
  ) {}

  /** Something may have been appended: the next refresh must read. */
  wake(): void {
    this.generation += 1;
  }

  /**
   * Starts the tail where a subscription just caught up, unless it already runs. A tail nobody took
   * from for a while is started again there: a subscription ahead of it would otherwise read for
   * itself for good, since only a subscription the tail serves makes it read.
   */
  startAt(position: bigint, nowMs = Date.now()): void {
    const idle = nowMs - this.lastServedMs > IDLE_RESTART_MS;
    if (this.start !== undefined && !(idle && position > this.covered)) return;
    this.events = [];
    this.start = position;
    this.covered = position;
  }

  /** What the tail holds after `after` for this filter, or undefined when it does not reach back there. */
  take(after: bigint, limit: number, filter: GlobalFilter | undefined, taker?: object): TailSlice | undefined {
    if (taker) this.takers.set(taker, { after, atMs: Date.now() });
    if (this.start === undefined || after < this.start || after > this.covered) return undefined;
    const matches = matcher(filter);
    const events: RecordedEvent[] = [];
    let index = this.firstAfter(after);
    for (; index < this.events.length && events.length < limit; index++) {
      const event = this.events[index]!;
      if (matches(event)) events.push(event);
    }
    const drained = index >= this.events.length;
    this.lastServedMs = Date.now();
    return { events, checkpoint: drained ? this.covered : events.at(-1)!.position, drained, pending: this.pending, more: drained && this.more };
  }

  /**
   * What a subscription takes: when the tail has nothing more for it and a wake-up came since the
   * tail last read, the tail reads first. Reading only when the slice also left the checkpoint
   * where it was lost wake-ups: a subscription behind the tail's end (its checkpoint kept back while
   * others' events went by) took an empty slice that still moved it forward, went back to sleep,
   * and missed the event it had been woken for until the next poll. A slice with events is
   * answered at once (the subscription takes again before it sleeps), so applying does not wait
   * for a read.
   */
  async takeFresh(after: bigint, limit: number, filter: GlobalFilter | undefined, taker?: object): Promise<TailSlice | undefined> {
    const slice = this.take(after, limit, filter, taker);
    if (!slice?.drained || slice.events.length > 0 || this.readGeneration >= this.generation) return slice;
    await this.refresh();
    return this.take(after, limit, filter, taker);
  }

  /** Resolves once a read that started after the latest wake-up has completed. */
  async refresh(): Promise<void> {
    const wanted = this.generation;
    while (this.readGeneration < wanted) {
      await this.startRead();
    }
  }

  private startRead(): Promise<void> {
    this.reading ??= this.readOnce().then(
      (full) => {
        this.reading = undefined;
        // A full page means more is waiting: read on while subscriptions apply what they took,
        // as long as that needs no trim. Reading and applying then overlap instead of taking turns.
        if (full && this.events.length + this.pageSize <= this.capacity) void this.startRead().catch(() => undefined);
      },
      (error: unknown) => {
        this.reading = undefined;
        throw error;
      },
    );
    return this.reading;
  }

  /** One read; true when the page came back full. */
  private async readOnce(): Promise<boolean> {
    const generation = this.generation;
    const from = this.covered;
    const page = await this.read(from);
    // A restart of the tail while reading would leave a gap: drop this page then.
    if (this.covered !== from) return false;
    let previous = from;
    for (const event of page.events) {
      if (event.position <= previous) throw new Error(`shared tail: global order broken at ${event.position} after ${previous}`);
      previous = event.position;
    }
    this.events.push(...page.events);
    this.covered = page.events.length < this.pageSize && page.safe > previous ? page.safe : previous;
    this.pending = page.pending;
    this.more = page.events.length >= this.pageSize;
    this.readGeneration = generation;
    // A full page is as good as a wake-up: without it, a tail behind the head with nothing being
    // appended (read-ahead stopped at capacity) would read one page per poll interval.
    if (this.more) this.generation += 1;
    if (this.events.length > this.capacity) {
      // Back to capacity, but not past what the slowest live subscription still needs, unless
      // that would hold more than holdMax.
      const needed = this.firstAfter(this.slowestLiveTaker());
      const drop = Math.max(Math.min(this.events.length - this.capacity, needed), this.events.length - this.holdMax);
      if (drop > 0) this.start = this.events.splice(0, drop).at(-1)!.position;
    }
    return page.events.length >= this.pageSize;
  }

  /** The lowest position a subscription within the tail took from in the last second (else past everything). */
  private slowestLiveTaker(nowMs = Date.now()): bigint {
    let slowest = this.covered;
    for (const [taker, last] of this.takers) {
      if (nowMs - last.atMs > IDLE_RESTART_MS) this.takers.delete(taker);
      else if (this.start !== undefined && last.after >= this.start && last.after < slowest) slowest = last.after;
    }
    return slowest;
  }

  /** Index of the first held event after `position` (binary search: positions ascend). */
  private firstAfter(position: bigint): number {
    let low = 0;
    let high = this.events.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.events[middle]!.position <= position) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

const everything = () => true;
const matchers = new WeakMap<GlobalFilter, (event: RecordedEvent) => boolean>();

/** The JavaScript twin of the SQL filter clause: any of the stream prefixes, and any of the types. */
export function matcher(filter: GlobalFilter | undefined): (event: RecordedEvent) => boolean {
  if (!filter) return everything;
  let matches = matchers.get(filter);
  if (!matches) {
    const prefixes = filter.streamPrefixes && filter.streamPrefixes.length > 0 ? [...filter.streamPrefixes] : undefined;
    const types = filter.eventTypes && filter.eventTypes.length > 0 ? new Set(filter.eventTypes) : undefined;
    matches = (event) => (prefixes === undefined || prefixes.some((prefix) => event.streamName.startsWith(prefix))) && (types === undefined || types.has(event.type));
    matchers.set(filter, matches);
  }
  return matches;
}
