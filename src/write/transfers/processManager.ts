import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { AccountCommand, AccountEvent } from '../../domain/account.js';
import { assertNever } from '../../domain/decider.js';
import { DomainError } from '../../domain/errors.js';
import type { CurrencyCode } from '../../domain/money.js';
import type { TransferCommand, TransferEvent, TransferFacts, TransferFailureReason } from '../../domain/transfer.js';
import type { EventStore, RecordedEvent } from '../../eventstore/port.js';
import { expiredActiveHolds } from '../../projections/accounts/query.js';
import type { ReadDatabase } from '../../projections/database.js';
import type { Projection } from '../../projections/projection.js';
import { ProjectionRunner } from '../../projections/runner.js';
import type { Worker } from '../../server.js';
import { StreamContendedError, type CommandContext, type CommandResult, type DomainEvent } from '../commandHandler.js';
import { nowIso } from '../http.js';
import { accountStream, STREAM_PREFIX, transferStream } from '../streams.js';
import type { WriteSide } from '../writeSide.js';

export const PROCESS_MANAGER_NAME = 'transfer-process-manager';
const ACTOR = 'system:process-manager';
// Transfers reacted to at once within a batch. Their commands share append statements (group
// commit), so more at once means fewer statements, not more load: 64 -> 256 took the transfers
// bench at 150/s from a growing backlog (completion p50 17 s) to keeping up (5.6 s, drain 1.4 s).
const REACTION_CONCURRENCY = 256;
// Batches whose reactions run at once (their checkpoints still commit in order). One at a time, a
// batch waited for its slowest step before the next was even read, and the manager fell seconds
// behind the log at 800 transfers/s while the machine had CPU to spare.
const BATCHES_IN_FLIGHT = 8;
const TIMER_BATCH = 200;
/**
 * A deadline that fired is checked again until its transfer ends: after as long as it is overdue,
 * between these bounds. A fence that failed is retried soon; a transfer that cannot end yet
 * (credited, its hold lapsed and its funds spent before the capture) costs a capture attempt an
 * hour at most, and many of them do not crowd out the deadlines that are new.
 */
const DEADLINE_RECHECK_MS = 5_000;
const DEADLINE_RECHECK_MAX_MS = 3_600_000;
const STEP_CONFLICT_ATTEMPTS = 5;

/** The steps of a transfer, each run at most once in effect; tests crash the manager after each. */
export type TransferStep =
  | 'reserve'
  | 'fail'
  | 'credit'
  | 'compensate'
  | 'release'
  | 'capture'
  | 'complete'
  | 'fence-reservation'
  | 'fence-credit'
  | 'expire-hold';

export async function up(db: Kysely<unknown>): Promise<void> {
  // The durable deadline timer: survives restarts, unlike setTimeout.
  await sql`
    create table if not exists transfer_deadlines (
      transfer_id text primary key,
      deadline_at timestamptz not null,
      next_check_at timestamptz not null
    )`.execute(db);
  await sql`create index if not exists transfer_deadlines_due on transfer_deadlines (next_check_at)`.execute(db);
}

const ACCOUNT_REACTIONS = ['HoldPlaced', 'HoldCaptured', 'HoldReleased', 'HoldExpired', 'TransferHoldRejected', 'TransferCredited', 'TransferCreditRejected'] as const;
const TRANSFER_REACTIONS = ['TransferRequested', 'TransferFundsReserved', 'TransferDestinationCredited', 'TransferCompensationStarted', 'TransferCompleted', 'TransferFailed'] as const;

export interface ProcessManagerOptions {
  logger: Logger;
  batchSize: number;
  /** Where the durable deadline rows live. A manager without it (a test feeding `react` directly) writes none ahead of its steps. */
  db?: Kysely<unknown>;
  /** Test hook: runs after a step's command succeeded, before anything else; a throw simulates a crash there. */
  afterStep?: (step: TransferStep, transferId: string) => Promise<void>;
  exclusive?: boolean;
  timerIntervalMs?: number;
  /** Batches whose reactions may run while earlier ones finish; 1 runs one batch at a time. */
  batchesInFlight?: number;
}

