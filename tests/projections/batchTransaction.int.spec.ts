import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchTransaction, inline, write } from '../../src/projections/batchTransaction.js';
import type { Projection } from '../../src/projections/projection.js';
import { openProjectionEnv, type ProjectionEnv } from './helpers.js';

let env: ProjectionEnv;

beforeAll(async () => {
  env = await openProjectionEnv('batchtx');
  await sql`create table batch_rows (key text primary key, value int not null)`.execute(env.db);
});

afterAll(async () => {
  await env?.close();
});

async function storedRows(): Promise<Record<string, number>> {
  const result = await sql<{ key: string; value: number }>`select key, value from batch_rows order by key`.execute(env.db);
  return Object.fromEntries(result.rows.map((row) => [row.key, row.value]));
}

async function waitUntil(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('a read-model batch transaction (real PostgreSQL)', () => {
  it('inlined parameters reach PostgreSQL as the same values as bound ones', async () => {
    const cases: [string, unknown][] = [
      ['$1::text', `it's a "quote", a back\\slash, a $1, a newline\nand ünïcode €`],
      ['$1::text', ''],
      ['$1::text', null],
      ['$1::text', '\\\\'],
      ['$1::int8', 9_223_372_036_854_775_807n],
      ['$1::int8', -42n],
      ['$1::int4', 7],
      ['$1::bool', true],
      ['$1::text[]', ['plain', `quo"te`, "apos'trophe", 'com,ma', '{brace}', 'NULL', null, 'back\\slash', '']],
      ['$1::int8[]', ['1', '-2', null]],
      ['$1::timestamptz', new Date('2026-11-26T21:00:00.123Z')],
      ['$1::jsonb', JSON.stringify({ text: `a "b" \\ 'c'`, amountMinor: '12345678901234567890' })],
    ];
    for (const [expression, value] of cases) {
      const bound = await env.pool.query(`select (${expression})::text as value`, [value]);
      const inlined = await env.pool.query(inline(`select (${expression})::text as value`, [value]));
      expect(inlined.rows[0].value, `${expression} of ${JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? `${item}n` : item))}`).toEqual(bound.rows[0].value);
    }
    // $10 is its own parameter, not $1 followed by a 0; a value that looks like a placeholder stays a value.
    const values = ['$2', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];
    expect(inline('select $1, $10, $2', values)).toBe(`select '$2', 'j', 'b'`);
    expect(() => inline('select $3', ['a'])).toThrow(/no value for \$3/);
  });

  it('a batch that only writes takes one round trip, one that reads takes two, and a read sees the writes before it', async () => {
    await sql`truncate batch_rows`.execute(env.db);
    const writesOnly = await BatchTransaction.begin(env.pool);
    await write(writesOnly.db, sql`insert into batch_rows values (${'a'}, ${1})`);
    await write(writesOnly.db, sql`insert into batch_rows values (${'b'}, ${2})`);
    expect(await storedRows(), 'nothing is sent before the commit').toEqual({});
    await writesOnly.commit();
    writesOnly.release();
    expect(writesOnly.roundTrips).toBe(1);
    expect(await storedRows()).toEqual({ a: 1, b: 2 });

    const readsToo = await BatchTransaction.begin(env.pool);
    await write(readsToo.db, sql`insert into batch_rows values (${'c'}, ${3})`);
    const seen = await sql<{ total: number }>`select sum(value)::int as total from batch_rows`.execute(readsToo.db);
    expect(seen.rows[0]!.total, 'the read ran after the deferred insert, in the same transaction').toBe(6);
    await write(readsToo.db, sql`update batch_rows set value = value * 10 where key = ${'c'}`);
    await readsToo.commit();
    readsToo.release();
    expect(readsToo.roundTrips).toBe(2);
    expect(await storedRows()).toEqual({ a: 1, b: 2, c: 30 });
  });

  it('a deferred write that fails fails the batch where it is sent, and nothing of the batch lands', async () => {
    await sql`truncate batch_rows`.execute(env.db);
    await sql`insert into batch_rows values ('kept', 1)`.execute(env.db);
    const failing = await BatchTransaction.begin(env.pool);
    await write(failing.db, sql`insert into batch_rows values (${'new'}, ${2})`);
    await write(failing.db, sql`insert into batch_rows values (${'kept'}, ${3})`);
    await write(failing.db, sql`update batch_rows set value = 100`);
    await expect(failing.commit()).rejects.toMatchObject({ code: '23505' });
    await failing.rollback();
    expect(await storedRows()).toEqual({ kept: 1 });
    // Every connection the pool hands out afterwards is clean, not inside an aborted transaction.
    const clients = await Promise.all(Array.from({ length: 4 }, () => env.pool.connect()));
    for (const client of clients) {
      expect((await client.query<{ status: string }>(`select 'usable' as status`)).rows[0]!.status).toBe('usable');
      client.release();
    }
  });

  it('a runner names the one event whose deferred write fails at commit, and keeps the rows of the events before it', async () => {
    await sql`truncate batch_rows`.execute(env.db);
    const prefix = `batchrows-${randomUUID().slice(0, 8)}-`;
    const projection: Projection = {
      name: `batch-rows-${prefix}`,
      tables: ['batch_rows'],
      filter: { streamPrefixes: [prefix] },
      async apply(trx, events) {
        for (const event of events) {
          const { key, value } = event.data as { key: string; value: string };
          // `value` is text: the one that is not a number fails in PostgreSQL, only when the write is sent.
          await write(trx, sql`insert into batch_rows values (${key}, ${value}::int)`);
        }
      },
    };
    const append = (key: string, value: string) =>
      env.store.append(`${prefix}${key}`, [{ id: randomUUID(), type: 'RowWritten', data: { key, value } }], { expectedRevision: 'no_stream' });
    await append('first', '1');
    await append('second', '2');
    const poison = await append('poison', 'not a number');
    await append('after', '4');
    const runner = env.runner(projection, { batchSize: 50 });
    runner.start();
    await waitUntil(() => runner.health().detail.state === 'failing', 'the runner reports the failing event');
    const [poisonEvent] = await env.store.readStream(`${prefix}poison`);
    expect(runner.health().detail).toMatchObject({ state: 'failing', failingEventId: poisonEvent!.id });
    const checkpoint = await sql<{ position: bigint }>`select position from projection_checkpoints where name = ${projection.name}`.execute(env.db);
    expect(checkpoint.rows[0]!.position).toBeLessThan(poison.position);
    expect(await storedRows()).toEqual({ first: 1, second: 2 });
    await runner.stop();
  });
});
