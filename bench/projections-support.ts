/**
 * Shared plumbing for bench/projections.bench.ts and bench/transfers.bench.ts: the PostgreSQL
 * server (DATABASE_URL or a durable embedded one in ./.bench-data), a fresh database per run,
 * machine facts, statistics, the paced load-generator child process, and builders of valid domain events
 * (balanced legs, correct balanceAfterMinor) for seeding the log directly through the store.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { customerLedgerAccount, settlementLedgerAccount } from '../src/domain/ledger.js';
import type { EventToAppend } from '../src/eventstore/port.js';
import type { JsonObject } from '../src/shared/json.js';
import { LOADGEN_ENV, type LoadJob, type LoadOutcome } from './projections-loadgen.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, '..');

// ---------------------------------------------------------------------------------------------
// Server and database
// ---------------------------------------------------------------------------------------------

export { createDatabase, dropDatabase, openServer, urlFor, withAdmin, type Server } from './support/server.js';
import { withAdmin, type Server } from './support/server.js';

export async function machineFacts(server: Server): Promise<string> {
  return withAdmin(server.adminUrl, async (client) => {
    const show = async (setting: string) => (await client.query<Record<string, string>>(`show ${setting}`)).rows[0]?.[setting] ?? '?';
    const cpus = os.cpus();
    return [
      `machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()} ${os.arch()}`,
      `node ${process.version}; PostgreSQL ${await show('server_version')} (${server.kind}), synchronous_commit=${await show('synchronous_commit')}, fsync=${await show('fsync')}, shared_buffers=${await show('shared_buffers')}`,
      `load average at start: ${os.loadavg().map((load) => load.toFixed(2)).join(' ')}`,
    ].join('\n');
  });
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((value) => Number.isFinite(value));
  if (finite.length === 0) return Number.NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function sortedNumbers(values: Iterable<number>): Float64Array {
  return Float64Array.from(values).sort();
}

export const fmt = (value: number, digits = 0) => (Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');

export function sleep(ms: number): Promise<void> {
  return new Promise((resolvePromise) => setTimeout(resolvePromise, ms));
}

/** Runs `work` over `items` with at most `concurrency` in flight. */
export async function inParallel<T>(items: readonly T[], concurrency: number, work: (item: T, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async (_unused, worker) => {
      while (next < items.length) await work(items[next++]!, worker);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Load generator child
// ---------------------------------------------------------------------------------------------

/** Runs one paced load job (projections-loadgen.ts) in a child process; `onStarted` runs when the child starts its clock. */
export function runLoadgen(job: LoadJob, onStarted: () => void = () => undefined): Promise<LoadOutcome> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(resolve(HERE, 'projections-loadgen.ts'), [], {
      cwd: REPO_ROOT,
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, [LOADGEN_ENV]: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    let settled = false;
    const fail = (error: Error) => {
      if (!settled) reject(error);
      settled = true;
    };
    let probesArrived: (latencies: number[]) => void = () => undefined;
    const probeLatenciesMs = new Promise<number[]>((resolveProbes) => {
      probesArrived = resolveProbes;
    });
    child.on('message', (message: { started: true } | { probes: number[] } | { ok: true; outcome: LoadOutcome } | { ok: false; error: string }) => {
      if ('started' in message) return onStarted();
      if ('probes' in message) return probesArrived(message.probes);
      if (!message.ok) return fail(new Error(`load generator failed: ${message.error}`));
      if (!settled) resolvePromise(job.probe ? { ...message.outcome, probeLatenciesMs } : message.outcome);
      settled = true;
    });
    child.once('error', fail);
    child.once('exit', (code) => {
      if (code !== 0) fail(new Error(`load generator exited with ${code} before answering`));
      probesArrived([]);
    });
    child.send(job);
  });
}

// ---------------------------------------------------------------------------------------------
// A role of the ledger in its own process
// ---------------------------------------------------------------------------------------------

export interface LedgerProcess {
  url: string;
  pid: number;
  /** CPU seconds (user + system) the process has used so far, from /proc (Linux). */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * Starts `ledger <role>` as its own process (how the roles are deployed apart) on a free port and
 * waits until /health/ready answers 200. Its event loop is then its own: the bench's writer and
 * projection runners do not sit in front of its requests.
 */
export async function startLedgerProcess(role: string, env: Record<string, string>, options: { nice?: number; readyTimeoutMs?: number } = {}): Promise<LedgerProcess> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const port = await freePort();
  const child = fork(resolve(REPO_ROOT, 'src/cli/main.ts'), [role], {
    cwd: REPO_ROOT,
    // BENCH_LEDGER_EXEC_ARGV adds Node flags to the child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    execArgv: ['--max-semi-space-size=64', '--import', 'tsx', ...(process.env.BENCH_LEDGER_EXEC_ARGV?.split(' ').filter(Boolean) ?? [])],
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', resolveExit));
  // Linux nice is per thread; set early, it covers the threads Node starts later (libuv, V8).
  if (options.nice) os.setPriority(child.pid!, options.nice);
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ledger ${role} exited with ${child.exitCode} during start-up`);
    const ready = await fetch(`${url}/health/ready`).then((response) => response.status === 200, () => false);
    if (ready) break;
    if (Date.now() - started > readyTimeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`ledger ${role} was not ready within ${readyTimeoutMs} ms`);
    }
    await sleep(100);
  }
  const ticksPerSecond = 100;
  return {
    url,
    pid: child.pid!,
    cpuSeconds() {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolveListen) => probe.listen(0, '127.0.0.1', resolveListen));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolveClose) => probe.close(() => resolveClose()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// CPU of PostgreSQL backends (Linux /proc, local server)
// ---------------------------------------------------------------------------------------------

export { instrumentStore, startProbe, type Probe } from './commands-probes.js';

// ---------------------------------------------------------------------------------------------
// Valid domain events, built directly (what the deciders would have decided)
// ---------------------------------------------------------------------------------------------

export const CURRENCY = 'EUR';
const SEED_EPOCH_MS = Date.parse('2025-01-01T00:00:00Z');
let clockMs = SEED_EPOCH_MS;
/** Strictly increasing event times, a few ms apart, starting in the past. */
export function nextAt(): string {
  clockMs += 3;
  return new Date(clockMs).toISOString();
}

const event = (type: string, data: JsonObject, actor: string): EventToAppend => ({ id: randomUUID(), type, data, metadata: { actor, correlationId: randomUUID() } });

export function customerEvents(customerId: string): EventToAppend[] {
  const email = `${customerId}@example.com`;
  return [
    event('CustomerRegistered', { customerId, email, emailNormalized: email, firstName: 'Bench', lastName: 'Mark', at: nextAt() }, 'admin:bench'),
    event('CustomerActivated', { customerId, at: nextAt() }, 'admin:bench'),
  ];
}

export function accountOpened(accountId: string, customerId: string): EventToAppend {
  return event('AccountOpened', { accountId, customerId, currency: CURRENCY, accountType: 'checking', overdraftLimitMinor: 0n, at: nextAt() }, 'teller:bench');
}

/** A deposit (amount > 0) or withdrawal (amount < 0) with balanced legs against settlement. */
export function fundsMoved(accountId: string, amountMinor: bigint, balanceAfterMinor: bigint): EventToAppend {
  const deposit = amountMinor > 0n;
  const absolute = deposit ? amountMinor : -amountMinor;
  return event(
    deposit ? 'FundsDeposited' : 'FundsWithdrawn',
    {
      accountId,
      transactionId: randomUUID(),
      currency: CURRENCY,
      amountMinor: absolute,
      balanceAfterMinor,
      reference: null,
      description: deposit ? 'bench deposit' : 'bench withdrawal',
      legs: [
        { ledgerAccount: customerLedgerAccount(accountId), amountMinor },
        { ledgerAccount: settlementLedgerAccount(CURRENCY), amountMinor: -amountMinor },
      ],
      at: nextAt(),
    },
    'teller:bench',
  );
}

/** A hold placed and released (no transfer): two events, no money moved. */
export function holdPair(accountId: string, amountMinor: bigint, balanceMinor: bigint): EventToAppend[] {
  const holdId = randomUUID();
  const placedAt = nextAt();
  return [
    event(
      'HoldPlaced',
      {
        accountId,
        holdId,
        transferId: null,
        currency: CURRENCY,
        amountMinor,
        expiresAt: new Date(Date.parse(placedAt) + 86_400_000).toISOString(),
        reference: 'card-auth',
        description: 'bench hold',
        heldAfterMinor: amountMinor,
        availableAfterMinor: balanceMinor - amountMinor,
        at: placedAt,
      },
      'teller:bench',
    ),
    event('HoldReleased', { accountId, holdId, transferId: null, currency: CURRENCY, amountMinor, heldAfterMinor: 0n, at: nextAt() }, 'teller:bench'),
  ];
}

/**
 * Movements on one account: deposits and withdrawals that keep the balance positive, and a hold
 * pair every ~20 events. `balance` is the balance before and is updated in place.
 */
export function movements(accountId: string, count: number, balance: { minor: bigint }): EventToAppend[] {
  const events: EventToAppend[] = [];
  while (events.length < count) {
    if (events.length % 20 === 19 && count - events.length >= 2 && balance.minor > 100n) {
      events.push(...holdPair(accountId, balance.minor / 2n, balance.minor));
      continue;
    }
    const withdraw = balance.minor > 5_000n && Math.random() < 0.4;
    const amount = BigInt(100 + Math.floor(Math.random() * 10_000));
    const signed = withdraw ? -(amount < balance.minor ? amount : balance.minor / 2n) : amount;
    balance.minor += signed;
    events.push(fundsMoved(accountId, signed, balance.minor));
  }
  return events;
}
