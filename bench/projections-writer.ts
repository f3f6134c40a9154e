/**
 * The projections benchmark's deposit writer, in this process or in a child process of its own.
 *
 * In a child (`startWriterProcess`) the writer is another process, as the write API would be: the
 * projection runners then do not share an event loop with the load they are measured against.
 * The child gets its job over IPC, appends until told to stop, and answers with what it wrote and
 * the balances it left, so the parent's later writes continue from them.
 */
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createPool } from '../src/shared/postgres/pool.js';
import { PostgresEventStore } from '../src/eventstore/postgres/eventStore.js';
import type { EventStore, EventToAppend } from '../src/eventstore/port.js';
import { accountStream } from '../src/write/streams.js';
import { fundsMoved, sleep } from './projections-support.js';

export interface WriterAccounts {
  hotAccountId: string;
  accountIds: string[];
  balances: Map<string, { minor: bigint }>;
}

export interface WriterOptions {
  /** Events per second, 0 for as fast as possible. */
  rate: number;
  perAppend: number;
  concurrency: number;
  total?: number;
  hotShare?: number;
}

export interface WriterResult {
  events: number;
  appends: number;
  seconds: number;
}

export interface Writer {
  readonly events: number;
  done: Promise<void>;
  stop(): Promise<WriterResult>;
}

/**
 * Appends deposits of `perAppend` events to random accounts at `rate` events/s (0 = as fast as
 * possible) until `total` events were written or stop() is called.
 */
export function startWriter(store: EventStore, accounts: WriterAccounts, options: WriterOptions): Writer {
  let stopped = false;
  let events = 0;
  let appends = 0;
  const started = performance.now();
  const slices = Array.from({ length: options.concurrency }, (_unused, worker) => accounts.accountIds.filter((_id, index) => index % options.concurrency === worker));
  const hotWorker = 0;
  const done = Promise.all(
    slices.map(async (slice, worker) => {
      let sent = 0;
      while (!stopped && (options.total === undefined || events < options.total)) {
        const useHot = worker === hotWorker && options.hotShare !== undefined && Math.random() < options.hotShare * options.concurrency;
        const accountId = useHot ? accounts.hotAccountId : slice[Math.floor(Math.random() * slice.length)]!;
        const balance = accounts.balances.get(accountId)!;
        const batch: EventToAppend[] = [];
        for (let i = 0; i < options.perAppend; i++) {
          const amount = BigInt(100 + Math.floor(Math.random() * 5_000));
          balance.minor += amount;
          batch.push(fundsMoved(accountId, amount, balance.minor));
        }
        await store.append(accountStream(accountId), batch, { expectedRevision: 'any' });
        events += batch.length;
        appends++;
        sent += batch.length;
        if (options.rate > 0) {
          const dueMs = started + (sent * options.concurrency * 1000) / options.rate;
          const waitMs = dueMs - performance.now();
          if (waitMs > 1) await sleep(waitMs);
        }
      }
    }),
  ).then(() => undefined);
  return {
    done,
    get events() {
      return events;
    },
    async stop() {
      stopped = true;
      await done;
      return { events, appends, seconds: (performance.now() - started) / 1000 };
    },
  };
}

interface Job {
  databaseUrl: string;
  hotAccountId: string;
  balances: [string, string][];
  options: WriterOptions;
}

interface Answer {
  result: WriterResult;
  balances: [string, string][];
}

/** Runs the writer in a child process; stop() answers once the child wrote its last append. */
export async function startWriterProcess(databaseUrl: string, accounts: WriterAccounts, options: WriterOptions): Promise<Pick<Writer, 'stop'> & { pid: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['child'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const answered = new Promise<Answer>((resolve, reject) => {
    child.once('message', (message) => resolve(message as Answer));
    void exited.then((code) => reject(new Error(`writer process exited with ${code} before answering`)));
  });
  const started = new Promise<void>((resolve) => child.once('spawn', () => resolve()));
  await started;
  const job: Job = { databaseUrl, hotAccountId: accounts.hotAccountId, balances: [...accounts.balances].map(([id, balance]) => [id, balance.minor.toString()]), options };
  child.send(job);
  return {
    pid: child.pid!,
    async stop() {
      child.send('stop');
      const answer = await answered;
      await exited;
      for (const [id, minor] of answer.balances) accounts.balances.get(id)!.minor = BigInt(minor);
      return answer.result;
    },
  };
}

async function runChild(job: Job): Promise<void> {
  // The write API's own pool settings, as it would append.
  const pool = createPool(job.databaseUrl, { max: job.options.concurrency + 2, statementTimeoutMs: 30_000, applicationName: 'bench-writer' });
  const store = new PostgresEventStore(pool, job.databaseUrl, { logger: pino({ level: 'silent' }) });
  const balances = new Map(job.balances.map(([id, minor]) => [id, { minor: BigInt(minor) }]));
  const writer = startWriter(store, { hotAccountId: job.hotAccountId, accountIds: [...balances.keys()], balances }, job.options);
  await new Promise<void>((resolve) => process.on('message', (message) => message === 'stop' && resolve()));
  const result = await writer.stop();
  await store.close();
  await pool.end();
  process.send!({ result, balances: [...balances].map(([id, balance]) => [id, balance.minor.toString()]) } satisfies Answer, () => process.exit(0));
}

if (process.argv[2] === 'child' && process.send) {
  process.once('message', (job) => {
    runChild(job as Job).catch((error: unknown) => {
      console.error('writer process failed', error);
      process.exit(1);
    });
  });
}
