/**
 * End-to-end transfer benchmark (issue 5): transfers per second from POST /v1/transfers to
 * `completed`, with the full ledger (all roles) in this process.
 *
 *   npm run bench:transfers -- [--seconds 60] [--rates 200,500,1000] [--runs 1] [--accounts 10000]
 *       [--split | --split-projector] [--pool 16] [--appends-in-flight N] [--pipeline-events N] [--probe-ms 100] [--drain-seconds 120] [--port 54342] [--json out.json]
 *       [--admission-max-lag-ms N] (TRANSFER_ADMISSION_MAX_LAG_MS: 0 accepts every transfer, however far behind the process manager is)
 *       [--keep-database] (leave bench_xfer_<stamp> for analysis, e.g. bench/transfer-stages.sql)
 *       [--warmup-seconds 10] [--warmup-rate <first of --rates>] (sessions before 10 warmed up 5 s at 100/s)
 *
 * Database: DATABASE_URL when set: a fresh database bench_xfer_<stamp>, dropped at the end; else a
 * durable embedded PostgreSQL in ./.bench-data. synchronous_commit is whatever the server runs
 * (printed; on by default).
 *
 * Setup: --accounts accounts (AccountOpened + a FundsDeposited of 1,000,000.00 each, owned by
 * registered and activated customers) are appended straight through the store, then the ledger
 * starts with roles write-api, read-api, projector and process-manager and catches up. With
 * --split the roles run as deployed at scale: write-api and read-api in this process, `ledger
 * projector` and `ledger process-manager` each in a child process of its own (each with its own
 * pool of --pool connections; "CPU ledger" is then the sum of the three processes). With
 * --split-projector only `ledger projector` runs in a child; the process manager stays with the APIs.
 *
 * Warm-up, not reported: --warmup-seconds at --warmup-rate (by default the first rate measured), then
 * the read models and the process manager catch up. After a warm-up at 100/s the first two seconds
 * at 1,000/s had p99 280-440 ms against about 50 ms for the median second (session 10).
 *
 * Each rate: an evenly paced open-loop generator (child process, bench/projections-loadgen.ts) posts
 * transfers of 1.00 between two random distinct accounts with a fresh transferId each, for
 * --seconds, and reports when each was due. For every transfer, measured from when it was due:
 *  - "visible", what the goal is judged on: until the commit of the `transfers` batch that made
 *    `completed` readable through the query API. Each batch's commit NOTIFYs projection_progress
 *    with the position it reached; this process LISTENs and notes when each arrived, and a
 *    transfer is visible from the first commit at or past the event that completed it (its
 *    timeline's `completed` entry: the hold's capture since session 15);
 *  - "decided": until finished_at, the time in the decision that completed it (the capture).
 * Separately, every --probe-ms the load generator posts one transfer of its own and polls
 * GET /v1/transfers/:id every 25 ms until it shows `completed`: the "probe" latency (until session
 * 12 this process probed, and the client's work took 4-5 % of the ledger's event loop). Projection
 * lag (events and seconds, projectionStatuses) is sampled every 2 s; CPU of this process, of the
 * load generator and of this database's PostgreSQL backends, commits/s and appends are measured
 * over the window (bench/commands-probes.ts).
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import type { EventToAppend } from '../src/eventstore/port.js';
import { projectionStatuses } from '../src/projections/checkpoints.js';
import { PROGRESS_CHANNEL } from '../src/projections/runner.js';
import type { Projection } from '../src/projections/projection.js';
import { PROJECTIONS, projectionNamed } from '../src/projections/registry.js';
import { openRuntime, type Runtime } from '../src/runtime.js';
import { buildLedger, ROLES, type Role } from '../src/server.js';
import { mintToken } from '../src/shared/auth/keys.js';
import { TransferProcessManager } from '../src/write/transfers/processManager.js';
import { createWriteSide } from '../src/write/writeSide.js';
import { accountStream, customerStream } from '../src/write/streams.js';
import {
  accountOpened,
  createDatabase,
  customerEvents,
  dropDatabase,
  fmt,
  fundsMoved,
  inParallel,
  instrumentStore,
  machineFacts,
  median,
  openServer,
  percentile,
  runLoadgen,
  sleep,
  startLedgerProcess,
  type LedgerProcess,
  sortedNumbers,
  startProbe,
  urlFor,
  type Probe,
  type Server,
} from './projections-support.js';

const JWT_SECRET = 'bench-transfers-secret-long-enough-for-hs256-0123456789';
const FUNDS_MINOR = 100_000_000n;

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    rates: { type: 'string', default: '200,500,1000' },
    runs: { type: 'string', default: '1' },
    accounts: { type: 'string', default: '10000' },
    'appends-in-flight': { type: 'string' },
    'pipeline-events': { type: 'string' },
    pool: { type: 'string' },
    'probe-ms': { type: 'string', default: '100' },
    'drain-seconds': { type: 'string', default: '120' },
    'admission-max-lag-ms': { type: 'string' },
    port: { type: 'string', default: '54342' },
    json: { type: 'string' },
    split: { type: 'boolean', default: false },
    'split-projector': { type: 'boolean', default: false },
    'warmup-seconds': { type: 'string', default: '10' },
    'warmup-rate': { type: 'string' },
    'keep-database': { type: 'boolean', default: false },
  },
  strict: true,
});

function positive(name: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got ${String(text)}`);
  return value;
}

const SECONDS = positive('seconds', flags.seconds);
const RATES = flags.rates.split(',').map((text) => Math.floor(positive('rates', text.trim())));
const RUNS = Math.floor(positive('runs', flags.runs));
const ACCOUNTS = Math.floor(positive('accounts', flags.accounts));
const PROBE_MS = positive('probe-ms', flags['probe-ms']);
const WARMUP_SECONDS = positive('warmup-seconds', flags['warmup-seconds']);
const WARMUP_RATE = flags['warmup-rate'] === undefined ? RATES[0]! : Math.floor(positive('warmup-rate', flags['warmup-rate']));
const PROBES_IN_FLIGHT_MAX = 10;
const PROBE_POLL_MS = 25;
const DRAIN_SECONDS = positive('drain-seconds', flags['drain-seconds']);
const GOAL_COMPLETED = 1_000;
const GOAL_P99_MS = 250;

const silent = pino({ level: 'silent' });
/**
 * The event that made a transfer `completed` in the read model: its timeline's `completed` entry
 * (since session 15 the hold's capture; TransferCompleted before, and then the row's last position).
 */
