/**
 * Projection benchmark (issue 4): rebuild rate, steady apply rate and history-query latency, each
 * against a baseline measured in the same run.
 *
 *   npm run bench:projections -- [--events 2000000] [--hot-rows 300000] [--accounts 10000]
 *       [--backlog 200000] [--steady-seconds 20] [--steady-rate 25000] [--steady-writers 16] [--writer-in-process] [--batch 1000]
 *       [--history-seconds 20] [--history-warmup-seconds 5] [--history-rate 200] [--write-rate 300] [--raw-queries 2000]
 *       [--seed-concurrency 4] [--port 54341] [--json out.json] [--no-analyze] [--read-api-in-process]
 *       [--projector-nice 0]
 *
 * Database: DATABASE_URL when set (a role that may create databases): a fresh database
 * bench_proj_<stamp> is created and dropped at the end. Without it, a durable embedded PostgreSQL
 * in ./.bench-data.
 *
 * Phases, in one run:
 *  1. Seed --events valid domain events straight through PostgresEventStore.append (batches of up
 *     to 1,000 events per stream, --seed-concurrency streams at once, on a seed-only pool with
 *     synchronous_commit=off): customers (registered + activated), accounts (AccountOpened),
 *     deposits/withdrawals with the right balanceAfterMinor and balanced legs, hold pairs; one hot
 *     account with --hot-rows movements.
 *  2. Baseline: store.readAll pages of 1,000 from 0 to the head (raw read rate of the log).
 *  3. Rebuild: each projection's checkpoint is set to the head (the live tables are empty: nothing
 *     was projected yet), then rebuildProjection(db, store, projection, 'rebuild') replays the log
 *     into shadow tables and swaps them in. This is also how the read models get built.
 *  4. Catch-up: --backlog deposits are appended with no projector running, then ProjectionRunners
 *     for `transactions` and `accounts` (PROJECTION_BATCH_SIZE --batch) start and the time to reach
 *     the head is measured. Steady: the runners stay up while deposits are appended at
 *     --steady-rate for --steady-seconds; applied events/s and lag are sampled. The steady writer
 *     is a child process of its own (bench/projections-writer.ts), as the write API would be, so
 *     the runners do not share an event loop with it, with --steady-writers concurrent appenders
 *     of 20 events each (12 reached about 20,000/s of the 25,000 offered on 2 cores; 16 reach
 *     22,000-24,000); --writer-in-process keeps it in this one.
 *  5. History: the raw SELECT of the query API on a pg client (p50/p99 over --raw-queries random
 *     pages: the hot account's first page and deep cursors, random accounts), then GET
 *     /v1/accounts/:id/transactions through the read API at a fixed, evenly paced --history-rate
 *     (open loop, child process) for --history-seconds with the same mix; both while deposits are
 *     appended at --write-rate and the runners apply them. The read API runs as `ledger read-api`
 *     in its own process, as deployed; --read-api-in-process serves it from this process instead,
 *     beside the writer and the runners, on one event loop. --projector-nice N (1..19) moves the
 *     projections for this phase into `ledger projector`, a process of their own at nice N.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Kysely, Transaction } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { PostgresEventStore } from '../src/eventstore/postgres/eventStore.js';
import type { EventStore, EventToAppend, RecordedEvent } from '../src/eventstore/port.js';
import { projectionStatuses } from '../src/projections/checkpoints.js';
import type { Projection, TableNames } from '../src/projections/projection.js';
import { rebuildProjection } from '../src/projections/rebuild.js';
import { projectionNamed } from '../src/projections/registry.js';
import { ProjectionRunner } from '../src/projections/runner.js';
import { CursorCodec } from '../src/read/http.js';
import { openRuntime, type Runtime } from '../src/runtime.js';
import { buildLedger } from '../src/server.js';
import { mintToken, resolveHmacSecret } from '../src/shared/auth/keys.js';
import { accountStream, customerStream } from '../src/write/streams.js';
import {
  accountOpened,
  createDatabase,
  customerEvents,
  dropDatabase,
  fmt,
  machineFacts,
  movements,
  openServer,
  percentile,
  runLoadgen,
  sleep,
  sortedNumbers,
  startLedgerProcess,
  urlFor,
  type Server,
} from './projections-support.js';
import { machineTicks, processTicks } from './commands-probes.js';
import { startWriter, startWriterProcess } from './projections-writer.js';

const JWT_SECRET = 'bench-projections-secret-long-enough-for-hs256-0123456789';

const { values: flags } = parseArgs({
  options: {
    events: { type: 'string', default: '2000000' },
    'hot-rows': { type: 'string', default: '300000' },
    accounts: { type: 'string', default: '10000' },
    backlog: { type: 'string', default: '200000' },
    'steady-seconds': { type: 'string', default: '20' },
    'steady-rate': { type: 'string', default: '25000' },
    batch: { type: 'string', default: '1000' },
    'history-seconds': { type: 'string', default: '20' },
    'history-warmup-seconds': { type: 'string', default: '5' },
    'history-rate': { type: 'string', default: '200' },
    'write-rate': { type: 'string', default: '300' },
    'writer-in-process': { type: 'boolean', default: false },
    'steady-writers': { type: 'string', default: '16' },
    'raw-queries': { type: 'string', default: '2000' },
    'seed-concurrency': { type: 'string', default: '4' },
    port: { type: 'string', default: '54341' },
    json: { type: 'string' },
    'no-analyze': { type: 'boolean', default: false },
    'read-api-in-process': { type: 'boolean', default: false },
    'projector-nice': { type: 'string', default: '0' },
  },
  strict: true,
});

function count(name: Exclude<keyof typeof flags, 'no-analyze' | 'read-api-in-process' | 'projector-nice'>): number {
  const value = Number(flags[name]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number`);
  return Math.floor(value);
}

const EVENTS = count('events');
const HOT_ROWS = count('hot-rows');
const ACCOUNTS = Math.max(1, count('accounts'));
const BACKLOG = count('backlog');
const STEADY_SECONDS = count('steady-seconds');
const STEADY_RATE = count('steady-rate');
const BATCH = Math.min(1000, Math.max(1, count('batch')));
const HISTORY_SECONDS = count('history-seconds');
const HISTORY_WARMUP_SECONDS = count('history-warmup-seconds');
const HISTORY_RATE = Math.max(1, count('history-rate'));
const WRITE_RATE = count('write-rate');
const STEADY_WRITERS = Math.max(1, count('steady-writers'));
const RAW_QUERIES = Math.max(1, count('raw-queries'));
const SEED_CONCURRENCY = Math.max(1, count('seed-concurrency'));
const APPEND_MAX = 1000;
const PAGE = 50;
const READ_API_IN_PROCESS = flags['read-api-in-process'];
const PROJECTOR_NICE = Number(flags['projector-nice']);
if (!Number.isInteger(PROJECTOR_NICE) || PROJECTOR_NICE < 0 || PROJECTOR_NICE > 19) throw new Error('--projector-nice must be an integer 0..19');

const GOAL_APPLY = 20_000;
const GOAL_REBUILD_SECONDS_PER_MILLION = 60;
const GOAL_HISTORY_P99_MS = 15;

const silent = pino({ level: 'silent' });

// ---------------------------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------------------------

interface Seeded {
  hotAccountId: string;
  accountIds: string[];
  balances: Map<string, { minor: bigint }>;
  events: number;
  seconds: number;
}

async function appendAll(store: EventStore, stream: string, events: EventToAppend[]): Promise<void> {
  for (let start = 0; start < events.length; start += APPEND_MAX) {
    await store.append(stream, events.slice(start, start + APPEND_MAX), { expectedRevision: 'any' });
  }
}

async function seed(databaseUrl: string): Promise<Seeded> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: SEED_CONCURRENCY + 1, options: '-c synchronous_commit=off', application_name: 'bench-seed' });
  const store = new PostgresEventStore(pool, databaseUrl, { logger: silent });
  const started = performance.now();
  let written = 0;
  try {
    const customers = Array.from({ length: Math.ceil((ACCOUNTS + 1) / 2) }, () => randomUUID());
    const hotAccountId = randomUUID();
    const accountIds = Array.from({ length: ACCOUNTS }, () => randomUUID());
    const balances = new Map<string, { minor: bigint }>();
    const fixed = customers.length * 2 + ACCOUNTS + 1;
    const perAccountTotal = Math.max(0, EVENTS - fixed - HOT_ROWS);
    const perAccount = Math.floor(perAccountTotal / ACCOUNTS);
    let remainder = perAccountTotal - perAccount * ACCOUNTS;

    type Task = () => Promise<number>;
    const tasks: Task[] = [];
    // The hot account first: its appends are sequential (one stream), the rest overlaps with it.
    tasks.push(async () => {
      const balance = { minor: 0n };
      balances.set(hotAccountId, balance);
      await store.append(accountStream(hotAccountId), [accountOpened(hotAccountId, customers[0]!)], { expectedRevision: 'no_stream' });
      let done = 1;
      while (done - 1 < HOT_ROWS) {
        const chunk = movements(hotAccountId, Math.min(APPEND_MAX, HOT_ROWS - (done - 1)), balance);
        await store.append(accountStream(hotAccountId), chunk, { expectedRevision: 'any' });
        done += chunk.length;
        written += chunk.length;
      }
      return 1;
    });
    for (const customerId of customers) tasks.push(async () => (await store.append(customerStream(customerId), customerEvents(customerId), { expectedRevision: 'no_stream' }), 2));
    accountIds.forEach((accountId, index) => {
      const extra = remainder > 0 ? 1 : 0;
      remainder -= extra;
      const count = perAccount + extra;
      tasks.push(async () => {
        const balance = { minor: 0n };
        balances.set(accountId, balance);
        const events = [accountOpened(accountId, customers[Math.floor(index / 2)]!), ...movements(accountId, count, balance)];
        await appendAll(store, accountStream(accountId), events);
        return events.length;
      });
    });
    let next = 0;
    let lastReport = performance.now();
    await Promise.all(
      Array.from({ length: SEED_CONCURRENCY }, async () => {
        while (next < tasks.length) {
          written += await tasks[next++]!();
          if (performance.now() - lastReport > 10_000) {
            lastReport = performance.now();
            console.log(`  seeded ${fmt(written)} events (${fmt(written / ((lastReport - started) / 1000))}/s)`);
          }
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    return { hotAccountId, accountIds, balances, events: written, seconds };
  } finally {
    await store.close();
    await pool.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Writers: deposits with correct balances, each worker owning a slice of the accounts
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Runners with an applied-events counter
// ---------------------------------------------------------------------------------------------

interface CountedRunner {
  name: string;
  runner: ProjectionRunner;
  applied: { events: number };
}

function counted(projection: Projection): { projection: Projection; applied: { events: number } } {
  const applied = { events: 0 };
  return {
    applied,
    projection: {
      ...projection,
      async apply(trx: Transaction<unknown>, events: readonly RecordedEvent[], tables: TableNames) {
        await projection.apply(trx, events, tables);
        applied.events += events.length;
      },
    },
  };
}

function startRunners(runtime: Runtime, names: readonly string[]): CountedRunner[] {
  return names.map((name) => {
    const { projection, applied } = counted(projectionNamed(name));
    const runner = new ProjectionRunner(projection, runtime.db as unknown as Kysely<unknown>, runtime.store, runtime.databaseUrl, { batchSize: BATCH, logger: silent }).start();
    return { name, runner, applied };
  });
}

async function checkpointOf(runtime: Runtime, name: string): Promise<bigint> {
  const result = await runtime.pool.query<{ position: string }>('select position::text from projection_checkpoints where name = $1', [name]);
  return BigInt(result.rows[0]?.position ?? '0');
}

/** Waits until every runner's checkpoint reaches `head`; returns seconds per runner. */
async function waitForCheckpoints(runtime: Runtime, names: readonly string[], head: bigint, timeoutMs: number): Promise<Map<string, number>> {
  const started = performance.now();
  const reached = new Map<string, number>();
  while (reached.size < names.length) {
    for (const name of names) {
      if (!reached.has(name) && (await checkpointOf(runtime, name)) >= head) reached.set(name, (performance.now() - started) / 1000);
    }
    if (performance.now() - started > timeoutMs) {
      for (const name of names) if (!reached.has(name)) reached.set(name, Number.NaN);
      break;
    }
    await sleep(50);
  }
  return reached;
}

