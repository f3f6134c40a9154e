import { describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../src/eventstore/port.js';
import { SharedTail, type TailPage } from '../../src/eventstore/postgres/sharedTail.js';

function event(position: number, streamName = 'account-a', type = 'FundsDeposited'): RecordedEvent {
  return { id: `e${position}`, streamName, revision: 0n, position: BigInt(position), type, schemaVersion: 1, data: {}, metadata: { recordedAt: '2026-11-26T00:00:00.000Z' } };
}

/** A log the tail reads from: events up to `safe` are visible; reads are counted and can be held. */
function fakeLog(pageSize: number) {
  const log = { events: [] as RecordedEvent[], safe: 0n, pending: false, reads: 0, hold: undefined as Promise<void> | undefined };
  const read = async (after: bigint): Promise<TailPage> => {
    log.reads += 1;
    const { safe, pending } = log;
    const events = log.events.filter((item) => item.position > after && item.position <= safe).slice(0, pageSize);
    await log.hold;
    return { events, safe, pending };
  };
  return { log, read };
}

/** A tail started at 0 over a log of events 1..count, all visible, after its first read. */
async function filledTail(count: number, pageSize: number, capacity: number, holdMax?: number, before?: (tail: SharedTail) => void) {
  const { log, read } = fakeLog(pageSize);
  const tail = new SharedTail(read, pageSize, capacity, holdMax);
  tail.startAt(0n);
  log.events = Array.from({ length: count }, (_unused, index) => event(index + 1));
  log.safe = BigInt(count);
  before?.(tail);
  tail.wake();
  await tail.refresh();
  return { log, tail };
}

/** Takes as a subscription would, with no wake-ups, until `until` or the end; returns the positions seen and where it stopped. */
async function takeOn(tail: SharedTail, from: bigint, options: { limit?: number; until?: bigint; taker?: object } = {}) {
  const seen: bigint[] = [];
  let checkpoint = from;
  for (let asks = 0; asks < 50 && (options.until === undefined || checkpoint < options.until); asks++) {
    const slice = tail.take(checkpoint, options.limit ?? 100, undefined, options.taker);
    if (!slice) break;
    seen.push(...slice.events.map((item) => item.position));
    checkpoint = slice.checkpoint;
    if (slice.drained && !slice.more) break;
    if (slice.events.length === 0) await tail.refresh();
  }
  return { seen, checkpoint };
}

describe('the shared tail of the log', () => {
  it('reads before a subscription at its end goes back to sleep when a wake-up came since its last read, even one kept behind by others\' events', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 1_000);
    tail.startAt(0n);
    log.events = [event(1), event(2)];
    log.safe = 2n;
    tail.wake();
    await tail.refresh();
    const transfers = { streamPrefixes: ['transfer-'] };
    // A subscription for transfers is still at 0: the accounts' events went by without it.
    log.events.push(event(3, 'transfer-t', 'TransferRequested'));
    log.safe = 3n;
    tail.wake();

    const slice = await tail.takeFresh(0n, 100, transfers);

    expect(slice).toMatchObject({ events: [event(3, 'transfer-t', 'TransferRequested')], checkpoint: 3n, drained: true });
    // Without a wake-up since the last read, taking reads nothing.
    const reads = log.reads;
    expect(await tail.takeFresh(3n, 100, transfers)).toMatchObject({ events: [], checkpoint: 3n, drained: true });
    expect(log.reads).toBe(reads);
  });

  it('serves each filter its events from one read, and moves the checkpoint past what it skipped', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 1_000);
    tail.startAt(10n);
    log.events = [event(11), event(12, 'transfer-t', 'TransferRequested'), event(13), event(14, 'customer-c', 'CustomerRegistered')];
    log.safe = 20n;
    tail.wake();
    await tail.refresh();

    expect(tail.take(10n, 100, { streamPrefixes: ['account-'] })).toEqual({ events: [event(11), event(13)], checkpoint: 20n, drained: true, pending: false, more: false });
    expect(tail.take(10n, 100, { eventTypes: ['TransferRequested'] })?.events).toEqual([event(12, 'transfer-t', 'TransferRequested')]);
    expect(tail.take(11n, 1, undefined)).toEqual({ events: [event(12, 'transfer-t', 'TransferRequested')], checkpoint: 12n, drained: false, pending: false, more: false });
    expect(tail.take(20n, 100, undefined)).toEqual({ events: [], checkpoint: 20n, drained: true, pending: false, more: false });
    expect(log.reads).toBe(1);
  });

  it('does not answer for positions it does not cover: before its start, or past what it read', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 1_000);
    expect(tail.take(0n, 10, undefined)).toBeUndefined();
    tail.startAt(10n);
    log.events = [event(11)];
    log.safe = 11n;
    tail.wake();
    await tail.refresh();
    expect(tail.take(9n, 10, undefined)).toBeUndefined();
    expect(tail.take(12n, 10, undefined)).toBeUndefined();
  });

  it('shares one read among everyone woken by the same append; a wake-up during a read gets a read of its own', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 1_000);
    tail.startAt(0n);
    log.events = [event(1)];
    log.safe = 1n;
    tail.wake();
    await Promise.all([tail.refresh(), tail.refresh(), tail.refresh()]);
    expect(log.reads).toBe(1);
    await tail.refresh();
    expect(log.reads, 'no wake-up since: nothing to read').toBe(1);

    let release: () => void = () => undefined;
    log.hold = new Promise<void>((resolve) => (release = resolve));
    tail.wake();
    const first = tail.refresh();
    await Promise.resolve();
    // Appended while that read is in flight: its snapshot may predate the event.
    log.events.push(event(2));
    log.safe = 2n;
    tail.wake();
    const second = tail.refresh();
    release();
    log.hold = undefined;
    await Promise.all([first, second]);
    expect(log.reads).toBe(3);
    expect(tail.take(0n, 10, undefined)?.events.map((item) => item.position)).toEqual([1n, 2n]);
  });

  it('covers only up to the last event of a full page, and reports rows pending above the horizon', async () => {
    const { log, read } = fakeLog(2);
    // Room for one page only, so it does not read ahead here.
    const tail = new SharedTail(read, 2, 2);
    tail.startAt(0n);
    log.events = [event(1), event(2), event(3)];
    log.safe = 9n;
    log.pending = true;
    tail.wake();
    await tail.refresh();
    expect(tail.take(0n, 10, undefined)).toEqual({ events: [event(1), event(2)], checkpoint: 2n, drained: true, pending: true, more: true });
    tail.wake();
    await tail.refresh();
    expect(tail.take(2n, 10, undefined)).toEqual({ events: [event(3)], checkpoint: 9n, drained: true, pending: true, more: false });
  });

  it('holds at most its capacity: older checkpoints read for themselves', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 3);
    tail.startAt(0n);
    log.events = [1, 2, 3, 4, 5].map((position) => event(position));
    log.safe = 5n;
    tail.wake();
    await tail.refresh();
    expect(tail.take(1n, 10, undefined)).toBeUndefined();
    expect(tail.take(2n, 10, undefined)?.events.map((item) => item.position)).toEqual([3n, 4n, 5n]);
  });

  it('starts again where a subscription caught up once nobody took from it for a while', async () => {
    const { log, read } = fakeLog(100);
    const tail = new SharedTail(read, 100, 1_000);
    tail.startAt(0n, 0);
    tail.startAt(50n, 500);
    expect(tail.take(0n, 10, undefined), 'a running tail is kept').toBeDefined();
    tail.startAt(50n, Date.now() + 5_000);
    expect(tail.take(0n, 10, undefined)).toBeUndefined();
    log.events = [event(51)];
    log.safe = 51n;
    tail.wake();
    await tail.refresh();
    expect(tail.take(50n, 10, undefined)?.events).toEqual([event(51)]);
  });

  it('reads ahead while its pages come back full, up to its capacity, without waiting to be asked', async () => {
    const { log, read } = fakeLog(2);
    const tail = new SharedTail(read, 2, 6);
    tail.startAt(0n);
    log.events = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((position) => event(position));
    log.safe = 10n;
    tail.wake();
    await tail.refresh();
    // The first read was asked for; the next ones follow on their own until six events are held.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(log.reads).toBe(3);
    expect(tail.take(0n, 100, undefined)?.events.map((item) => item.position)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  it('behind the head with nothing more appended, reads on at each ask instead of waiting for a wake-up', async () => {
    // Read-ahead stops at capacity: from then on only asking makes it read.
    const { tail } = await filledTail(10, 2, 4);
    expect((await takeOn(tail, 0n)).seen).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
    expect(tail.take(10n, 100, undefined)).toMatchObject({ events: [], checkpoint: 10n, drained: true, more: false });
  });

  it('past its capacity keeps what a live slower subscription still needs, up to holdMax', async () => {
    const slow = {};
    const fast = {};
    // Reads ahead to 4, may hold 8 for a subscription that is still taking.
    const { tail } = await filledTail(20, 2, 4, 8, (started) => expect(started.take(0n, 1, undefined, slow)?.events).toEqual([]));
    expect((await takeOn(tail, 0n, { limit: 2, until: 8n, taker: fast })).checkpoint).toBe(8n);
    // The slow subscription, still at 0 and taking, was not evicted: the tail holds 8, past its capacity of 4.
    expect(tail.take(0n, 1, undefined, slow)?.events).toEqual([event(1)]);
    // The fast one reads on: past holdMax the slow one is evicted, and reads for itself.
    expect((await takeOn(tail, 8n, { limit: 2, taker: fast })).checkpoint).toBe(20n);
    expect(tail.take(0n, 1, undefined, slow)).toBeUndefined();
  });

  it('does not hold back for a subscription that stopped taking', async () => {
    const realNow = Date.now;
    try {
      const { tail } = await filledTail(8, 2, 4, 8, (started) => {
        started.take(0n, 1, undefined, {});
        // That taker took more than a second ago, as far as the tail can tell from here on.
        Date.now = () => realNow() + 5_000;
      });
      expect((await takeOn(tail, 0n)).checkpoint).toBe(8n);
      expect(tail.take(0n, 1, undefined)).toBeUndefined();
    } finally {
      Date.now = realNow;
    }
  });
});
