import pg from 'pg';
import { Kysely, PostgresDialect, type CompiledQuery, type RawBuilder, type Transaction } from 'kysely';

// pg's own conversion of a parameter to text (arrays, dates, bigints, JSON); untyped in @types/pg.
const { prepareValue } = (pg as unknown as { utils: { prepareValue(value: unknown): string | Buffer | null } }).utils;

/** Raised by `projection_checkpoint_moved`: the batch's checkpoint was no longer where it started. */
export const CHECKPOINT_MOVED_SQLSTATE = 'LP001';

const batches = new WeakMap<Kysely<unknown>, BatchTransaction>();

/**
 * A read-model batch's transaction in as few round trips as its reads allow. Statements whose
 * results nobody reads (`begin`, the checkpoint move, the rows' upserts) wait and travel with the
 * next statement that must answer (a read) or with `commit`, as one multi-statement query of the
 * simple protocol, parameters inlined as literals. A batch that only writes is one round trip; one
 * that reads first, two. One per statement (five to eight a batch) cost more than the work they
 * carried at low rates, where every event is a batch of its own in each read model.
 *
 * A deferred statement fails where it is sent: at the next read or at commit. PostgreSQL skips the
 * rest of the query and the transaction is rolled back, so nothing of the batch lands either way.
 */
export class BatchTransaction {
  /** The batch's queries: reads go out at once with whatever waited; hand it to `apply`. */
  readonly db: Transaction<unknown>;
  private pending: string[] = ['begin'];
  private roundTripCount = 0;

  private constructor(private readonly client: pg.PoolClient) {
    const session = {
      query: async (text: string, values: readonly unknown[]) => this.send(inline(text, values)),
      release: () => undefined,
    };
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: { connect: async () => session, end: async () => undefined } as unknown as pg.Pool }) });
    batches.set(db, this);
    this.db = db as unknown as Transaction<unknown>;
  }

  static async begin(pool: pg.Pool): Promise<BatchTransaction> {
    return new BatchTransaction(await pool.connect());
  }

  /** Queues a statement whose result nobody needs; it goes out with the next read or the commit. */
  defer(query: CompiledQuery): void {
    this.pending.push(inline(query.sql, query.parameters));
  }

  get roundTrips(): number {
    return this.roundTripCount;
  }

  /** Sends what waits, so its failures surface now. */
  async flush(): Promise<void> {
    if (this.pending.length > 0) await this.send();
  }

  async commit(): Promise<void> {
    await this.send('commit');
  }

  /** Ends the transaction after a failure and returns the connection, or drops it if it is not clean. */
  async rollback(): Promise<void> {
    this.pending = [];
    try {
      await this.client.query('rollback');
      this.client.release();
    } catch (error) {
      this.client.release(error instanceof Error ? error : new Error(String(error)));
    }
  }

  release(): void {
    this.client.release();
  }

  private async send(statement?: string): Promise<pg.QueryResult> {
    if (statement !== undefined) this.pending.push(statement);
    const text = this.pending.join(';\n');
    this.pending = [];
    this.roundTripCount += 1;
    const result = (await this.client.query(text)) as pg.QueryResult | pg.QueryResult[];
    // A multi-statement query answers with each statement's result; the caller asked for the last.
    return Array.isArray(result) ? result.at(-1)! : result;
  }
}

/**
 * Runs a write whose result the caller does not need: deferred inside a batch transaction, at once
 * anywhere else (a rebuild's transaction, a test's).
 */
export async function write(db: Kysely<unknown> | Transaction<unknown>, query: RawBuilder<unknown>): Promise<void> {
  const batch = batches.get(db as Kysely<unknown>);
  if (batch) batch.defer(query.compile(db));
  else await query.execute(db);
}

/**
 * The statement with its `$n` parameters replaced by literals, converted as pg converts parameters
 * and quoted by pg's `escapeLiteral`. Untyped literals resolve from context like untyped parameters.
 * Our statements hold no dollar-quoted strings, so every `$n` is a parameter.
 */
export function inline(text: string, values: readonly unknown[]): string {
  if (values.length === 0) return text;
  return text.replace(/\$(\d+)/g, (placeholder, index: string) => {
    const position = Number(index) - 1;
    if (position < 0 || position >= values.length) throw new Error(`no value for ${placeholder} in a batch statement`);
    const value = prepareValue(values[position]);
    if (value === null) return 'null';
    if (Buffer.isBuffer(value)) throw new Error('binary parameters are not inlined in batch statements');
    return pg.escapeLiteral(value);
  });
}
