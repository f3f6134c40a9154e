import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotencyCacheKey } from '../../src/shared/security/idempotencyCache.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { expectProblem, storedEventCount } from './helpers.js';

const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL) console.warn('[skip] tests/security/redis.int.spec.ts: REDIS_URL is not set, so shared rate limits and the Redis idempotency cache are not tested');

async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 3_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('condition not met in time');
}

describe.skipIf(!REDIS_URL)('security with Redis', () => {
  let ledger: TestLedger;
  let redis: Redis;
  let tokens: { admin: string; teller: string };
  let accountId: string;

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'], env: { REDIS_URL: REDIS_URL!, RATE_LIMIT_PER_MINUTE: '20' } });
    redis = new Redis(REDIS_URL!);
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    ({ accountId } = await openFundedAccount(ledger.app, tokens));
  });
  afterAll(async () => {
    redis?.disconnect();
    await ledger?.close();
  });

  it('reports Redis up in readiness', async () => {
    const ready = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ checks: { redis: { state: 'up' } } });
  });

  it('shares one rate limit across two instances', async () => {
    const second = await ledger.restart(['write-api']);
    const token = await ledger.token('teller', `shared-${randomUUID()}`);
    const statuses: number[] = [];
    let limited;
    for (let index = 0; index < 24; index += 1) {
      const app = index % 2 === 0 ? ledger.app : second.app;
      const response = await client(app, token).post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' });
      statuses.push(response.statusCode);
      if (response.statusCode === 429) limited ??= response;
    }
    expect(statuses.filter((status) => status === 201)).toHaveLength(20);
    expectProblem(limited!, 429);
    expect(Number(limited!.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited!.headers['x-ratelimit-limit']).toBe('20');
    expect(limited!.headers['x-ratelimit-remaining']).toBe('0');
  });

  it('answers a repeat from the Redis cache, and losing the cache never causes a second effect', async () => {
    const token = await ledger.token('teller', `cache-${randomUUID()}`);
    const teller = client(ledger.app, token);
    const key = randomUUID();
    const body = { amount: '7.00', currency: 'EUR' };
    const first = await teller.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    const cacheKey = idempotencyCacheKey(`teller:${JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub}:${key}`);
    await eventually(async () => ((await redis.exists(cacheKey)) === 1 ? true : undefined));
    expect(await redis.ttl(cacheKey)).toBeGreaterThan(23 * 3600);

    const before = await storedEventCount(ledger);
    const replay = await teller.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());

    // Another request under the same key is not served from the cache: the store refuses it durably.
    const reused = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '8.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(reused.statusCode).toBe(422);

    // The cache entry is lost (flushed, evicted): the store still recognises the repeat, and says so.
    await redis.del(cacheKey);
    const afterLoss = await teller.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    expect(afterLoss.statusCode).toBe(201);
    expect(afterLoss.headers['idempotent-replayed']).toBe('true');
    expect(afterLoss.json()).toEqual(first.json());
    expect(await storedEventCount(ledger)).toBe(before);
  });
});

describe.skipIf(!REDIS_URL)('security when Redis is down', () => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string };
  let accountId: string;

  beforeAll(async () => {
    // Nothing listens there: the ledger must serve anyway, with in-process limits and no cache.
    ledger = await startTestLedger({ roles: ['write-api'], env: { REDIS_URL: 'redis://127.0.0.1:6390', RATE_LIMIT_PER_MINUTE: '15' } });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    ({ accountId } = await openFundedAccount(ledger.app, tokens));
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('stays ready, reporting Redis as down', async () => {
    const ready = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ready', checks: { redis: { state: 'down' } } });
  });

  it('serves requests, replays through the store and still applies local limits', async () => {
    const teller = client(ledger.app, await ledger.token('teller', `offline-${randomUUID()}`));
    const key = randomUUID();
    const first = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    const before = await storedEventCount(ledger);
    const replay = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(replay.json()).toEqual(first.json());
    expect(await storedEventCount(ledger)).toBe(before);

    const statuses: number[] = [];
    for (let index = 0; index < 16; index += 1) statuses.push((await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' })).statusCode);
    // 15 per minute, two of them used above.
    expect(statuses.filter((status) => status === 201)).toHaveLength(13);
    expect(statuses.at(-1)).toBe(429);
  });
});

describe.skipIf(!REDIS_URL)('security when Redis goes away at runtime', () => {
  let ledger: TestLedger;
  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'], env: { REDIS_URL: REDIS_URL!, RATE_LIMIT_PER_MINUTE: '1000' } });
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('keeps serving after its Redis connection drops, without a second effect', async () => {
    const tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    const { accountId } = await openFundedAccount(ledger.app, tokens);
    const teller = client(ledger.app, tokens.teller);
    const key = randomUUID();
    const first = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '9.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);

    // Kill this instance's connection from the server side, as a Redis restart or failover would.
    const ready = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    const name = ready.json<{ checks: { redis: { connectionName: string } } }>().checks.redis.connectionName;
    const admin = new Redis(REDIS_URL!);
    const before = await storedEventCount(ledger);
    const line = ((await admin.client('LIST')) as string).split('\n').find((entry) => entry.includes(` name=${name} `));
    const id = line ? /(?:^| )id=(\d+)/.exec(line)?.[1] : undefined;
    expect(id, `no Redis connection named ${name}`).toBeDefined();
    await admin.client('KILL', 'ID', id!);
    admin.disconnect();

    const statuses: number[] = [];
    for (let index = 0; index < 5; index += 1) statuses.push((await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '9.00', currency: 'EUR' }, { 'idempotency-key': key })).statusCode);
    expect(statuses).toEqual([201, 201, 201, 201, 201]);
    expect(await storedEventCount(ledger)).toBe(before);
    const readyAfter = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(readyAfter.statusCode).toBe(200);
  });
});
