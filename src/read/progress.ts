import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { PROGRESS_CHANNEL } from '../projections/runner.js';

interface Waiter {
  name: string;
  position: bigint;
  resolve: (reached: boolean) => void;
  timer: NodeJS.Timeout;
}

const MAX_WAITERS = 10_000;

/**
 * Read-your-writes: a query that carries `minPosition` waits, bounded, until the projection it reads
 * has passed that position. Projectors NOTIFY at each commit; waiters wake on it, never poll.
 */
export class ProjectionProgress {
  private readonly positions = new Map<string, bigint>();
  private readonly waiters = new Set<Waiter>();
  private listener: pg.Client | undefined;
  private closed = false;

  constructor(
    private readonly db: Kysely<unknown>,
    private readonly databaseUrl: string,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await this.listen();
  }

  /** True once `name` has applied everything up to `position`; false if `timeoutMs` passed first. */
  async waitFor(name: string, position: bigint, timeoutMs: number): Promise<boolean> {
    if ((this.positions.get(name) ?? -1n) >= position) return true;
    await this.refresh(name);
    if ((this.positions.get(name) ?? -1n) >= position) return true;
    if (timeoutMs <= 0 || this.waiters.size >= MAX_WAITERS) return false;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        name,
        position,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  private advance(name: string, position: bigint): void {
    if ((this.positions.get(name) ?? -1n) >= position) return;
    this.positions.set(name, position);
    for (const waiter of this.waiters) {
      if (waiter.name === name && position >= waiter.position) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve(true);
      }
    }
  }

  private async refresh(name?: string): Promise<void> {
    const result = name
      ? await sql<{ name: string; position: bigint }>`select name, position from projection_checkpoints where name = ${name}`.execute(this.db)
      : await sql<{ name: string; position: bigint }>`select name, position from projection_checkpoints`.execute(this.db);
    for (const row of result.rows) this.advance(row.name, row.position);
  }

  private async listen(attempt = 0): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.databaseUrl, connectionTimeoutMillis: 5_000, application_name: 'ledger read-your-writes' });
    try {
      await client.connect();
      client.on('notification', (message) => {
        const separator = message.payload?.lastIndexOf(':') ?? -1;
        if (separator <= 0) return;
        this.advance(message.payload!.slice(0, separator), BigInt(message.payload!.slice(separator + 1)));
      });
      client.on('error', (error) => {
        this.logger.warn({ err: error }, 'read-your-writes listener lost; reconnecting');
        this.listener = undefined;
        // What was heard may be gone: a server that crashed loses the batches it had committed
        // asynchronously, and their checkpoints with them. Positions are read afresh from now on,
        // and may be lower than heard, until the projector has applied those events again.
        this.positions.clear();
        client.end().catch(() => undefined);
        setTimeout(() => void this.listen(), 100);
      });
      await client.query(`listen ${PROGRESS_CHANNEL}`);
      if (this.closed) {
        // close() ran while we connected and found no listener to end.
        await client.end().catch(() => undefined);
        return;
      }
      this.listener = client;
      // Anything committed while we were not listening is found by reading.
      await this.refresh();
    } catch (error) {
      await client.end().catch(() => undefined);
      const delayMs = Math.min(100 * 2 ** attempt, 5_000);
      this.logger.warn({ err: error, delayMs }, 'read-your-writes listener could not connect; retrying');
      setTimeout(() => void this.listen(attempt + 1), delayMs);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters.clear();
    await this.listener?.end().catch(() => undefined);
  }
}
