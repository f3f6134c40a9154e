import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import { ConcurrencyError, IdempotencyConflictError, type EventToAppend, type RecordedEvent } from '../../src/eventstore/port.js';
import { createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const WRITERS = 16;
const TARGET_EVENTS = 20_000;
const SHARED_STREAMS = 8;

function events(count: number, writer: number): EventToAppend[] {
  return Array.from({ length: count }, () => ({ id: randomUUID(), type: 'Ticked', data: { writer, amountMinor: 1n } }));
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Waits until the store's listener session is LISTENing (pg_listening_channels() on that very
 * session names the channel) and the wake-up it announces its readiness with has been absorbed:
 * the store's pool runs no query. An append after this can reach a sleeping subscriber only by NOTIFY.
 */
async function untilListening(store: PostgresEventStore, storePool: pg.Pool): Promise<void> {
  await waitFor(async () => {
    // Private: the session the store LISTENs on; it is set just before the readiness wake-up.
    const listener = (store as unknown as { listener?: pg.Client }).listener;
    if (!listener) return false;
    const { rows } = await listener.query<{ channel: string }>('select pg_listening_channels() as channel');
    return rows.some((row) => row.channel === 'ledger_events') && storePool.waitingCount === 0 && storePool.idleCount === storePool.totalCount;
  }, 'the store listens and its subscribers have absorbed the readiness wake-up');
}

describe('PostgreSQL event store under concurrent writers', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let store: PostgresEventStore;

  beforeAll(async () => {
    database = await createTestDatabase('conc');
    pool = createPool(database.url, { max: WRITERS + 6, statementTimeoutMs: 60_000 });
    store = new PostgresEventStore(pool, database.url, { pollIntervalMs: 100 });
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await database.drop();
  });

  it('a live subscriber sees every committed event exactly once, each stream in revision order, despite late commits of lower positions', async () => {
    const committed = new Set<string>();
    const received: RecordedEvent[] = [];
    const receivedIds = new Set<string>();
    let duplicates = 0;
    const subscription = store.subscribe({ after: 0n, batchSize: 300 }, async (batch) => {
      for (const recorded of batch.events) {
        if (receivedIds.has(recorded.id)) duplicates += 1;
        receivedIds.add(recorded.id);
        received.push(recorded);
      }
    });

    let appended = 0;
    let lateCommits = 0;
    let rolledBack = 0;
    const rolledBackIds = new Set<string>();

    // A transaction that takes its position early, then waits while later transactions commit.
    async function lateCommit(writer: number): Promise<void> {
      const client = await pool.connect();
      try {
        const batch = events(3, writer);
        await client.query('begin');
        await client.query(`select * from ledger_append($1, 1::smallint, null, $2::jsonb)`, [
          `late-${writer}-${randomUUID()}`,
          JSON.stringify(batch.map((item) => ({ id: item.id, type: item.type, data: { writer } }))),
        ]);
        await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
        if (Math.random() < 0.2) {
          await client.query('rollback');
          rolledBack += 1;
          batch.forEach((item) => rolledBackIds.add(item.id));
        } else {
          await client.query('commit');
          lateCommits += 1;
          appended += batch.length;
          batch.forEach((item) => committed.add(item.id));
        }
      } finally {
        client.release();
      }
    }

    async function writer(index: number): Promise<void> {
      const own = `own${index}-${randomUUID()}`;
      let ownRevision: bigint | 'no_stream' = 'no_stream';
      let step = 0;
      while (appended < TARGET_EVENTS) {
        step += 1;
        if (step % 25 === 0) {
          await lateCommit(index);
          continue;
        }
        const batch = events(1 + (step % 4), index);
        if (step % 2 === 0) {
          const result = await store.append(own, batch, { expectedRevision: ownRevision });
          ownRevision = result.nextExpectedRevision;
        } else {
          const shared = `shared-${step % SHARED_STREAMS}`;
          const current = await store.streamRevision(shared);
          try {
            await store.append(shared, batch, { expectedRevision: current ?? 'no_stream' });
          } catch (error) {
            if (!(error instanceof ConcurrencyError)) throw error;
            continue; // lost the race on a shared stream; that batch was not written
          }
        }
        appended += batch.length;
        batch.forEach((item) => committed.add(item.id));
      }
    }

    await Promise.all(Array.from({ length: WRITERS }, (_, index) => writer(index)));
    const deadline = Date.now() + 30_000;
    while (receivedIds.size < committed.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await subscription.stop();

    expect(committed.size).toBeGreaterThanOrEqual(TARGET_EVENTS);
    expect(lateCommits).toBeGreaterThan(0);
    expect(duplicates).toBe(0);
    expect(receivedIds.size).toBe(committed.size);
    for (const id of committed) expect(receivedIds.has(id)).toBe(true);
    for (const id of rolledBackIds) expect(receivedIds.has(id)).toBe(false);

    const lastRevision = new Map<string, bigint>();
    for (let index = 0; index < received.length; index++) {
      const recorded = received[index]!;
      if (index > 0) expect(recorded.position > received[index - 1]!.position).toBe(true);
      const previous = lastRevision.get(recorded.streamName);
      expect(recorded.revision).toBe(previous === undefined ? 0n : previous + 1n);
      lastRevision.set(recorded.streamName, recorded.revision);
    }
    console.info(`[concurrency] ${committed.size} events, ${lateCommits} late commits, ${rolledBack} rollbacks, ${lastRevision.size} streams`);
  });

  it('groups concurrent appends into one statement, where a conflict fails only its own append', async () => {
    const grouped = new PostgresEventStore(pool, database.url, { maxAppendsInFlight: 1 });
    try {
      const prefix = `grp${randomUUID().slice(0, 8)}`;
      await grouped.append(`${prefix}-taken`, events(1, 0), { expectedRevision: 'no_stream' });
      const repeated = events(2, 0);
      await grouped.append(`${prefix}-repeat`, repeated, { expectedRevision: 'no_stream' });
      const results = await Promise.allSettled([
        ...Array.from({ length: 20 }, (_, index) => grouped.append(`${prefix}-${index}`, events(1 + (index % 3), index), { expectedRevision: 'no_stream' })),
        grouped.append(`${prefix}-taken`, events(1, 0), { expectedRevision: 'no_stream' }),
        grouped.append(`${prefix}-repeat`, repeated, { expectedRevision: 'no_stream' }),
        grouped.append(`${prefix}-bad`, [{ id: randomUUID(), type: 'Ticked', data: { text: 'x'.repeat(100) } }], { expectedRevision: 0n }),
      ]);
      const fulfilled = results.filter((result) => result.status === 'fulfilled');
      expect(fulfilled).toHaveLength(21);
      expect((results[20] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
      expect(((results[20] as PromiseRejectedResult).reason as ConcurrencyError).actualRevision).toBe(0n);
      expect((results[21] as PromiseFulfilledResult<{ duplicate: boolean }>).value.duplicate).toBe(true);
      expect((results[22] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
      for (let index = 0; index < 20; index++) {
        expect((await grouped.readStream(`${prefix}-${index}`)).length).toBe(1 + (index % 3));
      }
      // Grouped appends share a transaction yet keep distinct, increasing positions.
      const positions = results.slice(0, 20).map((result) => (result as PromiseFulfilledResult<{ position: bigint }>).value.position);
      expect(new Set(positions).size).toBe(20);
    } finally {
      await grouped.close();
    }
  });

  it('groups concurrent reads of many streams into few statements, each answered as if read alone', async () => {
    const prefix = `rd${randomUUID().slice(0, 8)}`;
    const names = Array.from({ length: 300 }, (_, index) => `${prefix}-${index}`);
    // Stream n holds n % 7 events (none for every seventh: a stream that does not exist).
    for (const [index, name] of names.entries()) if (index % 7 > 0) await store.append(name, events(index % 7, index), { expectedRevision: 'no_stream' });
    // Longer streams than one grouped read carries for each: answered in full all the same.
    await store.append(`${prefix}-long`, events(250, 0), { expectedRevision: 'no_stream' });
    await store.append(`${prefix}-hundred`, events(100, 0), { expectedRevision: 'no_stream' });
    const long = [
      { name: `${prefix}-long`, fromRevision: 0n, maxCount: 1_000, expected: 250 },
      { name: `${prefix}-long`, fromRevision: 120n, maxCount: 1_000, expected: 130 },
      { name: `${prefix}-long`, fromRevision: 10n, maxCount: 150, expected: 150 },
      { name: `${prefix}-hundred`, fromRevision: 0n, maxCount: 1_000, expected: 100 },
    ];
    const statements: string[] = [];
    const counting = new Proxy(pool, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver) as unknown;
        return (config: pg.QueryConfig) => {
          statements.push(config.name ?? config.text);
          return target.query(config);
        };
      },
    });
    const reading = new PostgresEventStore(counting, database.url);
    try {
      const reads = names.map((name, index) => ({ name, fromRevision: BigInt(index % 3), maxCount: 1 + (index % 4) }));
      const [together, longTogether] = await Promise.all([
        Promise.all(reads.map((read) => reading.readStream(read.name, { fromRevision: read.fromRevision, maxCount: read.maxCount }))),
        Promise.all(long.map((read) => reading.readStream(read.name, { fromRevision: read.fromRevision, maxCount: read.maxCount }))),
      ]);
      expect(statements.filter((name) => name.startsWith('ledger_read_stream')).length, 'statements for 304 reads').toBeLessThanOrEqual(16);
      for (const [index, read] of long.entries()) {
        expect(longTogether[index]!.map((event) => event.revision), read.name).toEqual(Array.from({ length: read.expected }, (_, offset) => read.fromRevision + BigInt(offset)));
        expect(longTogether[index]).toEqual(await store.readStream(read.name, { fromRevision: read.fromRevision, maxCount: read.maxCount }));
      }
      for (const [index, read] of reads.entries()) {
        const alone = await store.readStream(read.name, { fromRevision: read.fromRevision, maxCount: read.maxCount });
        expect(together[index], read.name).toEqual(alone);
        expect(alone.map((event) => event.revision)).toEqual(
          Array.from({ length: Math.max(0, Math.min(read.maxCount, (index % 7) - Number(read.fromRevision))) }, (_, offset) => read.fromRevision + BigInt(offset)),
        );
      }
    } finally {
      await reading.close();
    }
  });

  it('every append, alone or in a group commit, reports the position of its first event; the rest follow consecutively', async () => {
    const prefix = `fp${randomUUID().slice(0, 8)}`;
    const first = events(3, 0);
    const alone = await store.append(`${prefix}-alone`, first, { expectedRevision: 'no_stream' });
    // Appends arriving together share one statement.
    const grouped = await Promise.all(Array.from({ length: 12 }, (_, index) => store.append(`${prefix}-${index}`, events(1 + (index % 4), index), { expectedRevision: 'no_stream' })));
    const streams = [`${prefix}-alone`, ...grouped.map((_result, index) => `${prefix}-${index}`)];
    for (const [index, result] of [alone, ...grouped].entries()) {
      const stored = await store.readStream(streams[index]!);
      expect(result.firstPosition, streams[index]).toBeDefined();
      expect(stored.map((event) => event.position), streams[index]).toEqual(stored.map((_event, offset) => result.firstPosition! + BigInt(offset)));
      expect(stored.at(-1)!.position).toBe(result.position);
    }
    const repeated = await store.append(`${prefix}-alone`, first, { expectedRevision: 'no_stream' });
    expect(repeated).toMatchObject({ duplicate: true, position: alone.position });
    expect(repeated.firstPosition).toBeUndefined();
  });

  it('a grouped read whose stream is read again alone and fails rejects that read only', async () => {
    const prefix = `rf${randomUUID().slice(0, 8)}`;
    // Two streams longer than a grouped read carries for each, so both are read again alone.
    await store.append(`${prefix}-failing`, events(150, 0), { expectedRevision: 'no_stream' });
    await store.append(`${prefix}-after`, events(150, 1), { expectedRevision: 'no_stream' });
    const short = Array.from({ length: 40 }, (_, index) => `${prefix}-${index}`);
    for (const [index, name] of short.entries()) await store.append(name, events(1, index), { expectedRevision: 'no_stream' });
    const grouped: number[] = [];
    const failing = new Proxy(pool, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver) as unknown;
        return (config: pg.QueryConfig) => {
          if (config.name === 'ledger_read_streams') grouped.push((config.values![0] as string[]).length);
          if (config.name === 'ledger_read_stream' && config.values![0] === `${prefix}-failing`) return Promise.reject(new Error('injected read failure'));
          return target.query(config);
        };
      },
    });
    const reading = new PostgresEventStore(failing, database.url);
    try {
      // The short reads fill the statements in flight, so the two long ones queue and share a group.
      const settled = await Promise.allSettled([...short, `${prefix}-failing`, `${prefix}-after`].map((name) => reading.readStream(name, { maxCount: 1_000 })));
      expect(grouped.some((size) => size > 1), 'the reads were grouped').toBe(true);
      const [failed, after] = settled.slice(-2);
      expect(failed).toMatchObject({ status: 'rejected', reason: { message: 'injected read failure' } });
      expect(after, 'the other long stream is answered in full').toMatchObject({ status: 'fulfilled' });
      expect((after as PromiseFulfilledResult<RecordedEvent[]>).value).toHaveLength(150);
      for (const outcome of settled.slice(0, -2)) expect(outcome.status).toBe('fulfilled');
    } finally {
      await reading.close();
    }
  });

  it('small appends wait for the statement in flight and share the next one; callers that append again at once join it', async () => {
    const statements: number[] = [];
    const counted = Object.create(pool) as pg.Pool;
    counted.query = ((config: { name?: string; values?: unknown[] }, ...rest: unknown[]) => {
      if (config?.name === 'ledger_append_many') statements.push(JSON.parse(config.values![0] as string).length);
      if (config?.name === 'ledger_try_append') statements.push(1);
      return (pool.query as (...args: unknown[]) => unknown).call(pool, config, ...rest);
    }) as pg.Pool['query'];
    const grouped = new PostgresEventStore(counted, database.url, { maxAppendsInFlight: 8, pipelineMinEvents: 64 });
    try {
      const prefix = `pipe${randomUUID().slice(0, 8)}`;
      // One alone, then twelve while it is in flight: two statements, not eight.
      const first = grouped.append(`${prefix}-first`, events(1, 0), { expectedRevision: 'no_stream' });
      const waiting = Array.from({ length: 12 }, (_, index) => grouped.append(`${prefix}-${index}`, events(1, index), { expectedRevision: 'no_stream' }));
      await Promise.all([first, ...waiting]);
      expect(statements).toEqual([1, 12]);

      // Eight closed-loop writers of 25 appends each: every answered writer rejoins before the
      // next statement leaves, so the statements carry the writers together.
      statements.length = 0;
      await Promise.all(
        Array.from({ length: 8 }, async (_, writer) => {
          for (let revision = 0; revision < 25; revision++) {
            await grouped.append(`${prefix}-loop-${writer}`, events(1, writer), { expectedRevision: revision === 0 ? 'no_stream' : BigInt(revision - 1) });
          }
        }),
      );
      expect(statements.reduce((sum, size) => sum + size, 0)).toBe(200);
      expect(statements.length).toBeLessThanOrEqual(30);

      // Once enough events wait, a second statement starts beside the first.
      statements.length = 0;
      const big = Array.from({ length: 6 }, (_, index) => grouped.append(`${prefix}-big-${index}`, events(40, index), { expectedRevision: 'no_stream' }));
      await Promise.all(big);
      expect(statements.length).toBeGreaterThanOrEqual(2);
      expect(statements.reduce((sum, size) => sum + size, 0)).toBe(6);
    } finally {
      await grouped.close();
    }
  });

  it('a refused append keeps its pooled connection (node-postgres drops a connection on any query error)', async () => {
    const onePool = createPool(database.url, { max: 1, statementTimeoutMs: 30_000 });
    const single = new PostgresEventStore(onePool, database.url);
    try {
      const stream = `keep-${randomUUID()}`;
      const backend = async () => (await onePool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      await single.append(stream, events(1, 0), { expectedRevision: 'no_stream' });
      const before = await backend();
      for (let attempt = 0; attempt < 5; attempt++) {
        await expect(single.append(stream, events(1, 0), { expectedRevision: 'no_stream' })).rejects.toBeInstanceOf(ConcurrencyError);
        await expect(single.append(stream, events(1, 0), { expectedRevision: 7n })).rejects.toBeInstanceOf(ConcurrencyError);
      }
      expect(await backend()).toBe(before);
    } finally {
      await single.close();
      await onePool.end();
    }
  });

  it('a group that fails as a whole is retried append by append, and only the offending append is refused', async () => {
    const grouped = new PostgresEventStore(pool, database.url, { maxAppendsInFlight: 1 });
    const holder = await pool.connect();
    try {
      const prefix = `whole${randomUUID().slice(0, 8)}`;
      const contested = events(1, 0);
      // Another transaction writes the id and stays open: the group's probe cannot see it, its
      // insert waits on the unique index and fails with 23505 once that transaction commits.
      await holder.query('begin');
      await holder.query('select * from ledger_append($1, 2::smallint, null, $2::jsonb)', [
        `${prefix}-holder`,
        JSON.stringify([{ id: contested[0]!.id, type: 'Ticked', data: { writer: 0, amountMinor: { $bigint: '1' } } }]),
      ]);
      const blocker = grouped.append(`${prefix}-first`, events(1, 0), { expectedRevision: 'no_stream' });
      const pending = Promise.allSettled([
        grouped.append(`${prefix}-a`, events(1, 0), { expectedRevision: 'no_stream' }),
        grouped.append(`${prefix}-b`, contested, { expectedRevision: 'no_stream' }),
        grouped.append(`${prefix}-c`, events(2, 0), { expectedRevision: 'no_stream' }),
      ]);
      await blocker;
      // Commit only once the group's statement waits on the holder's row lock, so the group
      // really fails as a whole (not merely finds the id already committed).
      const deadline = Date.now() + 10_000;
      let waiting = 0;
      while (waiting === 0 && Date.now() < deadline) {
        const result = await pool.query<{ waiting: number }>(
          "select count(*)::int as waiting from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%ledger_append_many%'",
        );
        waiting = result.rows[0]!.waiting;
        if (waiting === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(waiting).toBe(1);
      await holder.query('commit');
      const results = await pending;
      expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(IdempotencyConflictError);
      expect(await grouped.readStream(`${prefix}-a`)).toHaveLength(1);
      expect(await grouped.readStream(`${prefix}-b`)).toHaveLength(0);
      expect(await grouped.readStream(`${prefix}-c`)).toHaveLength(2);
    } finally {
      holder.release();
      await grouped.close();
    }
  });

  it('an append wakes subscribers in this process at once and in another process by NOTIFY, with polling out of the picture', async () => {
    const otherPool = createPool(database.url, { max: 4, statementTimeoutMs: 60_000 });
    const slowPoll = { pollIntervalMs: 60_000 };
    const writer = new PostgresEventStore(pool, database.url, slowPoll);
    const reader = new PostgresEventStore(otherPool, database.url, slowPoll);
    const stream = `wake-${randomUUID()}`;
    const seen = { writer: [] as string[], reader: [] as string[] };
    let caughtUp = 0;
    const after = await writer.headPosition();
    const subscriptions = (['writer', 'reader'] as const).map((who) =>
      (who === 'writer' ? writer : reader).subscribe({ after, filter: { streamPrefixes: ['wake-'] }, onCaughtUp: () => void (caughtUp += 1) }, async (batch) => {
        seen[who].push(...batch.events.map((event) => event.id));
      }),
    );
    try {
      await waitFor(() => caughtUp >= 2, 'both subscriptions caught up');
      expect(caughtUp).toBe(2);
      // The listeners' LISTEN in effect, and their readiness wake-ups absorbed by the caught-up subscribers.
      await untilListening(writer, pool);
      await untilListening(reader, otherPool);
      const appended = events(1, 0);
      await writer.append(stream, appended, { expectedRevision: 'no_stream' });
      const until = Date.now() + 3_000;
      while ((seen.writer.length === 0 || seen.reader.length === 0) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(seen).toEqual({ writer: [appended[0]!.id], reader: [appended[0]!.id] });
    } finally {
      await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      await writer.close();
      await reader.close();
      await otherPool.end();
    }
  });

  it('caught-up subscriptions of one process share one read of the log per append, each getting its own filtered events', async () => {
    const countingPool = createPool(database.url, { max: 6, statementTimeoutMs: 60_000 });
    let pageReads = 0;
    const query = countingPool.query.bind(countingPool) as (...args: unknown[]) => unknown;
    (countingPool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const config = args[0] as { name?: string } | undefined;
      if (typeof config === 'object' && config?.name?.startsWith('ledger_subscribe_')) pageReads += 1;
      return query(...args);
    };
    const shared = new PostgresEventStore(countingPool, database.url, { pollIntervalMs: 60_000, subscriberCoalesceMs: 0 });
    const tag = randomUUID().slice(0, 8);
    const prefixes = ['alpha', 'beta', 'gamma', 'delta'].map((name) => `${name}${tag}-`);
    const seen = new Map(prefixes.map((prefix) => [prefix, [] as string[]]));
    let caughtUp = 0;
    const after = await shared.headPosition();
    // A subscription from beyond the head (a checkpoint from a restored database, say) must not
    // start the shared tail where nobody else can use it.
    const beyond = shared.subscribe({ after: after + 1_000_000_000_000n, filter: { streamPrefixes: ['nothing-'] } }, async () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const subscriptions = [beyond, ...prefixes.map((prefix) =>
      shared.subscribe({ after, filter: { streamPrefixes: [prefix] }, onCaughtUp: () => void (caughtUp += 1) }, async (batch) => {
        seen.get(prefix)!.push(...batch.events.map((event) => event.id));
      }),
    )];
    try {
      await waitFor(() => caughtUp >= prefixes.length, 'every subscription caught up');
      expect(caughtUp).toBe(prefixes.length);
      await untilListening(shared, countingPool);
      const readsBefore = pageReads;
      const appends = 20;
      for (let index = 0; index < appends; index++) {
        const prefix = prefixes[index % prefixes.length]!;
        const appended = events(1, index);
        await shared.append(`${prefix}${index}`, appended, { expectedRevision: 'no_stream' });
        const until = Date.now() + 3_000;
        while (!seen.get(prefix)!.includes(appended[0]!.id) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const prefix of prefixes) expect(seen.get(prefix), prefix).toHaveLength(appends / prefixes.length);
      // Four subscriptions reading for themselves would take at least four reads per append (the
      // fifth, beyond the head, reads for itself: one more per append).
      expect(pageReads - readsBefore).toBeLessThanOrEqual(appends * 3);
    } finally {
      await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      await shared.close();
      await countingPool.end();
    }
  });

  it("keeps a stream in revision order for 'any' and 'stream_exists' appends whose group waits on another stream's lock while another process appends", async () => {
    const { Client } = (await import('pg')).default;
    const grouped = new PostgresEventStore(pool, database.url, { maxAppendsInFlight: 2, pipelineMinEvents: 100_000 });
    const elsewhere = new PostgresEventStore(pool, database.url);
    const one = (): EventToAppend[] => [{ id: randomUUID(), type: 'Ticked', data: { n: 1 } }];
    const waitingOn = async (fn: string) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { rows } = await pool.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like $1", [`%${fn}%`]);
        if (rows[0]!.n > 0) return;
        if (Date.now() > deadline) throw new Error(`nothing waited on a lock in ${fn}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const prefix = randomUUID().slice(0, 8);
    const [z, a, target] = [`z-${prefix}`, `a-${prefix}`, `s-${prefix}`];
    for (const stream of [z, a, target]) await elsewhere.append(stream, one(), { expectedRevision: 'no_stream' });
    const lockZ = new Client({ connectionString: database.url });
    const lockA = new Client({ connectionString: database.url });
    await Promise.all([lockZ.connect(), lockA.connect()]);
    try {
      for (const [client, stream] of [[lockZ, z], [lockA, a]] as const) {
        await client.query('begin');
        await client.query('select 1 from ledger_streams where stream_name = $1 for update', [stream]);
      }
      // Alone first (blocked on z); then a and the target go as one group, which takes its
      // transaction id and waits on a, while another process appends the target's revision 1.
      const first = grouped.append(z, one(), { expectedRevision: 'any' });
      await waitingOn('ledger_try_append');
      const onA = grouped.append(a, one(), { expectedRevision: 'stream_exists' });
      const onTarget = grouped.append(target, one(), { expectedRevision: 'stream_exists' });
      // Queued behind the first (the store reads a loose append's revision before it queues it).
      await new Promise((resolve) => setTimeout(resolve, 200));
      await lockZ.query('commit');
      await first;
      await waitingOn('ledger_append_many');
      const meanwhile = await elsewhere.append(target, one(), { expectedRevision: 'stream_exists' });
      await lockA.query('commit');
      const [, late] = await Promise.all([onA, onTarget]);
      expect(meanwhile.nextExpectedRevision).toBe(1n);
      expect(late.nextExpectedRevision).toBe(2n);
      const stored = await grouped.readStream(target);
      expect(stored.map((event) => event.revision)).toEqual([0n, 1n, 2n]);
      for (let index = 1; index < stored.length; index++) expect(stored[index]!.position > stored[index - 1]!.position, 'positions rise with revisions').toBe(true);
      const seen: RecordedEvent[] = [];
      const subscription = grouped.subscribe({ after: 0n, filter: { streamPrefixes: [target] } }, async (batch) => void seen.push(...batch.events));
      const deadline = Date.now() + 10_000;
      while (seen.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      await subscription.stop();
      expect(seen.map((event) => event.revision)).toEqual([0n, 1n, 2n]);
    } finally {
      await lockZ.query('rollback').catch(() => undefined);
      await lockA.query('rollback').catch(() => undefined);
      await Promise.all([lockZ.end(), lockA.end()]);
      await grouped.close();
      await elsewhere.close();
    }
  });

  it('answers a retry that raced its own still-open original as the duplicate it is, not a conflict', async () => {
    const { Client } = (await import('pg')).default;
    const stream = `retry-${randomUUID().slice(0, 8)}`;
    await store.append(stream, [{ id: randomUUID(), type: 'Ticked', data: { n: 0 } }], { expectedRevision: 'no_stream' });
    const events: EventToAppend[] = [1, 2].map((n) => ({ id: randomUUID(), type: 'Ticked', data: { n } }));
    const original = new Client({ connectionString: database.url });
    await original.connect();
    try {
      await original.query('begin');
      await original.query('select * from ledger_append($1, 0::smallint, 0, $2::jsonb)', [stream, JSON.stringify(events.map((event) => ({ ...event, schemaVersion: 1, metadata: {} })))]);
      const retry = store.append(stream, events, { expectedRevision: 0n });
      const deadline = Date.now() + 10_000;
      while ((await pool.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%ledger_try_append%'")).rows[0]!.n === 0) {
        if (Date.now() > deadline) throw new Error('the retry never waited on the original');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await original.query('commit');
      await expect(retry).resolves.toMatchObject({ duplicate: true, nextExpectedRevision: 2n });
      expect((await store.readStream(stream)).map((event) => event.revision)).toEqual([0n, 1n, 2n]);
    } finally {
      await original.query('rollback').catch(() => undefined);
      await original.end();
    }
  });
});
