import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import { createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const APPENDS = 100;
const EVENTS_PER_APPEND = 20;
const CONCURRENT_APPENDS = 16;

/** Minor page faults of a server backend so far, when the server runs on this machine. */
function minorFaults(pid: number): number | undefined {
  try {
    // Field 10 of /proc/<pid>/stat; the fields after the command name start at field 3.
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[7]);
  } catch {
    return undefined;
  }
}

/**
 * Group appends of 20 events, each statement peaking above glibc's default 128 KiB trim threshold:
 * a backend left at the defaults gives its heap back after every statement and faults it in again
 * on the next; one from our pools keeps it.
 */
describe('connections from our pools', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('pool');
  });
  afterAll(async () => {
    await database.drop();
  });

  async function faultsDuringAppends(pool: pg.Pool): Promise<number | undefined> {
    const store = new PostgresEventStore(pool, database.url, { logger: pino({ level: 'silent' }) });
    try {
      const { rows } = await pool.query<{ pid: number }>('select pg_backend_pid() as pid');
      const streams = Array.from({ length: CONCURRENT_APPENDS }, () => `account-${randomUUID()}`);
      // Concurrent appends on one connection go to the server as one group statement.
      const append = () =>
        Promise.all(
          streams.map((stream) =>
            store.append(
              stream,
              Array.from({ length: EVENTS_PER_APPEND }, (_unused, n) => ({ id: randomUUID(), type: 'FundsDeposited', data: { accountId: stream, amountMinor: '12345', currency: 'EUR', n, description: 'd'.repeat(60) } })),
              { expectedRevision: 'any' },
            ),
          ),
        );
      await append();
      const before = minorFaults(rows[0]!.pid);
      if (before === undefined) return undefined;
      for (let i = 0; i < APPENDS; i++) await append();
      return minorFaults(rows[0]!.pid)! - before;
    } finally {
      await store.close();
      await pool.end();
    }
  }

  it('keep their backend heap between statements: far fewer pages faulted in over 100 group appends than at glibc defaults', async (context) => {
    const atDefaults = await faultsDuringAppends(new pg.Pool({ connectionString: database.url, max: 1 }));
    if (atDefaults === undefined) {
      context.skip('the database server runs elsewhere: its backends’ page faults are not readable here');
      return;
    }
    const ours = await faultsDuringAppends(createPool(database.url, { max: 1, statementTimeoutMs: 30_000 }));
    console.info(`minor page faults over ${APPENDS} appends: ${atDefaults} at glibc defaults, ${ours!} from our pool`);
    // Where the allocator does not churn at all (not glibc, say), both are small and this holds too.
    expect(ours!).toBeLessThanOrEqual(Math.max(1_000, atDefaults / 2));
  });

  it('never JIT-compile: a short statement whose estimate passes jit_above_cost runs without compiling', async () => {
    const pool = createPool(database.url, { max: 1, statementTimeoutMs: 10_000 });
    try {
      // Estimated far past the default jit_above_cost (100,000), as stale statistics can make a keyed update look.
      const costly = `explain (analyze, format json) select count(*) from generate_series(1, 10) as g cross join generate_series(1, 100000000) as h where g > 100`;
      const plain = new pg.Client({ connectionString: database.url });
      await plain.connect();
      const compiledByDefault = (await plain.query<{ 'QUERY PLAN': [{ JIT?: unknown }] }>(costly)).rows[0]!['QUERY PLAN'][0].JIT !== undefined;
      await plain.end();
      const ours = await pool.query<{ 'QUERY PLAN': [{ JIT?: unknown }] }>(costly);
      expect((await pool.query<{ jit: string }>('show jit')).rows[0]!.jit).toBe('off');
      expect(ours.rows[0]!['QUERY PLAN'][0].JIT, 'JIT in our plan').toBeUndefined();
      if (!compiledByDefault) console.warn('[note] this server does not JIT-compile by default (no LLVM or jit=off): only the setting was checked');
    } finally {
      await pool.end();
    }
  });
});