/** What a reaction needs of an event: delivered by the log, or just recorded by this manager's own step. */
type Delivered = Pick<RecordedEvent, 'id' | 'streamName' | 'type' | 'data'>;
/** An event the write API in this process just recorded, for the manager to take without the log's trip. */
export type RecordedByWriteApi = Delivered;

/** What the manager takes from the log: its reactions, on account and transfer streams. */
export const PROCESS_MANAGER_FILTER = { streamPrefixes: [STREAM_PREFIX.account, STREAM_PREFIX.transfer], eventTypes: [...ACCOUNT_REACTIONS, ...TRANSFER_REACTIONS] };

const REACTS_TO: ReadonlySet<string> = new Set([...ACCOUNT_REACTIONS, ...TRANSFER_REACTIONS]);
// Reactions this manager started on its own steps' outcomes, by event id; the log's delivery of
// the event awaits it instead of reacting again. Bounded: past it, the oldest are forgotten, and
// their deliveries react again, which is idempotent.
const FOLLOWED_MAX = 100_000;
// Reactions running detached from any batch; a batch waits for room before starting new transfers.
const DETACHED_MAX = 4_096;

/**
 * Drives each transfer from the global log: reserve on the source, credit the destination from
 * clearing, capture the hold into clearing, complete; or compensate and fail. Each reaction is a
 * normal command with a deterministic idempotency key, and every account step is idempotent per
 * transfer in the domain, so redelivery, crashes between steps and concurrent managers change
 * nothing. A batch's deadline rows are written before its first step; the checkpoint commits after
 * the reactions, with the deletion of finished transfers' deadline rows.
 *
 * A step's outcome events are reacted to as soon as the step returns them, detached from the
 * batch, instead of after a trip through the log (one subscription hop per transfer, not one per step).
 * The log still delivers each outcome later, at a position past the batch whose reaction recorded
 * it; the delivery awaits the reaction already running (or finished) instead of repeating it, and
 * only then may the checkpoint pass it. A batch therefore waits for one step per event, never for
 * whole transfers. After a crash nothing is remembered: the log's deliveries drive the rest,
 * through the same idempotent steps.
 */
export class TransferProcessManager {
  readonly projection: Projection;
  private readonly followed = new Map<string, Promise<void>>();
  private detached = 0;
  private readonly onDetachedDone: (() => void)[] = [];
  /** Set when the afterStep hook throws: the manager then behaves as a dead process and does nothing more. */
  private crashed: unknown;

  constructor(
    private readonly write: WriteSide,
    private readonly options: ProcessManagerOptions,
  ) {
    this.projection = {
      name: PROCESS_MANAGER_NAME,
      tables: ['transfer_deadlines'],
      filter: PROCESS_MANAGER_FILTER,
      beforeTransaction: (events) => this.react(events),
      apply: (trx, events) => this.clearDeadlines(trx, events),
    };
  }

  /** Reactions per transfer run in log order; different transfers run concurrently (bounded). */
  async react(events: readonly RecordedEvent[]): Promise<void> {
    while (this.detached >= DETACHED_MAX) await new Promise<void>((resolve) => this.onDetachedDone.push(resolve));
    // The timer exists before the first step is taken, so a crash anywhere after leaves it behind.
    if (this.options.db) await recordDeadlines(this.options.db, events);
    const byTransfer = new Map<string, RecordedEvent[]>();
    for (const event of events) {
      const transferId = transferIdOf(event);
      if (!transferId) continue;
      const list = byTransfer.get(transferId) ?? [];
      list.push(event);
      byTransfer.set(transferId, list);
    }
    const queues = [...byTransfer.values()];
    let next = 0;
    const workers = Array.from({ length: Math.min(REACTION_CONCURRENCY, queues.length) }, async () => {
      while (next < queues.length) {
        const queue = queues[next++]!;
        for (const event of queue) await this.deliver(event);
      }
    });
    await Promise.all(workers);
  }

  /** Resolves once no reaction started by this manager's own steps is still running. */
  async settled(): Promise<void> {
    while (this.detached > 0) await new Promise<void>((resolve) => this.onDetachedDone.push(resolve));
  }

