/**
 * A catch-up subscription to `$all` with bounded batches, back-pressure and bounded reconnects.
 *
 * - Batches: events are collected up to `batchSize`, and a shorter batch is flushed when no event
 *   arrived for `idleFlushMs` or when the server reports that the subscription caught up.
 * - Back-pressure: the handler is awaited before the next event is read, so the client's stream
 *   stops pulling from gRPC once its small object buffer is full.
 * - Checkpoint-only batches: when the server's filter checkpoint (or caught-up position) passes
 *   the delivered checkpoint and nothing matching waits, the handler gets `{ events: [], checkpoint }`,
 *   at most once per `emptyBatchIntervalMs` (as on PostgreSQL), so a filtered subscriber's stored
 *   checkpoint keeps up with the log and readers waiting for a position are not held back.
 * - Reconnects: a transient failure re-opens the subscription after the last delivered checkpoint,
 *   with exponential backoff, at most `maxReconnectAttempts` times in a row.
 * - Positions: a resume point is `{ commit: p, prepare: p }` (see mapping.ts). The server treats a
 *   subscription's start as exclusive; events at or before the checkpoint are skipped here anyway.
 */
import { START, type AllStreamResolvedEvent, type AllStreamSubscription, type EventStoreDBClient, type Position } from '@eventstore/db-client';
import { clampPageSize, EventStoreError, type Batch, type RecordedEvent, type SubscribeOptions, type Subscription } from '../port.js';
import { commitPositionOf, decodeRecordedEvent, isTransientError, planFilter, toClientPosition, type FilterPlan, type FilterWindow } from './mapping.js';

export interface EsdbLogger {
  debug?(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
}

export interface SubscriptionTuning {
  idleFlushMs: number;
  /** A partial batch waits at most this long, however steadily events trickle in. */
  maxBatchDelayMs: number;
  /** For servers older than 23.10, which never send `caughtUp`: this long without events counts as caught up. */
  quietCaughtUpMs: number;
  maxReconnectAttempts: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** A checkpoint-only batch follows the previous one after at least this long. */
  emptyBatchIntervalMs: number;
  /**
   * The server filter's window (see FilterWindow). 1 × 1: live, a checkpoint follows every event of
   * `$all`, so a single filtered-out append moves the subscriber's checkpoint. The price is paid
   * catching up: the server scans one event per page. Larger values catch up in fewer pages but
   * leave a filtered subscriber up to `maxSearchWindow × checkpointInterval` events behind the log
   * while nothing matches.
   */
  filterWindow: FilterWindow;
}

export const DEFAULT_SUBSCRIPTION_TUNING: SubscriptionTuning = {
  idleFlushMs: 20,
  maxBatchDelayMs: 200,
  quietCaughtUpMs: 500,
  maxReconnectAttempts: 10,
  backoffInitialMs: 100,
  backoffMaxMs: 5_000,
  emptyBatchIntervalMs: 50,
  filterWindow: { maxSearchWindow: 1, checkpointInterval: 1 },
};

const DEFAULT_BATCH_SIZE = 500;
const UNSUBSCRIBE_TIMEOUT_MS = 2_000;

type Step =
  | { kind: 'event'; result: IteratorResult<AllStreamResolvedEvent> }
  | { kind: 'error'; error: unknown }
  | { kind: 'stop' }
  | { kind: 'wake' }
  | { kind: 'idle' }
  | { kind: 'quiet' }
  | { kind: 'checkpoint' };

type Attempt = { kind: 'stopped' } | { kind: 'lost'; reason: unknown };

/** The read in flight; `step` is set once it settled. */
interface PendingRead {
  step?: Step;
}

export class EsdbCatchUpSubscription implements Subscription {
  readonly done: Promise<void>;
  private readonly plan: FilterPlan;
  private readonly batchSize: number;
  private stopRequested = false;
  /**
   * Ends the wait in progress (a pass of the loop, or a backoff sleep). Each wait installs its own
   * and removes it when it ends: the loop never waits on a promise that outlives one wait, since
   * every wait on such a promise would leave a reaction on it for the subscription's life.
   */
  private interruptWait: (() => void) | undefined;
  /** Checkpoint of the last batch the handler accepted: the resume point. */
  private checkpoint: bigint;
  private warnedOfPrepareZero = false;
  /** Set once the server has sent `caughtUp`; from then on the quiet-period fallback is off. */
  private serverReportsCaughtUp = false;

