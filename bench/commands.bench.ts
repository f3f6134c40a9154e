/**
 * Command throughput benchmark (issue 3): deposits per second through the HTTP write API, against a
 * no-op Fastify route as the ceiling of the HTTP layer on the same machine.
 *
 *   npm run bench:commands -- [--seconds 10] [--runs 3] [--warmup 3] [--accounts 1000]
 *                             [--connections 16,64] [--cases random,hot,noop] [--pool 16]
 *                             [--appends-in-flight N] [--pipeline-events N]
 *                             [--json results.json] [--cpu-profile server.cpuprofile] [--port 54340]
 *
 * --cpu-profile writes a V8 CPU profile of this (the server's) process covering the measured runs
 * only: no start-up, setup or warm-up (open it in Chrome DevTools or speedscope).
 *
 * Database: DATABASE_URL when set (a role that may create databases): a fresh database
 * bench_cmd_<stamp> is created on that server, the ledger runs against it, and it is dropped at the
 * end. Without DATABASE_URL, a durable embedded PostgreSQL (synchronous_commit on) in ./.bench-data.
 *
 * The ledger runs in this process with roles ['write-api'] on 127.0.0.1 (a free port), with the
 * production defaults except: LOG_LEVEL=silent, a fixed JWT_SECRET, and RATE_LIMIT_PER_MINUTE raised
 * to its maximum (the default, 6,000 per principal per minute, would cap one teller at 100 req/s).
 * A second, bare Fastify instance in the same process serves POST /noop (same headers and body,
 * answers a small JSON) as the ceiling. autocannon runs in a child process (bench/commands-loadgen.ts)
 * so the client does not share the server's event loop; on a small machine it still shares the cores.
 *
 * Cases, each at every --connections value: deposits to a random account of --accounts (a unique
 * Idempotency-Key per request), deposits to one hot account, and the no-op route. Every case is
 * measured --runs times, the order of cases rotating and reversing between runs; the table shows
 * medians of req/s and of p50/p99 latency, and the non-2xx count summed over runs.
 */
import { createDatabase, dropDatabase, openServer, urlFor, withAdmin, type Server } from './support/server.js';
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { openRuntime, type Runtime } from '../src/runtime.js';
import { buildLedger } from '../src/server.js';
import { mintToken } from '../src/shared/auth/keys.js';
import { instrumentStore, startProbe } from './commands-probes.js';
import { LOADGEN_ENV, type CaseKind, type LoadJob, type LoadOutcome } from './commands-loadgen.js';
import {
  CASE_LABELS,
  medianRows,
  renderDiagnostics,
  renderFacts,
  renderGoal,
  renderTable,
  type CaseResult,
  type CaseSpec,
  type MachineFacts,
} from './commands-report.js';

const JWT_SECRET = 'bench-commands-secret-long-enough-for-hs256-0123456789';
const SETUP_CONCURRENCY = 16;
const FIRST_ERRORS_SHOWN = 5;
const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, '..');

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '3' },
    accounts: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '16,64' },
    cases: { type: 'string', default: 'random,hot,noop' },
    pool: { type: 'string' },
    'appends-in-flight': { type: 'string' },
    'pipeline-events': { type: 'string' },
    json: { type: 'string' },
    'cpu-profile': { type: 'string' },
    port: { type: 'string', default: '54340' },
  },
  strict: true,
});

