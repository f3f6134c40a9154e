import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rebuildProjection } from '../../src/projections/rebuild.js';
import { PROJECTIONS } from '../../src/projections/registry.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { storeVariants } from '../support/variants.js';
import { waitForCheckpoints, waitUntil } from './helpers.js';

describe.each(storeVariants('projection rebuilds'))('projection rebuilds on $name', ({ env: storeEnv }) => {
  let ledger: TestLedger;
  let db: Kysely<unknown>;
  let tokens: { admin: string; teller: string };

  beforeAll(async () => {
    ledger = await startTestLedger({ env: { ...storeEnv, PROJECTION_BATCH_SIZE: '50' } });
    db = ledger.runtime.db as unknown as Kysely<unknown>;
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('a rebuild under write load (every write answered 2xx, at least 10 deposit-and-transfer pairs during the rebuilds) swaps in tables identical to what the live projection then holds', async () => {
    const teller = client(ledger.app, tokens.teller);
    const accounts = await Promise.all(Array.from({ length: 6 }, () => openFundedAccount(ledger.app, tokens, { deposit: '1000.00' })));
    let writing = true;
    /** Deposit-and-transfer pairs both answered 2xx; any other answer is kept in `refused`. */
    let succeeded = 0;
    let lastPosition = 0n;
    const refused: string[] = [];
    const load = (async () => {
      for (let index = 0; writing; index++) {
        const from = accounts[index % accounts.length]!;
        const to = accounts[(index + 1) % accounts.length]!;
        const [deposit, transfer] = await Promise.all([
          teller.post(`/v1/accounts/${from.accountId}/deposits`, { amount: '1.25', currency: 'EUR' }),
          teller.post('/v1/transfers', { transferId: randomUUID(), fromAccountId: from.accountId, toAccountId: to.accountId, amount: '0.50', currency: 'EUR' }),
        ]);
        if (deposit.statusCode !== 201) refused.push(`deposit ${deposit.statusCode}: ${deposit.body}`);
        if (transfer.statusCode !== 202) refused.push(`transfer ${transfer.statusCode}: ${transfer.body}`);
        if (deposit.statusCode !== 201 || transfer.statusCode !== 202) continue;
        succeeded += 1;
        for (const response of [deposit, transfer]) {
          const position = BigInt(response.json<{ position: string }>().position);
          if (position > lastPosition) lastPosition = position;
        }
      }
    })();
    const stopLoad = async () => {
      writing = false;
      await load;
    };
    try {
      await waitUntil(() => succeeded >= 3 || refused.length > 0, 'the write load is under way');
      const beforeRebuilds = succeeded;
      for (const projection of PROJECTIONS) {
        const result = await rebuildProjection(db, ledger.runtime.store, projection, 'rebuild');
        expect(result.events).toBeGreaterThan(0);
        // Swapped in with statistics: a table never analyzed has reltuples -1 and is planned blind.
        for (const table of projection.tables) {
          const { rows } = await sql<{ reltuples: number }>`select reltuples::float8 as reltuples from pg_class where oid = ${table}::regclass`.execute(db);
          expect(rows[0]!.reltuples, `${table} analyzed before the swap`).toBeGreaterThanOrEqual(0);
        }
      }
      const duringRebuilds = succeeded - beforeRebuilds;
      // Writes go on after the swaps too, into the swapped-in tables.
      const afterRebuilds = succeeded;
      await waitUntil(() => succeeded >= afterRebuilds + 3 || refused.length > 0, 'more writes after the rebuilds');
      await stopLoad();
      expect(refused, 'every write under load is answered 2xx').toEqual([]);
      expect(duringRebuilds, 'successful write pairs while the rebuilds ran').toBeGreaterThanOrEqual(10);
    } finally {
      await stopLoad();
    }
    // The live projector applies the tail, up to the last write answered; then every read model is compared with a fresh build from the log.
    await waitForCheckpoints(db, PROJECTIONS, lastPosition);
    for (const projection of PROJECTIONS) {
      const verified = await rebuildProjection(db, ledger.runtime.store, projection, 'verify');
      expect(verified.differences, projection.name).toBe(0);
    }
  });

  it('verify finds a read model that no longer matches the log', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const found = await sql`select 1 from account_balances where account_id = ${accountId} and balance_minor = 1000`.execute(db);
      if (found.rows.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await sql`update account_balances set balance_minor = balance_minor + 1 where account_id = ${accountId}`.execute(db);
    const accounts = PROJECTIONS.find((projection) => projection.name === 'accounts')!;
    const verified = await rebuildProjection(db, ledger.runtime.store, accounts, 'verify');
    expect(verified.differences).toBe(2);
  });
});