/**
 * Waits until ledger_safe_position() has passed every stored event. The horizon is the server's
 * xmin: an open transaction in any database of the server holds it back.
 */
async function waitForHorizon(runtime: Runtime, timeoutMs = 120_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const result = await runtime.pool.query<{ passed: boolean }>('select coalesce(max(position), 0) <= ledger_safe_position() as passed from ledger_events');
    if (result.rows[0]?.passed || performance.now() - started > timeoutMs) return (performance.now() - started) / 1000;
    await sleep(20);
  }
}

// ---------------------------------------------------------------------------------------------
// History query cases
// ---------------------------------------------------------------------------------------------

interface HistoryCase {
  accountId: string;
  before?: bigint;
  label: 'hot-first' | 'hot-deep' | 'random';
}

async function historyCases(client: pg.Client, seeded: Seeded, total: number): Promise<HistoryCase[]> {
  const hot = await client.query<{ position: string }>('select position::text from account_transactions where account_id = $1 order by position', [seeded.hotAccountId]);
  const hotPositions = hot.rows.map((row) => BigInt(row.position));
  const sample = Array.from({ length: 200 }, () => seeded.accountIds[Math.floor(Math.random() * seeded.accountIds.length)]!);
  const random = await client.query<{ account_id: string; position: string }>('select account_id, position::text from account_transactions where account_id = any($1::text[])', [sample]);
  const byAccount = new Map<string, bigint[]>();
  for (const row of random.rows) {
    const list = byAccount.get(row.account_id) ?? [];
    list.push(BigInt(row.position));
    byAccount.set(row.account_id, list);
  }
  const cases: HistoryCase[] = [];
  for (let i = 0; i < total; i++) {
    const roll = Math.random();
    if (roll < 0.1) cases.push({ accountId: seeded.hotAccountId, label: 'hot-first' });
    else if (roll < 0.5 && hotPositions.length > PAGE) cases.push({ accountId: seeded.hotAccountId, before: hotPositions[Math.floor(Math.random() * hotPositions.length)]!, label: 'hot-deep' });
    else {
      const accountId = sample[Math.floor(Math.random() * sample.length)]!;
      const positions = byAccount.get(accountId) ?? [];
      const before = Math.random() < 0.5 && positions.length > 0 ? positions[Math.floor(Math.random() * positions.length)] : undefined;
      cases.push({ accountId, label: 'random', ...(before === undefined ? {} : { before }) });
    }
  }
  return cases;
}