  private async deliver(event: Delivered): Promise<void> {
    if (this.crashed) throw this.crashed;
    const following = this.followed.get(event.id);
    if (following) {
      this.followed.delete(event.id);
      try {
        return await following;
      } catch {
        // It failed where nobody waited for it: react here, where a failure fails the batch.
      }
    }
    await this.reactTo(event);
  }

  /**
   * Takes a transfer this process's write API just recorded, as it takes its own steps' outcomes:
   * its reservation starts now, not after a trip through the log (at 1,000 transfers/s that trip
   * was a third of the way to `held`, and most of its tail). The log's delivery still comes and
   * awaits it, records the deadline timer and lets the checkpoint pass; after a crash the delivery
   * drives the transfer, through the same idempotent steps. False when there is no room.
   */
  takeRecorded(event: Delivered): boolean {
    if (this.crashed || this.detached >= DETACHED_MAX || !REACTS_TO.has(event.type)) return false;
    this.follow(event);
    return true;
  }

  /** Starts reacting to an outcome this manager's own step just recorded, without waiting for the log. */
  private follow(event: Delivered): void {
    if (this.crashed || this.followed.has(event.id)) return;
    this.detached += 1;
    const reaction = this.reactTo(event).finally(() => {
      this.detached -= 1;
      for (const wake of this.onDetachedDone.splice(0)) wake();
    });
    reaction.catch((error: unknown) => {
      if (!this.crashed) this.options.logger.warn({ err: error, eventId: event.id, type: event.type }, 'reacting to a step outcome failed; its delivery by the log reacts again');
    });
    this.followed.set(event.id, reaction);
    if (this.followed.size > FOLLOWED_MAX) this.followed.delete(this.followed.keys().next().value!);
  }

  private async reactTo(recorded: Delivered): Promise<void> {
    if (recorded.streamName.startsWith(STREAM_PREFIX.transfer)) {
      const event = { type: recorded.type, data: recorded.data } as TransferEvent;
      const data = event.data;
      switch (event.type) {
        case 'TransferRequested':
          // Reacting past the deadline (the manager was down): fence instead of reserving.
          if (Date.parse(event.data.deadlineAt) <= Date.now()) return void (await this.fenceReservation(data, recorded.id));
          return void (await this.accountStep('reserve', data.transferId, recorded.id, data.fromAccountId, {
            type: 'PlaceTransferHold',
            data: { accountId: data.fromAccountId, transferId: data.transferId, currency: data.currency, amountMinor: data.amountMinor, expiresAt: event.data.holdExpiresAt, now: nowIso() },
          }));
        // Recorded by the first version of this manager after HoldPlaced and TransferCredited; a
        // transfer it left in flight goes on from them (the same steps, so at most once).
        case 'TransferFundsReserved':
          return this.creditOrFence(data.transferId, recorded.id);
        case 'TransferDestinationCredited':
          return void (await this.capture(data, recorded.id));
        case 'TransferCompensationStarted': {
          const result = await this.accountStep('release', data.transferId, recorded.id, data.fromAccountId, {
            type: 'ReleaseTransferHold',
            data: { accountId: data.fromAccountId, transferId: data.transferId, now: nowIso() },
          });
          // The hold had already ended (expired): no HoldReleased will come to drive the failure.
          const released = result === undefined || result.events.length > 0 || result.replayed;
          if (!released) await this.fail(data.transferId, event.data.reason, recorded.id);
          return;
        }
        case 'TransferCompleted':
        case 'TransferFailed':
          return;
        default:
          return assertNever(event, 'transfer event');
      }
    }

    const event = { type: recorded.type, data: recorded.data } as AccountEvent;
    switch (event.type) {
      case 'HoldPlaced':
        return this.creditOrFence(event.data.transferId!, recorded.id);
      case 'TransferHoldRejected':
        return this.fail(event.data.transferId, event.data.reason, recorded.id);
      case 'TransferCredited':
        return void (await this.capture({ ...event.data, toAccountId: event.data.accountId }, recorded.id));
      case 'TransferCreditRejected':
        return void (await this.transferStep('compensate', event.data.transferId, recorded.id, {
          type: 'StartCompensation',
          data: { transferId: event.data.transferId, reason: event.data.reason, now: nowIso() },
        }));
      case 'HoldCaptured':
        return void (await this.transferStep('complete', event.data.transferId!, recorded.id, { type: 'CompleteTransfer', data: { transferId: event.data.transferId!, now: nowIso() } }));
      case 'HoldReleased':
        return this.fail(event.data.transferId!, 'deadline_exceeded', recorded.id);
      case 'HoldExpired': {
        const transferId = event.data.transferId!;
        const { state } = await this.write.transfers.load(transferStream(transferId));
        if (state.status === 'none' || state.status === 'completed' || state.status === 'failed') return;
        if (state.status === 'compensating') return this.fail(transferId, 'hold_expired', recorded.id);
        if (state.status === 'credited') return void (await this.capture(state, recorded.id));
        // The credit may be in flight: fence it; its outcome then decides between capture and failure.
        const fenced = await this.fenceCredit(state, 'hold_expired', recorded.id);
        if (fenced !== undefined) await this.captureIfCredited(state, fenced, recorded.id);
        return;
      }
      default:
        return;
    }
  }

