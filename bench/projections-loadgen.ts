/**
 * Load generator child process for bench/projections.bench.ts and bench/transfers.bench.ts:
 * autocannon at a fixed offered rate (overallRate), in a process of its own so the client does not
 * share the server's event loop (on a 2-core machine it still shares the cores).
 *
 * Jobs: `get` picks a random path of `paths` per request (history pages); `transfers` posts
 * POST /v1/transfers with a fresh transferId per request between two random distinct accounts, and
 * reports when each request was sent (epoch ms), keyed by transferId.
 *
 * Protocol (IPC, advanced serialization): the parent sends one LoadJob, the child answers
 * { started } when its clock starts, then one LoadOutcome, and exits.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

export interface LoadJob {
  url: string;
  kind: 'get' | 'transfers';
  seconds: number;
  connections: number;
  /** Requests per second across all connections. */
  overallRate: number;
  token: string;
  paths?: string[];
  accountIds?: string[];
}

export interface LoadOutcome {
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  total: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationSeconds: number;
  firstErrors: string[];
  loadgenCpuCores: number;
  /** transfers only: transferId -> epoch ms when the request was handed to the socket. */
  sentAt?: Map<string, number>;
}

interface AutocannonRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
  onResponse?: (status: number, body: string) => void;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p90: number; p99: number; max: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;

const FIRST_ERRORS_KEPT = 5;

export async function runJob(job: LoadJob): Promise<LoadOutcome> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const firstErrors: string[] = [];
  const sentAt = new Map<string, number>();
  const nowMs = () => performance.timeOrigin + performance.now();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
  const headers: Record<string, string> = { authorization: `Bearer ${job.token}` };
  let request: AutocannonRequest;
  if (job.kind === 'get') {
    const paths = job.paths ?? [];
    if (paths.length === 0) throw new Error('no paths to get');
    request = { method: 'GET', path: paths[0]!, headers, setupRequest: (req) => ({ ...req, path: pick(paths) }) };
  } else {
    const accounts = job.accountIds ?? [];
    if (accounts.length < 2) throw new Error('transfers need at least two accounts');
    request = {
      method: 'POST',
      path: '/v1/transfers',
      headers: { ...headers, 'content-type': 'application/json' },
      body: '{}',
      setupRequest: (req) => {
        const transferId = randomUUID();
        const from = pick(accounts);
        let to = pick(accounts);
        while (to === from) to = pick(accounts);
        sentAt.set(transferId, nowMs());
        return { ...req, body: JSON.stringify({ transferId, fromAccountId: from, toAccountId: to, amount: '1.00', currency: 'EUR' }) };
      },
    };
  }
  request.onResponse = (status, body) => {
    if ((status < 200 || status >= 300) && firstErrors.length < FIRST_ERRORS_KEPT) firstErrors.push(`${status} ${String(body).slice(0, 300)}`);
  };
  const cpuBefore = process.cpuUsage();
  const startedAt = process.hrtime.bigint();
  const result = await autocannon({ url: job.url, connections: job.connections, overallRate: job.overallRate, duration: job.seconds, requests: [request], timeout: 30 });
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMicros = Number(process.hrtime.bigint() - startedAt) / 1_000;
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p90Ms: result.latency.p90,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    total: result.requests.total,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationSeconds: result.duration,
    firstErrors,
    loadgenCpuCores: (cpu.user + cpu.system) / elapsedMicros,
    ...(job.kind === 'transfers' ? { sentAt } : {}),
  };
}

export const LOADGEN_ENV = 'PROJECTIONS_BENCH_LOADGEN';

if (process.env[LOADGEN_ENV] === '1' && process.send) {
  process.once('message', (job: LoadJob) => {
    process.send!({ started: true });
    runJob(job).then(
      (outcome) => process.send!({ ok: true, outcome }, () => process.exit(0)),
      (error: unknown) => process.send!({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1)),
    );
  });
}
