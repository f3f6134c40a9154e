import type { Transaction } from 'kysely';
import { customerEventTypes, type CustomerEvent } from '../../domain/customer.js';
import type { RecordedEvent } from '../../eventstore/port.js';
import { STREAM_PREFIX } from '../../write/streams.js';
import { loadRows, upsertRows, type Projection, type TableNames } from '../projection.js';
import type { CustomersTable } from './table.js';

const STATUS_AFTER: Record<Exclude<CustomerEvent['type'], 'CustomerRegistered'>, string> = {
  CustomerActivated: 'active',
  CustomerSuspended: 'suspended',
  CustomerReactivated: 'active',
};

/** Each customer with their status; their accounts come from account_balances. */
export const customersProjection: Projection = {
  name: 'customers',
  tables: ['customers'],
  filter: { streamPrefixes: [STREAM_PREFIX.customer], eventTypes: customerEventTypes },
  async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
    const ids = [...new Set(events.map((event) => (event.data as { customerId: string }).customerId))];
    const rows = await loadRows<CustomersTable>(trx, tables('customers'), 'customer_id', ids);
    const changed = new Set<string>();
    for (const recorded of events) {
      const event = { type: recorded.type, data: recorded.data } as CustomerEvent;
      const id = event.data.customerId;
      const existing = rows.get(id);
      if (existing && existing.last_position >= recorded.position) continue;
      const at = new Date(event.data.at);
      if (event.type === 'CustomerRegistered') {
        rows.set(id, { customer_id: id, email: event.data.email, first_name: event.data.firstName, last_name: event.data.lastName, status: 'pending_verification', registered_at: at, updated_at: at, last_position: recorded.position });
      } else {
        if (!existing) throw new Error(`${event.type} for customer ${id} before CustomerRegistered`);
        rows.set(id, { ...existing, status: STATUS_AFTER[event.type], updated_at: at, last_position: recorded.position });
      }
      changed.add(id);
    }
    await upsertRows(trx, tables('customers'), 'customer_id', [...changed].map((id) => rows.get(id)! as unknown as Record<string, unknown>));
  },
};
