import { sql, type Transaction } from 'kysely';
import { loadRows, upsertRows } from '../projection.js';
import { accountEventTypes, type AccountEvent } from '../../domain/account.js';
import { transferStreamEventTypes, type TransferEvent } from '../../domain/transfer.js';
import type { RecordedEvent } from '../../eventstore/port.js';
import { STREAM_PREFIX } from '../../write/streams.js';
import type { Projection, TableNames } from '../projection.js';
import type { AccountTransactionsTable, TransactionStatus } from './table.js';

type Row = AccountTransactionsTable;
type StatusChange = { transferId: string; status: TransactionStatus; balanceAfterMinor?: bigint; accountId?: string };

/**
 * One row per movement on an account. A transfer's outgoing row appears when it is requested
 * (pending), gets its balance when the hold is captured, and turns completed or failed with the
 * transfer; the incoming row appears when the destination is credited.
 */
export const transactionsProjection: Projection = {
  name: 'transactions',
  tables: ['account_transactions', 'transaction_balances'],
  filter: { streamPrefixes: [STREAM_PREFIX.account, STREAM_PREFIX.transfer], eventTypes: [...accountEventTypes, ...transferStreamEventTypes] },
  async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
    const table = tables('account_transactions');
    const accountIds = [...new Set(events.filter((event) => event.streamName.startsWith(STREAM_PREFIX.account)).map((event) => (event.data as { accountId: string }).accountId))];
    const stored = await loadRows<{ account_id: string; balance_minor: bigint; last_position: bigint }>(trx, tables('transaction_balances'), 'account_id', accountIds);
    const balances = new Map([...stored].map(([id, row]) => [id, row.balance_minor]));
    const balancePositions = new Map<string, bigint>();
    const inserts: Row[] = [];
    const changes: StatusChange[] = [];

    for (const recorded of events) {
      const base = { event_id: recorded.id, position: recorded.position, id: recorded.id };
      if (recorded.streamName.startsWith(STREAM_PREFIX.transfer)) {
        const event = { type: recorded.type, data: recorded.data } as TransferEvent;
        if (event.type === 'TransferRequested') {
          inserts.push({
            ...base,
            account_id: event.data.fromAccountId,
            type: 'transfer_out',
            currency: event.data.currency,
            amount_minor: -event.data.amountMinor,
            balance_after_minor: null,
            counterparty_account_id: event.data.toAccountId,
            transfer_id: event.data.transferId,
            hold_id: event.data.transferId,
            reference: null,
            description: event.data.description,
            status: 'pending',
            occurred_at: new Date(event.data.at),
          });
        } else if (event.type === 'TransferCompleted') {
          changes.push({ transferId: event.data.transferId, status: 'completed' });
        } else if (event.type === 'TransferFailed') {
          changes.push({ transferId: event.data.transferId, status: 'failed' });
        }
        continue;
      }
      const event = { type: recorded.type, data: recorded.data } as AccountEvent;
      const accountId = event.data.accountId;
      balancePositions.set(accountId, recorded.position);
      const balance = balances.get(accountId) ?? 0n;
      const common = { ...base, account_id: accountId, occurred_at: new Date(event.data.at), counterparty_account_id: null, transfer_id: null, hold_id: null, reference: null, description: null };
      switch (event.type) {
        case 'FundsDeposited':
        case 'FundsWithdrawn':
          inserts.push({
            ...common,
            type: event.type === 'FundsDeposited' ? 'deposit' : 'withdrawal',
            currency: event.data.currency,
            amount_minor: event.type === 'FundsDeposited' ? event.data.amountMinor : -event.data.amountMinor,
            balance_after_minor: event.data.balanceAfterMinor,
            reference: event.data.reference,
            description: event.data.description,
            status: 'completed',
          });
          balances.set(accountId, event.data.balanceAfterMinor);
          break;
        case 'TransferCredited':
          inserts.push({
            ...common,
            type: 'transfer_in',
            currency: event.data.currency,
            amount_minor: event.data.amountMinor,
            balance_after_minor: event.data.balanceAfterMinor,
            counterparty_account_id: event.data.fromAccountId,
            transfer_id: event.data.transferId,
            description: event.data.description,
            status: 'pending',
          });
          balances.set(accountId, event.data.balanceAfterMinor);
          break;
        case 'HoldPlaced':
          if (event.data.transferId) break;
          inserts.push({ ...common, type: 'hold_placed', currency: event.data.currency, amount_minor: -event.data.amountMinor, balance_after_minor: balance, hold_id: event.data.holdId, reference: event.data.reference, description: event.data.description, status: 'completed' });
          break;
        case 'HoldCaptured':
          balances.set(accountId, event.data.balanceAfterMinor);
          if (event.data.transferId) {
            changes.push({ transferId: event.data.transferId, status: 'pending', balanceAfterMinor: event.data.balanceAfterMinor, accountId });
            break;
          }
          inserts.push({ ...common, type: 'hold_captured', currency: event.data.currency, amount_minor: -event.data.capturedMinor, balance_after_minor: event.data.balanceAfterMinor, hold_id: event.data.holdId, status: 'completed' });
          break;
        case 'HoldReleased':
        case 'HoldExpired':
          if (event.data.transferId) break;
          inserts.push({ ...common, type: event.type === 'HoldReleased' ? 'hold_released' : 'hold_expired', currency: event.data.currency, amount_minor: event.data.amountMinor, balance_after_minor: balance, hold_id: event.data.holdId, status: 'completed' });
          break;
        default:
          break;
      }
    }

    if (inserts.length > 0) {
      // One array per column and one fixed statement, instead of a VALUES list of 15 parameters a
      // row that PostgreSQL parses and plans anew for every batch size.
      const column = <K extends keyof Row>(name: K, type: string) => sql`${inserts.map((row) => toArrayElement(row[name]))}::${sql.raw(type)}[]`;
      await sql`insert into ${sql.table(table)} (id, account_id, type, currency, amount_minor, balance_after_minor, counterparty_account_id, transfer_id, hold_id, reference, description, status, occurred_at, event_id, position)
        select * from unnest(${sql.join([
          column('id', 'text'),
          column('account_id', 'text'),
          column('type', 'text'),
          column('currency', 'text'),
          column('amount_minor', 'int8'),
          column('balance_after_minor', 'int8'),
          column('counterparty_account_id', 'text'),
          column('transfer_id', 'text'),
          column('hold_id', 'text'),
          column('reference', 'text'),
          column('description', 'text'),
          column('status', 'text'),
          column('occurred_at', 'timestamptz'),
          column('event_id', 'text'),
          column('position', 'int8'),
        ])})
        on conflict (position) do nothing`.execute(trx);
    }
    await upsertRows(
      trx,
      tables('transaction_balances'),
      'account_id',
      [...balancePositions].map(([accountId, position]) => ({ account_id: accountId, balance_minor: balances.get(accountId) ?? 0n, last_position: position })),
    );
    // One statement per kind of change for the whole batch; replays are harmless, each change sets an absolute value.
    const balanceChanges = new Map<string, StatusChange>();
    const statusChanges = new Map<string, TransactionStatus>();
    for (const change of changes) {
      if (change.balanceAfterMinor !== undefined) balanceChanges.set(`${change.transferId}:${change.accountId}`, change);
      else statusChanges.set(change.transferId, change.status);
    }
    if (balanceChanges.size > 0) {
      const rows = [...balanceChanges.values()];
      await sql`update ${sql.table(table)} as t set balance_after_minor = v.balance
        from unnest(${rows.map((row) => row.transferId)}::text[], ${rows.map((row) => row.accountId!)}::text[], ${rows.map((row) => row.balanceAfterMinor!.toString())}::int8[]) as v(transfer_id, account_id, balance)
        where t.transfer_id = v.transfer_id and t.account_id = v.account_id and t.type = 'transfer_out'`.execute(trx);
    }
    if (statusChanges.size > 0) {
      await sql`update ${sql.table(table)} as t set status = v.status
        from unnest(${[...statusChanges.keys()]}::text[], ${[...statusChanges.values()]}::text[]) as v(transfer_id, status)
        where t.transfer_id = v.transfer_id`.execute(trx);
    }
  },
};

function toArrayElement(value: Row[keyof Row] | undefined): string | null {
  // Optional event fields arrive as undefined; the array must say null, never "undefined".
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  return String(value);
}
