import type { Kysely, Selectable } from 'kysely';
import type { ReadDatabase } from '../database.js';
import type { CustomersTable } from './table.js';

export type CustomerRow = Selectable<CustomersTable>;

export async function findCustomer(db: Kysely<ReadDatabase>, customerId: string): Promise<CustomerRow | undefined> {
  return db.selectFrom('customers').selectAll().where('customer_id', '=', customerId).executeTakeFirst();
}
