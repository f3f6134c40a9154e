import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ledgerForSuite, startTestLedger } from './support/ledger.js';

/** Readiness against a real database that stops taking connections, then takes them again. */
describe('GET /health/ready', () => {
  const suite = ledgerForSuite({ roles: ['write-api', 'read-api'] });
  const admin = () => new pg.Client({ connectionString: inject('databaseAdminUrl') });

  async function allowConnections(allow: boolean): Promise<void> {
    const client = admin();
    await client.connect();
    try {
      const name = client.escapeIdentifier(suite.ledger.database.name);
      await client.query(`alter database ${name} allow_connections ${allow}`);
      if (!allow) await client.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`, [suite.ledger.database.name]);
    } finally {
      await client.end();
    }
  }

  // after-hooks run last registered first: this one before the suite's ledger closes.
  afterAll(async () => {
    await allowConnections(true).catch(() => undefined);
  });

  it('checks the event store itself and says not ready, in time, while it cannot be reached', async () => {
    const { ledger } = suite;
    const ready = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode, ready.body).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ready', eventStore: 'postgres', checks: { database: 'ok', eventStore: 'ok' } });

    await allowConnections(false);
    const startedMs = Date.now();
    const down = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(Date.now() - startedMs, 'the probe answers within its bound').toBeLessThan(5_000);
    expect(down.statusCode, down.body).toBe(503);
    expect(down.json()).toMatchObject({ status: 'not_ready', checks: { database: 'unreachable', eventStore: 'unreachable' } });

    await allowConnections(true);
    const back = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json()).toMatchObject({ checks: { eventStore: 'ok' } });
  });
});

/** The query API serves read models from PostgreSQL; an event store it cannot reach must not take it out of traffic. */
describe('GET /health/ready when only the event store is down', () => {
  for (const [roles, expected] of [
    [['read-api'], 200],
    [['write-api', 'read-api'], 503],
  ] as const) {
    it(`${roles.join(' + ')}: ${expected === 200 ? 'stays ready, saying the event store is unreachable' : 'is not ready'}`, async () => {
      const ledger = await startTestLedger({ roles });
      try {
        // The database answers; the event store does not, as an EventStoreDB cluster that is down.
        ledger.runtime.store.headPosition = () => Promise.reject(new Error('event store unreachable (test)'));
        const response = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
        expect(response.statusCode, response.body).toBe(expected);
        expect(response.json()).toMatchObject({ status: expected === 200 ? 'ready' : 'not_ready', checks: { database: 'ok', migrations: 'ok', eventStore: 'unreachable' } });
      } finally {
        await ledger.close();
      }
    });
  }
});

/** Readiness answers without a token: it names states, never an error's text (addresses, SQL, data). */
describe('GET /health/ready when a dependency fails', () => {
  it('says Redis is down without its error text', async () => {
    const ledger = await startTestLedger({ roles: ['read-api'], env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    try {
      let redis: Record<string, unknown> = {};
      for (let attempt = 0; attempt < 50 && redis.lastError === undefined; attempt++) {
        redis = (await ledger.app.inject({ method: 'GET', url: '/health/ready' })).json<{ checks: { redis: Record<string, unknown> } }>().checks.redis;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(redis).toMatchObject({ state: expect.not.stringMatching(/^ready$/), lastError: 'see the log' });
      expect(JSON.stringify(redis)).not.toContain('127.0.0.1');
    } finally {
      await ledger.close();
    }
  });
});
