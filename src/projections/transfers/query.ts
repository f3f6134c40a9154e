import type { Kysely, Selectable } from 'kysely';
import type { ReadDatabase } from '../database.js';
import type { TransfersTable } from './table.js';

export type TransferRow = Selectable<TransfersTable>;

export async function findTransfer(db: Kysely<ReadDatabase>, transferId: string): Promise<TransferRow | undefined> {
  return db.selectFrom('transfers').selectAll().where('transfer_id', '=', transferId).executeTakeFirst();
}
