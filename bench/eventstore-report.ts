/**
 * Result format, table and goal check shared by bench/eventstore.bench.ts (one run) and
 * bench/eventstore-median.ts (median of several runs' JSON files).
 */
import { median } from './eventstore-measure.js';

export type StoreName = 'ours' | 'ours-fn' | 'raw' | 'emmett';

export interface CaseSpec {
  /** Stable key, e.g. `single@8` or `batch100@8`. */
  key: string;
  label: string;
  connections: number;
  batch: number;
}

export interface CaseResult {
  key: string;
  label: string;
  connections: number;
  batch: number;
  store: StoreName;
  ops: number;
  events: number;
  elapsedSeconds: number;
  opsPerSecond: number;
  eventsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface MachineFacts {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  postgres: string;
  synchronousCommit: string;
  fsync: string;
  walSyncMethod: string;
  sharedBuffers: string;
  database: 'DATABASE_URL' | 'embedded';
}

export interface RunReport {
  startedAt: string;
  seconds: number;
  warmupSeconds: number;
  facts: MachineFacts;
  results: CaseResult[];
}

export const STORE_LABELS: Record<StoreName, string> = {
  ours: 'ours (PostgresEventStore.append)',
  'ours-fn': 'ours, ledger_append only (diagnostic)',
  raw: 'raw INSERT (ceiling)',
  emmett: 'Emmett 0.42 PostgreSQL',
};

const STORE_ORDER: StoreName[] = ['ours', 'ours-fn', 'raw', 'emmett'];

export const SINGLE_RATIO_GOAL = 0.8;
export const BATCH_EVENTS_GOAL = 40_000;

/** Median of every figure, per (case, store), across runs. */
export function medianResults(runs: readonly RunReport[]): CaseResult[] {
  const groups = new Map<string, CaseResult[]>();
  for (const run of runs) {
    for (const result of run.results) {
      const id = `${result.key}|${result.store}`;
      const group = groups.get(id) ?? [];
      group.push(result);
      groups.set(id, group);
    }
  }
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    const pick = (field: 'ops' | 'events' | 'elapsedSeconds' | 'opsPerSecond' | 'eventsPerSecond' | 'p50Ms' | 'p99Ms') =>
      median(group.map((result) => result[field]));
    return {
      ...first,
      ops: pick('ops'),
      events: pick('events'),
      elapsedSeconds: pick('elapsedSeconds'),
      opsPerSecond: pick('opsPerSecond'),
      eventsPerSecond: pick('eventsPerSecond'),
      p50Ms: pick('p50Ms'),
      p99Ms: pick('p99Ms'),
    };
  });
}

function formatRate(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a';
}

function formatMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

function formatRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

/** Markdown table: per case, one row per store, ratios of events/s against raw and against Emmett. */
export function renderTable(results: readonly CaseResult[]): string {
  const keys = [...new Set(results.map((result) => result.key))];
  const lines = [
    '| case | store | appends/s | events/s | p50 ms | p99 ms | vs raw INSERT | vs Emmett |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const key of keys) {
    const rows = results.filter((result) => result.key === key);
    const raw = rows.find((result) => result.store === 'raw');
    const emmett = rows.find((result) => result.store === 'emmett');
    for (const store of STORE_ORDER) {
      const row = rows.find((result) => result.store === store);
      if (!row) continue;
      const vsRaw = raw && store !== 'raw' ? formatRatio(row.eventsPerSecond / raw.eventsPerSecond) : '';
      const vsEmmett = emmett && store !== 'emmett' ? formatRatio(row.eventsPerSecond / emmett.eventsPerSecond) : '';
      lines.push(
        `| ${row.label} | ${STORE_LABELS[store]} | ${formatRate(row.opsPerSecond)} | ${formatRate(row.eventsPerSecond)} | ${formatMs(row.p50Ms)} | ${formatMs(row.p99Ms)} | ${vsRaw} | ${vsEmmett} |`,
      );
    }
  }
  return lines.join('\n');
}

export function renderFacts(facts: MachineFacts): string {
  return [
    `machine: ${facts.cpus} CPUs (${facts.cpuModel}), ${facts.memoryGiB.toFixed(1)} GiB, ${facts.platform}, Node ${facts.node}`,
    `server: ${facts.postgres} (${facts.database}), synchronous_commit=${facts.synchronousCommit}, fsync=${facts.fsync}, wal_sync_method=${facts.walSyncMethod}, shared_buffers=${facts.sharedBuffers}`,
  ].join('\n');
}

export interface GoalCheck {
  goal: string;
  met: boolean;
  detail: string;
}

export function checkGoals(results: readonly CaseResult[]): GoalCheck[] {
  const find = (key: string, store: StoreName) => results.find((result) => result.key === key && result.store === store);
  const checks: GoalCheck[] = [];
  for (const key of ['single@8', 'single@16']) {
    const ours = find(key, 'ours');
    const raw = find(key, 'raw');
    if (!ours || !raw) continue;
    const ratio = ours.eventsPerSecond / raw.eventsPerSecond;
    checks.push({
      goal: `${ours.label}: ≥${SINGLE_RATIO_GOAL * 100}% of the raw INSERT ceiling`,
      met: ratio >= SINGLE_RATIO_GOAL,
      detail: `${(ratio * 100).toFixed(0)}% (${formatRate(ours.eventsPerSecond)} vs ${formatRate(raw.eventsPerSecond)} events/s)`,
    });
  }
  for (const ours of results.filter((result) => result.store === 'ours' && result.batch > 1)) {
    checks.push({
      goal: `${ours.label}: ≥${formatRate(BATCH_EVENTS_GOAL)} events/s`,
      met: ours.eventsPerSecond >= BATCH_EVENTS_GOAL,
      detail: `${formatRate(ours.eventsPerSecond)} events/s`,
    });
  }
  for (const ours of results.filter((result) => result.store === 'ours')) {
    const emmett = find(ours.key, 'emmett');
    if (!emmett) continue;
    const ratio = ours.eventsPerSecond / emmett.eventsPerSecond;
    checks.push({
      goal: `${ours.label}: ahead of Emmett`,
      met: ratio > 1,
      detail: `${formatRatio(ratio)} (${formatRate(ours.eventsPerSecond)} vs ${formatRate(emmett.eventsPerSecond)} events/s)`,
    });
  }
  return checks;
}

export function renderGoals(checks: readonly GoalCheck[]): string {
  return checks.map((check) => `${check.met ? 'MET   ' : 'MISSED'} ${check.goal}: ${check.detail}`).join('\n');
}