  constructor(
    private readonly client: EventStoreDBClient,
    private readonly options: SubscribeOptions,
    private readonly handler: (batch: Batch) => Promise<void>,
    private readonly logger: EsdbLogger,
    private readonly tuning: SubscriptionTuning = DEFAULT_SUBSCRIPTION_TUNING,
  ) {
    this.batchSize = clampPageSize(options.batchSize, DEFAULT_BATCH_SIZE);
    this.plan = planFilter(options.filter);
    const { maxSearchWindow, checkpointInterval } = tuning.filterWindow;
    for (const [name, value] of [['maxSearchWindow', maxSearchWindow], ['checkpointInterval', checkpointInterval]] as const) {
      if (!Number.isSafeInteger(value) || value < 1) throw new EventStoreError(`subscription filterWindow.${name} must be a positive integer, got ${String(value)}`);
    }
    const after = options.after ?? 0n;
    if (typeof after !== 'bigint' || after < 0n) throw new EventStoreError(`after must be a non-negative bigint, got ${String(after)}`);
    this.checkpoint = after;
    this.done = this.run();
    // `done` is also awaited by stop(); this keeps an unobserved failure from crashing the process.
    this.done.catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    this.interruptWait?.();
    await this.done.catch(() => undefined);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopRequested) {
      const attempt = await this.consume(() => (failures = 0));
      if (attempt.kind === 'stopped') return;
      failures += 1;
      const reason = attempt.reason instanceof Error ? attempt.reason.message : String(attempt.reason);
      if (failures > this.tuning.maxReconnectAttempts) {
        throw new EventStoreError(`EventStoreDB subscription lost after ${this.tuning.maxReconnectAttempts} reconnect attempts: ${reason}`, { cause: attempt.reason });
      }
      const delayMs = Math.min(this.tuning.backoffInitialMs * 2 ** (failures - 1), this.tuning.backoffMaxMs);
      const jitteredMs = Math.round(delayMs / 2 + Math.random() * (delayMs / 2));
      this.logger.warn({ attempt: failures, delayMs: jitteredMs, checkpoint: this.checkpoint.toString(), reason }, 'EventStoreDB subscription interrupted; resubscribing');
      await this.sleepUnlessStopped(jitteredMs);
    }
  }

