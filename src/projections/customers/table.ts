import { sql, type Kysely } from 'kysely';

export interface CustomersTable {
  customer_id: string;
  email: string;
  first_name: string;
  last_name: string;
  status: string;
  registered_at: Date;
  updated_at: Date;
  last_position: bigint;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table if not exists customers (
      customer_id text primary key,
      email text not null,
      first_name text not null,
      last_name text not null,
      status text not null,
      registered_at timestamptz not null,
      updated_at timestamptz not null,
      last_position bigint not null
    )`.execute(db);
}
