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

/**
 * Keys history rows by log position instead of by event id. Each row comes from exactly one event,
 * so the position is as unique as the id, and new rows always take the highest keys: the primary
 * key index grows at its right edge instead of taking random uuid inserts all over a large index,
 * which cost half of a 1,000-row insert (about 10 ms against 5 ms on a 1M-row table). The `id`
 * column stays as it was for clients. The key's name may differ after a rebuild swapped tables.
 */
export async function upKeyedByPosition(db: Kysely<unknown>): Promise<void> {
  await sql`
    do $$
    declare
      v_key text;
      v_columns text[];
    begin
      select c.conname, array_agg(a.attname::text order by a.attname)
        into v_key, v_columns
        from pg_constraint c
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any(c.conkey)
       where c.conrelid = 'account_transactions'::regclass and c.contype = 'p'
       group by c.conname;
      if v_columns = array['position'] then
        return;
      end if;
      if v_key is not null then
        execute format('alter table account_transactions drop constraint %I', v_key);
      end if;
      alter table account_transactions add constraint account_transactions_pkey primary key (position);
    end
    $$`.execute(db);
}