  /** One server subscription, from open to stop or failure. Throws on a non-transient failure. */
  private async consume(onHealthy: () => void): Promise<Attempt> {
    /** Ends the pass in progress with a step; undefined between passes (the flags below carry the news). */
    let interrupt: ((step: Step) => void) | undefined;
    let caughtUpPending = false;
    let confirmed = false;
    let quietReported = false;
    let serverCheckpoint: bigint | undefined;
    let highestSeen = this.checkpoint;
    const buffer: RecordedEvent[] = [];
    let bufferStartedAt = 0;
    let lastEmptyBatchAt = Number.NEGATIVE_INFINITY;
    /** The server vouched for a position past the delivered checkpoint, and nothing matching waits in the buffer. */
    const checkpointAhead = () => buffer.length === 0 && serverCheckpoint !== undefined && serverCheckpoint > this.checkpoint;
    const emptyBatchWaitMs = () => lastEmptyBatchAt + this.tuning.emptyBatchIntervalMs - Date.now();

    const fromPosition = this.checkpoint > 0n ? toClientPosition(this.checkpoint) : START;
    const subscription: AllStreamSubscription = this.client.subscribeToAll({
      fromPosition,
      resolveLinkTos: false,
      requiresLeader: true,
      filter: this.plan.toClientFilter((position: Position) => {
        // Servers before the fix of KurrentDB #4975 (24.10 and 25.0 patch releases) could send, after
        // an empty page, the log's end as commit with prepare 0; taken as a resume point by commit,
        // it skips events. Such a checkpoint is ignored.
        if (position.prepare === 0n && position.commit > 0n) {
          if (!this.warnedOfPrepareZero) this.logger.warn({ commit: position.commit.toString() }, 'EventStoreDB sent a filter checkpoint with prepare 0; ignored (KurrentDB #4975): upgrade to a patched 24.10 or 25.0');
          this.warnedOfPrepareZero = true;
          return;
        }
        if (serverCheckpoint === undefined || position.commit > serverCheckpoint) serverCheckpoint = position.commit;
        // When not due yet, the pass in progress has a timer for it.
        if (checkpointAhead() && emptyBatchWaitMs() <= 0) interrupt?.({ kind: 'checkpoint' });
      }, this.tuning.filterWindow),
    });
    // The iterator reports errors; this listener only keeps a late one from being an unhandled 'error'.
    subscription.on('error', () => undefined);
    subscription.on('confirmation', () => {
      confirmed = true;
      onHealthy();
    });
    subscription.on('caughtUp', () => {
      this.serverReportsCaughtUp = true;
      caughtUpPending = true;
      interrupt?.({ kind: 'wake' });
    });
    subscription.on('fellBehind', () => this.logger.debug?.({ checkpoint: this.checkpoint.toString() }, 'EventStoreDB subscription fell behind'));

    const iterator = subscription[Symbol.asyncIterator]();
    let pending: PendingRead | undefined;
    /** Starts the next read unless one is in flight. Its outcome ends the pass in progress, if any, or waits for the next. */
    const startRead = (): PendingRead => {
      if (!pending) {
        const entry: PendingRead = {};
        const settle = (step: Step) => {
          entry.step = step;
          interrupt?.(step);
        };
        iterator.next().then(
          (result) => settle({ kind: 'event', result }),
          (error: unknown) => settle({ kind: 'error', error }),
        );
        pending = entry;
      }
      return pending;
    };
    /** Nothing the server sent so far is waiting unread: every earlier event is in `buffer` or delivered. */
    const drained = () => pending !== undefined && pending.step === undefined && subscription.readableLength === 0;

    /**
     * One pass: the outcome of the read in flight, or whichever comes first of a timer, a wake-up
     * (caught up) and stop. Everything it waits on is created for it and released when it ends;
     * the read's one reaction was attached when the read started.
     */
    const nextStep = (timers: readonly { ms: number; step: Step }[]): Promise<Step> => {
      const read = startRead();
      if (read.step) return Promise.resolve(read.step);
      return new Promise<Step>((resolve) => {
        let handles: ReturnType<typeof setTimeout>[] = [];
        let ended = false;
        const end = (step: Step) => {
          if (ended) return;
          ended = true;
          for (const handle of handles) clearTimeout(handle);
          interrupt = undefined;
          this.interruptWait = undefined;
          resolve(step);
        };
        interrupt = end;
        this.interruptWait = () => end({ kind: 'stop' });
        handles = timers.map(({ ms, step }) => setTimeout(() => end(step), ms));
      });
    };

    const deliver = async () => {
      if (buffer.length === 0) return;
      const events = buffer.splice(0, buffer.length);
      let checkpoint = events.at(-1)!.position;
      if (serverCheckpoint !== undefined && serverCheckpoint > checkpoint && drained()) checkpoint = serverCheckpoint;
      await this.handler({ events, checkpoint });
      this.checkpoint = checkpoint;
    };

    /** Nothing matched up to the server's checkpoint: the handler stores it, and a reconnect resumes there. Call when drained. */
    const deliverCheckpoint = async () => {
      const checkpoint = serverCheckpoint!;
      lastEmptyBatchAt = Date.now();
      await this.handler({ events: [], checkpoint });
      this.checkpoint = checkpoint;
    };

    const reportCaughtUp = async () => {
      await deliver();
      if (checkpointAhead() && drained()) await deliverCheckpoint();
      this.options.onCaughtUp?.(this.checkpoint);
    };

    try {
      while (!this.stopRequested) {
        const timers: { ms: number; step: Step }[] = [];
        if (buffer.length > 0) {
          const untilDeadlineMs = bufferStartedAt + this.tuning.maxBatchDelayMs - Date.now();
          timers.push({ ms: Math.max(0, Math.min(this.tuning.idleFlushMs, untilDeadlineMs)), step: { kind: 'idle' } });
        }
        if (!this.serverReportsCaughtUp && confirmed && !quietReported) timers.push({ ms: this.tuning.quietCaughtUpMs, step: { kind: 'quiet' } });
        if (checkpointAhead() && emptyBatchWaitMs() > 0) timers.push({ ms: emptyBatchWaitMs(), step: { kind: 'checkpoint' } });
        const step = await nextStep(timers);

        switch (step.kind) {
          case 'stop':
            return { kind: 'stopped' };
          case 'error':
            pending = undefined;
            if (this.stopRequested) return { kind: 'stopped' };
            // Buffered events are not lost: the next subscription starts at the last delivered checkpoint.
            if (isTransientError(step.error)) return { kind: 'lost', reason: step.error };
            throw step.error;
          case 'event': {
            pending = undefined;
            if (step.result.done) return { kind: 'lost', reason: new EventStoreError('the server ended the subscription') };
            onHealthy();
            const resolved = step.result.value;
            const position = commitPositionOf(resolved);
            if (position === undefined || position <= highestSeen) break;
            highestSeen = position;
            const recorded = resolved.event;
            if (!recorded || !this.plan.matches(recorded.streamId, recorded.type)) break;
            if (buffer.length === 0) bufferStartedAt = Date.now();
            buffer.push(decodeRecordedEvent(resolved));
            quietReported = false;
            if (buffer.length >= this.batchSize) await deliver();
            break;
          }
          case 'wake':
          case 'checkpoint':
            break;
          case 'idle':
            await deliver();
            break;
          case 'quiet':
            if (drained()) {
              quietReported = true;
              await reportCaughtUp();
            }
            break;
        }

        if (caughtUpPending && !this.stopRequested) {
          startRead();
          // Let a read of an already buffered event settle before judging whether anything is unread.
          await new Promise((resolve) => setImmediate(resolve));
          if (drained()) {
            caughtUpPending = false;
            await reportCaughtUp();
          }
        } else if (!this.stopRequested && checkpointAhead() && emptyBatchWaitMs() <= 0 && subscription.readableLength === 0) {
          // Only when nothing is queued unread (else the next read comes first, and this again after it).
          startRead();
          await new Promise((resolve) => setImmediate(resolve));
          if (!this.stopRequested && checkpointAhead() && drained()) await deliverCheckpoint();
        }
      }
      return { kind: 'stopped' };
    } finally {
      interrupt = undefined;
      // A read still in flight has its reactions: its failure after the close is not unhandled.
      await this.close(subscription);
    }
  }

  private async close(subscription: AllStreamSubscription): Promise<void> {
    let timeout: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      subscription.unsubscribe().catch(() => undefined),
      new Promise<void>((resolve) => (timeout = setTimeout(resolve, UNSUBSCRIBE_TIMEOUT_MS))),
    ]);
    clearTimeout(timeout);
    subscription.destroy();
  }

  private async sleepUnlessStopped(ms: number): Promise<void> {
    if (this.stopRequested) return;
    await new Promise<void>((resolve) => {
      const end = () => {
        clearTimeout(timeout);
        this.interruptWait = undefined;
        resolve();
      };
      const timeout = setTimeout(end, ms);
      this.interruptWait = end;
    });
  }
}
