/**
 * Load generator child process for bench/projections.bench.ts and bench/transfers.bench.ts:
 * an open loop at a fixed, evenly paced rate (see runJob), in a process of its own so the client
 * does not share the server's event loop (on a 2-core machine it still shares the cores).
 *
 * Jobs: `get` picks a random path of `paths` per request (history pages); `transfers` posts
 * POST /v1/transfers with a fresh transferId per request between two random distinct accounts, and
 * reports when each request was sent (epoch ms), keyed by transferId. A `transfers` job may also
 * probe (see runProbes): here, not in the parent, whose process is the ledger under test.
 *
 * Protocol (IPC, advanced serialization): the parent sends one LoadJob, the child opens its
 * connections, answers { started } when its clock starts, then sends one LoadOutcome, and exits.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
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
  /** transfers only: every everyMs one transfer of its own, polled every pollMs until it is terminal. */
  probe?: { everyMs: number; pollMs: number; inFlightMax: number };
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
  /** transfers only, those not refused: transferId -> epoch ms when the request was due (the open loop sends it then, or late and counted). */
  sentAt?: Map<string, number>;
  /**
   * With a probe: each probe transfer's latency from its POST to a GET that showed it terminal.
   * It settles after the outcome itself, once the last probe ended: the outcome marks the end of
   * the window (the parent measures CPU to it), the probes of its last seconds end later.
   */
  probeLatenciesMs?: Promise<number[]>;
}

const FIRST_ERRORS_KEPT = 5;
const TICK_MS = 1;

/**
 * Open loop at an even pace: request i is due at start + i / rate and its latency is counted from
 * that due time, so a server (or a client) that falls behind pays for the wait and nothing is
 * omitted. autocannon's overallRate is not used: it lets each connection send its whole per-second
 * budget back to back at the top of every second and then pause, so "200 req/s" arrived as a burst
 * of 200 requests once a second (history p50 23 ms and p99 169 ms where an even 200 req/s measures
 * a few ms), and its coordinated-omission correction assumes a 1 ms interval at any rate.
 */
export async function runJob(job: LoadJob, onStarted: () => void = () => undefined): Promise<LoadOutcome> {
  const firstErrors: string[] = [];
  const sentAt = new Map<string, number>();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
  const target = new URL(job.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.connections });
  const paths = job.paths ?? [];
  const accounts = job.accountIds ?? [];
  if (job.kind === 'get' && paths.length === 0) throw new Error('no paths to get');
  if (job.kind === 'transfers' && accounts.length < 2) throw new Error('transfers need at least two accounts');

  const total = Math.max(1, Math.round(job.overallRate * job.seconds));
  const intervalMs = 1_000 / job.overallRate;
  const latencies = new Float64Array(total);
  let completed = 0;
  let ok2xx = 0;
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  let issued = 0;

  const send = (dueAt: number) =>
    new Promise<void>((resolve) => {
      let path: string;
      let body: string | undefined;
      let transferId: string | undefined;
      if (job.kind === 'get') {
        path = pick(paths);
      } else {
        transferId = randomUUID();
        const from = pick(accounts);
        let to = pick(accounts);
        while (to === from) to = pick(accounts);
        sentAt.set(transferId, performance.timeOrigin + dueAt);
        path = '/v1/transfers';
        body = JSON.stringify({ transferId, fromAccountId: from, toAccountId: to, amount: '1.00', currency: 'EUR' });
      }
      const headers: Record<string, string> = { authorization: `Bearer ${job.token}` };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(body));
      }
      const request = http.request(
        { host: target.hostname, port: target.port, path, method: body === undefined ? 'GET' : 'POST', headers, agent, timeout: REQUEST_TIMEOUT_MS },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            latencies[completed++] = performance.now() - dueAt;
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) ok2xx += 1;
            else {
              non2xx += 1;
              // Refused (for example 503 while the process manager is behind): nothing to wait for.
              if (transferId !== undefined) sentAt.delete(transferId);
              if (firstErrors.length < FIRST_ERRORS_KEPT) firstErrors.push(`${status} ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`);
            }
            resolve();
          });
        },
      );
      request.on('timeout', () => {
        timeouts += 1;
        request.destroy(new Error('timeout'));
      });
      request.on('error', (error) => {
        errors += 1;
        if (firstErrors.length < FIRST_ERRORS_KEPT) firstErrors.push(error.message);
        resolve();
      });
      request.end(body);
    });

  await openConnections(target, agent, job.connections);
  onStarted();
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const probing = job.kind === 'transfers' && job.probe ? runProbes(target, job.token, accounts, job.probe, () => issued >= total) : undefined;
  const inFlight: Promise<void>[] = [];
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      while (issued < total && startedAt + issued * intervalMs <= now) {
        inFlight.push(send(startedAt + issued * intervalMs));
        issued += 1;
      }
      if (issued >= total) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  await Promise.all(inFlight);
  const elapsedMs = performance.now() - startedAt;
  const cpu = process.cpuUsage(cpuBefore);
  agent.destroy();
  const sorted = Array.from(latencies.subarray(0, completed)).sort((left, right) => left - right);
  const at = (fraction: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!);
  return {
    requestsPerSecond: completed / (elapsedMs / 1_000),
    p50Ms: round(at(0.5)),
    p90Ms: round(at(0.9)),
    p99Ms: round(at(0.99)),
    maxMs: round(sorted.at(-1) ?? Number.NaN),
    total: completed,
    ok2xx,
    non2xx,
    errors,
    timeouts,
    durationSeconds: elapsedMs / 1_000,
    firstErrors,
    loadgenCpuCores: (cpu.user + cpu.system) / 1_000 / elapsedMs,
    ...(job.kind === 'transfers' ? { sentAt } : {}),
    ...(probing ? { probeLatenciesMs: probing } : {}),
  };
}

