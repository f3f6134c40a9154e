import { PostgresEventStore } from '../../src/eventstore/postgres/eventStore.js';
import { createPool } from '../../src/shared/postgres/pool.js';
import { createTestDatabase } from '../support/database.js';
import { runEventStoreContract } from './contract.js';

runEventStoreContract('PostgreSQL', async () => {
  const database = await createTestDatabase('es');
  const pool = createPool(database.url, { max: 4, statementTimeoutMs: 30_000 });
  const store = new PostgresEventStore(pool, database.url, { pollIntervalMs: 200 });
  return {
    store,
    async cleanup() {
      await store.close();
      await pool.end();
      await database.drop();
    },
  };
});
