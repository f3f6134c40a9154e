/**
 * Load generator child process for bench/commands.bench.ts. It runs autocannon on a process of its
 * own so the client's CPU never shares an event loop with the server under test (on a 2-core
 * machine the two still share the cores; the no-op ceiling measures exactly that).
 *
 * Protocol (IPC): the parent sends one LoadJob, the child answers with one LoadOutcome and exits.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

export type CaseKind = 'random' | 'hot' | 'noop';

export interface LoadJob {
  /** Base URL of the server under test, e.g. http://127.0.0.1:34567 */
  url: string;
  kind: CaseKind;
  connections: number;
  seconds: number;
  /** Accounts to deposit into; `hot` uses the first only, `noop` none. */
  accountIds: string[];
  /** Teller bearer token: sent on every case, so the no-op request carries the same headers. */
  token: string;
}

export interface LoadOutcome {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationSeconds: number;
  statusCodes: Record<string, number>;
  /** The first few non-2xx answers: status and body. */
  firstErrors: string[];
  /** CPU this load generator spent during the run, in cores (1.0 = one core busy). */
  loadgenCpuCores: number;
}

/** The request body of every case, deposits and no-op alike. */
export const DEPOSIT_BODY = JSON.stringify({ amount: '1.00', currency: 'EUR' });
const FIRST_ERRORS_KEPT = 5;

// autocannon ships no types; this is the part of its API the benchmark uses.
interface AutocannonRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  setupRequest?: (request: AutocannonRequest, context: Record<string, unknown>) => AutocannonRequest;
  onResponse?: (status: number, body: string) => void;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;

export async function runJob(job: LoadJob): Promise<LoadOutcome> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  // Unique per job and per request: a repeated key would be answered as a replay, not a deposit.
  const keyPrefix = randomUUID();
  let sequence = 0;
  const firstErrors: string[] = [];
  const accountIds = job.kind === 'hot' ? job.accountIds.slice(0, 1) : job.accountIds;
  if (job.kind !== 'noop' && accountIds.length === 0) throw new Error('no accounts to deposit into');

  const request: AutocannonRequest = {
    method: 'POST',
    path: job.kind === 'noop' ? '/noop' : `/v1/accounts/${accountIds[0]}/deposits`,
    headers: {
      authorization: `Bearer ${job.token}`,
      'content-type': 'application/json',
      'idempotency-key': `${keyPrefix}-0`,
    },
    body: DEPOSIT_BODY,
    setupRequest: (req) => {
      const accountId = accountIds.length > 0 ? accountIds[Math.floor(Math.random() * accountIds.length)] : undefined;
      return {
        ...req,
        path: job.kind === 'noop' ? '/noop' : `/v1/accounts/${accountId}/deposits`,
        headers: { ...req.headers, 'idempotency-key': `${keyPrefix}-${++sequence}` },
      };
    },
    onResponse: (status, body) => {
      if ((status < 200 || status >= 300) && firstErrors.length < FIRST_ERRORS_KEPT) firstErrors.push(`${status} ${String(body).slice(0, 500)}`);
    },
  };

  const cpuBefore = process.cpuUsage();
  const startedAt = process.hrtime.bigint();
  const result = await autocannon({
    url: job.url,
    connections: job.connections,
    duration: job.seconds,
    requests: [request],
    timeout: 30,
  });
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMicros = Number(process.hrtime.bigint() - startedAt) / 1_000;
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count;
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    total: result.requests.total,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationSeconds: result.duration,
    statusCodes,
    firstErrors,
    loadgenCpuCores: (cpu.user + cpu.system) / elapsedMicros,
  };
}

/** Set by the parent's fork(); tsx itself runs scripts with an IPC channel, so process.send alone proves nothing. */
export const LOADGEN_ENV = 'COMMANDS_BENCH_LOADGEN';

// Started by the parent with fork(): answer exactly one job.
if (process.env[LOADGEN_ENV] === '1' && process.send) {
  process.once('message', (job: LoadJob) => {
    // Tell the parent the measured window starts now (after this process's own start-up).
    process.send!({ started: true });
    runJob(job).then(
      (outcome) => process.send!({ ok: true, outcome }, () => process.exit(0)),
      (error: unknown) => process.send!({ ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) }, () => process.exit(1)),
    );
  });
}