function positiveNumber(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${String(text)}`);
  return value;
}

const SECONDS = positiveNumber('seconds', flags.seconds);
const RUNS = Math.floor(positiveNumber('runs', flags.runs));
const WARMUP_SECONDS = Number(flags.warmup);
if (!Number.isFinite(WARMUP_SECONDS) || WARMUP_SECONDS < 0) throw new Error('--warmup must be 0 or more seconds');
const ACCOUNTS = Math.floor(positiveNumber('accounts', flags.accounts));
const CONNECTIONS = flags.connections.split(',').map((text) => Math.floor(positiveNumber('connections', text.trim())));
const KINDS = flags.cases.split(',').map((text) => text.trim()) as CaseKind[];
for (const kind of KINDS) if (!(kind in CASE_LABELS)) throw new Error(`--cases: unknown case ${kind} (random, hot, noop)`);
const SPECS: CaseSpec[] = KINDS.flatMap((kind) => CONNECTIONS.map((connections) => ({ kind, connections })));

// ---------------------------------------------------------------------------------------------
// PostgreSQL server and the benchmark's database
// ---------------------------------------------------------------------------------------------

async function machineFacts(server: Server, pgPoolMax: number): Promise<MachineFacts> {
  return withAdmin(server.adminUrl, async (client) => {
    const show = async (setting: string) => (await client.query<Record<string, string>>(`show ${setting}`)).rows[0]?.[setting] ?? '?';
    const cpus = os.cpus();
    return {
      cores: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? '?',
      memoryGiB: os.totalmem() / 2 ** 30,
      node: process.version,
      platform: `${os.type()} ${os.release()} ${os.arch()}`,
      postgres: `PostgreSQL ${await show('server_version')}`,
      synchronousCommit: await show('synchronous_commit'),
      fsync: await show('fsync'),
      database: server.kind,
      pgPoolMax,
      loadAverage: os.loadavg().map((load) => load.toFixed(2)).join(' '),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Apps under test
// ---------------------------------------------------------------------------------------------

interface Apps {
  ledgerUrl: string;
  noopUrl: string;
  runtime: Runtime;
  database: string;
  /** A connection of its own for the probes' statistics queries. */
  statsClient: pg.Client;
  storeTimings: ReturnType<typeof instrumentStore>;
  close(): Promise<void>;
}

async function startApps(adminUrl: string, database: string): Promise<Apps> {
  const databaseUrl = urlFor(adminUrl, database);
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    JWT_SECRET,
    LOG_LEVEL: 'silent',
    RATE_LIMIT_PER_MINUTE: '1000000',
    ...(flags.pool ? { PG_POOL_MAX: flags.pool } : {}),
    ...(flags['appends-in-flight'] ? { PG_APPENDS_IN_FLIGHT: flags['appends-in-flight'] } : {}),
    ...(flags['pipeline-events'] ? { PG_APPEND_PIPELINE_EVENTS: flags['pipeline-events'] } : {}),
  });
  const runtime = await openRuntime(config, pino({ level: 'silent' }));
  // Timing wrapper on the store instance the write side is about to use (diagnostics only).
  const storeTimings = instrumentStore(runtime.store);
  const statsClient = new pg.Client({ connectionString: adminUrl, application_name: 'bench-commands-stats' });
  let ledgerApp: FastifyInstance | undefined;
  let noopApp: FastifyInstance | undefined;
  try {
    await statsClient.connect();
    ledgerApp = (await buildLedger(runtime, ['write-api'])).app;
    const ledgerUrl = await ledgerApp.listen({ host: '127.0.0.1', port: 0 });
    // The ceiling: a bare Fastify route that parses the same body and answers a small JSON.
    noopApp = Fastify({ logger: false });
    noopApp.post('/noop', async () => ({ ok: true }));
    const noopUrl = await noopApp.listen({ host: '127.0.0.1', port: 0 });
    const apps = { ledgerApp, noopApp };
    return {
      ledgerUrl,
      noopUrl,
      runtime,
      database,
      statsClient,
      storeTimings,
      async close() {
        await apps.noopApp.close().catch(() => undefined);
        await apps.ledgerApp.close().catch(() => undefined);
        await statsClient.end().catch(() => undefined);
        await runtime.close();
      },
    };
  } catch (error) {
    await noopApp?.close().catch(() => undefined);
    await ledgerApp?.close().catch(() => undefined);
    await statsClient.end().catch(() => undefined);
    await runtime.close();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Setup through the API
// ---------------------------------------------------------------------------------------------

async function post(baseUrl: string, token: string, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // kept as text for the error message
  }
  return { status: response.status, json, text };
}

async function openAccount(baseUrl: string, tokens: { admin: string; teller: string }): Promise<string> {
  const customer = await post(baseUrl, tokens.admin, '/v1/customers', { email: `${randomUUID()}@example.com`, firstName: 'Bench', lastName: 'Mark' });
  if (customer.status !== 201) throw new Error(`register failed: ${customer.status} ${customer.text}`);
  const customerId = String(customer.json.id);
  const activated = await post(baseUrl, tokens.admin, `/v1/customers/${customerId}/activate`, {});
  if (activated.status !== 200) throw new Error(`activate failed: ${activated.status} ${activated.text}`);
  const account = await post(baseUrl, tokens.teller, '/v1/accounts', { customerId, currency: 'EUR', type: 'checking' });
  if (account.status !== 201) throw new Error(`open account failed: ${account.status} ${account.text}`);
  return String(account.json.id);
}

async function openAccounts(baseUrl: string, tokens: { admin: string; teller: string }, count: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(SETUP_CONCURRENCY, count) }, async () => {
      while (next < count) {
        next++;
        ids.push(await openAccount(baseUrl, tokens));
      }
    }),
  );
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Measuring one case
// ---------------------------------------------------------------------------------------------

function runLoadgen(job: LoadJob, onStarted: () => Promise<void>): Promise<LoadOutcome> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(resolve(HERE, 'commands-loadgen.ts'), [], {
      cwd: REPO_ROOT,
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, [LOADGEN_ENV]: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let settled = false;
    let started: Promise<void> = Promise.resolve();
    const fail = (error: Error) => {
      if (!settled) reject(error);
      settled = true;
    };
    child.on('message', (message: { started: true } | { ok: true; outcome: LoadOutcome } | { ok: false; error: string }) => {
      if ('started' in message) {
        started = onStarted();
        return;
      }
      if (!message.ok) return fail(new Error(`load generator failed: ${message.error}`));
      const outcome = message.outcome;
      started.then(() => {
        if (!settled) resolvePromise(outcome);
        settled = true;
      }, fail);
    });
    child.once('error', fail);
    child.once('exit', (code) => {
      // A clean exit right after the answer: the answer's handler settles once `started` resolves.
      if (code !== 0) fail(new Error(`load generator exited with ${code} before answering`));
    });
    child.send(job);
  });
}

async function measure(apps: Apps, spec: CaseSpec, seconds: number, accountIds: string[], token: string, run: number): Promise<CaseResult> {
  const job: LoadJob = { url: spec.kind === 'noop' ? apps.noopUrl : apps.ledgerUrl, kind: spec.kind, connections: spec.connections, seconds, accountIds, token };
  let window: { cpu: NodeJS.CpuUsage; elu: ReturnType<typeof performance.eventLoopUtilization>; startedAt: bigint; probe: Awaited<ReturnType<typeof startProbe>> } | undefined;
  const outcome = await runLoadgen(job, async () => {
    // The window opens when the load generator starts its clock, not when its process starts.
    const cpu = process.cpuUsage();
    const elu = performance.eventLoopUtilization();
    const startedAt = process.hrtime.bigint();
    window = { cpu, elu, startedAt, probe: await startProbe(apps.statsClient, apps.database, apps.runtime.pool, apps.storeTimings) };
  });
  const opened = window!;
  const elapsedMicros = Number(process.hrtime.bigint() - opened.startedAt) / 1_000;
  const cpu = process.cpuUsage(opened.cpu);
  const elu = performance.eventLoopUtilization(opened.elu);
  const probe = await opened.probe.finish();
  return { ...spec, ...outcome, ...probe, run, serverCpuCores: (cpu.user + cpu.system) / elapsedMicros, serverEventLoopUtilisation: elu.utilization };
}

function describe(result: CaseResult): string {
  const label = `${CASE_LABELS[result.kind]} @${result.connections}`.padEnd(34);
  return (
    `  ${label} ${Math.round(result.requestsPerSecond).toString().padStart(6)} req/s  p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms  non-2xx ${result.non2xx}  errors ${result.errors + result.timeouts}` +
    `  | CPU server ${result.serverCpuCores.toFixed(2)} (loop ${(result.serverEventLoopUtilisation * 100).toFixed(0)} %) loadgen ${result.loadgenCpuCores.toFixed(2)} pg ${result.pgBackendCpuCores.toFixed(2)} machine ${result.machineCpuCores.toFixed(2)}` +
    `  | appends/s ${Math.round(result.appendsPerSecond)} x${result.eventsPerAppend.toFixed(2)} p50 ${result.appendP50Ms.toFixed(1)} p99 ${result.appendP99Ms.toFixed(1)} ms, pool waiting ${result.poolWaitingMean.toFixed(1)}`
  );
}

/** Rotates the case order by run and reverses it on even runs, so no case always goes first or last. */
function orderFor(run: number): CaseSpec[] {
  const shift = (run - 1) % SPECS.length;
  const rotated = [...SPECS.slice(shift), ...SPECS.slice(0, shift)];
  return run % 2 === 0 ? rotated.reverse() : rotated;
}

async function startCpuProfile(): Promise<{ stop(): Promise<object> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return profile;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const server = await openServer(Math.floor(positiveNumber('port', flags.port)));
  const database = `bench_cmd_${Date.now()}_${process.pid}`;
  await createDatabase(server.adminUrl, database);
  let apps: Apps | undefined;
  const stop = async () => {
    await apps?.close().catch((error: unknown) => console.error('closing the apps failed', error));
    apps = undefined;
    await dropDatabase(server.adminUrl, database);
    await server.stop();
  };
  const onSignal = () => {
    console.error('\ninterrupted: cleaning up');
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    apps = await startApps(server.adminUrl, database);
    const facts = await machineFacts(server, apps.runtime.config.PG_POOL_MAX);
    console.log(renderFacts(facts));
    console.log(`database ${database}; ledger at ${apps.ledgerUrl}, no-op ceiling at ${apps.noopUrl}`);

    const secret = new TextEncoder().encode(JWT_SECRET);
    const ttlSeconds = 24 * 3600;
    const tokens = {
      admin: await mintToken(secret, { role: 'admin', subject: 'bench-admin' }, { ttlSeconds }),
      teller: await mintToken(secret, { role: 'teller', subject: 'bench-teller' }, { ttlSeconds }),
    };
    const setupStarted = Date.now();
    const accountIds = KINDS.some((kind) => kind !== 'noop') ? await openAccounts(apps.ledgerUrl, tokens, ACCOUNTS) : [];
    console.log(`opened ${accountIds.length} accounts through the API in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s (${SETUP_CONCURRENCY} in parallel)`);

    if (WARMUP_SECONDS > 0) {
      console.log(`\nwarm-up: ${WARMUP_SECONDS} s per case kind at ${CONNECTIONS[0]} connections (not reported)`);
      for (const kind of KINDS) {
        const result = await measure(apps, { kind, connections: CONNECTIONS[0]! }, WARMUP_SECONDS, accountIds, tokens.teller, 0);
        console.log(describe(result));
      }
    }

    const profiler = flags['cpu-profile'] ? await startCpuProfile() : undefined;
    const results: CaseResult[] = [];
    for (let run = 1; run <= RUNS; run++) {
      console.log(`\nrun ${run} of ${RUNS} (${SECONDS} s per case)`);
      for (const spec of orderFor(run)) {
        const result = await measure(apps, spec, SECONDS, accountIds, tokens.teller, run);
        results.push(result);
        console.log(describe(result));
      }
    }

    if (profiler && flags['cpu-profile']) {
      writeFileSync(flags['cpu-profile'], JSON.stringify(await profiler.stop()));
      console.log(`\nCPU profile of the measured runs written to ${flags['cpu-profile']}`);
    }
    const rows = medianRows(results, SPECS);
    const failed = results.filter((result) => result.non2xx + result.errors + result.timeouts > 0);
    facts.loadAverage = os.loadavg().map((load) => load.toFixed(2)).join(' ');
    console.log(`\n${renderFacts(facts)}`);
    console.log(`${ACCOUNTS} accounts; median of ${RUNS} run(s), ${SECONDS} s per case; the ratio compares req/s with the no-op route at the same connections\n`);
    console.log(renderTable(rows));
    console.log(`\nwhere the time went (medians; CPU in cores, 1.0 = one core busy; PG backends = this database's connections, local server only):\n`);
    console.log(renderDiagnostics(rows, facts.cores));
    if (failed.length > 0) {
      console.log(`\nnon-2xx answers or errors in ${failed.length} measurement(s); first answers:`);
      for (const result of failed) {
        console.log(`  ${CASE_LABELS[result.kind]} @${result.connections}, run ${result.run}: status codes ${JSON.stringify(result.statusCodes)}, errors ${result.errors}, timeouts ${result.timeouts}`);
        for (const body of result.firstErrors.slice(0, FIRST_ERRORS_SHOWN)) console.log(`    ${body}`);
      }
    }
    const goal = renderGoal(rows);
    console.log(`\n${goal.text}`);
    if (flags.json) writeFileSync(flags.json, `${JSON.stringify({ facts, seconds: SECONDS, runs: RUNS, accounts: ACCOUNTS, results, medians: rows }, null, 2)}\n`);
    return failed.length > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stop();
  }
}

process.exitCode = await main();