  /** Credits the destination; past the deadline (the manager was down) fences the credit instead. */
  private async creditOrFence(transferId: string, causationId: string): Promise<void> {
    // The facts and the deadline never change once requested, so a cached copy will do.
    const { state: transfer } = await this.write.transfers.peek(transferStream(transferId));
    if (transfer.status === 'none') {
      this.options.logger.error({ transferId, causationId }, 'a transfer hold for a transfer that was never requested');
      return;
    }
    if (Date.parse(transfer.deadlineAt) <= Date.now()) return void (await this.fenceCredit(transfer, 'deadline_exceeded', causationId));
    const { fromAccountId, toAccountId, currency, amountMinor } = transfer;
    await this.accountStep('credit', transferId, causationId, toAccountId, {
      type: 'CreditTransfer',
      data: { accountId: toAccountId, transferId, fromAccountId, currency, amountMinor, description: null, now: nowIso() },
    });
  }

  private async capture(transfer: Pick<TransferFacts, 'transferId' | 'fromAccountId' | 'toAccountId'>, causationId: string) {
    const { transferId, fromAccountId, toAccountId } = transfer;
    const result = await this.accountStep('capture', transferId, causationId, fromAccountId, {
      type: 'CaptureTransferHold',
      data: { accountId: fromAccountId, transferId, toAccountId, now: nowIso() },
    });
    if (result === undefined) this.reportUncapturable(transferId, causationId);
    return result;
  }

  /**
   * After a fence that recorded nothing (the destination had decided before), a credit there means
   * the transfer can only complete: its capture is taken, late if the hold has lapsed since.
   */
  private async captureIfCredited(transfer: TransferFacts, fence: CommandResult<AccountEvent>, causationId: string): Promise<void> {
    if (fence.events.length > 0 || fence.replayed) return;
    if ((await this.creditOutcome(transfer)) === 'credited') await this.capture(transfer, causationId);
  }

  /** What the destination decided for this transfer, read fresh from its stream. */
  private async creditOutcome(transfer: Pick<TransferFacts, 'transferId' | 'toAccountId'>): Promise<'credited' | 'rejected' | undefined> {
    const { state } = await this.write.accounts.load(accountStream(transfer.toAccountId));
    return state.status === 'none' ? undefined : state.transferCreditOutcomes.get(transfer.transferId);
  }

  private reportCreditedPastHold(transferId: string, causationId: string): void {
    // Past the point of no return the hold must be captured, not failed; this is a case for an operator.
    this.options.logger.error({ transferId, causationId }, 'transfer hold ended after the destination was credited; clearing needs manual review');
  }

  private reportUncapturable(transferId: string, causationId: string): void {
    // As a rule its lapsed hold's funds were spent meanwhile (or the account closed since): clearing
    // carries the amount until the source can pay; the deadline timer tries the capture again.
    this.options.logger.error({ transferId, causationId }, 'the destination was credited but the source hold could not be captured; clearing carries the amount');
  }

