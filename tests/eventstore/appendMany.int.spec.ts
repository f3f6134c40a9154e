import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import { createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * The set-based `ledger_append_many` against the append-by-append `ledger_append_each` as the
 * oracle: two copies of the same streams, the same group of appends to each, the same answers and
 * the same stored events (positions compared within their transaction).
 */
const KINDS = { exact: 0, any: 1, noStream: 2, streamExists: 3 } as const;

interface Planned {
  stream: number;
  kind: number;
  expectedDelta: number; // added to the stream's real revision, so 0 is right and anything else wrong
  eventCount: number;
}

type Row = { idx: number; next_revision: string | null; last_position: string | null; duplicate: boolean; error_code: string | null; error_detail: string | null };

describe('set-based group append', () => {
  let database: TestDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    database = await createTestDatabase('many');
    pool = createPool(database.url, { max: 4, statementTimeoutMs: 30_000 });
  });
  afterAll(async () => {
    await pool.end();
    await database.drop();
  });

  async function history(streams: string[], lengths: number[]): Promise<void> {
    for (const [index, stream] of streams.entries()) {
      if (lengths[index]! === 0) continue;
      const events = Array.from({ length: lengths[index]! }, (_, n) => ({ id: randomUUID(), type: 'Seeded', data: { n } }));
      await pool.query('select * from ledger_append($1, 1::smallint, null, $2::jsonb)', [stream, JSON.stringify(events)]);
    }
  }

  async function run(fn: 'ledger_append_many' | 'ledger_append_each', streams: string[], revisions: (number | undefined)[], plan: Planned[]) {
    const group = plan.map((append) => ({
      stream: streams[append.stream]!,
      kind: append.kind,
      expected: append.kind === KINDS.exact ? String((revisions[append.stream] ?? -1) + append.expectedDelta) : null,
      events: Array.from({ length: append.eventCount }, (_, n) => ({ id: randomUUID(), type: 'Planned', data: { n, stream: append.stream }, metadata: { actor: 'test' } })),
    }));
    const client = await pool.connect();
    try {
      await client.query('begin');
      const rows = (await client.query<Row>(`select idx, next_revision::text, last_position::text, duplicate, error_code, error_detail from ${fn}($1::jsonb)`, [JSON.stringify(group)])).rows;
      await client.query('commit');
      return rows;
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
  }

  async function stored(streams: string[]) {
    const result = await pool.query<{ stream_name: string; stream_revision: string; event_type: string; data: unknown }>(
      'select stream_name, stream_revision::text, event_type, data from ledger_events where stream_name = any($1::text[]) order by stream_name, stream_revision',
      [streams],
    );
    return result.rows.map((row) => ({ stream: streams.indexOf(row.stream_name), revision: row.stream_revision, type: row.event_type, data: row.data }));
  }

  /** Positions within the answer, relative to its first written one: the transaction's base differs. */
  function comparable(rows: Row[]) {
    const positions = rows.filter((row) => row.last_position !== null).map((row) => BigInt(row.last_position!));
    const base = positions.length > 0 ? positions.reduce((min, value) => (value < min ? value : min)) : 0n;
    return rows.map((row) => ({ ...row, last_position: row.last_position === null ? null : String(BigInt(row.last_position) - base) }));
  }

  it('answers and stores exactly what appending one by one does, for any mix of expected revisions', async () => {
    const streamCount = 6;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: streamCount, maxLength: streamCount }),
        fc.uniqueArray(
          fc.record({
            stream: fc.integer({ min: 0, max: streamCount - 1 }),
            kind: fc.constantFrom(KINDS.exact, KINDS.any, KINDS.noStream, KINDS.streamExists),
            expectedDelta: fc.constantFrom(0, 0, 0, -1, 1),
            eventCount: fc.integer({ min: 1, max: 3 }),
          }),
          { selector: (append) => append.stream, minLength: 1, maxLength: streamCount },
        ),
        async (lengths, plan) => {
          const ours = Array.from({ length: streamCount }, (_, index) => `many-${index}-${randomUUID()}`);
          const oracle = Array.from({ length: streamCount }, (_, index) => `each-${index}-${randomUUID()}`);
          await history(ours, lengths);
          await history(oracle, lengths);
          // Sorted by stream, as the adapter sends groups; both copies sort the same way (same index prefix).
          const sorted = [...plan].sort((left, right) => left.stream - right.stream);
          const revisions = lengths.map((length) => (length === 0 ? undefined : length - 1));
          const got = await run('ledger_append_many', ours, revisions, sorted);
          const expected = await run('ledger_append_each', oracle, revisions, sorted);
          expect(comparable(got)).toEqual(comparable(expected));
          expect(await stored(ours)).toEqual(await stored(oracle));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('leaves a stream named twice to the one-by-one path, and fails a group that carries a stored event id', async () => {
    const stream = `twice-${randomUUID()}`;
    const first = { id: randomUUID(), type: 'A', data: {} };
    const twice = [
      { stream, kind: KINDS.noStream, expected: null, events: [first] },
      { stream, kind: KINDS.exact, expected: '0', events: [{ id: randomUUID(), type: 'B', data: {} }] },
    ];
    const rows = (await pool.query<Row>('select idx, next_revision::text, error_code from ledger_append_many($1::jsonb)', [JSON.stringify(twice)])).rows;
    expect(rows.map((row) => [row.idx, row.next_revision, row.error_code])).toEqual([
      [0, '0', null],
      [1, '1', null],
    ]);
    // The same first event again: an idempotent repeat. Refused by its stream check, it carries a
    // stored id, so the group fails as a unique violation with nothing written...
    const other = `other-${randomUUID()}`;
    const otherEvent = { id: randomUUID(), type: 'C', data: {} };
    const repeat = [{ stream, kind: KINDS.noStream, expected: null, events: [first] }, { stream: other, kind: KINDS.noStream, expected: null, events: [otherEvent] }];
    await expect(pool.query('select * from ledger_append_many($1::jsonb)', [JSON.stringify(repeat)])).rejects.toMatchObject({ code: '23505' });
    expect((await pool.query('select count(*)::int as n from ledger_events where stream_name = $1', [other])).rows[0].n).toBe(0);
    // ...and the store, which sends a group there, answers each append alone: the repeat as a duplicate.
    const store = new PostgresEventStore(pool, database.url, { maxAppendsInFlight: 1 });
    try {
      const blocker = store.append(`blocker-${randomUUID()}`, [{ id: randomUUID(), type: 'D', data: {} }], { expectedRevision: 'no_stream' });
      const [repeated, written] = await Promise.all([
        store.append(stream, [first], { expectedRevision: 'no_stream' }),
        store.append(other, [otherEvent], { expectedRevision: 'no_stream' }),
        blocker,
      ]);
      expect(repeated).toMatchObject({ duplicate: true, nextExpectedRevision: 0n });
      expect(written).toMatchObject({ duplicate: false, nextExpectedRevision: 0n });
    } finally {
      await store.close();
    }
    // An accepted append whose id is stored elsewhere fails the insert the same way.
    const reused = [{ stream: `reuse-${randomUUID()}`, kind: KINDS.noStream, expected: null, events: [first] }, { stream: `fresh-${randomUUID()}`, kind: KINDS.noStream, expected: null, events: [{ id: randomUUID(), type: 'E', data: {} }] }];
    await expect(pool.query('select * from ledger_append_many($1::jsonb)', [JSON.stringify(reused)])).rejects.toMatchObject({ code: '23505' });
    expect((await pool.query('select count(*)::int as n from ledger_events where stream_name = $1', [stream])).rows[0].n).toBe(2);
  });
});
