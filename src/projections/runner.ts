import pg from 'pg';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Batch, EventStore, RecordedEvent, Subscription } from '../eventstore/port.js';
import type { Worker } from '../server.js';
import { batchPlannerConditions } from './batchPlanner.js';
import { liveTables, type Projection } from './projection.js';

export const PROGRESS_CHANNEL = 'projection_progress';
/** Every batch takes this lock shared; a rebuild's swap takes it exclusive for a moment. */
export const swapLockKey = (name: string) => sql`hashtext(${`projection-swap:${name}`})`;

export type RunnerState = 'starting' | 'standby' | 'active' | 'failing' | 'stopped';

export interface RunnerOptions {
  batchSize: number;
  logger: Logger;
  /** How often a standby tries to become active. */
  lockRetryMs?: number;
  /** Without exclusivity several runners apply at once; the checkpoint guard still keeps effects exactly-once. */
  exclusive?: boolean;
  /** Test hook: called inside the batch transaction after the rows are written, before commit. */
  beforeCommit?: (batch: Batch, trx: Transaction<unknown>) => Promise<void>;
  /**
   * For a projection with side effects (`beforeTransaction`): batches whose side effects may run
   * while earlier batches' still finish. Checkpoints still commit in log order, each only after its
   * own batch's side effects are done. 1 (the default) runs one batch at a time.
   */
  batchesInFlight?: number;
}

export interface ProjectionStatus {
  name: string;
  state: RunnerState;
  position: string;
  failingEventId: string | null;
  failingError: string | null;
  lagEvents: number | null;
  lagSeconds: number | null;
}

class CheckpointMovedError extends Error {}

class PoisonEventError extends Error {
  constructor(
    readonly event: RecordedEvent,
    readonly failure: unknown,
  ) {
    super(`projection failed on event ${event.id} at position ${event.position}: ${failure instanceof Error ? failure.message : String(failure)}`);
  }
}

const MAX_BACKOFF_MS = 30_000;
const TRANSIENT_BACKOFF_MAX_MS = 1_000;

/**
 * The leader's lock session sends nothing after taking its lock, so when the leader's host dies or
 * is cut off only TCP keepalives tell the server; with the OS defaults it keeps the session, and
 * the lock, for about two hours and no standby can take over. Here the server drops it after 10 s
 * of silence and 3 unanswered probes 5 s apart, about 25 s. The client probes after the same 10 s
 * (Node then sends 10 probes 1 s apart), so a cut-off leader notices too and stops applying.
 */
const LEADER_KEEPALIVE_IDLE_SECONDS = 10;
const LEADER_KEEPALIVE_INTERVAL_SECONDS = 5;
const LEADER_KEEPALIVE_COUNT = 3;
/** The server also drops the session when what it sent stays unacknowledged this long (Linux, PostgreSQL 12+). */
const LEADER_TCP_USER_TIMEOUT_MS = 25_000;
const LEADER_SESSION_OPTIONS = [
  `-c tcp_keepalives_idle=${LEADER_KEEPALIVE_IDLE_SECONDS}`,
  `-c tcp_keepalives_interval=${LEADER_KEEPALIVE_INTERVAL_SECONDS}`,
  `-c tcp_keepalives_count=${LEADER_KEEPALIVE_COUNT}`,
  `-c tcp_user_timeout=${LEADER_TCP_USER_TIMEOUT_MS}`,
].join(' ');

/**
 * Runs one projection: holds a PostgreSQL advisory lock so exactly one runner per projection is
 * active (others stand by and take over when the holder's session dies), subscribes from the stored
 * checkpoint, and commits each batch's rows with its checkpoint in one transaction.
 */
export class ProjectionRunner implements Worker {
  readonly name: string;
  private state: RunnerState = 'starting';
  private position = 0n;
  private stopped = false;
  private subscription: Subscription | undefined;
  private lockClient: pg.Client | undefined;
  private failingEventId: string | null = null;
  private failingError: string | null = null;
  private isolate = false;
  /** Consecutive failed attempts; any committed batch resets it, so one bad moment does not slow the runner for good. */
  private failures = 0;
  /** The last event of the newest batch of several events; a failure isolates events up to it. */
  private attemptedUntil = 0n;
  private isolateUntil = 0n;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Batches handed on but not yet committed, oldest first (only with batchesInFlight > 1). */
  private readonly inFlight: Promise<void>[] = [];
  private pipelineFailure: { error: unknown } | undefined;

  constructor(
    private readonly projection: Projection,
    private readonly db: Kysely<unknown>,
    private readonly store: EventStore,
    private readonly databaseUrl: string,
    private readonly options: RunnerOptions,
  ) {
    this.name = `projection:${projection.name}`;
  }

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  health() {
    return {
      ok: this.state !== 'failing',
      detail: { state: this.state, position: this.position.toString(), ...(this.failingEventId ? { failingEventId: this.failingEventId, error: this.failingError } : {}) },
    };
  }

