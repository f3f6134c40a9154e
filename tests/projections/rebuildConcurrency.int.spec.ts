import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { accountsProjection } from '../../src/projections/accounts/projection.js';
import { customersProjection } from '../../src/projections/customers/projection.js';
import { liveTables } from '../../src/projections/projection.js';
import { rebuildProjection } from '../../src/projections/rebuild.js';
import { buildReference, customerMonths, deposit, differencesFromReference, noDifferences, projectionEnvPerTest, settledHead, sleep, waitForCheckpoints, waitUntil, type ProjectionEnv } from './helpers.js';

describe('rebuild and verify beside each other and beside the live projection', () => {
  const { open, cleanups } = projectionEnvPerTest();

  /** Takes a projection's swap lock shared on a session of its own, as every live batch does; a rebuild's swap then waits. */
  async function holdSwapLock(current: ProjectionEnv, projection: string): Promise<() => Promise<void>> {
    const client = new pg.Client({ connectionString: current.database.url });
    await client.connect();
    await client.query(`select pg_advisory_lock_shared(hashtext($1))`, [`projection-swap:${projection}`]);
    const release = () => client.end();
    cleanups.push(release);
    return release;
  }

  async function waitingForAnAdvisoryLock(db: Kysely<unknown>): Promise<boolean> {
    const { rows } = await sql<{ waiting: number }>`select count(*)::int as waiting from pg_locks where locktype = 'advisory' and not granted`.execute(db);
    return rows[0]!.waiting > 0;
  }

  it('a verify started while a rebuild of the same projection runs is refused at once, and the rebuild swaps in every row', async () => {
    const current = await open();
    await customerMonths(current.write, 3);
    const head = await settledHead(current.db);
    for (const projection of [accountsProjection, customersProjection]) current.runner(projection).start();
    await waitForCheckpoints(current.db, [accountsProjection, customersProjection], head);

    const releaseSwapLock = await holdSwapLock(current, accountsProjection.name);
    const rebuild = rebuildProjection(current.db, current.store, accountsProjection, 'rebuild');
    rebuild.catch(() => undefined);
    await waitUntil(() => waitingForAnAdvisoryLock(current.db), 'the rebuild, its shadow tables built, waits to swap them in');
    const verify = rebuildProjection(current.db, current.store, accountsProjection, 'verify');
    verify.catch(() => undefined);
    await expect(Promise.race([verify, sleep(5_000).then(() => 'still running after 5 s')])).rejects.toThrow('a rebuild or verify of accounts is already running');
    // Runs of another projection are not held up.
    expect((await rebuildProjection(current.db, current.store, customersProjection, 'verify')).differences).toBe(0);

    await releaseSwapLock();
    expect((await rebuild).position).toBeGreaterThanOrEqual(head);
    expect(await buildReference(current, accountsProjection)).toBeGreaterThan(0);
    expect(await differencesFromReference(current.db, accountsProjection)).toEqual(noDifferences(accountsProjection));
    // The refusal left nothing behind: the next run goes ahead.
    expect((await rebuildProjection(current.db, current.store, accountsProjection, 'verify')).differences).toBe(0);
  });

  it('a verify compares at one position without pausing the live projection or holding back the safe position, and still finds a corrupted row', async () => {
    const current = await open();
    const { accountIds } = (await customerMonths(current.write, 2))[0]!;
    const head = await settledHead(current.db);
    const first = current.runner(accountsProjection).start();
    await waitForCheckpoints(current.db, [accountsProjection], head);
    await first.stop();

    const releaseSwapLock = await holdSwapLock(current, accountsProjection.name);
    await deposit(current.write, accountIds[0]!, 2_00n);
    let appended = 0n;
    const verify = rebuildProjection(current.db, current.store, accountsProjection, 'verify', undefined, {
      beforeComparison: async () => {
        await deposit(current.write, accountIds[0]!, 1_00n);
        const { rows } = await sql<{ newest: bigint }>`select max(position) as newest from ledger_events`.execute(current.db);
        appended = rows[0]!.newest;
        // Both stand still until the verify ends, if it compares with a transaction id or under the swap lock.
        await waitUntil(async () => {
          const safe = await sql<{ safe: bigint }>`select ledger_safe_position() as safe`.execute(current.db);
          return safe.rows[0]!.safe >= appended;
        }, 'the safe position passes an event appended while the verify compares', 5_000);
        await waitForCheckpoints(current.db, [accountsProjection], appended, 5_000);
      },
    });
    verify.catch(() => undefined);
    await waitUntil(() => waitingForAnAdvisoryLock(current.db), 'the verify, caught up without the lock, waits for it');
    // A live batch that commits between the verify's catch-up and its lock: the verify applies it to
    // its shadow tables under the lock (in the reported case, in the transaction that then compared).
    const gap = await current.store.readAll({ after: head, maxCount: 100, filter: accountsProjection.filter });
    expect(gap.length).toBeGreaterThan(0);
    await current.db.transaction().execute(async (trx) => {
      await accountsProjection.apply(trx, gap, liveTables);
      await sql`update projection_checkpoints set position = ${gap.at(-1)!.position} where name = ${accountsProjection.name}`.execute(trx);
    });
    current.runner(accountsProjection).start();
    await releaseSwapLock();

    const verified = await verify;
    expect(appended).toBeGreaterThan(gap.at(-1)!.position);
    // Compared where the live projection stood when the verify took its snapshot: the deposit applied since is no difference.
    expect(verified.position).toBe(gap.at(-1)!.position);
    expect(verified.differences).toBe(0);

    await sql`update account_balances set balance_minor = balance_minor + 1 where account_id = ${accountIds[0]!}`.execute(current.db);
    expect((await rebuildProjection(current.db, current.store, accountsProjection, 'verify')).differences).toBe(2);
  });
});