const HISTORY_SQL_FIRST = 'select * from account_transactions where account_id = $1 order by position desc limit 51';
const HISTORY_SQL_CURSOR = 'select * from account_transactions where account_id = $1 and position < $2 order by position desc limit 51';

async function rawHistory(client: pg.Client, cases: readonly HistoryCase[]): Promise<{ p50: number; p99: number; byLabel: Record<string, { p50: number; p99: number }> }> {
  const all: number[] = [];
  const byLabel = new Map<string, number[]>();
  for (const item of cases) {
    const started = performance.now();
    if (item.before === undefined) await client.query({ name: 'h1', text: HISTORY_SQL_FIRST, values: [item.accountId] });
    else await client.query({ name: 'h2', text: HISTORY_SQL_CURSOR, values: [item.accountId, item.before.toString()] });
    const ms = performance.now() - started;
    all.push(ms);
    const list = byLabel.get(item.label) ?? [];
    list.push(ms);
    byLabel.set(item.label, list);
  }
  const sorted = sortedNumbers(all);
  const labels: Record<string, { p50: number; p99: number }> = {};
  for (const [label, values] of byLabel) {
    const s = sortedNumbers(values);
    labels[label] = { p50: percentile(s, 0.5), p99: percentile(s, 0.99) };
  }
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), byLabel: labels };
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

