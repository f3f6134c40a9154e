/**
 * Event store append benchmark: our PostgreSQL event store against a plain INSERT ceiling and
 * against Emmett's PostgreSQL event store, side by side on the same server in one run.
 *
 *   npm run bench:eventstore -- [--seconds 8] [--warmup 1] [--runs 1] [--max-ops 2000000]
 *                               [--cases single@1,single@8,single@16,batch10@8,batch100@8]
 *                               [--appends-in-flight N] [--pipeline-events N]
 *                               [--diagnostic] [--json results.json] [--port 54339]
 *
 * Database: DATABASE_URL when set (a role that may create databases), else an embedded durable
 * PostgreSQL (synchronous_commit on) in ./.bench-data. Every run creates fresh databases
 * bench_es_<stamp> (our migrations + the raw table) and bench_es_<stamp>_emmett (Emmett's schema)
 * and drops them at the end.
 *
 * Cases: single-event appends with an exact expected revision at 1, 8 and 16 connections (as many
 * closed-loop workers as pool connections, each worker rotating over its own 100 streams), and
 * batches of 10 and 100 events per append at 8 connections. `--diagnostic` adds a row calling
 * ledger_append directly (no adapter, no NOTIFY) to split the adapter's cost from the function's.
 */
import { openServer, urlFor, withAdmin, type Server } from './support/server.js';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';
import pg from 'pg';
import type { EventToAppend } from '../src/eventstore/port.js';
import { PostgresEventStore } from '../src/eventstore/postgres/eventStore.js';
import { encodeJson } from '../src/shared/json.js';
import { migrateToLatest } from '../src/shared/postgres/migrations.js';
import { createKysely, createPool, raiseAllocatorThresholds } from '../src/shared/postgres/pool.js';
import { runLoad, type Operation } from './eventstore-measure.js';
import {
  checkGoals,
  medianResults,
  renderFacts,
  renderGoals,
  renderTable,
  type CaseResult,
  type CaseSpec,
  type MachineFacts,
  type RunReport,
  type StoreName,
} from './eventstore-report.js';

const STREAMS_PER_WORKER = 100;
const EVENT_TYPE = 'MoneyDeposited';
const AMOUNT_MINOR = 12_345n;
const STATEMENT_TIMEOUT_MS = 60_000;

const CASES: CaseSpec[] = [
  { key: 'single@1', label: 'single event, 1 connection', connections: 1, batch: 1 },
  { key: 'single@8', label: 'single event, 8 connections', connections: 8, batch: 1 },
  { key: 'single@16', label: 'single event, 16 connections', connections: 16, batch: 1 },
  { key: 'batch10@8', label: 'batch of 10, 8 connections', connections: 8, batch: 10 },
  { key: 'batch100@8', label: 'batch of 100, 8 connections', connections: 8, batch: 100 },
];

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '1' },
    runs: { type: 'string', default: '1' },
    'max-ops': { type: 'string', default: '2000000' },
    diagnostic: { type: 'boolean', default: false },
    cases: { type: 'string' },
    'appends-in-flight': { type: 'string' },
    'pipeline-events': { type: 'string' },
    json: { type: 'string' },
    port: { type: 'string', default: '54339' },
  },
  strict: true,
});