  get currentState(): RunnerState {
    return this.state;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.subscription?.stop();
    await this.loop?.catch(() => undefined);
    await this.releaseLock();
    this.state = 'stopped';
  }

  /** Simulates a crash for tests: the session (and its lock) dies without a graceful stop. */
  async crash(): Promise<void> {
    this.stopped = true;
    this.lockClient?.connection.stream.destroy();
    this.lockClient = undefined;
    await this.subscription?.stop();
    await this.loop?.catch(() => undefined);
    this.state = 'stopped';
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.options.exclusive !== false && !(await this.tryLock())) {
          this.state = 'standby';
          await this.sleep(this.options.lockRetryMs ?? 1_000);
          continue;
        }
        this.position = await ensureCheckpoint(this.db, this.projection.name);
        // stop() may have come while we took the lock or read the checkpoint: it found no
        // subscription to stop, so one made now would run on and stop() would wait for it forever.
        if (this.stopped) break;
        if (this.state !== 'failing') this.state = 'active';
        this.options.logger.info({ projection: this.projection.name, position: this.position.toString() }, 'projection active');
        const pipelined = (this.options.batchesInFlight ?? 1) > 1 && this.projection.beforeTransaction !== undefined;
        this.subscription = this.store.subscribe(
          { after: this.position, filter: this.projection.filter, batchSize: this.isolate ? 1 : this.options.batchSize },
          (batch) => (pipelined ? this.handOn(batch) : this.applyBatch(batch)),
        );
        try {
          await this.subscription.done;
        } finally {
          await this.settlePipeline();
        }
        this.failures = 0;
      } catch (error) {
        if (this.stopped) break;
        await this.releaseLock();
        if (error instanceof CheckpointMovedError) {
          this.options.logger.info({ projection: this.projection.name }, 'checkpoint moved by another runner or a rebuild; resubscribing');
          continue;
        }
        this.failures += 1;
        this.isolate = true;
        this.isolateUntil = this.attemptedUntil;
        if (error instanceof PoisonEventError) {
          this.state = 'failing';
          this.failingEventId = error.event.id;
          this.failingError = error.failure instanceof Error ? error.failure.message : String(error.failure);
          await recordFailure(this.db, this.projection.name, error).catch(() => undefined);
          this.options.logger.error({ projection: this.projection.name, eventId: error.event.id, position: error.event.position.toString(), err: error.failure }, 'projection stopped at a poison event');
        } else {
          this.options.logger.warn({ projection: this.projection.name, err: error }, 'projection interrupted; retrying');
        }
        // A poison event backs off far; anything else (a lost race, a busy database) retries soon.
        const backoffMaxMs = error instanceof PoisonEventError ? MAX_BACKOFF_MS : TRANSIENT_BACKOFF_MAX_MS;
        await this.sleep(Math.min(100 * 2 ** Math.min(this.failures, 8), backoffMaxMs));
      }
    }
  }

  private async applyBatch(batch: Batch): Promise<void> {
    if (batch.events.length > 1) this.attemptedUntil = batch.events.at(-1)!.position;
    await this.sideEffects(batch);
    await this.commit(batch);
  }

  private async sideEffects(batch: Batch): Promise<void> {
    if (batch.events.length === 0 || !this.projection.beforeTransaction) return;
    try {
      await this.projection.beforeTransaction(batch.events);
    } catch (error) {
      if (batch.events.length === 1) throw new PoisonEventError(batch.events[0]!, error);
      throw error;
    }
  }

  /**
   * Starts a batch's side effects and returns while they run, so the next batch is read and started
   * at once instead of after the slowest step of this one. Its commit waits for the commit before
   * it and for its own side effects. The subscription waits only when batchesInFlight are uncommitted.
   * A failure stops the subscription; the run loop then waits for what is still running and resumes
   * from the last commit, where the side effects are idempotent.
   */
  private async handOn(batch: Batch): Promise<void> {
    if (this.pipelineFailure) throw this.pipelineFailure.error;
    if (batch.events.length > 1) this.attemptedUntil = batch.events.at(-1)!.position;
    const sideEffects = this.sideEffects(batch);
    // The newest batch still in flight commits just before this one; with none, all before it have committed.
    const previous = this.inFlight.at(-1) ?? Promise.resolve();
    const committed = previous.then(() => sideEffects).then(() => this.commit(batch));
    sideEffects.catch(() => undefined);
    committed.catch((error: unknown) => {
      if (this.pipelineFailure) return;
      this.pipelineFailure = { error };
      void this.subscription?.stop();
    });
    this.inFlight.push(committed);
    while (this.inFlight.length >= this.options.batchesInFlight!) await this.inFlight.shift();
  }

  /** Waits for every batch handed on; throws the first failure among them. */
  private async settlePipeline(): Promise<void> {
    await Promise.allSettled(this.inFlight.splice(0));
    const failure = this.pipelineFailure;
    this.pipelineFailure = undefined;
    if (failure) throw failure.error;
  }

  private async commit(batch: Batch): Promise<void> {
    const previous = this.position;
    await this.db.transaction().execute(async (trx) => {
      await advanceCheckpoint(trx, this.projection.name, previous, batch);
      try {
        if (batch.events.length > 0) await this.projection.apply(trx, batch.events, liveTables);
      } catch (error) {
        // A failed batch is retried one event at a time, so the event that fails is named exactly.
        if (batch.events.length === 1) throw new PoisonEventError(batch.events[0]!, error);
        throw error;
      }
      await this.options.beforeCommit?.(batch, trx);
    });
    this.position = batch.checkpoint;
    this.failures = 0;
    // Stay on one-event batches until past the batch that failed: otherwise every good event before
    // a poison one costs a failed full batch and a doubled backoff, and the poison is never reached.
    if (this.isolate && this.state !== 'failing' && this.position < this.isolateUntil) return;
    if (this.isolate || this.state === 'failing') {
      this.isolate = false;
      this.state = 'active';
      this.failingEventId = null;
      this.failingError = null;
      // Back to full batches: resubscribe from the new checkpoint.
      throw new CheckpointMovedError();
    }
  }

  private async tryLock(): Promise<boolean> {
    if (this.lockClient) return true;
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      connectionTimeoutMillis: 5_000,
      application_name: `ledger ${this.name}`,
      keepAlive: true,
      keepAliveInitialDelayMillis: LEADER_KEEPALIVE_IDLE_SECONDS * 1_000,
      options: LEADER_SESSION_OPTIONS,
    });
    client.on('error', () => {
      // Our session died, and with it the lock: stop applying; another runner may take over.
      this.lockClient = undefined;
      void this.subscription?.stop();
    });
    await client.connect();
    const result = await client.query<{ locked: boolean }>(`select pg_try_advisory_lock(hashtext($1)) as locked`, [`projection-leader:${this.projection.name}`]);
    if (result.rows[0]?.locked) {
      this.lockClient = client;
      return true;
    }
    await client.end();
    return false;
  }

  private async releaseLock(): Promise<void> {
    const client = this.lockClient;
    this.lockClient = undefined;
    await client?.end().catch(() => undefined);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      this.wake = wake;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}

