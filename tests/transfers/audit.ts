/**
 * Independent checks over the event store for the transfer guarantee specs: they fold the raw
 * streams and the global log themselves, so they trust neither the read models nor the manager.
 */
import { sql, type Kysely } from 'kysely';
import { accountDecider, availableMinor, heldMinor, type AccountEvent, type OpenedAccount } from '../../src/domain/account.js';
import { foldEvents } from '../../src/domain/decider.js';
import { clearingLedgerAccount, createTrialBalance, ledgerAccountBalance, trialBalance, trialBalanceTotals, type TrialBalance } from '../../src/domain/ledger.js';
import { transferDecider, type TransferEvent, type TransferState } from '../../src/domain/transfer.js';
import { MAX_PAGE_SIZE, type EventStore, type RecordedEvent } from '../../src/eventstore/port.js';
import type { ReadDatabase } from '../../src/projections/database.js';
import { accountStream, transferStream } from '../../src/write/streams.js';

/** Bounds every read loop: no test ledger here holds more than this many events. */
const EVENTS_MAX = 500_000;

export async function readAllEvents(store: EventStore): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  let after = 0n;
  while (events.length < EVENTS_MAX) {
    const page = await store.readAll({ after, maxCount: MAX_PAGE_SIZE });
    events.push(...page);
    if (page.length < MAX_PAGE_SIZE) return events;
    after = page.at(-1)!.position;
  }
  throw new Error(`the log holds more than ${EVENTS_MAX} events`);
}

export async function readWholeStream(store: EventStore, streamName: string): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  let fromRevision = 0n;
  while (events.length < EVENTS_MAX) {
    const page = await store.readStream(streamName, { fromRevision, maxCount: MAX_PAGE_SIZE });
    events.push(...page);
    if (page.length < MAX_PAGE_SIZE) return events;
    fromRevision = page.at(-1)!.revision + 1n;
  }
  throw new Error(`stream ${streamName} holds more than ${EVENTS_MAX} events`);
}

export async function accountOf(store: EventStore, accountId: string): Promise<OpenedAccount> {
  const events = await readWholeStream(store, accountStream(accountId));
  const state = foldEvents(accountDecider, events.map((event) => ({ type: event.type, data: event.data }) as AccountEvent));
  if (state.status === 'none') throw new Error(`account ${accountId} has no stream`);
  return state;
}

export async function transferOf(store: EventStore, transferId: string): Promise<TransferState> {
  const events = await readWholeStream(store, transferStream(transferId));
  return foldEvents(transferDecider, events.map((event) => ({ type: event.type, data: event.data }) as TransferEvent));
}

/** Posted, held and available money of an account, folded from its stream at `now`. */
export async function moneyOf(store: EventStore, accountId: string, now = new Date().toISOString()) {
  const account = await accountOf(store, accountId);
  return { status: account.status, balanceMinor: account.balanceMinor, heldMinor: heldMinor(account, now), availableMinor: availableMinor(account, now) };
}

/** How many events of each type carry this transfer id, per stream: each effect must appear once. */
export function effectsOf(events: readonly RecordedEvent[], transferId: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const event of events) {
    if ((event.data as { transferId?: unknown }).transferId !== transferId) continue;
    counts[event.type] = (counts[event.type] ?? 0) + 1;
  }
  return counts;
}

/** Every event carrying a transfer id, grouped by that id, in log order. */
export function eventsByTransfer(events: readonly RecordedEvent[]): Map<string, RecordedEvent[]> {
  const byTransfer = new Map<string, RecordedEvent[]>();
  for (const event of events) {
    const transferId = (event.data as { transferId?: unknown }).transferId;
    if (typeof transferId !== 'string') continue;
    const list = byTransfer.get(transferId) ?? [];
    list.push(event);
    byTransfer.set(transferId, list);
  }
  return byTransfer;
}

export interface LedgerTotals {
  trial: TrialBalance;
  /** Per currency, the sum of every leg ever posted: 0n in a healthy ledger. */
  totals: Map<string, bigint>;
  clearing: Map<string, bigint>;
}

/** The trial balance over the whole log, read from position 0. */
export async function ledgerTotals(store: EventStore): Promise<LedgerTotals> {
  const trial = trialBalance(await readAllEvents(store), createTrialBalance());
  const clearing = new Map<string, bigint>();
  for (const currency of trial.keys()) clearing.set(currency, ledgerAccountBalance(trial, currency, clearingLedgerAccount(currency)));
  return { trial, totals: trialBalanceTotals(trial), clearing };
}

export async function deadlineRowExists(db: Kysely<ReadDatabase>, transferId: string): Promise<boolean> {
  const result = await sql<{ found: number }>`select 1 as found from transfer_deadlines where transfer_id = ${transferId}`.execute(db);
  return result.rows.length === 1;
}

/** Polls `probe` until `done` holds or the time is up; returns the last value either way. */
export async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number, pauseMs = 50): Promise<T> {
  const deadlineMs = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadlineMs) return value;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `task` over `items` with at most `limit` in flight. */
export async function boundedAll<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  });
  await Promise.all(lanes);
  return results;
}