interface Figure {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  goal: string;
  met: string;
}

async function main(): Promise<number> {
  const server: Server = await openServer(Number(flags.port));
  const database = `bench_proj_${Date.now()}_${process.pid}`;
  await createDatabase(server.adminUrl, database);
  const databaseUrl = urlFor(server.adminUrl, database);
  let runtime: Runtime | undefined;
  let closeApp: (() => Promise<void>) | undefined;
  const runners: CountedRunner[] = [];
  const cleanup = async () => {
    await closeApp?.().catch(() => undefined);
    await Promise.all(runners.map((entry) => entry.runner.stop().catch(() => undefined)));
    await runtime?.close().catch(() => undefined);
    runtime = undefined;
    await dropDatabase(server.adminUrl, database);
    await server.stop();
  };
  const onSignal = () => {
    console.error('\ninterrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const figures: Figure[] = [];
  const results: Record<string, unknown> = { flags };
  try {
    const config = loadConfig({ DATABASE_URL: databaseUrl, JWT_SECRET, LOG_LEVEL: 'silent', RATE_LIMIT_PER_MINUTE: '1000000', PROJECTION_BATCH_SIZE: String(BATCH) });
    runtime = await openRuntime(config, silent);
    const facts = await machineFacts(server);
    console.log(facts);
    console.log(`database ${database}; --events ${fmt(EVENTS)} --hot-rows ${fmt(HOT_ROWS)} --accounts ${fmt(ACCOUNTS)} --batch ${BATCH}\n`);

    // 1. Seed.
    console.log('seeding ...');
    const seeded = await seed(databaseUrl);
    // Statistics as autovacuum would have them on a live system; right after a bulk load the planner
    // guesses a few hundred rows and pages filtered reads through a bitmap scan and sort of the whole
    // remaining log (see the report). --no-analyze measures that case.
    if (!flags['no-analyze']) await runtime.pool.query('analyze ledger_events');
    const horizonWait = await waitForHorizon(runtime);
    if (horizonWait > 0.05) console.log(`waited ${horizonWait.toFixed(1)} s for the safe horizon to pass the seeded events (an open transaction elsewhere on the server holds xmin back)`);
    const head0 = await runtime.store.headPosition();
    const totals = await runtime.pool.query<{ events: string }>('select count(*)::text as events from ledger_events');
    const logEvents = Number(totals.rows[0]!.events);
    console.log(`seeded ${fmt(logEvents)} events in ${seeded.seconds.toFixed(1)} s (${fmt(logEvents / seeded.seconds)}/s); hot account ${seeded.hotAccountId}`);
    results.seed = { events: logEvents, seconds: seeded.seconds };

    // 2. Baseline: raw read of the log.
    let read = 0;
    let after = 0n;
    const readStarted = performance.now();
    for (;;) {
      const page = await runtime.store.readAll({ after, maxCount: 1000 });
      if (page.length === 0) break;
      read += page.length;
      after = page.at(-1)!.position;
    }
    const readSeconds = (performance.now() - readStarted) / 1000;
    const readRate = read / readSeconds;
    console.log(`baseline readAll: ${fmt(read)} events in ${readSeconds.toFixed(1)} s = ${fmt(readRate)} events/s`);
    results.readAll = { events: read, seconds: readSeconds, eventsPerSecond: readRate };

    // 3. Rebuild every projection over the seeded log.
    const rebuilds: { name: string; events: number; seconds: number; rate: number }[] = [];
    for (const name of ['accounts', 'transactions', 'customers', 'transfers']) {
      await runtime.pool.query('insert into projection_checkpoints (name, position) values ($1, $2) on conflict (name) do update set position = excluded.position', [name, head0.toString()]);
      const result = await rebuildProjection(runtime.db as unknown as Kysely<unknown>, runtime.store, projectionNamed(name), 'rebuild');
      const seconds = result.elapsedMs / 1000;
      rebuilds.push({ name, events: result.events, seconds, rate: result.events / seconds });
      console.log(`rebuild ${name}: ${fmt(result.events)} events in ${seconds.toFixed(1)} s = ${fmt(result.events / seconds)} events/s (${(seconds / (result.events / 1e6 || 1)).toFixed(1)} s per million)`);
    }
    results.rebuilds = rebuilds;
    const rows = await runtime.pool.query<{ total: string; hot: string }>('select count(*)::text as total, count(*) filter (where account_id = $1)::text as hot from account_transactions', [seeded.hotAccountId]);
    console.log(`history rows: ${fmt(Number(rows.rows[0]!.total))} in account_transactions, ${fmt(Number(rows.rows[0]!.hot))} on the hot account`);
    results.historyRows = { total: Number(rows.rows[0]!.total), hot: Number(rows.rows[0]!.hot) };

    // 4a. Catch-up from a backlog.
    const names = ['transactions', 'accounts'];
    let catchUp: { name: string; events: number; seconds: number; rate: number }[] = [];
    if (BACKLOG > 0) {
      const backlogWriter = startWriter(runtime.store, seeded, { rate: 0, perAppend: 20, concurrency: 8, total: BACKLOG });
      await backlogWriter.done;
      const written = await backlogWriter.stop();
      await waitForHorizon(runtime);
      console.log(`backlog: appended ${fmt(written.events)} deposits in ${written.seconds.toFixed(1)} s (${fmt(written.events / written.seconds)}/s, ${written.appends} appends) with no projector running`);
      const head = await runtime.store.headPosition();
      runners.push(...startRunners(runtime, names));
      const reached = await waitForCheckpoints(runtime, names, head, 30 * 60_000);
      catchUp = runners.map((entry) => ({ name: entry.name, events: entry.applied.events, seconds: reached.get(entry.name)!, rate: entry.applied.events / reached.get(entry.name)! }));
      for (const entry of catchUp) console.log(`catch-up ${entry.name}: ${fmt(entry.events)} events in ${entry.seconds.toFixed(1)} s = ${fmt(entry.rate)} events/s (both runners concurrently)`);
    } else {
      runners.push(...startRunners(runtime, names));
    }
    results.catchUp = catchUp;

    // 4b. Steady: appends at a fixed rate while the runners apply.
    let steady: { appendRate: number; applied: Record<string, number>; lagEvents: Record<string, number>; lagSeconds: Record<string, number>; drainSeconds: number } | undefined;
    if (STEADY_SECONDS > 0) {
      const before = new Map(runners.map((entry) => [entry.name, entry.applied.events]));
      const steadyOptions = { rate: STEADY_RATE, perAppend: 20, concurrency: STEADY_WRITERS };
      const writer = flags['writer-in-process'] ? startWriter(runtime.store, seeded, steadyOptions) : await startWriterProcess(databaseUrl, seeded, steadyOptions);
      // Where the CPU goes: this process (the runners), the writer, and the machine as a whole.
      const cpuBefore = { runners: process.cpuUsage(), writer: 'pid' in writer ? processTicks(writer.pid) : undefined, machine: machineTicks() };
      const lagSamples = new Map<string, number[]>();
      const lagSecondsSamples = new Map<string, number[]>();
      const steadyStarted = performance.now();
      while (performance.now() - steadyStarted < STEADY_SECONDS * 1000) {
        await sleep(2_000);
        const statuses = await projectionStatuses(runtime.db as unknown as Kysely<unknown>, runtime.store, names.map((name) => projectionNamed(name)));
        for (const status of statuses) {
          (lagSamples.get(status.name) ?? lagSamples.set(status.name, []).get(status.name)!).push(status.lagEvents ?? Number.NaN);
          (lagSecondsSamples.get(status.name) ?? lagSecondsSamples.set(status.name, []).get(status.name)!).push(status.lagSeconds);
        }
      }
      const applied: Record<string, number> = {};
      const elapsed = (performance.now() - steadyStarted) / 1000;
      const runnersCpu = process.cpuUsage(cpuBefore.runners);
      const writerTicks = 'pid' in writer ? processTicks(writer.pid) : undefined;
      const machine = machineTicks();
      const cpu = {
        runners: (runnersCpu.user + runnersCpu.system) / 1e6 / elapsed,
        writer: writerTicks !== undefined && cpuBefore.writer !== undefined ? (writerTicks - cpuBefore.writer) / 100 / elapsed : Number.NaN,
        machine: machine && cpuBefore.machine ? ((machine.busy - cpuBefore.machine.busy) / (machine.total - cpuBefore.machine.total)) * os.cpus().length : Number.NaN,
      };
      for (const entry of runners) applied[entry.name] = (entry.applied.events - before.get(entry.name)!) / elapsed;
      const written = await writer.stop();
      const drainStarted = performance.now();
      await waitForCheckpoints(runtime, names, await runtime.store.headPosition(), 10 * 60_000);
      const drainSeconds = (performance.now() - drainStarted) / 1000;
      const lagEvents: Record<string, number> = {};
      const lagSeconds: Record<string, number> = {};
      for (const [name, values] of lagSamples) lagEvents[name] = Math.max(...values);
      for (const [name, values] of lagSecondsSamples) lagSeconds[name] = Math.max(...values);
      steady = { appendRate: written.events / written.seconds, applied, lagEvents, lagSeconds, drainSeconds };
      console.log(
        `steady: offered ${fmt(STEADY_RATE)}/s, appended ${fmt(steady.appendRate)} events/s for ${written.seconds.toFixed(0)} s; applied ${names.map((name) => `${name} ${fmt(applied[name]!)}/s (max lag ${fmt(lagEvents[name]!)} events, ${lagSeconds[name]!.toFixed(2)} s)`).join(', ')}; drained ${drainSeconds.toFixed(1)} s after the writer stopped; ` +
          `CPU cores: runners' process ${cpu.runners.toFixed(2)}, writer process ${cpu.writer.toFixed(2)}, machine ${cpu.machine.toFixed(2)} of ${os.cpus().length}`,
      );
    }
    results.steady = steady;

    // 5. History query: raw SQL baseline, then HTTP, both under a write load.
    let baseUrl: string;
    let serverCpuSeconds: () => number;
    if (READ_API_IN_PROCESS) {
      const ledger = await buildLedger(runtime, ['read-api']);
      baseUrl = await ledger.app.listen({ host: '127.0.0.1', port: 0 });
      closeApp = () => ledger.app.close();
      serverCpuSeconds = () => {
        const used = process.cpuUsage();
        return (used.user + used.system) / 1e6;
      };
    } else {
      const readApi = await startLedgerProcess('read-api', { DATABASE_URL: databaseUrl, JWT_SECRET, LOG_LEVEL: 'silent', RATE_LIMIT_PER_MINUTE: '1000000' });
      baseUrl = readApi.url;
      closeApp = () => readApi.stop();
      serverCpuSeconds = () => readApi.cpuSeconds();
      console.log(`read API: \`ledger read-api\` in its own process (pid ${readApi.pid}); the writer and the projection runners stay in this one`);
    }
    if (PROJECTOR_NICE > 0) {
      // The projections move to `ledger projector`, a process of their own at a lower CPU priority,
      // as an operator would run throughput work beside a latency-bound API on a small machine.
      await Promise.all(runners.splice(0).map((entry) => entry.runner.stop()));
      const projector = await startLedgerProcess('projector', { DATABASE_URL: databaseUrl, JWT_SECRET, LOG_LEVEL: 'silent', PROJECTION_BATCH_SIZE: String(BATCH) }, { nice: PROJECTOR_NICE });
      const closeReadApi = closeApp;
      closeApp = async () => {
        await closeReadApi?.();
        await projector.stop();
      };
      console.log(`projections: \`ledger projector\` in its own process (pid ${projector.pid}) at nice ${PROJECTOR_NICE}; the writer stays in this one`);
    }
    const token = await mintToken(new TextEncoder().encode(JWT_SECRET), { role: 'teller', subject: 'bench-teller' }, { ttlSeconds: 24 * 3600 });
    const cursors = new CursorCodec(Buffer.from(resolveHmacSecret(config)!).toString('hex'));
    const client = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-history-raw' });
    await client.connect();
    const cases = await historyCases(client, seeded, Math.max(RAW_QUERIES, 2_000));
    const pathOf = (item: HistoryCase) => `/v1/accounts/${item.accountId}/transactions?limit=${PAGE}${item.before === undefined ? '' : `&cursor=${cursors.encode({ a: item.accountId, p: item.before.toString() })}`}`;
    // Check the paths answer full pages, and that a cursor minted here matches the API's own.
    const check = await fetch(`${baseUrl}${pathOf({ accountId: seeded.hotAccountId, label: 'hot-first' })}`, { headers: { authorization: `Bearer ${token}` } });
    const checked = (await check.json()) as { items: unknown[]; nextCursor: string | null };
    if (check.status !== 200 || checked.items.length !== PAGE || !checked.nextCursor) throw new Error(`history check failed: ${check.status} ${JSON.stringify(checked).slice(0, 300)}`);
    const second = await fetch(`${baseUrl}/v1/accounts/${seeded.hotAccountId}/transactions?limit=${PAGE}&cursor=${checked.nextCursor}`, { headers: { authorization: `Bearer ${token}` } });
    if (second.status !== 200) throw new Error(`history cursor check failed: ${second.status}`);

    const historyRows = await runtime.pool.query<{ total: string; hot: string }>('select count(*)::text as total, count(*) filter (where account_id = $1)::text as hot from account_transactions', [seeded.hotAccountId]);
    console.log(`history phase over ${fmt(Number(historyRows.rows[0]!.total))} history rows, ${fmt(Number(historyRows.rows[0]!.hot))} on the hot account`);
    results.historyPhaseRows = { total: Number(historyRows.rows[0]!.total), hot: Number(historyRows.rows[0]!.hot) };
    const writeLoad = startWriter(runtime.store, seeded, { rate: WRITE_RATE, perAppend: 1, concurrency: 4, hotShare: 0.1 });
    await sleep(1_000);
    const raw = await rawHistory(client, cases.slice(0, RAW_QUERIES));
    console.log(`history raw SQL (1 client, closed loop, ${RAW_QUERIES} queries, writes at ${WRITE_RATE}/s): p50 ${raw.p50.toFixed(2)} ms, p99 ${raw.p99.toFixed(2)} ms; ${Object.entries(raw.byLabel).map(([label, value]) => `${label} p50 ${value.p50.toFixed(2)} p99 ${value.p99.toFixed(2)}`).join('; ')}`);
    // Unmeasured warm-up at the same rate: the first requests compile routes, serialisers and plans.
    if (HISTORY_WARMUP_SECONDS > 0) await runLoadgen({ url: baseUrl, kind: 'get', seconds: HISTORY_WARMUP_SECONDS, connections: 16, overallRate: HISTORY_RATE, token, paths: cases.map(pathOf) });
    let cpuWindow: { cpuSeconds: number; at: number } | undefined;
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const poolWaiting: number[] = [];
    const sampledPool = runtime.pool;
    const poolSampler = setInterval(() => poolWaiting.push(sampledPool.waitingCount), 10);
    const http = await runLoadgen(
      { url: baseUrl, kind: 'get', seconds: HISTORY_SECONDS, connections: 16, overallRate: HISTORY_RATE, token, paths: cases.map(pathOf) },
      () => {
        cpuWindow = { cpuSeconds: serverCpuSeconds(), at: performance.now() };
      },
    );
    const serverCpu = cpuWindow ? ((serverCpuSeconds() - cpuWindow.cpuSeconds) * 1000) / (performance.now() - cpuWindow.at) : Number.NaN;
    loopDelay.disable();
    clearInterval(poolSampler);
    const writes = await writeLoad.stop();
    await client.end();
    console.log(`${READ_API_IN_PROCESS ? 'server' : 'bench process (writer and runners)'} event-loop delay during the history phase: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms; ${READ_API_IN_PROCESS ? '' : 'its '}queries waiting for a pool connection: mean ${(poolWaiting.reduce((sum, value) => sum + value, 0) / Math.max(1, poolWaiting.length)).toFixed(1)}, max ${Math.max(0, ...poolWaiting)} (pool of ${sampledPool.options.max})`);
    console.log(
      `history HTTP at ${HISTORY_RATE} req/s for ${HISTORY_SECONDS} s: ${fmt(http.requestsPerSecond)} req/s, p50 ${http.p50Ms} ms, p90 ${http.p90Ms} ms, p99 ${http.p99Ms} ms, max ${http.maxMs} ms; non-2xx ${http.non2xx}, errors ${http.errors}; server CPU ${serverCpu.toFixed(2)} cores, loadgen ${http.loadgenCpuCores.toFixed(2)}; writes ${fmt(writes.events / writes.seconds)}/s`,
    );
    for (const body of http.firstErrors) console.log(`  ${body}`);
    results.history = { raw, http: { ...http, serverCpu }, writeRate: writes.events / writes.seconds };

    // Summary.
    const million = (events: number) => events / 1e6;
    for (const rebuild of rebuilds.filter((entry) => entry.events > 0)) {
      const perMillion = rebuild.seconds / million(rebuild.events);
      figures.push({
        figure: `rebuild ${rebuild.name} (${fmt(rebuild.events)} events)`,
        value: `${fmt(rebuild.rate)} ev/s, ${rebuild.seconds.toFixed(1)} s (${perMillion.toFixed(1)} s/M)`,
        baseline: `readAll ${fmt(readRate)} ev/s`,
        ratio: (rebuild.rate / readRate).toFixed(2),
        // The goal is about a log of a million events; a small projection's fixed costs say nothing of it.
        goal: rebuild.events >= 1e6 ? `1M < ${GOAL_REBUILD_SECONDS_PER_MILLION} s` : 'n/a (< 1M events)',
        met: rebuild.events < 1e6 ? '' : perMillion < GOAL_REBUILD_SECONDS_PER_MILLION ? 'yes' : 'no',
      });
    }
    for (const entry of catchUp) {
      figures.push({ figure: `catch-up ${entry.name} (${fmt(entry.events)} backlog)`, value: `${fmt(entry.rate)} ev/s`, baseline: `readAll ${fmt(readRate)} ev/s`, ratio: (entry.rate / readRate).toFixed(2), goal: `≥ ${fmt(GOAL_APPLY)} ev/s`, met: entry.rate >= GOAL_APPLY ? 'yes' : 'no' });
    }
    if (steady) {
      for (const name of names) {
        const rate = steady.applied[name]!;
        figures.push({
          figure: `steady apply ${name} (offered ${fmt(STEADY_RATE)}/s)`,
          value: `${fmt(rate)} ev/s, max lag ${fmt(steady.lagEvents[name]!)} ev / ${steady.lagSeconds[name]!.toFixed(2)} s`,
          baseline: `appended ${fmt(steady.appendRate)} ev/s`,
          ratio: (rate / steady.appendRate).toFixed(2),
          goal: `≥ ${fmt(GOAL_APPLY)} ev/s`,
          met: rate >= GOAL_APPLY ? 'yes' : 'no',
        });
      }
    }
    figures.push({ figure: `history p50 (HTTP, ${HISTORY_RATE} req/s)`, value: `${http.p50Ms} ms`, baseline: `raw SQL ${raw.p50.toFixed(2)} ms`, ratio: (http.p50Ms / raw.p50).toFixed(1), goal: '', met: '' });
    figures.push({
      figure: `history p99 (HTTP, ${HISTORY_RATE} req/s)`,
      value: `${http.p99Ms} ms`,
      baseline: `raw SQL ${raw.p99.toFixed(2)} ms`,
      ratio: (http.p99Ms / raw.p99).toFixed(1),
      goal: `< ${GOAL_HISTORY_P99_MS} ms`,
      met: http.p99Ms < GOAL_HISTORY_P99_MS && http.non2xx === 0 ? 'yes' : 'no',
    });
    console.log(`\n${facts.split('\n')[0]}\nload average at end: ${os.loadavg().map((load) => load.toFixed(2)).join(' ')}\n`);
    console.log('| figure | value | baseline (same run) | ratio | goal | met |\n|---|---|---|---|---|---|');
    for (const figure of figures) console.log(`| ${figure.figure} | ${figure.value} | ${figure.baseline} | ${figure.ratio} | ${figure.goal} | ${figure.met} |`);
    results.figures = figures;
    if (flags.json) writeFileSync(flags.json, `${JSON.stringify(results, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value instanceof Map ? undefined : value), 2)}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

process.exitCode = await main();
