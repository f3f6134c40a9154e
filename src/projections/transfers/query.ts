import { sql, type Kysely, type Selectable } from 'kysely';
import type { ReadDatabase } from '../database.js';
import type { TransfersTable } from './table.js';

export type TransferRow = Selectable<TransfersTable>;

/** Transfers still pending that were requested before `requestedBefore`, oldest first; `limit` + 1 rows tell whether there are more. */
export async function pendingTransfersRequestedBefore(db: Kysely<ReadDatabase>, requestedBefore: Date, limit: number, after?: { requestedAt: Date; transferId: string }): Promise<TransferRow[]> {
  // 'pending' as a literal, so that a generic plan still matches the partial index.
  let query = db.selectFrom('transfers').selectAll().where(sql<boolean>`status = ${sql.lit('pending')}`).where('requested_at', '<', requestedBefore);
  if (after) query = query.where(({ eb, refTuple, tuple }) => eb(refTuple('requested_at', 'transfer_id'), '>', tuple(after.requestedAt, after.transferId)));
  return query.orderBy('requested_at').orderBy('transfer_id').limit(limit + 1).execute();
}

export async function findTransfer(db: Kysely<ReadDatabase>, transferId: string): Promise<TransferRow | undefined> {
  return db.selectFrom('transfers').selectAll().where('transfer_id', '=', transferId).executeTakeFirst();
}