const COMPLETED_POSITION = `coalesce((select entry->>'position' from jsonb_array_elements(timeline) as entry where entry->>'stage' = 'completed' limit 1), last_position::text)`;

/** The load generator's keep-alive connections for a rate; it opens them all before its clock starts. */
function connectionsFor(rate: number): number {
  return Math.min(400, Math.max(32, Math.ceil(rate / 4)));
}

interface RunResult {
  rate: number;
  run: number;
  sent: number;
  accepted: number;
  postP50: number;
  postP99: number;
  completed: number;
  failed: number;
  unfinished: number;
  completedPerSecond: number;
  completionP50: number;
  completionP99: number;
  /** Due time to the commit of the `transfers` batch that made `completed` visible to the query API, every transfer. */
  visibleP50: number;
  visibleP99: number;
  /** The polling probe's latency: its own POST to a GET that shows `completed`. */
  probeP50: number;
  probeP99: number;
  probeSamples: number;
  maxLagEvents: Record<string, number>;
  maxLagSeconds: Record<string, number>;
  ledgerCpu: number;
  loadgenCpu: number;
  probe: Probe;
  appendsPerTransfer: number;
  drainSeconds: number;
  firstErrors: string[];
}

async function seedAccounts(runtime: Runtime): Promise<string[]> {
  const accountIds = Array.from({ length: ACCOUNTS }, () => randomUUID());
  const customers = Array.from({ length: Math.ceil(ACCOUNTS / 2) }, () => randomUUID());
  await inParallel(customers, 8, async (customerId) => {
    await runtime.store.append(customerStream(customerId), customerEvents(customerId), { expectedRevision: 'no_stream' });
  });
  await inParallel(accountIds, 8, async (accountId, index) => {
    const events: EventToAppend[] = [accountOpened(accountId, customers[Math.floor(index / 2)]!), fundsMoved(accountId, FUNDS_MINOR, FUNDS_MINOR)];
    // Real times, so the account's clock is not ahead of the transfers' deadlines.
    for (const event of events) (event.data as { at: string }).at = new Date().toISOString();
    await runtime.store.append(accountStream(accountId), events, { expectedRevision: 'no_stream' });
  });
  return accountIds;
}