  private async fail(transferId: string, reason: TransferFailureReason, causationId: string): Promise<void> {
    const transfer = await this.write.transfers.load(transferStream(transferId));
    if (transfer.state.status === 'none') return void this.options.logger.warn({ transferId, causationId }, 'an outcome for a transfer that was never requested');
    if (transfer.state.status === 'completed' || transfer.state.status === 'failed') return;
    // Every outcome that leads here excludes a credit (each account decides one outcome per
    // transfer); checking the destination still costs one read, on the failure path only.
    if (transfer.state.status === 'credited' || (await this.creditOutcome(transfer.state)) === 'credited') return this.reportCreditedPastHold(transferId, causationId);
    await this.transferStep('fail', transferId, causationId, { type: 'FailTransfer', data: { transferId, reason, now: nowIso() } });
  }

  private accountStep(step: TransferStep, transferId: string, causationId: string, accountId: string, command: AccountCommand, context = this.context(transferId, step, causationId)) {
    const streamName = accountStream(accountId);
    return this.step(step, transferId, streamName, context, () => this.write.accounts.handle(streamName, command, context));
  }

  private transferStep(step: TransferStep, transferId: string, causationId: string, command: TransferCommand) {
    const streamName = transferStream(transferId);
    const context = this.context(transferId, step, causationId);
    return this.step(step, transferId, streamName, context, () => this.write.transfers.handle(streamName, command, context));
  }

