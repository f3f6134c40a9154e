/**
 * What authentication and rate limiting cost per request: deposits/s through two ledger apps in one
 * process, on one database, listening on loopback. One app runs the full security stack (JWT
 * signature check, rate limiter, idempotency cache, helmet/CORS/text checks); the other is built
 * with `authAndRateLimitDisabledForBenchmark` (claims decoded without a signature check, no limiter;
 * the idempotency cache and the hardening stay, as they are not what is measured). Runs alternate, so
 * drift in the database (a growing event table) hits both.
 *
 *   npx tsx bench/security-overhead.bench.ts [--seconds 10] [--rounds 3] [--connections 32] [--accounts 64]
 *
 * Database: DATABASE_URL when set (a role that may create databases: a fresh bench_sec_<stamp> is
 * created and dropped), else an embedded PostgreSQL in ./.bench-data/security. Redis: REDIS_URL when
 * set (shared limiter and cache, as in production), else the in-process stand-ins.
 */
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { openRuntime, type Runtime } from '../src/runtime.js';
import { buildLedger, type Ledger } from '../src/server.js';
import { mintToken } from '../src/shared/auth/keys.js';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    accounts: { type: 'string', default: '64' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const accountCount = Number(values.accounts);
const SECRET = `bench-${randomUUID()}-${randomUUID()}`;

async function prepareDatabase(): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    return { env: { LEDGER_DATA_DIR: resolve('.bench-data/security'), EMBEDDED_PG_PORT: '54341' }, drop: async () => undefined };
  }
  const name = `bench_sec_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString() },
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

async function post(baseUrl: string, token: string, path: string, body: unknown): Promise<Record<string, string>> {
  const response = await fetch(`${baseUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() }, body: JSON.stringify(body) });
  if (response.status >= 300) throw new Error(`${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as Record<string, string>;
}

async function run(label: string, baseUrl: string, token: string, accounts: string[]): Promise<AutocannonResult & { label: string }> {
  let next = 0;
  const result = await autocannon({
    url: baseUrl,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        setupRequest: (request: Record<string, unknown>) => {
          next += 1;
          return {
            ...request,
            path: `/v1/accounts/${accounts[next % accounts.length]}/deposits`,
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `bench-${label}-${next}-${randomUUID()}` },
            body: '{"amount":"1.00","currency":"EUR"}',
          };
        },
      },
    ],
  });
  return { ...result, label };
}

const median = (numbers: number[]) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)]!;

async function main(): Promise<void> {
  const database = await prepareDatabase();
  const config = loadConfig({
    ...database.env,
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'silent',
    PG_POOL_MAX: '16',
    RATE_LIMIT_PER_MINUTE: '1000000',
    ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
  });
  const logger = pino({ level: 'silent' });
  const runtimes: Runtime[] = [];
  const ledgers: Ledger[] = [];
  try {
    const secureRuntime = await openRuntime(config, logger);
    runtimes.push(secureRuntime);
    // The second runtime reuses the same database (and, embedded, the running server).
    const plainRuntime = await openRuntime({ ...config, DATABASE_URL: secureRuntime.databaseUrl }, logger);
    runtimes.push(plainRuntime);
    const secured = await buildLedger(secureRuntime, ['write-api']);
    const bypassed = await buildLedger(plainRuntime, ['write-api'], { authAndRateLimitDisabledForBenchmark: true });
    ledgers.push(secured, bypassed);
    const urls: string[] = [];
    for (const ledger of ledgers) {
      await ledger.app.listen({ port: 0, host: '127.0.0.1' });
      urls.push(`http://127.0.0.1:${(ledger.app.server.address() as AddressInfo).port}`);
    }
    const secret = new TextEncoder().encode(SECRET);
    const admin = await mintToken(secret, { subject: 'bench-admin', role: 'admin' }, { ttlSeconds: 3_600 });
    const teller = await mintToken(secret, { subject: 'bench-teller', role: 'teller' }, { ttlSeconds: 3_600 });

    const customer = await post(urls[0]!, admin, '/v1/customers', { email: `${randomUUID()}@bench.example`, firstName: 'Bench', lastName: 'Mark' });
    await post(urls[0]!, admin, `/v1/customers/${customer.id}/activate`, {});
    const accounts: string[] = [];
    for (let index = 0; index < accountCount; index += 1) accounts.push((await post(urls[0]!, teller, '/v1/accounts', { customerId: customer.id, currency: 'EUR', type: 'checking' })).id!);

    // A short warm-up of each app (JIT, pools, caches) before anything is recorded.
    const warmSeconds = Math.min(3, seconds);
    for (const [index, url] of urls.entries()) await autocannon({ url, connections, duration: warmSeconds, requests: [{ method: 'POST', setupRequest: (request: Record<string, unknown>) => ({ ...request, path: `/v1/accounts/${accounts[0]}/deposits`, headers: { authorization: `Bearer ${teller}`, 'content-type': 'application/json', 'idempotency-key': `warm-${index}-${randomUUID()}` }, body: '{"amount":"1.00","currency":"EUR"}' }) }] });

    const results: Record<'secured' | 'bypassed', AutocannonResult[]> = { secured: [], bypassed: [] };
    for (let round = 0; round < rounds; round += 1) {
      const order: ('secured' | 'bypassed')[] = round % 2 === 0 ? ['secured', 'bypassed'] : ['bypassed', 'secured'];
      for (const label of order) {
        const result = await run(label, label === 'secured' ? urls[0]! : urls[1]!, teller, accounts);
        results[label].push(result);
        console.log(`round ${round + 1} ${label.padEnd(8)} ${result.requests.average.toFixed(0).padStart(6)} deposits/s  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms  non-2xx ${result.non2xx}  errors ${result.errors}`);
      }
    }
    const summary = (label: 'secured' | 'bypassed') => ({
      throughput: median(results[label].map((result) => result.requests.average)),
      p50: median(results[label].map((result) => result.latency.p50)),
      p99: median(results[label].map((result) => result.latency.p99)),
      non2xx: results[label].reduce((sum, result) => sum + result.non2xx, 0),
    });
    const secure = summary('secured');
    const plain = summary('bypassed');
    const overheadPercent = ((plain.throughput - secure.throughput) / plain.throughput) * 100;
    console.log('');
    console.log(`store: ${secureRuntime.store.kind}; database: ${config.DATABASE_URL ? 'DATABASE_URL' : 'embedded'}; redis: ${config.REDIS_URL ? 'yes' : 'no (in-process limiter and cache)'}; ${connections} connections, ${accountCount} accounts, ${seconds} s × ${rounds} rounds each`);
    console.log('| app | median deposits/s | median p50 ms | median p99 ms | non-2xx |');
    console.log('|---|---:|---:|---:|---:|');
    console.log(`| auth + rate limit + cache + hardening | ${secure.throughput.toFixed(0)} | ${secure.p50} | ${secure.p99} | ${secure.non2xx} |`);
    console.log(`| without auth and rate limiting | ${plain.throughput.toFixed(0)} | ${plain.p50} | ${plain.p99} | ${plain.non2xx} |`);
    console.log(`throughput overhead of security: ${overheadPercent.toFixed(1)} %`);
  } finally {
    for (const ledger of ledgers) await ledger.app.close().catch(() => undefined);
    for (const runtime of runtimes.reverse()) await runtime.close().catch(() => undefined);
    await database.drop();
  }
}

await main();