/** A probe gives up on a transfer not terminal within this. */
const PROBE_GIVE_UP_MS = 60_000;

/**
 * What a client polling the query API sees: every `everyMs` until `done()`, one transfer of its own,
 * then GET /v1/transfers/:id every `pollMs` until it is completed or failed. At most `inFlightMax`
 * at once, so polling never becomes the load it measures. Resolves with the latencies once the
 * last probe ended. Run in the load generator because the client's own work (HTTP parsing, timers)
 * took 4-5 % of the ledger's event loop when it ran in the benchmark's process (session 12 profile).
 */
async function runProbes(target: URL, token: string, accounts: readonly string[], probe: NonNullable<LoadJob['probe']>, done: () => boolean): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: probe.inFlightMax });
  const latencies: number[] = [];
  const running = new Set<Promise<void>>();
  const call = (method: 'GET' | 'POST', path: string, body?: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(body));
      }
      const request = http.request({ host: target.hostname, port: target.port, path, method, headers, agent, timeout: REQUEST_TIMEOUT_MS }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      request.on('timeout', () => request.destroy(new Error('timeout')));
      request.on('error', reject);
      request.end(body);
    });
  const one = async () => {
    const transferId = randomUUID();
    const from = accounts[Math.floor(Math.random() * accounts.length)]!;
    let to = from;
    while (to === from) to = accounts[Math.floor(Math.random() * accounts.length)]!;
    const sent = performance.now();
    const posted = await call('POST', '/v1/transfers', JSON.stringify({ transferId, fromAccountId: from, toAccountId: to, amount: '1.00', currency: 'EUR' }));
    if (posted.status !== 202) return;
    while (performance.now() - sent < PROBE_GIVE_UP_MS) {
      const answer = await call('GET', `/v1/transfers/${transferId}`);
      const status = answer.status === 200 ? (JSON.parse(answer.body) as { status: string }).status : undefined;
      if (status === 'completed' || status === 'failed') {
        latencies.push(performance.now() - sent);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, probe.pollMs));
    }
  };
  while (!done()) {
    await new Promise((resolve) => setTimeout(resolve, probe.everyMs));
    if (running.size >= probe.inFlightMax || done()) continue;
    const started: Promise<void> = one()
      .catch(() => undefined)
      .finally(() => running.delete(started));
    running.add(started);
  }
  await Promise.all(running);
  agent.destroy();
  return latencies;
}

const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Opens every connection before the clock starts, as wrk and autocannon do and as a gateway's
 * keep-alive pool would be. Opened on demand, a burst of new sockets met the server under load:
 * Node accepts one connection per event-loop turn, so at 1,000 transfers/s the 60-120 sockets the
 * agent opened in the first 300 ms were accepted over a second (measured: the server's
 * 'connection' event up to 1,050 ms after the client's 'connect'), and that second's p99 was the
 * run's worst. GET /health/live needs no token and touches nothing.
 */
async function openConnections(target: URL, agent: http.Agent, connections: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((resolve) => {
          const request = http.request({ host: target.hostname, port: target.port, path: '/health/live', method: 'GET', agent, timeout: REQUEST_TIMEOUT_MS }, (response) => {
            response.resume();
            response.on('end', resolve);
          });
          request.on('timeout', () => request.destroy(new Error('timeout')));
          request.on('error', () => resolve());
          request.end();
        }),
    ),
  );
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export const LOADGEN_ENV = 'PROJECTIONS_BENCH_LOADGEN';

if (process.env[LOADGEN_ENV] === '1' && process.send) {
  process.once('message', (job: LoadJob) => {
    runJob(job, () => process.send!({ started: true })).then(
      async ({ probeLatenciesMs, ...outcome }) => {
        process.send!({ ok: true, outcome });
        const probes = probeLatenciesMs ? await probeLatenciesMs : [];
        process.send!({ probes }, () => process.exit(0));
      },
      (error: unknown) => process.send!({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1)),
    );
  });
}
