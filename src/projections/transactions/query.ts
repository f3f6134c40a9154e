import { sql, type Kysely, type Selectable } from 'kysely';
import type { ReadDatabase } from '../database.js';
import type { AccountTransactionsTable, TransactionStatus, TransactionType } from './table.js';

/** A history row as the API serves it: the time already ISO 8601 text in UTC with milliseconds. */
export type TransactionRow = Omit<Selectable<AccountTransactionsTable>, 'occurred_at'> & { occurred_at: string };

// Formatted by PostgreSQL: parsing each row's timestamp into a Date and formatting it back cost more
// than the rest of the row (a page has up to 200).
const occurredAtIso = sql<string>`to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`.as('occurred_at');
const COLUMNS = [
  'id',
  'account_id',
  'type',
  'currency',
  'amount_minor',
  'balance_after_minor',
  'counterparty_account_id',
  'transfer_id',
  'hold_id',
  'reference',
  'description',
  'status',
  'event_id',
  'position',
] as const satisfies readonly Exclude<keyof AccountTransactionsTable, 'occurred_at'>[];

export interface TransactionFilter {
  accountId: string;
  /** Only rows at or after this instant. */
  from?: Date;
  /** Only rows at or before this instant. */
  to?: Date;
  /** Only rows strictly before this instant: the end of a whole day asked for by date. */
  before?: Date;
  type?: TransactionType;
  status?: TransactionStatus;
  /** Bounds on the absolute amount, in minor units. */
  minAmountMinor?: bigint;
  maxAmountMinor?: bigint;
  /** Keyset: only rows strictly older than this position. */
  beforePosition?: bigint;
  limit: number;
}

/** Newest first by log position, keyset-paged: no OFFSET, so new rows never shift a page. */
export async function listTransactions(db: Kysely<ReadDatabase>, filter: TransactionFilter): Promise<TransactionRow[]> {
  let query = db.selectFrom('account_transactions').select([...COLUMNS, occurredAtIso]).where('account_id', '=', filter.accountId);
  if (filter.beforePosition !== undefined) query = query.where('position', '<', filter.beforePosition);
  if (filter.from) query = query.where('occurred_at', '>=', filter.from);
  if (filter.to) query = query.where('occurred_at', '<=', filter.to);
  if (filter.before) query = query.where('occurred_at', '<', filter.before);
  if (filter.type) query = query.where('type', '=', filter.type);
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.minAmountMinor !== undefined) {
    const min = filter.minAmountMinor;
    query = query.where((eb) => eb.or([eb('amount_minor', '>=', min), eb('amount_minor', '<=', -min)]));
  }
  if (filter.maxAmountMinor !== undefined) {
    const max = filter.maxAmountMinor;
    query = query.where('amount_minor', '<=', max).where('amount_minor', '>=', -max);
  }
  return query.orderBy('position', 'desc').limit(filter.limit).execute();
}
