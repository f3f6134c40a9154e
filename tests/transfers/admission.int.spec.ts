import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROCESS_MANAGER_NAME } from '../../src/write/transfers/processManager.js';
import { transferStream } from '../../src/write/streams.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';

const MAX_LAG_MS = 300;
// The gate measures at most every 250 ms; past that, a request sees the checkpoint as it is now.
const MEASUREMENT_AGE_MS = 300;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A write and read API with two funded accounts, and a way to ask for a transfer between them. */
async function admissionLedger(env: Record<string, string>) {
  const ledger = await startTestLedger({ roles: ['write-api', 'read-api'], env });
  const tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
  const teller = client(ledger.app, tokens.teller);
  const from = (await openFundedAccount(ledger.app, tokens, { deposit: '100.00' })).accountId;
  const to = (await openFundedAccount(ledger.app, tokens)).accountId;
  const transfer = (transferId: string = randomUUID(), toAccountId = to) => teller.post('/v1/transfers', { transferId, fromAccountId: from, toAccountId, amount: '1.00', currency: 'EUR' });
  return { ledger, from, transfer };
}

/**
 * Admission control on real PostgreSQL. No process manager runs here: the test stands in for one by
 * writing its checkpoint row, as a live manager that is behind would leave it.
 */
describe('transfer admission: 503 while the process manager is behind', () => {
  let ledger: TestLedger;
  let db: Kysely<unknown>;
  let from: string;
  let transfer: Awaited<ReturnType<typeof admissionLedger>>['transfer'];

  beforeAll(async () => {
    ({ ledger, from, transfer } = await admissionLedger({ TRANSFER_ADMISSION_MAX_LAG_MS: String(MAX_LAG_MS) }));
    db = ledger.runtime.db as unknown as Kysely<unknown>;
  });
  afterAll(async () => {
    await ledger?.close();
  });

  async function managerCheckpoint(position: bigint, updatedAgoMs: number): Promise<void> {
    await sql`
      insert into projection_checkpoints (name, position, updated_at) values (${PROCESS_MANAGER_NAME}, ${position}, now() - ${`${updatedAgoMs} milliseconds`}::interval)
      on conflict (name) do update set position = excluded.position, updated_at = excluded.updated_at`.execute(db);
    await sleep(MEASUREMENT_AGE_MS);
  }

  it('admits transfers when no manager has ever run: that is a health problem, not back-pressure', async () => {
    expect((await transfer()).statusCode).toBe(202);
  });

  it('refuses with problem+json and Retry-After, recording nothing, while a live manager is behind', async () => {
    // Given a transfer the manager has not taken, older than the bound.
    expect((await transfer()).statusCode).toBe(202);
    await sleep(MAX_LAG_MS + 50);
    // And a manager that is running (its checkpoint just moved) but stands before it.
    await managerCheckpoint(0n, 0);

    const transferId = randomUUID();
    const refused = await transfer(transferId);
    expect(refused.statusCode, refused.body).toBe(503);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.json()).toMatchObject({ status: 503, code: 'transfers_backlogged' });
    expect(await ledger.runtime.store.readStream(transferStream(transferId)), 'no effect').toEqual([]);

    // Bad input is still told so first.
    const same = await transfer(randomUUID(), from);
    expect(same.statusCode).toBe(422);
  });

  it('answers a repeat of a transfer it accepted, while refusing new ones', async () => {
    await managerCheckpoint(await ledger.runtime.store.headPosition(), 0);
    const transferId = randomUUID();
    const accepted = await transfer(transferId);
    expect(accepted.statusCode).toBe(202);
    await sleep(MAX_LAG_MS + 50);
    await managerCheckpoint(0n, 0);
    expect((await transfer()).statusCode, 'new transfers are refused').toBe(503);

    const repeated = await transfer(transferId);
    expect(repeated.statusCode).toBe(202);
    expect(repeated.json()).toEqual(accepted.json());
    expect(await ledger.runtime.store.readStream(transferStream(transferId))).toHaveLength(1);
  });

  it('admits again once the manager has caught up, or once it has stopped moving', async () => {
    await managerCheckpoint(await ledger.runtime.store.headPosition(), 0);
    expect((await transfer()).statusCode).toBe(202);

    await sleep(MAX_LAG_MS + 50);
    await managerCheckpoint(0n, 0);
    expect((await transfer()).statusCode).toBe(503);
    // A checkpoint that has not moved for a long while: no manager runs, nothing to wait for.
    await managerCheckpoint(0n, 3_600_000);
    expect((await transfer()).statusCode).toBe(202);
  });
});

/**
 * The other signal, on real PostgreSQL: appends queued behind a database that does not take them.
 * A session holding a SHARE lock on the log stands in for a saturated one: reads go on, appends wait.
 */
describe('transfer admission: 503 while appends wait for the database', () => {
  const MAX_APPEND_WAIT_MS = 200;
  let ledger: TestLedger;
  let transfer: Awaited<ReturnType<typeof admissionLedger>>['transfer'];

  beforeAll(async () => {
    ({ ledger, transfer } = await admissionLedger({ TRANSFER_ADMISSION_MAX_LAG_MS: '0', TRANSFER_ADMISSION_MAX_APPEND_WAIT_MS: String(MAX_APPEND_WAIT_MS) }));
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('refuses new transfers with problem+json while the oldest queued append is past the bound, and admits again once the appends go through', async () => {
    expect((await transfer()).statusCode).toBe(202);

    const blocker = new pg.Client({ connectionString: ledger.database.url });
    await blocker.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table ledger_events in share mode');
      // The first waits inside its statement; the ones after it queue in the process.
      const waiting = [transfer(), transfer(), transfer()];
      await sleep(MAX_APPEND_WAIT_MS + 150);
      expect(ledger.runtime.store.oldestAppendWaitMs?.()).toBeGreaterThan(MAX_APPEND_WAIT_MS);

      const refusedId = randomUUID();
      // Refused at once, not queued behind the lock (a missing check would wait here for the lock).
      const refused = await Promise.race([transfer(refusedId), sleep(2_000).then(() => undefined)]);
      if (!refused) throw new Error('the transfer waited for the database instead of being refused');
      expect(refused.statusCode, refused.body).toBe(503);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.json()).toMatchObject({ status: 503, code: 'transfers_backlogged' });
      expect(refused.json().detail).toMatch(/appends are waiting/);

      await blocker.query('rollback');
      const answers = await Promise.all(waiting);
      expect(answers.map((answer) => answer.statusCode)).toEqual([202, 202, 202]);
      expect(await ledger.runtime.store.readStream(transferStream(refusedId)), 'the refused transfer recorded nothing').toEqual([]);
      expect(ledger.runtime.store.oldestAppendWaitMs?.()).toBe(0);
      expect((await transfer()).statusCode).toBe(202);
    } finally {
      await blocker.end();
    }
  });
});
