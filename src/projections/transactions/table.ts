import { sql, type Kysely } from 'kysely';

export const TRANSACTION_TYPES = ['deposit', 'withdrawal', 'transfer_in', 'transfer_out', 'hold_placed', 'hold_captured', 'hold_released', 'hold_expired'] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];
export const TRANSACTION_STATUSES = ['pending', 'completed', 'failed'] as const;
export type TransactionStatus = (typeof TRANSACTION_STATUSES)[number];

export interface AccountTransactionsTable {
  id: string;
  account_id: string;
  type: TransactionType;
  currency: string;
  amount_minor: bigint;
  balance_after_minor: bigint | null;
  counterparty_account_id: string | null;
  transfer_id: string | null;
  hold_id: string | null;
  reference: string | null;
  description: string | null;
  status: TransactionStatus;
  occurred_at: Date;
  event_id: string;
  position: bigint;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists account_transactions (
      id text primary key,
      account_id text not null,
      type text not null,
      currency char(3) not null,
      amount_minor bigint not null,
      balance_after_minor bigint,
      counterparty_account_id text,
      transfer_id text,
      hold_id text,
      reference text,
      description text,
      status text not null,
      occurred_at timestamptz not null,
      event_id text not null,
      position bigint not null
    )`.execute(db);
  // Keyset pagination, newest first, per account.
  await sql`create index if not exists account_transactions_account_position on account_transactions (account_id, position desc)`.execute(db);
  // The running ledger balance per account, so hold rows can show the balance they left unchanged.
  await sql`
    create table if not exists transaction_balances (
      account_id text primary key,
      balance_minor bigint not null,
      last_position bigint not null
    )`.execute(db);
  await sql`create index if not exists account_transactions_transfer on account_transactions (transfer_id) where transfer_id is not null`.execute(db);
}
