/**
 * The event store contract, written once and run against every adapter:
 * tests/eventstore/postgres.contract.int.spec.ts and tests/eventstore/esdb.contract.int.spec.ts.
 * Streams are named with a fresh prefix per test, so the suite also runs against a shared server.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  InvalidAppendError,
  MAX_EVENT_BYTES,
  type Batch,
  type EventStore,
  type EventToAppend,
  type RecordedEvent,
} from '../../src/eventstore/port.js';

export interface ContractFixture {
  store: EventStore;
  cleanup(): Promise<void>;
}

let prefixCounter = 0;
function uniquePrefix(): string {
  prefixCounter += 1;
  return `ct${randomUUID().slice(0, 8)}${prefixCounter}`;
}

/**
 * The global log shows an append once every older transaction has ended (on PostgreSQL, other
 * sessions' transactions may hold it back for a moment), so global reads poll for a bounded time.
 */
async function readAllEventually(store: EventStore, options: Parameters<EventStore['readAll']>[0], expectedCount: number, timeoutMs = 10_000): Promise<RecordedEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await store.readAll(options);
    if (events.length >= expectedCount || Date.now() > deadline) return events;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function event(type = 'Something', data: EventToAppend['data'] = { n: 1 }): EventToAppend {
  return { id: randomUUID(), type, data, metadata: { correlationId: randomUUID(), actor: 'test:contract' } };
}

async function collect(store: EventStore, options: Parameters<EventStore['subscribe']>[0], until: (events: RecordedEvent[]) => boolean, timeoutMs = 10_000) {
  const seen: RecordedEvent[] = [];
  const batches: Batch[] = [];
  let resolveDone!: () => void;
  const reached = new Promise<void>((resolve) => (resolveDone = resolve));
  const subscription = store.subscribe(options, async (batch) => {
    batches.push(batch);
    seen.push(...batch.events);
    if (until(seen)) resolveDone();
  });
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`subscription saw ${seen.length} events before timing out`)), timeoutMs));
  try {
    await Promise.race([reached, timeout, subscription.done.then(() => Promise.reject(new Error('subscription ended early')))]);
  } finally {
    await subscription.stop();
  }
  return { seen, batches };
}

