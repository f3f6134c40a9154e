import type { Transaction } from 'kysely';
import type { HoldPlaced, TransferCredited } from '../../domain/account.js';
import { transferStreamEventTypes, type TransferEvent } from '../../domain/transfer.js';
import type { RecordedEvent } from '../../eventstore/port.js';
import { STREAM_PREFIX } from '../../write/streams.js';
import { loadRows, upsertRows, type Projection, type TableNames } from '../projection.js';
import type { TransferTimelineEntry, TransfersTable } from './table.js';

const STAGES: Record<TransferEvent['type'] | StepOutcome['type'], string> = {
  TransferRequested: 'requested',
  HoldPlaced: 'reserved',
  TransferFundsReserved: 'reserved',
  TransferCredited: 'credited',
  TransferDestinationCredited: 'credited',
  TransferCompensationStarted: 'compensating',
  TransferCompleted: 'completed',
  TransferFailed: 'failed',
};

/** The steps the transfer stream does not record: the source's hold and the destination's credit. */
type StepOutcome = HoldPlaced | TransferCredited;
const STEP_OUTCOMES: readonly StepOutcome['type'][] = ['HoldPlaced', 'TransferCredited'];

/**
 * Each transfer with its status, failure reason and timeline: the transfer stream's request and
 * outcome, and the reservation and credit from the account streams. Streams recorded by the first
 * process manager also carry TransferFundsReserved and TransferDestinationCredited, copies of
 * those two steps: a stage is entered once.
 */
export const transfersProjection: Projection = {
  name: 'transfers',
  tables: ['transfers'],
  filter: { streamPrefixes: [STREAM_PREFIX.transfer, STREAM_PREFIX.account], eventTypes: [...transferStreamEventTypes, ...STEP_OUTCOMES] },
  async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
    const ofTransfers = events.filter((event) => (event.data as { transferId?: string | null }).transferId != null);
    const ids = [...new Set(ofTransfers.map((event) => (event.data as { transferId: string }).transferId))];
    const rows = await loadRows<TransfersTable>(trx, tables('transfers'), 'transfer_id', ids);
    const changed = new Set<string>();
    for (const recorded of ofTransfers) {
      const event = { type: recorded.type, data: recorded.data } as TransferEvent | StepOutcome;
      const id = event.data.transferId!;
      const existing = rows.get(id);
      if (existing && existing.last_position >= recorded.position) continue;
      const stage = STAGES[event.type];
      const entry: TransferTimelineEntry = { stage, at: event.data.at, position: recorded.position.toString() };
      if ('reason' in event.data) entry.reason = event.data.reason;
      if (event.type === 'TransferRequested') {
        rows.set(id, {
          transfer_id: id,
          from_account_id: event.data.fromAccountId,
          to_account_id: event.data.toAccountId,
          currency: event.data.currency,
          amount_minor: event.data.amountMinor,
          description: event.data.description,
          status: 'pending',
          stage,
          reason: null,
          requested_at: new Date(event.data.at),
          finished_at: null,
          timeline: [entry],
          last_position: recorded.position,
        });
      } else {
        if (!existing) throw new Error(`${event.type} for transfer ${id} before TransferRequested`);
        const terminal = event.type === 'TransferCompleted' || event.type === 'TransferFailed';
        const repeated = existing.stage === stage;
        rows.set(id, {
          ...existing,
          stage,
          status: event.type === 'TransferCompleted' ? 'completed' : event.type === 'TransferFailed' ? 'failed' : 'pending',
          reason: event.type === 'TransferFailed' ? event.data.reason : existing.reason,
          finished_at: terminal ? new Date(event.data.at) : existing.finished_at,
          timeline: repeated ? existing.timeline : [...existing.timeline, entry],
          last_position: recorded.position,
        });
      }
      changed.add(id);
    }
    await upsertRows(trx, tables('transfers'), 'transfer_id', [...changed].map((id) => rows.get(id)! as unknown as Record<string, unknown>));
  },
};