export async function ensureCheckpoint(db: Kysely<unknown> | Transaction<unknown>, name: string): Promise<bigint> {
  await sql`insert into projection_checkpoints (name) values (${name}) on conflict (name) do nothing`.execute(db);
  const result = await sql<{ position: bigint }>`select position from projection_checkpoints where name = ${name}`.execute(db);
  return result.rows[0]!.position;
}

/**
 * Opens a batch's transaction in one statement: moves the checkpoint from exactly `previous` (any
 * other value means someone else applied meanwhile), announces the new one on commit, and first
 * (one-time filters run before the scan) takes the shared swap lock, so a rebuild cannot swap the
 * tables under the batch, turns off synchronous commit for this transaction and sets the batch
 * planner settings (batchPlanner.ts).
 *
 * Asynchronous commit is safe here because rows and checkpoint commit together: a crash can lose
 * only whole recent batches, which the projection applies again from the log; it cannot lose or
 * double an event's effect. It saves a WAL flush wait per batch, and the log itself stays durable.
 * One statement where lock, checkpoint and notify took three saves round trips, which on a busy
 * small machine cost more than the work they carry.
 */
async function advanceCheckpoint(trx: Transaction<unknown>, name: string, previous: bigint, batch: Batch): Promise<void> {
  if (batch.checkpoint <= previous) throw new Error(`checkpoint must increase: ${batch.checkpoint} after ${previous}`);
  const lastEventAt = batch.events.at(-1)?.metadata.recordedAt ?? null;
  const result = await sql<{ notified: string }>`update projection_checkpoints
      set position = ${batch.checkpoint}, updated_at = now(), last_event_at = coalesce(${lastEventAt}::timestamptz, last_event_at),
          failing_event_id = null, failing_error = null
    where name = ${name} and position = ${previous}
      and (select pg_advisory_xact_lock_shared(${swapLockKey(name)})) is not null
      and (select set_config('synchronous_commit', 'off', true)) is not null
      and ${batchPlannerConditions()}
    returning pg_notify(${PROGRESS_CHANNEL}, ${`${name}:${batch.checkpoint}`})::text as notified`.execute(trx);
  if (result.rows.length !== 1) throw new CheckpointMovedError();
}

async function recordFailure(db: Kysely<unknown>, name: string, error: PoisonEventError): Promise<void> {
  await sql`update projection_checkpoints set failing_event_id = ${error.event.id}, failing_error = ${error.message.slice(0, 1000)}, updated_at = now() where name = ${name}`.execute(db);
}
