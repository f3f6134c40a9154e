import { moneyMovingAccountEventTypes } from '../../domain/account.js';
import { auditPostings, createTrialBalanceAudit, type TrialBalanceAudit } from '../../domain/ledger.js';
import { MAX_PAGE_SIZE, type EventStore } from '../../eventstore/port.js';

export interface LogAudit {
  audit: TrialBalanceAudit;
  events: number;
  /** The last position summed. */
  throughPosition: bigint;
  /** False when it stopped at `eventsMax` before the log's end. */
  complete: boolean;
}

/** The trial balance of the whole log, page by page, as the API and the CLI take it. */
export async function auditLog(store: EventStore, eventsMax = Number.POSITIVE_INFINITY): Promise<LogAudit> {
  const audit = createTrialBalanceAudit(moneyMovingAccountEventTypes);
  let throughPosition = 0n;
  let events = 0;
  for (;;) {
    const page = await store.readAll({ after: throughPosition, maxCount: MAX_PAGE_SIZE });
    auditPostings(page, audit);
    events += page.length;
    if (page.length > 0) throughPosition = page.at(-1)!.position;
    if (page.length < MAX_PAGE_SIZE) return { audit, events, throughPosition, complete: true };
    if (events >= eventsMax) return { audit, events, throughPosition, complete: false };
  }
}
