import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import type { EventToAppend } from '../../src/eventstore/port.js';
import { createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const EVENTS = 20_000;
const EVENTS_PER_APPEND = 100;

function deposits(stream: string, count: number): EventToAppend[] {
  return Array.from({ length: count }, (_unused, n) => ({ id: randomUUID(), type: n % 5 === 0 ? 'HoldPlaced' : 'FundsDeposited', data: { accountId: stream, amountMinor: 100n } }));
}

type PlanNode = { 'Node Type': string; 'Index Name'?: string; Plans?: PlanNode[] };

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/**
 * Filtered reads of the global log (lag and admission checks, filtered pages) must walk the primary
 * key in position order and stop at the limit. In a database not yet analyzed (every new one, for
 * its first minutes), the planner took the filter for rare and chose to fetch the whole range after
 * the position and sort it: 40-170 ms a call in the transfers benchmark, and growing with the log.
 */
describe('filtered reads of the global log', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let store: PostgresEventStore;
  const plans: PlanNode[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('plans');
    pool = createPool(database.url, { max: 4, statementTimeoutMs: 60_000 });
    // No statistics for the length of the test: autovacuum would analyze the table once it has grown.
    await pool.query('alter table ledger_events set (autovacuum_enabled = false)');
    // Every filtered log read the store sends is explained first, with the same parameters.
    const explaining = new Proxy(pool, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver) as unknown;
        return async (text: string, values?: unknown[]) => {
          if (typeof text === 'string' && text.includes('from ledger_events') && text.includes('like any')) {
            const explained = await target.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`explain (format json) ${text}`, values);
            plans.push(explained.rows[0]!['QUERY PLAN'][0].Plan);
          }
          return target.query(text, values);
        };
      },
    });
    store = new PostgresEventStore(explaining, database.url, { pollIntervalMs: 100 });
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await database.drop();
  });

  it('walk the primary key in order, with no sort, before the table has statistics', async () => {
    const streams = Array.from({ length: 20 }, (_unused, n) => `${['account', 'transfer', 'customer', 'transfer'][n % 4]}-${randomUUID()}`);
    const appendAll = async (total: number) => {
      for (let written = 0; written < total; written += EVENTS_PER_APPEND * streams.length) {
        await Promise.all(streams.map((stream) => store.append(stream, deposits(stream, EVENTS_PER_APPEND), { expectedRevision: 'any' })));
      }
    };
    await appendAll(EVENTS);
    const early = await pool.query<{ position: string }>('select position::text from ledger_events order by position offset 100 limit 1');
    // The table has never been analyzed: no row estimate, no column statistics.
    const statistics = await pool.query<{ reltuples: number; analyzed: boolean; columns: number }>(`
      select c.reltuples::float8 as reltuples,
             (s.last_analyze is not null or s.last_autoanalyze is not null) as analyzed,
             (select count(*)::int from pg_stats where schemaname = current_schema() and tablename = 'ledger_events') as columns
        from pg_class c join pg_stat_user_tables s on s.relid = c.oid
       where c.oid = 'ledger_events'::regclass`);
    expect(statistics.rows).toEqual([{ reltuples: -1, analyzed: false, columns: 0 }]);

    const [next] = await store.readAll({ after: BigInt(early.rows[0]!.position), maxCount: 1, filter: { streamPrefixes: ['account-'], eventTypes: ['HoldPlaced'] } });
    expect(next!.type).toBe('HoldPlaced');

    expect(plans).toHaveLength(1);
    const planNodes = nodes(plans[0]!);
    expect(planNodes.map((node) => node['Node Type'])).not.toContain('Sort');
    expect(planNodes.find((node) => node['Node Type'] === 'Index Scan')?.['Index Name']).toBe('ledger_events_pkey');
  });
});