  /**
   * Runs one step's command; on success starts reacting to the events it recorded. Undefined when
   * the domain refused the step.
   */
  private async step<Event extends DomainEvent>(
    step: TransferStep,
    transferId: string,
    streamName: string,
    context: CommandContext,
    run: () => Promise<CommandResult<Event>>,
  ): Promise<CommandResult<Event> | undefined> {
    if (this.crashed) throw this.crashed;
    let result: CommandResult<Event>;
    for (let attempt = 1; ; attempt++) {
      try {
        result = await run();
        break;
      } catch (error) {
        // A step the domain refuses (for example a transfer whose source vanished) is logged, not retried forever.
        if (error instanceof DomainError) {
          this.options.logger.warn({ transferId, step, code: error.code, causationId: context.causationId }, 'transfer step refused');
          return undefined;
        }
        // A hot account another writer keeps moving: try the step again here rather than failing the whole batch.
        if (error instanceof StreamContendedError && attempt < STEP_CONFLICT_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 50 * attempt));
          continue;
        }
        throw error;
      }
    }
    try {
      await this.options.afterStep?.(step, transferId);
    } catch (error) {
      this.crashed = error;
      throw error;
    }
    // A replayed step's outcomes were recorded before: the log delivers them, to this manager or another.
    if (result.replayed) return result;
    for (const [index, event] of result.events.entries()) {
      // The sweeper's expiry of an ordinary hold (no transfer) is nothing to react to, and the log's
      // delivery of it never takes the followed entry back.
      if (REACTS_TO.has(event.type) && transferIdOf(event)) this.follow({ id: result.eventIds[index]!, streamName, type: event.type, data: event.data });
    }
    return result;
  }

  private context(transferId: string, step: string, causationId: string): CommandContext {
    return { idempotencyKey: `pm:${transferId}:${step}`, requestHash: step, actor: ACTOR, correlationId: transferId, causationId };
  }

  /** A finished transfer's timer goes with the batch that carries its end. */
  private async clearDeadlines(trx: Transaction<unknown>, events: readonly RecordedEvent[]): Promise<void> {
    const finished = events.filter((event) => event.type === 'TransferCompleted' || event.type === 'TransferFailed').map((event) => (event.data as { transferId: string }).transferId);
    if (finished.length > 0) await sql`delete from transfer_deadlines where transfer_id = any(${finished}::text[])`.execute(trx);
  }

  /**
   * Fences transfers past their deadline: the pending step on the account gets a rejection outcome
   * unless its real outcome got there first. Whichever is recorded drives the normal flow.
   */
  async fireDeadlines(db: Kysely<unknown>, now = new Date()): Promise<number> {
    const due = await sql<{ transfer_id: string; deadline_at: Date }>`
      select transfer_id, deadline_at from transfer_deadlines where next_check_at <= ${now} order by next_check_at limit ${TIMER_BATCH}`.execute(db);
    for (const { transfer_id: transferId, deadline_at: deadlineAt } of due.rows) {
      try {
        if (await this.fireDeadline(db, transferId)) continue;
      } catch (error) {
        if (this.crashed) throw error;
        // One transfer's fence failing (a contended or busy account) must not hold up the others,
        // nor the hold sweeper after them: it is tried again at its next check.
        this.options.logger.warn({ err: error, transferId }, 'firing a transfer deadline failed; trying again later');
      }
      const recheckMs = Math.min(DEADLINE_RECHECK_MAX_MS, Math.max(DEADLINE_RECHECK_MS, now.getTime() - deadlineAt.getTime()));
      await sql`update transfer_deadlines set next_check_at = ${new Date(now.getTime() + recheckMs)} where transfer_id = ${transferId}`.execute(db);
    }
    return due.rows.length;
  }

  /** True when the transfer had ended and its timer row is gone. */
  private async fireDeadline(db: Kysely<unknown>, transferId: string): Promise<boolean> {
    const { state } = await this.write.transfers.load(transferStream(transferId));
    if (state.status === 'none' || state.status === 'completed' || state.status === 'failed') {
      await sql`delete from transfer_deadlines where transfer_id = ${transferId}`.execute(db);
      return true;
    }
    const cause = `deadline:${transferId}`;
    // A credited transfer can only complete; its capture is retried here, at every check, until the
    // source can pay a hold that lapsed meanwhile.
    if (state.status === 'credited') {
      await this.capture(state, cause);
      return false;
    }
    let fenced: CommandResult<AccountEvent> | undefined;
    if (state.status === 'requested') {
      await this.fenceReservation(state, cause);
      // The source decided first and holds the money: the credit is what is pending.
      const { state: source } = await this.write.accounts.load(accountStream(state.fromAccountId));
      if (source.status !== 'none' && source.transferHoldOutcomes.get(transferId) === 'placed') fenced = await this.fenceCredit(state, 'deadline_exceeded', cause);
    } else if (state.status === 'reserved') {
      fenced = await this.fenceCredit(state, 'deadline_exceeded', cause);
    }
    if (fenced !== undefined) await this.captureIfCredited(state, fenced, cause);
    return false;
  }

  /** Records the deadline's rejection on the source unless its hold got there first; whichever is recorded drives the flow. */
  private fenceReservation(transfer: { transferId: string; fromAccountId: string; currency: CurrencyCode; amountMinor: bigint }, causationId: string) {
    const { transferId, fromAccountId, currency, amountMinor } = transfer;
    return this.accountStep('fence-reservation', transferId, causationId, fromAccountId, {
      type: 'RejectTransferHold',
      data: { accountId: fromAccountId, transferId, currency, amountMinor, reason: 'deadline_exceeded', now: nowIso() },
    });
  }

  /** Records the rejection on the destination unless its credit got there first; whichever is recorded drives the flow. */
  private fenceCredit(transfer: TransferFacts, reason: 'deadline_exceeded' | 'hold_expired', causationId: string) {
    const { transferId, fromAccountId, toAccountId, currency, amountMinor } = transfer;
    return this.accountStep('fence-credit', transferId, causationId, toAccountId, {
      type: 'RejectTransferCredit',
      data: { accountId: toAccountId, transferId, fromAccountId, currency, amountMinor, reason, now: nowIso() },
    });
  }

  /** Records HoldExpired for holds past their expiry, so they stop showing as held anywhere. */
  async expireHolds(db: Kysely<ReadDatabase>, now = new Date()): Promise<number> {
    const holds = await expiredActiveHolds(db, now, TIMER_BATCH);
    for (const hold of holds) {
      const correlationId = hold.transfer_id ?? hold.hold_id;
      try {
        await this.accountStep('expire-hold', correlationId, `expiry:${hold.account_id}:${hold.hold_id}`, hold.account_id, { type: 'ExpireHold', data: { accountId: hold.account_id, holdId: hold.hold_id, now: nowIso() } }, {
          idempotencyKey: `sweeper:${hold.hold_id}:expire`,
          requestHash: 'expire',
          actor: 'system:hold-sweeper',
          correlationId,
        });
      } catch (error) {
        if (this.crashed) throw error;
        // As for deadlines: one hold's account failing does not hold up the rest; next tick tries again.
        this.options.logger.warn({ err: error, accountId: hold.account_id, holdId: hold.hold_id }, 'expiring a hold failed; trying again later');
      }
    }
    return holds.length;
  }
}

