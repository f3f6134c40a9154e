import type { Migration } from 'kysely';
import * as checkpoints from './checkpoints.js';
import * as accounts from './accounts/table.js';
import * as transactions from './transactions/table.js';
import * as transfers from './transfers/table.js';
import * as customers from './customers/table.js';

/** Read-model migrations, each owned by its read model's folder. */
export const readModelMigrations: Record<string, Migration> = {
  '2026-11-25-0100-projection-checkpoints': { up: checkpoints.up },
  '2026-11-25-0101-account-balances': { up: accounts.up },
  '2026-11-25-0102-account-transactions': { up: transactions.up },
  '2026-11-25-0103-transfers': { up: transfers.up },
  '2026-11-25-0104-customers': { up: customers.up },
  '2026-11-26-0400-account-transactions-keyed-by-position': { up: transactions.upKeyedByPosition },
  '2026-11-27-0100-transfers-pending-by-age': { up: transfers.upPendingByAge },
};
