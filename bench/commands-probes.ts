/**
 * Where the time goes, for bench/commands.bench.ts: CPU of the machine and of the PostgreSQL backends
 * serving the benchmark's database (Linux /proc, PostgreSQL on this machine), commits and WAL syncs,
 * the event store's append latency and batching (timed by wrapping the store instance, no src change),
 * and how many requests wait for a pooled connection.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type pg from 'pg';
import type { EventStore } from '../src/eventstore/port.js';

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** Busy and total jiffies of the whole machine; undefined off Linux. */
export function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    return { busy: total - (fields[3] ?? 0) - (fields[4] ?? 0), total };
  } catch {
    return undefined;
  }
}

/** utime + stime of a process in clock ticks; undefined when it is gone or not visible. */
export function processTicks(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

interface DatabaseCounters {
  commits: number;
  walSyncs: number | undefined;
  /** The server's WAL insert position in bytes (the whole server, not only this database). */
  walBytes: number | undefined;
  backendTicks: Map<number, number>;
}

async function databaseCounters(client: pg.Client, database: string): Promise<DatabaseCounters> {
  const commits = await client.query<{ commits: string }>('select xact_commit::text as commits from pg_stat_database where datname = $1', [database]);
  const walSyncs = await client.query<{ syncs: string }>('select wal_sync::text as syncs from pg_stat_wal').catch(() => undefined);
  const wal = await client.query<{ bytes: string }>(`select (pg_current_wal_lsn() - '0/0'::pg_lsn)::text as bytes`).catch(() => undefined);
  const backends = await client.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [database]);
  const backendTicks = new Map<number, number>();
  for (const { pid } of backends.rows) {
    const ticks = processTicks(pid);
    if (ticks !== undefined) backendTicks.set(pid, ticks);
  }
  return { commits: Number(commits.rows[0]?.commits ?? 0), walSyncs: walSyncs?.rows[0] ? Number(walSyncs.rows[0].syncs) : undefined, walBytes: wal?.rows[0] ? Number(wal.rows[0].bytes) : undefined, backendTicks };
}

export interface StoreTimings {
  appends: number;
  events: number;
  appendMsTotal: number;
  appendMs: number[];
  reads: number;
  readMsTotal: number;
}

function emptyTimings(): StoreTimings {
  return { appends: 0, events: 0, appendMsTotal: 0, appendMs: [], reads: 0, readMsTotal: 0 };
}

const APPEND_SAMPLES_MAX = 200_000;

/** Wraps append and readStream of this store instance to time them. Call before the write side is built. */
export function instrumentStore(store: EventStore): { take(): StoreTimings } {
  let timings = emptyTimings();
  const append = store.append.bind(store);
  const readStream = store.readStream.bind(store);
  store.append = async (streamName, events, options) => {
    const started = performance.now();
    try {
      return await append(streamName, events, options);
    } finally {
      const ms = performance.now() - started;
      timings.appends++;
      timings.events += events.length;
      timings.appendMsTotal += ms;
      if (timings.appendMs.length < APPEND_SAMPLES_MAX) timings.appendMs.push(ms);
    }
  };
  store.readStream = async (streamName, options) => {
    const started = performance.now();
    try {
      return await readStream(streamName, options);
    } finally {
      timings.reads++;
      timings.readMsTotal += performance.now() - started;
    }
  };
  return {
    take() {
      const taken = timings;
      timings = emptyTimings();
      return taken;
    },
  };
}

export interface Probe {
  /** PostgreSQL backends of the benchmark's database, in cores; NaN when not measurable (remote server). */
  pgBackendCpuCores: number;
  machineCpuCores: number;
  commitsPerSecond: number;
  walSyncsPerSecond: number;
  /** WAL written by the whole server, bytes per second. */
  walBytesPerSecond: number;
  appendsPerSecond: number;
  eventsPerAppend: number;
  appendP50Ms: number;
  appendP99Ms: number;
  /** Mean of the pool's waiting-request count, sampled every 20 ms. */
  poolWaitingMean: number;
  readsPerSecond: number;
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** Starts measuring; `finish()` returns what happened since. */
export async function startProbe(adminUrlClient: pg.Client, database: string, pool: pg.Pool, store: { take(): StoreTimings }): Promise<{ finish(): Promise<Probe> }> {
  store.take();
  const before = await databaseCounters(adminUrlClient, database);
  const ticksBefore = machineTicks();
  const started = performance.now();
  let waitingSum = 0;
  let waitingSamples = 0;
  const sampler = setInterval(() => {
    waitingSum += pool.waitingCount;
    waitingSamples++;
  }, 20);
  return {
    async finish() {
      clearInterval(sampler);
      const seconds = (performance.now() - started) / 1000;
      const timings = store.take();
      const ticksAfter = machineTicks();
      const after = await databaseCounters(adminUrlClient, database);
      let backendTicks = 0;
      for (const [pid, ticks] of after.backendTicks) backendTicks += ticks - (before.backendTicks.get(pid) ?? 0);
      const local = after.backendTicks.size > 0;
      const sorted = timings.appendMs.sort((a, b) => a - b);
      return {
        pgBackendCpuCores: local ? backendTicks / CLOCK_TICKS_PER_SECOND / seconds : Number.NaN,
        machineCpuCores:
          ticksBefore && ticksAfter && ticksAfter.total > ticksBefore.total
            ? ((ticksAfter.busy - ticksBefore.busy) / (ticksAfter.total - ticksBefore.total)) * os.cpus().length
            : Number.NaN,
        commitsPerSecond: (after.commits - before.commits) / seconds,
        walSyncsPerSecond: after.walSyncs !== undefined && before.walSyncs !== undefined ? (after.walSyncs - before.walSyncs) / seconds : Number.NaN,
        walBytesPerSecond: after.walBytes !== undefined && before.walBytes !== undefined ? (after.walBytes - before.walBytes) / seconds : Number.NaN,
        appendsPerSecond: timings.appends / seconds,
        eventsPerAppend: timings.appends > 0 ? timings.events / timings.appends : Number.NaN,
        appendP50Ms: percentile(sorted, 0.5),
        appendP99Ms: percentile(sorted, 0.99),
        poolWaitingMean: waitingSamples > 0 ? waitingSum / waitingSamples : 0,
        readsPerSecond: timings.reads / seconds,
      };
    },
  };
}