export function runEventStoreContract(name: string, factory: () => Promise<ContractFixture>): void {
  describe(`event store contract: ${name}`, () => {
    let fixture: ContractFixture;
    let store: EventStore;

    beforeAll(async () => {
      fixture = await factory();
      store = fixture.store;
    });
    afterAll(async () => {
      await fixture?.cleanup();
    });

    describe('expected revisions', () => {
      it('no_stream creates a stream and refuses an existing one, reporting its revision', async () => {
        const stream = `${uniquePrefix()}-1`;
        const first = await store.append(stream, [event(), event()], { expectedRevision: 'no_stream' });
        expect(first.nextExpectedRevision).toBe(1n);
        expect(first.duplicate).toBe(false);
        const error = await store.append(stream, [event()], { expectedRevision: 'no_stream' }).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect((error as ConcurrencyError).actualRevision).toBe(1n);
      });

      it('an exact revision appends only at that revision', async () => {
        const stream = `${uniquePrefix()}-1`;
        await store.append(stream, [event()], { expectedRevision: 'no_stream' });
        const second = await store.append(stream, [event()], { expectedRevision: 0n });
        expect(second.nextExpectedRevision).toBe(1n);
        const stale = await store.append(stream, [event()], { expectedRevision: 0n }).catch((caught: unknown) => caught);
        expect(stale).toBeInstanceOf(ConcurrencyError);
        expect((stale as ConcurrencyError).actualRevision).toBe(1n);
        expect((stale as ConcurrencyError).expectedRevision).toBe(0n);
      });

      it('an exact revision on a missing stream fails with no actual revision', async () => {
        const error = await store.append(`${uniquePrefix()}-1`, [event()], { expectedRevision: 3n }).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect((error as ConcurrencyError).actualRevision).toBeUndefined();
      });

      it('stream_exists needs the stream', async () => {
        const stream = `${uniquePrefix()}-1`;
        const missing = await store.append(stream, [event()], { expectedRevision: 'stream_exists' }).catch((caught: unknown) => caught);
        expect(missing).toBeInstanceOf(ConcurrencyError);
        await store.append(stream, [event()], { expectedRevision: 'any' });
        const result = await store.append(stream, [event()], { expectedRevision: 'stream_exists' });
        expect(result.nextExpectedRevision).toBe(1n);
      });

      it('any appends to new and existing streams', async () => {
        const stream = `${uniquePrefix()}-1`;
        expect((await store.append(stream, [event()], { expectedRevision: 'any' })).nextExpectedRevision).toBe(0n);
        expect((await store.append(stream, [event(), event()], { expectedRevision: 'any' })).nextExpectedRevision).toBe(2n);
        expect(await store.streamRevision(stream)).toBe(2n);
        expect(await store.streamRevision(`${uniquePrefix()}-missing`)).toBeUndefined();
      });

      it('any and stream_exists never conflict: 40 at once to one stream all land, revisions rising with positions', async () => {
        const stream = `${uniquePrefix()}-1`;
        await store.append(stream, [event()], { expectedRevision: 'no_stream' });
        const results = await Promise.allSettled(Array.from({ length: 40 }, (_, index) => store.append(stream, [event('X', { index })], { expectedRevision: index % 2 === 0 ? 'any' : 'stream_exists' })));
        expect(results.filter((result) => result.status === 'rejected')).toEqual([]);
        const stored = await store.readStream(stream);
        expect(stored).toHaveLength(41);
        for (let index = 1; index < stored.length; index++) expect(stored[index]!.position > stored[index - 1]!.position).toBe(true);
      });

      it('a refused batch writes none of its events', async () => {
        const stream = `${uniquePrefix()}-1`;
        await store.append(stream, [event()], { expectedRevision: 'no_stream' });
        await expect(store.append(stream, [event(), event(), event()], { expectedRevision: 5n })).rejects.toBeInstanceOf(ConcurrencyError);
        expect(await store.readStream(stream)).toHaveLength(1);
      });
    });

    describe('idempotent retries', () => {
      it('re-appending the same events at the same expected revision writes nothing new', async () => {
        const stream = `${uniquePrefix()}-1`;
        await store.append(stream, [event()], { expectedRevision: 'no_stream' });
        const batch = [event('A', { amountMinor: 10n }), event('B')];
        const first = await store.append(stream, batch, { expectedRevision: 0n });
        const again = await store.append(stream, batch, { expectedRevision: 0n });
        expect(again.nextExpectedRevision).toBe(first.nextExpectedRevision);
        expect(again.position).toBe(first.position);
        expect(again.duplicate).toBe(true);
        expect(await store.readStream(stream)).toHaveLength(3);
      });

      it('a retried stream creation is recognised', async () => {
        const stream = `${uniquePrefix()}-1`;
        const batch = [event()];
        await store.append(stream, batch, { expectedRevision: 'no_stream' });
        const again = await store.append(stream, batch, { expectedRevision: 'no_stream' });
        expect(again.duplicate).toBe(true);
        expect(await store.readStream(stream)).toHaveLength(1);
      });

      it('reusing an event id with different content is an error', async () => {
        const stream = `${uniquePrefix()}-1`;
        const original = event('A', { amountMinor: 10n });
        await store.append(stream, [original], { expectedRevision: 'no_stream' });
        const changed = { ...original, data: { amountMinor: 11n } };
        await expect(store.append(stream, [changed], { expectedRevision: 'no_stream' })).rejects.toBeInstanceOf(IdempotencyConflictError);
        expect((await store.readStream(stream))[0]?.data).toEqual({ amountMinor: 10n });
      });

      it('a store that says which ids it holds refuses every reuse of one, anywhere in the stream', async (context) => {
        // The command handler forgets older idempotency keys only on such a store (PostgreSQL).
        if (!store.storedEventIds) return context.skip('this store does not say which ids it holds');
        const stream = `${uniquePrefix()}-1`;
        const original = event('A', { amountMinor: 10n });
        await store.append(stream, [original], { expectedRevision: 'no_stream' });
        await store.append(stream, [event('B'), event('C')], { expectedRevision: 0n });
        const reused = { ...original, data: { amountMinor: 12n } };
        await expect(store.append(stream, [event('D'), reused], { expectedRevision: 2n })).rejects.toBeInstanceOf(IdempotencyConflictError);
        expect(await store.readStream(stream)).toHaveLength(3);
        const absent = event('E').id;
        expect(await store.storedEventIds([original.id, absent])).toEqual([original.id]);
        expect(await store.storedEventIds([])).toEqual([]);
      });
    });

    describe('reading', () => {
      it('reads a stream forwards and backwards, from a revision, in bounded pages', async () => {
        const stream = `${uniquePrefix()}-1`;
        await store.append(stream, Array.from({ length: 12 }, (_, index) => event('N', { index })), { expectedRevision: 'no_stream' });
        // Numeric order, not text order: revision 10 comes after 9.
        expect((await store.readStream(stream)).map((recorded) => recorded.revision)).toEqual(Array.from({ length: 12 }, (_, index) => BigInt(index)));
        expect((await store.readStream(stream, { direction: 'backwards' })).map((recorded) => recorded.revision)[0]).toBe(11n);
        const forwards = await store.readStream(stream, { fromRevision: 3n, maxCount: 4 });
        expect(forwards.map((recorded) => recorded.revision)).toEqual([3n, 4n, 5n, 6n]);
        const backwards = await store.readStream(stream, { direction: 'backwards', fromRevision: 8n, maxCount: 3 });
        expect(backwards.map((recorded) => recorded.revision)).toEqual([8n, 7n, 6n]);
        const last = await store.readStream(stream, { direction: 'backwards', maxCount: 1 });
        expect(last[0]?.data).toEqual({ index: 11 });
        expect(await store.readStream(`${uniquePrefix()}-missing`)).toEqual([]);
      });

      it('round-trips data and metadata exactly, bigints included', async () => {
        const stream = `${uniquePrefix()}-1`;
        const data = { amountMinor: 12_345_678_901_234_567_890n, negative: -5n, nested: { list: [1n, 'x', null, true, 1.5] }, text: 'Zoë 💶' };
        const appended: EventToAppend = {
          id: randomUUID(),
          type: 'MoneyMoved',
          schemaVersion: 2,
          data,
          metadata: { correlationId: randomUUID(), causationId: randomUUID(), actor: 'teller:7', extra: { requestHash: 'abc', limitMinor: 9n } },
        };
        await store.append(stream, [appended], { expectedRevision: 'no_stream' });
        const [recorded] = await store.readStream(stream);
        expect(recorded?.id).toBe(appended.id);
        expect(recorded?.type).toBe('MoneyMoved');
        expect(recorded?.schemaVersion).toBe(2);
        expect(recorded?.data).toEqual(data);
        expect(recorded?.metadata).toMatchObject(appended.metadata!);
        expect(Number.isNaN(Date.parse(recorded!.metadata.recordedAt))).toBe(false);
        // One form on every adapter: ISO 8601 in UTC with milliseconds, as Date#toISOString writes it.
        expect(new Date(recorded!.metadata.recordedAt).toISOString()).toBe(recorded!.metadata.recordedAt);
        // The same metadata however the event is read, and whatever reads it first.
        const [again] = await store.readStream(stream);
        expect({ ...again }).toEqual({ ...recorded });
        expect(JSON.parse(JSON.stringify(again, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))).metadata.actor).toBe('teller:7');
      });

      it('reads the global log in order, after a position, filtered by stream prefix or event type', async () => {
        const prefix = uniquePrefix();
        const before = await store.headPosition();
        await store.append(`${prefix}a-1`, [event('Opened'), event('Moved')], { expectedRevision: 'no_stream' });
        await store.append(`${prefix}b-1`, [event('Opened')], { expectedRevision: 'no_stream' });
        await store.append(`${prefix}a-2`, [event('Moved')], { expectedRevision: 'no_stream' });
        const all = await readAllEventually(store, { after: before, filter: { streamPrefixes: [prefix] } }, 4);
        expect(all.map((recorded) => recorded.streamName)).toEqual([`${prefix}a-1`, `${prefix}a-1`, `${prefix}b-1`, `${prefix}a-2`]);
        for (let index = 1; index < all.length; index++) expect(all[index]!.position > all[index - 1]!.position).toBe(true);
        const onlyA = await store.readAll({ after: before, filter: { streamPrefixes: [`${prefix}a-`] } });
        expect(onlyA).toHaveLength(3);
        const moved = await store.readAll({ after: before, filter: { streamPrefixes: [prefix], eventTypes: ['Moved'] } });
        expect(moved.map((recorded) => recorded.streamName)).toEqual([`${prefix}a-1`, `${prefix}a-2`]);
        const afterFirst = await store.readAll({ after: all[0]!.position, filter: { streamPrefixes: [prefix] }, maxCount: 2 });
        expect(afterFirst.map((recorded) => recorded.id)).toEqual([all[1]!.id, all[2]!.id]);
        expect(await store.headPosition()).toBeGreaterThanOrEqual(all.at(-1)!.position);
      });
    });

    describe('subscriptions', () => {
      it('catches up, goes live, and resumes from a checkpoint without repeats or gaps', async () => {
        const prefix = uniquePrefix();
        const start = await store.headPosition();
        const first = Array.from({ length: 25 }, (_, index) => event('N', { index }));
        await store.append(`${prefix}-1`, first, { expectedRevision: 'no_stream' });
        const filter = { streamPrefixes: [prefix] };

        const initial = await collect(store, { after: start, filter, batchSize: 10 }, (events) => events.length >= 25);
        expect(initial.seen.map((recorded) => recorded.id)).toEqual(first.map((appended) => appended.id));
        expect(Math.max(...initial.batches.map((batch) => batch.events.length))).toBeLessThanOrEqual(10);
        const checkpoint = initial.batches.at(-1)!.checkpoint;

        const later = Array.from({ length: 5 }, (_, index) => event('N', { index: 25 + index }));
        let caughtUp = 0;
        let wentLive!: () => void;
        const live = new Promise<void>((resolve) => (wentLive = resolve));
        const onCaughtUp = () => {
          caughtUp += 1;
          wentLive();
        };
        const resumed = collect(store, { after: checkpoint, filter, batchSize: 10, onCaughtUp }, (events) => events.length >= 5);
        // Live before the append: nothing new to catch up on, so the later events can only arrive live.
        await Promise.race([live, resumed]);
        expect(caughtUp, 'the resumed subscription caught up before the append').toBeGreaterThan(0);
        await store.append(`${prefix}-1`, later, { expectedRevision: 24n });
        const { seen } = await resumed;
        expect(seen.map((recorded) => recorded.id)).toEqual(later.map((appended) => appended.id));
      });

      it('filters subscriptions by event type', async () => {
        const prefix = uniquePrefix();
        const start = await store.headPosition();
        await store.append(`${prefix}-1`, [event('Keep'), event('Drop'), event('Keep')], { expectedRevision: 'no_stream' });
        const { seen } = await collect(store, { after: start, filter: { streamPrefixes: [prefix], eventTypes: ['Keep'] } }, (events) => events.length >= 2);
        expect(seen.map((recorded) => recorded.type)).toEqual(['Keep', 'Keep']);
      });

      it("a filtered subscriber's checkpoint moves past an append its filter leaves out", async () => {
        const wanted = uniquePrefix();
        const other = uniquePrefix();
        const start = await store.headPosition();
        const batches: Batch[] = [];
        let caughtUp!: () => void;
        const live = new Promise<void>((resolve) => (caughtUp = resolve));
        const subscription = store.subscribe({ after: start, filter: { streamPrefixes: [wanted] }, onCaughtUp: () => caughtUp() }, async (batch) => {
          batches.push(batch);
        });
        try {
          await live;
          const { position } = await store.append(`${other}-1`, [event()], { expectedRevision: 'no_stream' });
          // What a reader waiting for this position on the subscriber's checkpoint relies on.
          await expect.poll(() => batches.at(-1)?.checkpoint ?? 0n, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(position);
          expect(batches.flatMap((batch) => batch.events)).toEqual([]);
        } finally {
          await subscription.stop();
        }
      });

      it('a failing handler ends the subscription with its error', async () => {
        const prefix = uniquePrefix();
        const start = await store.headPosition();
        await store.append(`${prefix}-1`, [event()], { expectedRevision: 'no_stream' });
        const subscription = store.subscribe({ after: start, filter: { streamPrefixes: [prefix] } }, async () => {
          throw new Error('poison');
        });
        await expect(subscription.done).rejects.toThrow('poison');
      });
    });

    describe('bad input writes nothing', () => {
      const cases: [string, (stream: string) => [string, EventToAppend[]]][] = [
        ['an empty batch', (stream) => [stream, []]],
        ['an oversize event', (stream) => [stream, [event('Big', { blob: 'x'.repeat(MAX_EVENT_BYTES + 1) })]]],
        ['a stream name with spaces', () => ['bad stream', [event()]]],
        ['an empty stream name', () => ['', [event()]]],
        ['a system stream name', () => ['$all', [event()]]],
        ['an overlong stream name', () => ['s'.repeat(201), [event()]]],
        ['a non-UUID event id', (stream) => [stream, [{ ...event(), id: 'not-a-uuid' }]]],
        ['the nil UUID as event id', (stream) => [stream, [{ ...event(), id: '00000000-0000-0000-0000-000000000000' }]]],
        ['a bad event type', (stream) => [stream, [event('has space')]]],
        ['NaN in data', (stream) => [stream, [event('X', { value: Number.NaN })]]],
        ['an unsafe integer in data', (stream) => [stream, [event('X', { value: 2 ** 60 })]]],
        ['a function in data', (stream) => [stream, [event('X', { value: (() => 1) as unknown as string })]]],
        ['undefined in data', (stream) => [stream, [event('X', { value: undefined as unknown as string })]]],
        ['a class instance in data', (stream) => [stream, [event('X', { value: new Date() as unknown as string })]]],
        ['data that is not an object', (stream) => [stream, [{ ...event(), data: [1, 2] as unknown as EventToAppend['data'] }]]],
        ['a NUL character', (stream) => [stream, [event('X', { value: 'a\u0000b' })]]],
        ['a duplicated id inside one batch', (stream) => {
          const repeated = event();
          return [stream, [repeated, repeated]];
        }],
      ];
      for (const [label, build] of cases) {
        it(`refuses ${label}`, async () => {
          const stream = `${uniquePrefix()}-1`;
          const [target, events] = build(stream);
          await expect(store.append(target, events, { expectedRevision: 'any' })).rejects.toBeInstanceOf(InvalidAppendError);
          expect(await store.readStream(stream)).toEqual([]);
        });
      }

      it('refuses an expected revision past a signed 64-bit integer, and fails no other append with it', async () => {
        const stream = `${uniquePrefix()}-1`;
        const other = `${uniquePrefix()}-2`;
        const [refused, accepted] = await Promise.allSettled([
          store.append(stream, [event()], { expectedRevision: 2n ** 63n }),
          store.append(other, [event()], { expectedRevision: 'no_stream' }),
        ]);
        expect(refused.status === 'rejected' && refused.reason).toBeInstanceOf(InvalidAppendError);
        expect(accepted.status).toBe('fulfilled');
        expect(await store.readStream(stream)).toEqual([]);
        expect(await store.readStream(other)).toHaveLength(1);
      });
    });
  });
}