async function waitCaughtUp(runtime: Runtime, projections: readonly Projection[], timeoutMs: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    const statuses = await projectionStatuses(runtime.db as unknown as Kysely<unknown>, runtime.store, projections);
    if (statuses.every((status) => status.lagEvents === 0)) return;
    if (performance.now() - started > timeoutMs) throw new Error(`projections did not catch up: ${statuses.map((status) => `${status.name} ${status.lagEvents}`).join(', ')}`);
    await sleep(200);
  }
}

async function main(): Promise<number> {
  const server: Server = await openServer(Number(flags.port));
  const database = `bench_xfer_${Date.now()}_${process.pid}`;
  await createDatabase(server.adminUrl, database);
  const databaseUrl = urlFor(server.adminUrl, database);
  let runtime: Runtime | undefined;
  let closeApp: (() => Promise<void>) | undefined;
  let statsClient: pg.Client | undefined;
  let progressClient: pg.Client | undefined;
  const cleanup = async () => {
    await closeApp?.().catch(() => undefined);
    await statsClient?.end().catch(() => undefined);
    await progressClient?.end().catch(() => undefined);
    await runtime?.close().catch(() => undefined);
    runtime = undefined;
    if (flags['keep-database']) console.log(`kept database ${database} (drop it when done)`);
    else await dropDatabase(server.adminUrl, database);
    await server.stop();
  };
  const onSignal = () => {
    console.error('\ninterrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: RunResult[] = [];
  try {
    const config = loadConfig({ DATABASE_URL: databaseUrl, JWT_SECRET, LOG_LEVEL: 'silent', RATE_LIMIT_PER_MINUTE: '1000000', ...(flags.pool ? { PG_POOL_MAX: flags.pool } : {}),
      ...(flags['appends-in-flight'] ? { PG_APPENDS_IN_FLIGHT: flags['appends-in-flight'] } : {}),
      ...(flags['pipeline-events'] ? { PG_APPEND_PIPELINE_EVENTS: flags['pipeline-events'] } : {}),
      ...(flags['admission-max-lag-ms'] ? { TRANSFER_ADMISSION_MAX_LAG_MS: flags['admission-max-lag-ms'] } : {}),
    });
    runtime = await openRuntime(config, silent);
    const rt = runtime;
    const timings = instrumentStore(rt.store);
    const facts = await machineFacts(server);
    console.log(facts);
    console.log(`database ${database}; PG_POOL_MAX ${config.PG_POOL_MAX}, PROJECTION_BATCH_SIZE ${config.PROJECTION_BATCH_SIZE}; roles ${ROLES.join(', ')}${flags.split ? ' (projector and process-manager in child processes)' : flags['split-projector'] ? ' (projector in a child process)' : ' (one process)'}\n`);
    const seedStarted = performance.now();
    const accountIds = await seedAccounts(rt);
    console.log(`seeded ${fmt(ACCOUNTS)} funded accounts in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);

    const childNames: Role[] = flags.split ? ['projector', 'process-manager'] : flags['split-projector'] ? ['projector'] : [];
    const split = childNames.length > 0;
    const children: LedgerProcess[] = [];
    if (split) {
      const env = { DATABASE_URL: databaseUrl, JWT_SECRET, LOG_LEVEL: 'silent', PG_POOL_MAX: String(config.PG_POOL_MAX), PG_APPENDS_IN_FLIGHT: String(config.PG_APPENDS_IN_FLIGHT), PG_APPEND_PIPELINE_EVENTS: String(config.PG_APPEND_PIPELINE_EVENTS) };
      for (const role of childNames) children.push(await startLedgerProcess(role, env));
    }
    const ledger = await buildLedger(rt, ROLES.filter((role) => !childNames.includes(role)));
    const baseUrl = await ledger.app.listen({ host: '127.0.0.1', port: 0 });
    closeApp = async () => {
      await ledger.app.close();
      await Promise.all(children.map((child) => child.stop()));
    };
    const childCpuSeconds = () => children.reduce((sum, child) => sum + child.cpuSeconds(), 0);
    const eachChildCpuSeconds = () => children.map((child) => child.cpuSeconds());
    // In split mode the manager runs elsewhere; one built here only names its projection and filter.
    const manager = childNames.includes('process-manager')
      ? new TransferProcessManager(createWriteSide(rt.store, { retryLimit: 1 }), { logger: silent, batchSize: 1 })
      : (ledger.workers.find((worker) => worker.name === 'process-manager') as unknown as { manager: TransferProcessManager }).manager;
    const watched: Projection[] = [projectionNamed('transfers'), projectionNamed('transactions'), projectionNamed('accounts'), manager.projection];
    await waitCaughtUp(rt, [...PROJECTIONS, manager.projection], 300_000);
    console.log(`ledger at ${baseUrl}, projections caught up`);
    statsClient = new pg.Client({ connectionString: server.adminUrl, application_name: 'bench-transfers-stats' });
    await statsClient.connect();
    // When each `transfers` batch committed (its NOTIFY), with the position it reached: a transfer's
    // completion is visible to the query API from the first commit at or past its completing event.
    const transfersCommits: { atMs: number; position: bigint }[] = [];
    progressClient = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-transfers-progress' });
    await progressClient.connect();
    progressClient.on('notification', (message) => {
      const [name, position] = (message.payload ?? '').split(':');
      if (name === 'transfers' && position) transfersCommits.push({ atMs: performance.timeOrigin + performance.now(), position: BigInt(position) });
    });
    await progressClient.query(`listen ${PROGRESS_CHANNEL}`);
    const token = await mintToken(new TextEncoder().encode(JWT_SECRET), { role: 'teller', subject: 'bench-teller' }, { ttlSeconds: 24 * 3600 });

    // A warm-up, not reported: JIT, pools, caches, at the first rate measured, so the window measures the sustained rate.
    await runLoadgen({ url: baseUrl, kind: 'transfers', seconds: WARMUP_SECONDS, connections: connectionsFor(WARMUP_RATE), overallRate: WARMUP_RATE, token, accountIds });
    await waitCaughtUp(rt, watched, 300_000);
    console.log(`warmed up: ${fmt(WARMUP_SECONDS)} s at ${fmt(WARMUP_RATE)}/s, not reported; caught up again`);

    for (let run = 1; run <= RUNS; run++) {
      for (const rate of run % 2 === 1 ? RATES : [...RATES].reverse()) {
        let window: { cpu: NodeJS.CpuUsage; childCpuSeconds: number; eachChild: number[]; at: number; probe: Awaited<ReturnType<typeof startProbe>> } | undefined;
        let windowOpen = false;
        const lagEvents = new Map<string, number>();
        const lagSeconds = new Map<string, number>();
        transfersCommits.length = 0;
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            await sleep(2_000);
            if (!windowOpen) continue;
            const statuses = await projectionStatuses(rt.db as unknown as Kysely<unknown>, rt.store, watched).catch(() => []);
            for (const status of statuses) {
              lagEvents.set(status.name, Math.max(lagEvents.get(status.name) ?? 0, status.lagEvents ?? 0));
              lagSeconds.set(status.name, Math.max(lagSeconds.get(status.name) ?? 0, status.lagSeconds));
            }
          }
        })();
        const outcome = await runLoadgen({ url: baseUrl, kind: 'transfers', seconds: SECONDS, connections: connectionsFor(rate), overallRate: rate, token, accountIds, probe: { everyMs: PROBE_MS, pollMs: PROBE_POLL_MS, inFlightMax: PROBES_IN_FLIGHT_MAX } }, () => {
          windowOpen = true;
          window = { cpu: process.cpuUsage(), childCpuSeconds: childCpuSeconds(), eachChild: eachChildCpuSeconds(), at: performance.now(), probe: undefined as never };
          void startProbe(statsClient!, database, rt.pool, timings).then((probe) => {
            window!.probe = probe;
          });
        });
        windowOpen = false;
        const opened = window!;
        const elapsedMs = performance.now() - opened.at;
        const cpu = process.cpuUsage(opened.cpu);
        const childCpuMs = (childCpuSeconds() - opened.childCpuSeconds) * 1000;
        const eachChildCores = eachChildCpuSeconds().map((seconds, index) => ((seconds - opened.eachChild[index]!) * 1000) / elapsedMs);
        const probe = await opened.probe.finish();
        sampling = false;
        await sampler;

        // Drain: wait until every sent transfer finished (or the bound passes).
        const sentAt = outcome.sentAt ?? new Map<string, number>();
        const ids = [...sentAt.keys()];
        const drainStarted = performance.now();
        type Row = { transfer_id: string; status: string; finished_ms: string | null; completed_position: string };
        let rows: Row[] = [];
        for (;;) {
          rows = (await rt.pool.query<Row>(`select transfer_id, status, (extract(epoch from finished_at) * 1000)::text as finished_ms, ${COMPLETED_POSITION} as completed_position from transfers where transfer_id = any($1::text[])`, [ids])).rows;
          const finished = rows.filter((row) => row.status !== 'pending').length;
          if (finished >= sentAt.size || performance.now() - drainStarted > DRAIN_SECONDS * 1000) break;
          await sleep(250);
        }
        const drainSeconds = (performance.now() - drainStarted) / 1000;
        const probed = (await outcome.probeLatenciesMs) ?? [];
        const firstSent = Math.min(...sentAt.values());
        const windowEnd = firstSent + SECONDS * 1000;
        const latencies: number[] = [];
        const visibleLatencies: number[] = [];
        let notSeen = 0;
        // This run's `transfers` commits; positions and times both increase.
        const commits = transfersCommits.splice(0);
        const visibleAt = (position: bigint): number | undefined => {
          let low = 0;
          let high = commits.length;
          while (low < high) {
            const middle = (low + high) >> 1;
            if (commits[middle]!.position < position) low = middle + 1;
            else high = middle;
          }
          return commits[low]?.atMs;
        };
        // Visible latencies by the second they were sent in: is the tail spread out, or a few stalls?
        const bySecond: number[][] = [];
        let completed = 0;
        let completedInWindow = 0;
        let failed = 0;
        for (const row of rows) {
          if (row.status === 'failed') failed++;
          if (row.status !== 'completed' || row.finished_ms === null) continue;
          completed++;
          const finished = Number(row.finished_ms);
          if (finished <= windowEnd) completedInWindow++;
          const due = sentAt.get(row.transfer_id)!;
          latencies.push(finished - due);
          const seenAt = visibleAt(BigInt(row.completed_position));
          if (seenAt === undefined) {
            notSeen++;
            continue;
          }
          visibleLatencies.push(seenAt - due);
          const second = Math.floor((due - firstSent) / 1000);
          (bySecond[second] ??= []).push(seenAt - due);
        }
        const sorted = sortedNumbers(latencies);
        const visibleSorted = sortedNumbers(visibleLatencies);
        const probedSorted = sortedNumbers(probed);
        const result: RunResult = {
          rate,
          run,
          sent: outcome.total + outcome.errors,
          accepted: outcome.ok2xx,
          postP50: outcome.p50Ms,
          postP99: outcome.p99Ms,
          completed,
          failed,
          unfinished: sentAt.size - completed - failed,
          completedPerSecond: completedInWindow / SECONDS,
          completionP50: percentile(sorted, 0.5),
          completionP99: percentile(sorted, 0.99),
          visibleP50: percentile(visibleSorted, 0.5),
          visibleP99: percentile(visibleSorted, 0.99),
          probeP50: percentile(probedSorted, 0.5),
          probeP99: percentile(probedSorted, 0.99),
          probeSamples: probed.length,
          maxLagEvents: Object.fromEntries(lagEvents),
          maxLagSeconds: Object.fromEntries(lagSeconds),
          ledgerCpu: ((cpu.user + cpu.system) / 1000 + childCpuMs) / elapsedMs,
          loadgenCpu: outcome.loadgenCpuCores,
          probe,
          appendsPerTransfer: probe.appendsPerSecond / Math.max(1, (completed + failed + probed.length) / SECONDS),
          drainSeconds,
          firstErrors: outcome.firstErrors,
        };
        results.push(result);
        console.log(
          `run ${run} rate ${rate}/s: sent ${fmt(result.sent)}, 202 ${fmt(result.accepted)}, refused ${fmt(outcome.non2xx)} (POST p50 ${result.postP50} p99 ${result.postP99} ms), completed ${fmt(completed)} failed ${failed} unfinished ${result.unfinished}; ` +
            `completed/s ${fmt(result.completedPerSecond)}; decided p50 ${fmt(result.completionP50)} p99 ${fmt(result.completionP99)} ms; visible p50 ${fmt(result.visibleP50)} p99 ${fmt(result.visibleP99)} ms${notSeen > 0 ? ` (${notSeen} without a commit seen)` : ''}; probe p50 ${fmt(result.probeP50)} p99 ${fmt(result.probeP99)} ms (${probed.length} probes); drain ${drainSeconds.toFixed(1)} s`,
        );
        console.log(
          `   lag max: ${[...lagEvents].map(([name, events]) => `${name} ${fmt(events)} ev/${(lagSeconds.get(name) ?? 0).toFixed(2)} s`).join(', ')}; CPU ledger ${result.ledgerCpu.toFixed(2)} loadgen ${result.loadgenCpu.toFixed(2)} pg ${probe.pgBackendCpuCores.toFixed(2)} machine ${probe.machineCpuCores.toFixed(2)} of ${os.cpus().length}; ` +
            `commits/s ${fmt(probe.commitsPerSecond)}, appends/s ${fmt(probe.appendsPerSecond)} (x${probe.eventsPerAppend.toFixed(2)} events, p50 ${probe.appendP50Ms.toFixed(1)} p99 ${probe.appendP99Ms.toFixed(1)} ms), ${result.appendsPerTransfer.toFixed(1)} appends/transfer, pool waiting ${probe.poolWaitingMean.toFixed(1)}; WAL ${(probe.walBytesPerSecond / 1e6).toFixed(1)} MB/s, ${fmt(probe.walBytesPerSecond / Math.max(1, result.completedPerSecond) / 1024)} KiB per completed transfer`,
        );
        const secondP99s = bySecond.filter(Boolean).map((of) => percentile(sortedNumbers(of), 0.99));
        const slowSeconds = secondP99s.filter((p99) => p99 >= GOAL_P99_MS).length;
        // Which seconds: at the start (cold caches), or spread out (stalls: GC, checkpoints)?
        const slowAt = bySecond.flatMap((of, second) => (of && percentile(sortedNumbers(of), 0.99) >= GOAL_P99_MS ? [second] : []));
        console.log(
          `   per sent second: visible p99 ≥ ${GOAL_P99_MS} ms in ${slowSeconds} of ${secondP99s.length} seconds (${slowAt.join(', ') || 'none'}); worst second's p99 ${fmt(Math.max(...secondP99s))} ms; median second's p99 ${fmt(median(secondP99s))} ms`,
        );
        console.log(`   visible p99 ms by sent second (second 0 at ${new Date(firstSent).toISOString()}): ${secondP99s.map((p99) => Math.round(p99)).join(' ')}`);
        if (split) console.log(`   CPU by process: api ${((cpu.user + cpu.system) / 1000 / elapsedMs).toFixed(2)}, ${childNames.map((name, index) => `${name} ${eachChildCores[index]!.toFixed(2)}`).join(', ')}`);
        for (const body of outcome.firstErrors) console.log(`   ${body}`);
        await waitCaughtUp(rt, watched, 300_000).catch((error: unknown) => console.log(`   ${String(error)}`));
      }
    }

    console.log(`\n${facts.split('\n')[0]}\nload average at end: ${os.loadavg().map((load) => load.toFixed(2)).join(' ')}`);
    console.log(`${fmt(ACCOUNTS)} accounts, ${SECONDS} s per rate, median of ${RUNS} run(s) per rate\n`);
    console.log('| offered/s | accepted/s | completed/s | POST p50/p99 ms | decided p50/p99 ms | visible p50/p99 ms | probe p50/p99 ms | max lag transfers / PM (ev, s) | CPU ledger / pg / loadgen / machine | commits/s | appends/transfer | goal met |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const rate of RATES) {
      const of = results.filter((result) => result.rate === rate);
      const m = (pick: (result: RunResult) => number) => median(of.map(pick));
      const completedPerSecond = m((r) => r.completedPerSecond);
      const p99 = m((r) => r.visibleP99);
      console.log(
        `| ${rate} | ${fmt(m((r) => r.accepted / SECONDS))} | ${fmt(completedPerSecond)} | ${fmt(m((r) => r.postP50))} / ${fmt(m((r) => r.postP99))} | ${fmt(m((r) => r.completionP50))} / ${fmt(m((r) => r.completionP99))} | ${fmt(m((r) => r.visibleP50))} / ${fmt(p99)} | ${fmt(m((r) => r.probeP50))} / ${fmt(m((r) => r.probeP99))} | ` +
          `${fmt(m((r) => r.maxLagEvents.transfers ?? Number.NaN))}, ${m((r) => r.maxLagSeconds.transfers ?? Number.NaN).toFixed(2)} / ${fmt(m((r) => r.maxLagEvents[manager.projection.name] ?? Number.NaN))}, ${m((r) => r.maxLagSeconds[manager.projection.name] ?? Number.NaN).toFixed(2)} | ` +
          `${m((r) => r.ledgerCpu).toFixed(2)} / ${m((r) => r.probe.pgBackendCpuCores).toFixed(2)} / ${m((r) => r.loadgenCpu).toFixed(2)} / ${m((r) => r.probe.machineCpuCores).toFixed(2)} | ${fmt(m((r) => r.probe.commitsPerSecond))} | ${m((r) => r.appendsPerTransfer).toFixed(1)} | ` +
          `${completedPerSecond >= GOAL_COMPLETED && p99 < GOAL_P99_MS ? 'yes' : 'no'} |`,
      );
    }
    console.log(`\ngoal: ≥ ${fmt(GOAL_COMPLETED)} completed/s with p99 < ${GOAL_P99_MS} ms from the request to \`completed\` visible in the query API (moonshot 2,000/s)`);
    if (flags.json) writeFileSync(flags.json, `${JSON.stringify({ flags, results }, null, 2)}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

process.exitCode = await main();