function positiveNumber(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${String(text)}`);
  return value;
}

const SECONDS = positiveNumber('seconds', flags.seconds);
const WARMUP_SECONDS = positiveNumber('warmup', flags.warmup);
const RUNS = Math.floor(positiveNumber('runs', flags.runs));
const MAX_OPS = Math.floor(positiveNumber('max-ops', flags['max-ops']));
const APPENDS_IN_FLIGHT = flags['appends-in-flight'] === undefined ? undefined : Math.floor(positiveNumber('appends-in-flight', flags['appends-in-flight']));
const PIPELINE_EVENTS = flags['pipeline-events'] === undefined ? undefined : Math.floor(positiveNumber('pipeline-events', flags['pipeline-events']));
const SELECTED_CASES = flags.cases === undefined ? CASES : CASES.filter((spec) => flags.cases!.split(',').includes(spec.key));
if (SELECTED_CASES.length === 0) throw new Error(`--cases matched nothing; the cases are ${CASES.map((spec) => spec.key).join(', ')}`);

// ---------------------------------------------------------------------------------------------
// Streams and payload, identical for every store
// ---------------------------------------------------------------------------------------------

interface StreamSlot {
  name: string;
  accountId: string;
  /** Store-specific cursor: our last revision (-1 = no stream), Emmett's version (0 = none), raw's next revision. */
  version: bigint;
}

class StreamSet {
  private readonly slots: StreamSlot[][];
  private readonly cursors: number[];

  constructor(prefix: string, workers: number, initialVersion: bigint) {
    this.slots = Array.from({ length: workers }, (_, worker) =>
      Array.from({ length: STREAMS_PER_WORKER }, (_, index) => ({
        // Emmett derives a stream type from the part before the first '-'.
        name: `account-${prefix}-w${worker}-s${index}`,
        accountId: randomUUID(),
        version: initialVersion,
      })),
    );
    this.cursors = Array.from({ length: workers }, () => 0);
  }

  /** The next stream of this worker, round robin. */
  next(worker: number): StreamSlot {
    const slots = this.slots[worker]!;
    const index = this.cursors[worker]!;
    this.cursors[worker] = (index + 1) % slots.length;
    return slots[index]!;
  }

  /** Writes one event to every stream once (untimed), so measured appends all use an exact expected revision. */
  async prepare(append: (worker: number) => Promise<unknown>): Promise<void> {
    await Promise.all(
      this.slots.map(async (slots, worker) => {
        for (let index = 0; index < slots.length; index++) await append(worker);
      }),
    );
  }
}

function ourEvents(slot: StreamSlot, count: number): EventToAppend[] {
  return Array.from({ length: count }, () => ({
    id: randomUUID(),
    type: EVENT_TYPE,
    data: { accountId: slot.accountId, amountMinor: AMOUNT_MINOR, currency: 'EUR' },
  }));
}

/** The same data as stored by our adapter (bigint tagged), for the raw table and the diagnostic call. */
function storedDataJson(slot: StreamSlot): string {
  return encodeJson({ accountId: slot.accountId, amountMinor: AMOUNT_MINOR, currency: 'EUR' });
}

// ---------------------------------------------------------------------------------------------
// Stores under test
// ---------------------------------------------------------------------------------------------

interface Session {
  prepare(): Promise<void>;
  operation: Operation;
  close(): Promise<void>;
}

interface Target {
  store: StoreName;
  open(spec: CaseSpec, prefix: string): Promise<Session>;
}

function oursTarget(url: string): Target {
  return {
    store: 'ours',
    async open(spec, prefix) {
      const pool = createPool(url, { max: spec.connections, statementTimeoutMs: STATEMENT_TIMEOUT_MS, applicationName: 'bench-ours' });
      const store = new PostgresEventStore(pool, url, {
        ...(APPENDS_IN_FLIGHT ? { maxAppendsInFlight: APPENDS_IN_FLIGHT } : {}),
        ...(PIPELINE_EVENTS ? { pipelineMinEvents: PIPELINE_EVENTS } : {}),
      });
      const streams = new StreamSet(prefix, spec.connections, -1n);
      const append = async (worker: number, count: number) => {
        const slot = streams.next(worker);
        const result = await store.append(slot.name, ourEvents(slot, count), { expectedRevision: slot.version < 0n ? 'no_stream' : slot.version });
        slot.version = result.nextExpectedRevision;
        return count;
      };
      return {
        prepare: () => streams.prepare((worker) => append(worker, 1)),
        operation: (worker) => append(worker, spec.batch),
        close: async () => {
          await store.close();
          await pool.end();
        },
      };
    },
  };
}

/** ledger_append called directly: what the SQL function costs without the adapter and its NOTIFY. */
function oursFunctionTarget(url: string): Target {
  return {
    store: 'ours-fn',
    async open(spec, prefix) {
      const pool = createPool(url, { max: spec.connections, statementTimeoutMs: STATEMENT_TIMEOUT_MS, applicationName: 'bench-ours-fn' });
      const streams = new StreamSet(prefix, spec.connections, -1n);
      const append = async (worker: number, count: number) => {
        const slot = streams.next(worker);
        const data = storedDataJson(slot);
        const parts: string[] = [];
        for (let index = 0; index < count; index++) {
          parts.push(`{"id":"${randomUUID()}","type":"${EVENT_TYPE}","schemaVersion":1,"data":${data},"metadata":{}}`);
        }
        const result = await pool.query<{ next_revision: string }>(
          'select next_revision::text from ledger_append($1, $2, $3, $4::jsonb)',
          [slot.name, slot.version < 0n ? 2 : 0, slot.version < 0n ? null : slot.version.toString(), `[${parts.join(',')}]`],
        );
        slot.version = BigInt(result.rows[0]!.next_revision);
        return count;
      };
      return {
        prepare: () => streams.prepare((worker) => append(worker, 1)),
        operation: (worker) => append(worker, spec.batch),
        close: () => pool.end(),
      };
    },
  };
}

const RAW_COLUMNS = 6;
const RAW_TABLE_DDL = `
  create table if not exists bench_raw_events (
    id bigserial primary key,
    event_id uuid not null,
    stream_name text not null,
    stream_revision bigint not null,
    event_type text not null,
    data jsonb not null,
    metadata jsonb not null
  )`;

function rawInsertSql(rows: number): string {
  const tuples: string[] = [];
  for (let row = 0; row < rows; row++) {
    const base = row * RAW_COLUMNS;
    tuples.push(`($${base + 1}, $${base + 2}, $${base + 3}, $${base + 4}, $${base + 5}, $${base + 6})`);
  }
  return `insert into bench_raw_events (event_id, stream_name, stream_revision, event_type, data, metadata) values ${tuples.join(', ')}`;
}

/** The ceiling: autocommit INSERTs of the same rows into a table of a similar shape, no stream bookkeeping. */
function rawTarget(url: string): Target {
  return {
    store: 'raw',
    async open(spec, prefix) {
      const pool = createPool(url, { max: spec.connections, statementTimeoutMs: STATEMENT_TIMEOUT_MS, applicationName: 'bench-raw' });
      const streams = new StreamSet(prefix, spec.connections, 0n);
      const statements = new Map<number, string>();
      const append = async (worker: number, count: number) => {
        const slot = streams.next(worker);
        let text = statements.get(count);
        if (!text) statements.set(count, (text = rawInsertSql(count)));
        const data = storedDataJson(slot);
        const parameters: unknown[] = [];
        for (let index = 0; index < count; index++) {
          parameters.push(randomUUID(), slot.name, (slot.version++).toString(), EVENT_TYPE, data, '{}');
        }
        await pool.query(text, parameters);
        return count;
      };
      return {
        prepare: () => streams.prepare((worker) => append(worker, 1)),
        operation: (worker) => append(worker, spec.batch),
        close: () => pool.end(),
      };
    },
  };
}

function emmettTarget(url: string): Target {
  return {
    store: 'emmett',
    async open(spec, prefix) {
      // The same server-side allocator setting as our pools get, so the comparison stays fair.
      const pool = new pg.Pool({ connectionString: url, max: spec.connections, application_name: 'bench-emmett', onConnect: raiseAllocatorThresholds });
      pool.on('error', () => undefined);
      const store = getPostgreSQLEventStore(url, { connectionOptions: { pool }, schema: { autoMigration: 'None' } });
      // Emmett's stream version counts events: 0 before the first append.
      const streams = new StreamSet(prefix, spec.connections, 0n);
      const append = async (worker: number, count: number) => {
        const slot = streams.next(worker);
        const events = Array.from({ length: count }, () => ({
          type: EVENT_TYPE,
          data: { accountId: slot.accountId, amountMinor: AMOUNT_MINOR.toString(), currency: 'EUR' },
        }));
        const result = await store.appendToStream(slot.name, events, { expectedStreamVersion: slot.version });
        slot.version = result.nextExpectedStreamVersion;
        return count;
      };
      return {
        prepare: () => streams.prepare((worker) => append(worker, 1)),
        operation: (worker) => append(worker, spec.batch),
        close: async () => {
          await store.close();
          await pool.end();
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Server and databases
// ---------------------------------------------------------------------------------------------

async function machineFacts(server: Server): Promise<MachineFacts> {
  return withAdmin(server.adminUrl, async (client) => {
    const show = async (setting: string) => (await client.query<Record<string, string>>(`show ${setting}`)).rows[0]?.[setting] ?? '?';
    const cpus = os.cpus();
    return {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? '?',
      memoryGiB: os.totalmem() / 2 ** 30,
      node: process.version,
      platform: `${os.type()} ${os.release()} ${os.arch()}`,
      postgres: `PostgreSQL ${await show('server_version')}`,
      synchronousCommit: await show('synchronous_commit'),
      fsync: await show('fsync'),
      walSyncMethod: await show('wal_sync_method'),
      sharedBuffers: await show('shared_buffers'),
      database: server.kind,
    };
  });
}

/** Flushes dirty pages between cases so no case pays for the previous one's checkpoint. Needs superuser or pg_checkpoint; skipped otherwise. */
async function checkpoint(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, (client) => client.query('checkpoint')).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

async function runOnce(server: Server, facts: MachineFacts, run: number): Promise<RunReport> {
  const stamp = `${Date.now()}_${process.pid}`;
  const oursDatabase = `bench_es_${stamp}`;
  const emmettDatabase = `bench_es_${stamp}_emmett`;
  const oursUrl = urlFor(server.adminUrl, oursDatabase);
  const emmettUrl = urlFor(server.adminUrl, emmettDatabase);
  const startedAt = new Date().toISOString();
  await withAdmin(server.adminUrl, async (client) => {
    await client.query(`create database ${client.escapeIdentifier(oursDatabase)}`);
    await client.query(`create database ${client.escapeIdentifier(emmettDatabase)}`);
  });
  console.log(`run ${run}: databases ${oursDatabase} and ${emmettDatabase}`);
  try {
    const migrationPool = createPool(oursUrl, { max: 2, statementTimeoutMs: STATEMENT_TIMEOUT_MS, applicationName: 'bench-migrate' });
    const db = createKysely<unknown>(migrationPool);
    try {
      await migrateToLatest(db);
      await migrationPool.query(RAW_TABLE_DDL);
    } finally {
      await db.destroy();
    }
    const emmettSetup = getPostgreSQLEventStore(emmettUrl);
    try {
      await emmettSetup.schema.migrate();
    } finally {
      await emmettSetup.close();
    }

    const targets: Target[] = [rawTarget(oursUrl), oursTarget(oursUrl), emmettTarget(emmettUrl)];
    if (flags.diagnostic) targets.push(oursFunctionTarget(oursUrl));

    const results: CaseResult[] = [];
    for (const [caseIndex, spec] of SELECTED_CASES.entries()) {
      // Rotate the order per case and run so no store always goes first (or right after another's checkpoint).
      const shift = (caseIndex + run) % targets.length;
      const ordered = [...targets.slice(shift), ...targets.slice(0, shift)];
      for (const target of ordered) {
        const session = await target.open(spec, `r${run}c${caseIndex}${target.store.replace(/[^a-z]/g, '')}`);
        try {
          await session.prepare();
          await runLoad({ workers: spec.connections, seconds: WARMUP_SECONDS, maxOps: MAX_OPS }, session.operation);
          await checkpoint(server.adminUrl);
          const measured = await runLoad({ workers: spec.connections, seconds: SECONDS, maxOps: MAX_OPS }, session.operation);
          results.push({ ...spec, store: target.store, ...measured });
          console.log(
            `  ${spec.label.padEnd(30)} ${target.store.padEnd(8)} ${Math.round(measured.opsPerSecond).toString().padStart(7)} appends/s ${Math.round(measured.eventsPerSecond).toString().padStart(8)} events/s  p50 ${measured.p50Ms.toFixed(2)} ms  p99 ${measured.p99Ms.toFixed(2)} ms`,
          );
        } finally {
          await session.close();
        }
      }
    }
    return { startedAt, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, facts, results };
  } finally {
    await withAdmin(server.adminUrl, async (client) => {
      await client.query(`drop database if exists ${client.escapeIdentifier(oursDatabase)} with (force)`);
      await client.query(`drop database if exists ${client.escapeIdentifier(emmettDatabase)} with (force)`);
    });
  }
}

async function main(): Promise<void> {
  const server = await openServer(Math.floor(positiveNumber('port', flags.port)));
  try {
    const facts = await machineFacts(server);
    console.log(renderFacts(facts));
    console.log(`${SECONDS} s per case after ${WARMUP_SECONDS} s warm-up, at most ${MAX_OPS.toLocaleString('en-US')} appends per case, ${RUNS} run(s)\n`);
    const reports: RunReport[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const report = await runOnce(server, facts, run);
      reports.push(report);
      if (RUNS > 1) console.log(`\nrun ${run}:\n${renderTable(report.results)}\n`);
    }
    const results = RUNS > 1 ? medianResults(reports) : reports[0]!.results;
    console.log(`\n${renderFacts(facts)}`);
    console.log(`${RUNS > 1 ? `median of ${RUNS} runs, ` : ''}${SECONDS} s per case; ratios compare events/s\n`);
    console.log(renderTable(results));
    console.log(`\n${renderGoals(checkGoals(results))}`);
    if (flags.json) writeFileSync(flags.json, `${JSON.stringify(reports, null, 2)}\n`);
  } finally {
    await server.stop();
  }
}

await main();
