import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { EventStore, GlobalFilter } from '../../eventstore/port.js';
import { ageOfNextEventMs } from '../../projections/checkpoints.js';
import { HttpProblem } from '../../shared/http/problem.js';

export interface TransferAdmissionOptions {
  /** New transfers are refused while the oldest event the process manager has not taken is older than this. 0: never refused. */
  maxLagMs: number;
  /** New transfers are refused while the oldest append queued in this process has waited longer than this. 0: never refused. */
  maxAppendWaitMs?: number;
  /** How long one measurement answers for; concurrent requests share it. */
  refreshMs?: number;
  /** A manager whose checkpoint moved within this is running; a stopped one holds nothing back. */
  liveWithinMs?: number;
  logger?: Logger;
}

interface Measurement {
  lagMs: number;
  live: boolean;
  atMs: number;
}

const DEFAULT_REFRESH_MS = 250;
const DEFAULT_LIVE_WITHIN_MS = 30_000;
const RETRY_AFTER_MAX_SECONDS = 10;

/**
 * Back-pressure for POST /v1/transfers. Each accepted transfer is four more steps for the process
 * manager; past its capacity the backlog grows until transfers miss their deadline and are
 * compensated, which is more work again (bench:transfers at 1,000 offered/s: 10,058 of 30,000
 * failed their deadline, and completions fell to 338/s). Refusing with 503 and Retry-After while
 * the manager is behind keeps what is accepted within reach of its deadline. Measured from the
 * manager's checkpoint, so it holds wherever the manager runs; a manager that is not running
 * (checkpoint not moving) is a health problem, not a reason to refuse.
 */
export class TransferAdmission {
  private measurement: Measurement | undefined;
  private measuring: Promise<Measurement> | undefined;

  constructor(
    private readonly db: Kysely<unknown>,
    private readonly store: EventStore,
    private readonly manager: { name: string; filter: GlobalFilter },
    private readonly options: TransferAdmissionOptions,
  ) {}

  /**
   * Throws a 503 problem when the appends are not keeping up, or the process manager is too far
   * behind, to take another transfer.
   */
  async admit(nowMs = Date.now()): Promise<void> {
    this.admitAppend(nowMs);
    if (this.options.maxLagMs <= 0) return;
    const measured = await this.current(nowMs);
    if (!measured.live || measured.lagMs <= this.options.maxLagMs) return;
    const retryAfterSeconds = Math.min(RETRY_AFTER_MAX_SECONDS, Math.max(1, Math.ceil((measured.lagMs - this.options.maxLagMs) / 1000)));
    throw new HttpProblem(
      503,
      'transfers_backlogged',
      `the transfer process manager is ${(measured.lagMs / 1000).toFixed(1)} s behind (bound ${(this.options.maxLagMs / 1000).toFixed(1)} s); nothing was recorded, retry later`,
      { 'retry-after': String(retryAfterSeconds) },
    );
  }

  /**
   * The manager's lag does not see a write path that is itself the bottleneck. Every accepted
   * transfer is five appends; while they queue in this process (more requests in flight than the
   * group commits take), another only lengthens the queue, which nothing else bounds.
   */
  private admitAppend(nowMs: number): void {
    const maxWaitMs = this.options.maxAppendWaitMs ?? 0;
    const waitedMs = this.store.oldestAppendWaitMs?.(nowMs) ?? 0;
    if (maxWaitMs <= 0 || waitedMs <= maxWaitMs) return;
    throw new HttpProblem(
      503,
      'transfers_backlogged',
      `appends are waiting ${(waitedMs / 1000).toFixed(1)} s for the database (bound ${(maxWaitMs / 1000).toFixed(1)} s); nothing was recorded, retry later`,
      { 'retry-after': '1' },
    );
  }

  private async current(nowMs: number): Promise<Measurement> {
    if (this.measurement && nowMs - this.measurement.atMs < (this.options.refreshMs ?? DEFAULT_REFRESH_MS)) return this.measurement;
    this.measuring ??= this.measure().then(
      (measured) => {
        this.measuring = undefined;
        this.measurement = measured;
        return measured;
      },
      (error: unknown) => {
        this.measuring = undefined;
        // Fail open: the append itself answers for a database that is down.
        this.options.logger?.warn({ err: error }, 'transfer admission could not measure the process manager; admitting');
        return { lagMs: 0, live: false, atMs: Date.now() };
      },
    );
    return this.measuring;
  }

  private async measure(): Promise<Measurement> {
    const result = await sql<{ position: bigint; since_update_ms: number }>`
      select position, (extract(epoch from clock_timestamp() - updated_at) * 1000)::float8 as since_update_ms
        from projection_checkpoints where name = ${this.manager.name}`.execute(this.db);
    const row = result.rows[0];
    const atMs = Date.now();
    if (!row) return { lagMs: 0, live: false, atMs };
    const lagMs = await ageOfNextEventMs(this.store, BigInt(row.position), this.manager.filter, atMs);
    return { lagMs, live: row.since_update_ms <= (this.options.liveWithinMs ?? DEFAULT_LIVE_WITHIN_MS), atMs };
  }
}
