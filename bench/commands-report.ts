/**
 * Medians, tables and goal checks for bench/commands.bench.ts.
 */
import type { CaseKind, LoadOutcome } from './commands-loadgen.js';
import type { Probe } from './commands-probes.js';

export interface CaseSpec {
  kind: CaseKind;
  connections: number;
}

/** One measured case of one run: the load generator's numbers plus what the server process spent. */
export interface CaseResult extends CaseSpec, LoadOutcome, Probe {
  run: number;
  /** CPU of the process serving the ledger and the no-op route, in cores (1.0 = one core busy). */
  serverCpuCores: number;
  /** Event-loop utilisation of the server process, 0..1. */
  serverEventLoopUtilisation: number;
}

export interface MedianRow extends CaseSpec, Probe {
  runs: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  serverCpuCores: number;
  serverEventLoopUtilisation: number;
  loadgenCpuCores: number;
  /** Every run's req/s, to show the spread. */
  allRequestsPerSecond: number[];
}

export interface MachineFacts {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  postgres: string;
  synchronousCommit: string;
  fsync: string;
  database: 'DATABASE_URL' | 'embedded';
  pgPoolMax: number;
  loadAverage: string;
}

export const CASE_LABELS: Record<CaseKind, string> = {
  random: 'deposit, random account',
  hot: 'deposit, one hot account',
  noop: 'no-op route (ceiling)',
};

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Median per (case, connections) over runs; non-2xx and errors are summed, never medianed away. */
export function medianRows(results: readonly CaseResult[], specs: readonly CaseSpec[]): MedianRow[] {
  return specs.map((spec) => {
    const runs = results.filter((result) => result.kind === spec.kind && result.connections === spec.connections);
    const pick = (field: (result: CaseResult) => number) => median(runs.map(field));
    return {
      ...spec,
      runs: runs.length,
      requestsPerSecond: pick((result) => result.requestsPerSecond),
      p50Ms: pick((result) => result.p50Ms),
      p99Ms: pick((result) => result.p99Ms),
      non2xx: runs.reduce((sum, result) => sum + result.non2xx, 0),
      errors: runs.reduce((sum, result) => sum + result.errors + result.timeouts, 0),
      serverCpuCores: pick((result) => result.serverCpuCores),
      serverEventLoopUtilisation: pick((result) => result.serverEventLoopUtilisation),
      loadgenCpuCores: pick((result) => result.loadgenCpuCores),
      pgBackendCpuCores: pick((result) => result.pgBackendCpuCores),
      machineCpuCores: pick((result) => result.machineCpuCores),
      commitsPerSecond: pick((result) => result.commitsPerSecond),
      walSyncsPerSecond: pick((result) => result.walSyncsPerSecond),
      walBytesPerSecond: pick((result) => result.walBytesPerSecond),
      appendsPerSecond: pick((result) => result.appendsPerSecond),
      eventsPerAppend: pick((result) => result.eventsPerAppend),
      appendP50Ms: pick((result) => result.appendP50Ms),
      appendP99Ms: pick((result) => result.appendP99Ms),
      poolWaitingMean: pick((result) => result.poolWaitingMean),
      readsPerSecond: pick((result) => result.readsPerSecond),
      allRequestsPerSecond: runs.map((result) => result.requestsPerSecond),
    };
  });
}

function ceilingOf(rows: readonly MedianRow[], connections: number): number | undefined {
  return rows.find((row) => row.kind === 'noop' && row.connections === connections)?.requestsPerSecond;
}

const integer = (value: number) => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '-');
const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