/** One statement for a batch's new timers; a timer already there (a redelivery) is kept as it is. */
async function recordDeadlines(db: Kysely<unknown>, events: readonly RecordedEvent[]): Promise<void> {
  const requested = events.filter((event) => event.type === 'TransferRequested').map((event) => event.data as { transferId: string; deadlineAt: string });
  if (requested.length === 0) return;
  const ids = requested.map((transfer) => transfer.transferId);
  const deadlines = requested.map((transfer) => transfer.deadlineAt);
  await sql`insert into transfer_deadlines (transfer_id, deadline_at, next_check_at)
    select id, deadline::timestamptz, deadline::timestamptz from unnest(${ids}::text[], ${deadlines}::text[]) as t(id, deadline)
    on conflict (transfer_id) do nothing`.execute(db);
}

function transferIdOf(event: { data: unknown }): string | undefined {
  const transferId = (event.data as { transferId?: unknown }).transferId;
  return typeof transferId === 'string' ? transferId : undefined;
}

/** The process-manager role: the reaction runner plus the durable deadline and hold-expiry timers. */
export function startProcessManager(
  write: WriteSide,
  db: Kysely<ReadDatabase>,
  store: EventStore,
  databaseUrl: string,
  options: ProcessManagerOptions,
): Worker & { manager: TransferProcessManager; runner: ProjectionRunner; takeRecorded: (event: RecordedByWriteApi) => boolean } {
  const manager = new TransferProcessManager(write, { db: db as unknown as Kysely<unknown>, ...options });
  const runner = new ProjectionRunner(manager.projection, db as unknown as Kysely<unknown>, store, databaseUrl, {
    batchSize: options.batchSize,
    logger: options.logger,
    exclusive: options.exclusive,
    batchesInFlight: options.batchesInFlight ?? BATCHES_IN_FLIGHT,
  }).start();
  let stopped = false;
  let timerError: string | null = null;
  let wakeTimers: (() => void) | undefined;
  const timers = (async () => {
    while (!stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.timerIntervalMs ?? 500);
        wakeTimers = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      // Also while the reactions stand at a poison event: the timers' work is idempotent, and a
      // stopped manager must not also stop deadlines and expiries (a failing runner may hold no
      // lock meanwhile, so two instances' timers may run at once, as with two managers).
      const state = runner.currentState;
      if (stopped || (options.exclusive !== false && state !== 'active' && state !== 'failing')) continue;
      try {
        await manager.fireDeadlines(db as unknown as Kysely<unknown>);
        await manager.expireHolds(db);
        timerError = null;
      } catch (error) {
        timerError = error instanceof Error ? error.message : String(error);
        options.logger.warn({ err: error }, 'transfer timers failed; retrying');
      }
    }
  })();
  return {
    name: 'process-manager',
    manager,
    runner,
    // Only while this instance leads: a standby's hand-offs would race the leader's steps (safe, as
    // two managers are, but twice the work).
    takeRecorded: (event) => runner.currentState === 'active' && manager.takeRecorded(event),
    health: () => {
      const health = runner.health();
      return { ok: health.ok, detail: { ...health.detail, ...(timerError ? { timerError } : {}) } };
    },
    async stop() {
      stopped = true;
      wakeTimers?.();
      await runner.stop();
      await timers;
      await manager.settled();
    },
  };
}
