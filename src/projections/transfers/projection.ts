import type { Transaction } from 'kysely';
import type { HoldCaptured, HoldPlaced, TransferCredited } from '../../domain/account.js';
import { transferStreamEventTypes, type TransferEvent } from '../../domain/transfer.js';
import type { RecordedEvent } from '../../eventstore/port.js';
import { STREAM_PREFIX } from '../../write/streams.js';
import { loadRows, upsertRows, type Projection, type TableNames } from '../projection.js';
import type { TransferTimelineEntry, TransfersTable } from './table.js';

const STAGES: Record<TransferEvent['type'] | StepOutcome['type'], string> = {
  TransferRequested: 'requested',
  HoldPlaced: 'reserved',
  HoldCaptured: 'completed',
  TransferFundsReserved: 'reserved',
  TransferCredited: 'credited',
  TransferDestinationCredited: 'credited',
  TransferCompensationStarted: 'compensating',
  TransferCompleted: 'completed',
  TransferFailed: 'failed',
};

/** The steps the transfer stream does not record: the source's hold, the destination's credit, the capture. */
type StepOutcome = HoldPlaced | TransferCredited | HoldCaptured;
const STEP_OUTCOMES: readonly StepOutcome['type'][] = ['HoldPlaced', 'TransferCredited', 'HoldCaptured'];

/**
 * Each transfer with its status, failure reason and timeline: the transfer stream's request and
 * outcome, and the reservation, credit and capture from the account streams. Streams recorded by
 * the first process manager also carry TransferFundsReserved and TransferDestinationCredited,
 * copies of two steps: a stage is entered once.
 *
 * A transfer is completed here from its hold's capture: both legs have moved then, and nothing can
 * fail it any more (it is captured only once credited, and no credited transfer fails), so the
 * process manager's TransferCompleted, one append later, only confirms it. Clients see the money
 * settled one step sooner; the transfer stream says `credited` in between (docs/architecture.md,
 * "Transfers").
 */
export const transfersProjection: Projection = {
  name: 'transfers',
  tables: ['transfers'],
  filter: { streamPrefixes: [STREAM_PREFIX.transfer, STREAM_PREFIX.account], eventTypes: [...transferStreamEventTypes, ...STEP_OUTCOMES] },
  async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
    // An ordinary hold's capture (no transfer) is a withdrawal, not a transfer's stage.
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
        const status = stage === 'completed' ? 'completed' : stage === 'failed' ? 'failed' : 'pending';
        const repeated = existing.stage === stage;
        rows.set(id, {
          ...existing,
          stage,
          status,
          reason: event.type === 'TransferFailed' ? event.data.reason : existing.reason,
          // Finished when first seen terminal: the capture, not the TransferCompleted that confirms it.
          finished_at: status === 'pending' ? existing.finished_at : (existing.finished_at ?? new Date(event.data.at)),
          timeline: repeated ? existing.timeline : [...existing.timeline, entry],
          last_position: recorded.position,
        });
      }
      changed.add(id);
    }
    await upsertRows(trx, tables('transfers'), 'transfer_id', [...changed].map((id) => rows.get(id)! as unknown as Record<string, unknown>));
  },
};
