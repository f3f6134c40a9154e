/**
 * How the transactions projection reaches a transfer's history rows when the transfer settles,
 * on real PostgreSQL, under the batch planner settings: through the transfer index, never by
 * scanning the whole history table, even while the table has no statistics yet (before autovacuum first analyzes it, PostgreSQL
 * guesses, and a guess once cost a sequential scan of the table for every batch).
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../src/eventstore/port.js';
import { useBatchPlanner } from '../../src/projections/batchPlanner.js';
import { liveTables } from '../../src/projections/projection.js';
import { transactionsProjection } from '../../src/projections/transactions/projection.js';
import { accountStream, transferStream } from '../../src/write/streams.js';
import { openProjectionEnv, type ProjectionEnv } from './helpers.js';

const HISTORY_ROWS = 30_000;
// Transfers with history rows already, added after the table was analyzed: the statistics say no row has a transfer.
const EARLIER_TRANSFERS = 3_000;
const TRANSFERS = 60;

describe('transactions projection: settling transfer rows', () => {
  let env: ProjectionEnv | undefined;
  afterEach(async () => {
    await env?.close();
    env = undefined;
  });

  it('marks them completed and gives the outgoing rows their balance through the transfer index, without statistics', async () => {
    env = await openProjectionEnv('plans');
    const { db } = env;
    await sql`alter table account_transactions set (autovacuum_enabled = false)`.execute(db);
    await sql`
      insert into account_transactions (id, account_id, type, currency, amount_minor, balance_after_minor, status, occurred_at, event_id, position)
      select 'deposit-' || n, 'account-' || (n % 500), 'deposit', 'EUR', 100, 100 * (n / 500 + 1), 'completed', now(), 'event-' || n, n
      from generate_series(1, ${HISTORY_ROWS}) as n`.execute(db);
    await sql`analyze account_transactions`.execute(db);
    await sql`
      insert into account_transactions (id, account_id, type, currency, amount_minor, balance_after_minor, transfer_id, status, occurred_at, event_id, position)
      select 'earlier-' || n, 'account-' || (n % 500), case when n % 2 = 0 then 'transfer_out' else 'transfer_in' end, 'EUR', 100, 100, 'earlier-transfer-' || (n / 2), 'completed', now(), 'earlier-event-' || n, ${HISTORY_ROWS} + n
      from generate_series(1, ${2 * EARLIER_TRANSFERS}) as n`.execute(db);
    const transfers = Array.from({ length: TRANSFERS }, (_unused, index) => ({ transferId: randomUUID(), from: `account-${index}`, to: `account-${index + 100}` }));
    let position = BigInt(HISTORY_ROWS + 2 * EARLIER_TRANSFERS);
    for (const { transferId, from, to } of transfers) {
      for (const [accountId, type, counterparty] of [[from, 'transfer_out', to], [to, 'transfer_in', from]] as const) {
        position += 1n;
        await sql`
          insert into account_transactions (id, account_id, type, currency, amount_minor, balance_after_minor, counterparty_account_id, transfer_id, status, occurred_at, event_id, position)
          values (${`${type}-${transferId}`}, ${accountId}, ${type}, 'EUR', ${type === 'transfer_out' ? -100 : 100}, ${type === 'transfer_out' ? null : 200}, ${counterparty}, ${transferId}, 'pending', now(), ${randomUUID()}, ${position})`.execute(db);
      }
    }
    const at = new Date().toISOString();
    const event = (streamName: string, type: string, data: Record<string, unknown>): RecordedEvent => {
      position += 1n;
      return { id: randomUUID(), streamName, revision: 1n, position, type, schemaVersion: 1, data: data as RecordedEvent['data'], metadata: { correlationId: 'test', actor: 'test', extra: {} } } as RecordedEvent;
    };
    const events = transfers.flatMap(({ transferId, from, to }) => [
      event(accountStream(from), 'HoldCaptured', {
        accountId: from,
        holdId: transferId,
        transferId,
        counterpartyAccountId: to,
        currency: 'EUR',
        capturedMinor: 100n,
        releasedMinor: 0n,
        balanceAfterMinor: 42n,
        heldAfterMinor: 0n,
        legs: [],
        at,
      }),
      event(transferStream(transferId), 'TransferCompleted', { transferId, fromAccountId: from, toAccountId: to, currency: 'EUR', amountMinor: 100n, at }),
    ]);

    const { seqScans, rowsFetched } = await db.transaction().execute(async (trx) => {
      // As every batch of the runner and of a rebuild runs.
      await useBatchPlanner(trx);
      await transactionsProjection.apply(trx, events, liveTables);
      const { rows } = await sql<{ seq_scan: string; idx_tup_fetch: string }>`
        select seq_scan::text, idx_tup_fetch::text from pg_stat_xact_user_tables where relname = 'account_transactions'`.execute(trx);
      return { seqScans: Number(rows[0]!.seq_scan), rowsFetched: Number(rows[0]!.idx_tup_fetch) };
    });

    expect(seqScans, 'sequential scans of the history table while settling').toBe(0);
    // Each settled row is found by its transfer (and joined back by key): a few fetches a row, not every transfer row there is.
    expect(rowsFetched, 'history rows fetched through indexes while settling').toBeLessThanOrEqual(10 * 2 * TRANSFERS);
    const settled = await sql<{ type: string; status: string; balance: string | null }>`
      select type, status, balance_after_minor::text as balance from account_transactions where transfer_id is not null and transfer_id not like 'earlier-%'`.execute(db);
    expect(settled.rows).toHaveLength(2 * TRANSFERS);
    for (const row of settled.rows) {
      expect(row.status).toBe('completed');
      expect(row.balance).toBe(row.type === 'transfer_out' ? '42' : '200');
    }
  });
});
