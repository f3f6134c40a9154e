import { sql, type Kysely } from 'kysely';

export interface AccountBalancesTable {
  account_id: string;
  customer_id: string;
  currency: string;
  account_type: string;
  status: string;
  balance_minor: bigint;
  held_minor: bigint;
  available_minor: bigint;
  overdraft_limit_minor: bigint;
  opened_at: Date;
  last_position: bigint;
  updated_at: Date;
}

export interface AccountHoldsTable {
  hold_key: string;
  account_id: string;
  hold_id: string;
  transfer_id: string | null;
  currency: string;
  amount_minor: bigint;
  expires_at: Date;
  status: string;
  last_position: bigint;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists account_balances (
      account_id text primary key,
      customer_id text not null,
      currency char(3) not null,
      account_type text not null,
      status text not null,
      balance_minor bigint not null,
      held_minor bigint not null,
      available_minor bigint not null,
      overdraft_limit_minor bigint not null,
      opened_at timestamptz not null,
      last_position bigint not null,
      updated_at timestamptz not null
    )`.execute(db);
  await sql`create index if not exists account_balances_customer on account_balances (customer_id)`.execute(db);
  await sql`
    create table if not exists account_holds (
      hold_key text primary key,
      account_id text not null,
      hold_id text not null,
      transfer_id text,
      currency char(3) not null,
      amount_minor bigint not null,
      expires_at timestamptz not null,
      status text not null,
      last_position bigint not null
    )`.execute(db);
  await sql`create index if not exists account_holds_active_expiry on account_holds (expires_at) where status = 'active'`.execute(db);
}
