import type { Kysely, Selectable } from 'kysely';
import type { ReadDatabase } from '../database.js';
import type { AccountBalancesTable } from './table.js';

export type AccountRow = Selectable<AccountBalancesTable>;

export async function findAccount(db: Kysely<ReadDatabase>, accountId: string): Promise<AccountRow | undefined> {
  return db.selectFrom('account_balances').selectAll().where('account_id', '=', accountId).executeTakeFirst();
}

/** A page of a customer's accounts, oldest first, after the (opened_at, account_id) given. */
export async function accountsOfCustomer(db: Kysely<ReadDatabase>, customerId: string, limit: number, after?: { openedAt: Date; accountId: string }): Promise<AccountRow[]> {
  let query = db.selectFrom('account_balances').selectAll().where('customer_id', '=', customerId);
  if (after) query = query.where(({ eb, refTuple, tuple }) => eb(refTuple('opened_at', 'account_id'), '>', tuple(after.openedAt, after.accountId)));
  return query.orderBy('opened_at').orderBy('account_id').limit(limit).execute();
}

/** Holds still active past their expiry, for the expiry sweeper. */
export async function expiredActiveHolds(db: Kysely<ReadDatabase>, now: Date, limit: number) {
  return db.selectFrom('account_holds').select(['account_id', 'hold_id', 'transfer_id']).where('status', '=', 'active').where('expires_at', '<=', now).orderBy('expires_at').limit(limit).execute();
}
