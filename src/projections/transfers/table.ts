import { sql, type Kysely } from 'kysely';

export interface TransferTimelineEntry {
  stage: string;
  at: string;
  position: string;
  reason?: string;
}

export interface TransfersTable {
  transfer_id: string;
  from_account_id: string;
  to_account_id: string;
  currency: string;
  amount_minor: bigint;
  description: string | null;
  status: 'pending' | 'completed' | 'failed';
  stage: string;
  reason: string | null;
  requested_at: Date;
  finished_at: Date | null;
  timeline: TransferTimelineEntry[];
  last_position: bigint;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists transfers (
      transfer_id text primary key,
      from_account_id text not null,
      to_account_id text not null,
      currency char(3) not null,
      amount_minor bigint not null,
      description text,
      status text not null,
      stage text not null,
      reason text,
      requested_at timestamptz not null,
      finished_at timestamptz,
      timeline jsonb not null,
      last_position bigint not null
    )`.execute(db);
  await sql`create index if not exists transfers_from on transfers (from_account_id)`.execute(db);
}

/** The transfers still pending, oldest first, for the auditors' list of overdue ones; small, as few are pending. */
export async function upPendingByAge(db: Kysely<unknown>): Promise<void> {
  await sql`create index if not exists transfers_pending_since on transfers (requested_at, transfer_id) where status = 'pending'`.execute(db);
}
