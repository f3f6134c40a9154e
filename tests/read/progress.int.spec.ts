/**
 * Read-your-writes after the database lost what it had committed asynchronously: the positions a
 * query API heard of before must not answer for rows that are gone.
 */
import { sql } from 'kysely';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ProjectionProgress } from '../../src/read/progress.js';
import { ledgerForSuite } from '../support/ledger.js';

describe('read-your-writes progress', () => {
  const suite = ledgerForSuite({ roles: ['read-api'] });

  it('forgets the positions it heard when its listener is lost, and reads the checkpoints again', async () => {
    const { ledger } = suite;
    const { db, databaseUrl } = ledger.runtime;
    const progress = new ProjectionProgress(db as never, databaseUrl, pino({ level: 'silent' }));
    await progress.start();
    try {
      const name = `test-${Date.now()}`;
      await sql`insert into projection_checkpoints (name, position) values (${name}, 500)`.execute(db);
      expect(await progress.waitFor(name, 500n, 0)).toBe(true);
      // As after a crash of the server: the batches past 100 are gone, checkpoint included, and
      // every connection, the listener's too, was cut.
      await sql`update projection_checkpoints set position = 100 where name = ${name}`.execute(db);
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'ledger read-your-writes' and datname = current_database()`.execute(db);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await progress.waitFor(name, 500n, 0), 'position 500 is no longer applied').toBe(false);
      expect(await progress.waitFor(name, 100n, 0)).toBe(true);
    } finally {
      await progress.close();
    }
  });
});
