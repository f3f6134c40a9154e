import type { Transaction } from 'kysely';
import type { AccountEvent } from '../../domain/account.js';
import { accountEventTypes } from '../../domain/account.js';
import type { RecordedEvent } from '../../eventstore/port.js';
import { STREAM_PREFIX } from '../../write/streams.js';
import { loadRows, upsertRows, type Projection, type TableNames } from '../projection.js';
import type { AccountBalancesTable, AccountHoldsTable } from './table.js';

type BalanceRow = AccountBalancesTable;
type HoldRow = AccountHoldsTable;

/** Balances and holds per account, folded from the account streams. */
export const accountsProjection: Projection = {
  name: 'accounts',
  tables: ['account_balances', 'account_holds'],
  filter: { streamPrefixes: [STREAM_PREFIX.account], eventTypes: accountEventTypes },
  async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
    const accountIds = [...new Set(events.map((event) => (event.data as { accountId: string }).accountId))];
    const holdKeys = [...new Set(events.flatMap((event) => ('holdId' in event.data ? [holdKey(event.data.accountId as string, event.data.holdId as string)] : [])))];
    const balances = await loadRows<BalanceRow>(trx, tables('account_balances'), 'account_id', accountIds);
    const holds = await loadRows<HoldRow>(trx, tables('account_holds'), 'hold_key', holdKeys);
    const changedBalances = new Set<string>();
    const changedHolds = new Set<string>();

    for (const recorded of events) {
      const event = { type: recorded.type, data: recorded.data } as AccountEvent;
      const accountId = event.data.accountId;
      const at = new Date(event.data.at);
      const existing = balances.get(accountId);
      // Replayed after a crash: already applied.
      if (existing && existing.last_position >= recorded.position) continue;
      if (event.type === 'AccountOpened') {
        balances.set(accountId, {
          account_id: accountId,
          customer_id: event.data.customerId,
          currency: event.data.currency,
          account_type: event.data.accountType,
          status: 'active',
          balance_minor: 0n,
          held_minor: 0n,
          available_minor: event.data.overdraftLimitMinor,
          overdraft_limit_minor: event.data.overdraftLimitMinor,
          opened_at: at,
          last_position: recorded.position,
          updated_at: at,
        });
        changedBalances.add(accountId);
        continue;
      }
      if (!existing) throw new Error(`${event.type} for account ${accountId} before AccountOpened`);
      // Rows are this batch's own copies (loaded or opened in it), so they are changed in place.
      const row = existing;
      row.last_position = recorded.position;
      row.updated_at = at;
      switch (event.type) {
        case 'AccountFrozen':
          row.status = 'frozen';
          break;
        case 'AccountUnfrozen':
          row.status = 'active';
          break;
        case 'AccountClosed':
          row.status = 'closed';
          break;
        case 'OverdraftLimitChanged':
          row.overdraft_limit_minor = event.data.overdraftLimitMinor;
          break;
        case 'FundsDeposited':
        case 'FundsWithdrawn':
        case 'TransferCredited':
          row.balance_minor = event.data.balanceAfterMinor;
          break;
        case 'HoldPlaced':
          row.held_minor = event.data.heldAfterMinor;
          setHold(holds, changedHolds, {
            hold_key: holdKey(accountId, event.data.holdId),
            account_id: accountId,
            hold_id: event.data.holdId,
            transfer_id: event.data.transferId,
            currency: event.data.currency,
            amount_minor: event.data.amountMinor,
            expires_at: new Date(event.data.expiresAt),
            status: 'active',
            last_position: recorded.position,
          });
          break;
        case 'HoldCaptured':
          row.balance_minor = event.data.balanceAfterMinor;
          row.held_minor = event.data.heldAfterMinor;
          endHold(holds, changedHolds, holdKey(accountId, event.data.holdId), 'captured', recorded.position);
          break;
        case 'HoldReleased':
        case 'HoldExpired':
          row.held_minor = event.data.heldAfterMinor;
          endHold(holds, changedHolds, holdKey(accountId, event.data.holdId), event.type === 'HoldReleased' ? 'released' : 'expired', recorded.position);
          break;
        case 'TransferHoldRejected':
        case 'TransferCreditRejected':
          break;
        default:
          throw new Error(`accounts projection cannot apply ${(event as { type: string }).type}`);
      }
      row.available_minor = row.balance_minor - row.held_minor + row.overdraft_limit_minor;
      changedBalances.add(accountId);
    }

    await upsertRows(trx, tables('account_balances'), 'account_id', [...changedBalances].map((id) => balances.get(id)! as unknown as Record<string, unknown>));
    await upsertRows(trx, tables('account_holds'), 'hold_key', [...changedHolds].map((key) => holds.get(key)! as unknown as Record<string, unknown>));
  },
};

function holdKey(accountId: string, holdId: string): string {
  return `${accountId}:${holdId}`;
}

function setHold(holds: Map<string, HoldRow>, changed: Set<string>, row: HoldRow): void {
  holds.set(row.hold_key, row);
  changed.add(row.hold_key);
}

function endHold(holds: Map<string, HoldRow>, changed: Set<string>, key: string, status: string, position: bigint): void {
  const hold = holds.get(key);
  if (!hold) throw new Error(`hold ${key} ended before it was placed`);
  holds.set(key, { ...hold, status, last_position: position });
  changed.add(key);
}
