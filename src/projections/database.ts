import type { AccountBalancesTable, AccountHoldsTable } from './accounts/table.js';
import type { CustomersTable } from './customers/table.js';
import type { AccountTransactionsTable } from './transactions/table.js';
import type { TransfersTable } from './transfers/table.js';

/** The read side's tables, composed from each read model's own table file. */
export interface ReadDatabase {
  account_balances: AccountBalancesTable;
  account_holds: AccountHoldsTable;
  account_transactions: AccountTransactionsTable;
  transfers: TransfersTable;
  customers: CustomersTable;
}