/** The README table: case | connections | req/s | p50 ms | p99 ms | ratio to no-op ceiling. */
export function renderTable(rows: readonly MedianRow[]): string {
  const lines = ['| case | connections | req/s | p50 ms | p99 ms | ratio to no-op ceiling | non-2xx |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const row of rows) {
    const ceiling = ceilingOf(rows, row.connections);
    const ratio = ceiling ? `${((row.requestsPerSecond / ceiling) * 100).toFixed(1)} %` : '-';
    lines.push(`| ${CASE_LABELS[row.kind]} | ${row.connections} | ${integer(row.requestsPerSecond)} | ${fixed(row.p50Ms, 0)} | ${fixed(row.p99Ms, 0)} | ${ratio} | ${row.non2xx + row.errors} |`);
  }
  return lines.join('\n');
}

/** Where the time went (medians): CPU of each party, the event store's appends, the pool queue, and every run's req/s. */
export function renderDiagnostics(rows: readonly MedianRow[], cores: number): string {
  const lines = [
    `| case | conns | server CPU | server loop busy | loadgen CPU | PG backends CPU | machine CPU (of ${cores}) | appends/s | events/append | append p50 ms | append p99 ms | pool waiting | commits/s | WAL syncs/s | req/s per run |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const row of rows) {
    const store = row.kind === 'noop';
    lines.push(
      `| ${CASE_LABELS[row.kind]} | ${row.connections} | ${fixed(row.serverCpuCores, 2)} | ${fixed(row.serverEventLoopUtilisation * 100, 0)} % | ${fixed(row.loadgenCpuCores, 2)} | ${fixed(row.pgBackendCpuCores, 2)} | ${fixed(row.machineCpuCores, 2)} | ` +
        `${store ? '-' : integer(row.appendsPerSecond)} | ${store ? '-' : fixed(row.eventsPerAppend, 2)} | ${store ? '-' : fixed(row.appendP50Ms, 1)} | ${store ? '-' : fixed(row.appendP99Ms, 1)} | ${fixed(row.poolWaitingMean, 1)} | ${integer(row.commitsPerSecond)} | ${integer(row.walSyncsPerSecond)} | ${row.allRequestsPerSecond.map(integer).join(', ')} |`,
    );
  }
  return lines.join('\n');
}

export function renderFacts(facts: MachineFacts): string {
  return [
    `machine: ${facts.cores} cores (${facts.cpuModel}), ${facts.memoryGiB.toFixed(1)} GiB, ${facts.platform}, load average ${facts.loadAverage}`,
    `node ${facts.node}; ${facts.postgres} (${facts.database}); synchronous_commit=${facts.synchronousCommit}, fsync=${facts.fsync}; PG_POOL_MAX=${facts.pgPoolMax}`,
  ].join('\n');
}

export const GOAL_DEPOSITS_PER_SECOND = 1_500;
export const GOAL_P99_MS = 50;

/** Issue 3's goal: at least 1,500 deposits/s to random accounts with p99 under 50 ms, at some measured concurrency. */
export function renderGoal(rows: readonly MedianRow[]): { met: boolean; text: string } {
  const random = rows.filter((row) => row.kind === 'random');
  const lines = random.map((row) => {
    const met = row.requestsPerSecond >= GOAL_DEPOSITS_PER_SECOND && row.p99Ms < GOAL_P99_MS && row.non2xx + row.errors === 0;
    return `${met ? 'MET   ' : 'MISSED'} ${row.connections} connections: ${integer(row.requestsPerSecond)} deposits/s (goal >= ${integer(GOAL_DEPOSITS_PER_SECOND)}), p99 ${fixed(row.p99Ms, 0)} ms (goal < ${GOAL_P99_MS})${row.non2xx + row.errors > 0 ? `, ${row.non2xx + row.errors} failed requests` : ''}`;
  });
  const met = random.some((row) => row.requestsPerSecond >= GOAL_DEPOSITS_PER_SECOND && row.p99Ms < GOAL_P99_MS && row.non2xx + row.errors === 0);
  return { met, text: [`goal (>= ${integer(GOAL_DEPOSITS_PER_SECOND)} deposits/s to random accounts, p99 < ${GOAL_P99_MS} ms): ${met ? 'MET' : 'MISSED'}`, ...lines].join('\n') };
}
