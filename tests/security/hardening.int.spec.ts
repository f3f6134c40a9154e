import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { expectProblem, storedEventCount } from './helpers.js';

describe('security headers, CORS and local rate limits', () => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string };
  let accountId: string;

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'], env: { CORS_ORIGINS: 'https://app.example, https://admin.example', RATE_LIMIT_PER_MINUTE: '40', REDIS_URL: '' } });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    ({ accountId } = await openFundedAccount(ledger.app, tokens));
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('sends API security headers with a strict CSP, on answers and on refusals', async () => {
    for (const response of [await ledger.app.inject({ method: 'GET', url: '/health/live' }), await ledger.app.inject({ method: 'POST', url: '/v1/customers' })]) {
      expect(response.headers['content-security-policy']).toContain("default-src 'none'");
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['strict-transport-security']).toBeDefined();
      expect(response.headers['x-frame-options']).toBeDefined();
      expect(response.headers['x-powered-by']).toBeUndefined();
    }
  });

  it('relaxes the CSP only for the Swagger UI, which still loads', async () => {
    const page = await ledger.app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const spec = await ledger.app.inject({ method: 'GET', url: '/docs/json' });
    expect(spec.statusCode).toBe(200);
  });

  it('answers CORS only for allowed origins', async () => {
    const preflight = (origin: string) => ledger.app.inject({ method: 'OPTIONS', url: '/v1/customers', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,idempotency-key' } });
    const allowed = await preflight('https://app.example');
    expect(allowed.statusCode).toBe(204);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    const denied = await preflight('https://evil.example');
    expect(denied.headers['access-control-allow-origin']).toBeUndefined();
    // A browser may send every request header the API reads, read-your-writes' included.
    const allowedHeaders = String(allowed.headers['access-control-allow-headers']).split(',').map((name) => name.trim());
    expect(allowedHeaders).toEqual(expect.arrayContaining(['authorization', 'content-type', 'idempotency-key', 'x-correlation-id', 'x-min-position']));
  });

  it('limits each principal on its own, with a 429 problem carrying Retry-After and x-ratelimit-*', async () => {
    const greedy = client(ledger.app, await ledger.token('teller', `greedy-${randomUUID()}`));
    const statuses: number[] = [];
    let limited;
    for (let index = 0; index < 45; index += 1) {
      const response = await greedy.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' });
      statuses.push(response.statusCode);
      if (response.statusCode === 429) limited ??= response;
    }
    expect(statuses.filter((status) => status === 201)).toHaveLength(40);
    expect(limited).toBeDefined();
    expectProblem(limited!, 429);
    expect(limited!.json()).toMatchObject({ code: 'rate_limited' });
    expect(Number(limited!.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited!.headers['x-ratelimit-limit']).toBe('40');
    expect(limited!.headers['x-ratelimit-remaining']).toBe('0');
    expect(limited!.headers['x-ratelimit-reset']).toBeDefined();

    // Refused requests write nothing, and another principal is not affected.
    const before = await storedEventCount(ledger);
    expect((await greedy.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' })).statusCode).toBe(429);
    expect(await storedEventCount(ledger)).toBe(before);
    const other = await client(ledger.app, await ledger.token('teller')).post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' });
    expect(other.statusCode).toBe(201);
    expect(other.headers['x-ratelimit-remaining']).toBe('39');
  });

  it('counts requests whose body does not even parse: a flood of malformed JSON is limited too', async () => {
    const token = await ledger.token('teller', `malformed-${randomUUID()}`);
    const statuses: number[] = [];
    for (let index = 0; index < 45; index += 1) {
      const response = await ledger.app.inject({ method: 'POST', url: `/v1/accounts/${accountId}/deposits`, headers: { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload: '{bad' });
      statuses.push(response.statusCode);
    }
    expect(statuses.filter((status) => status === 400)).toHaveLength(40);
    expect(statuses.slice(40)).toEqual([429, 429, 429, 429, 429]);
  });

  it('never limits health probes', async () => {
    for (let index = 0; index < 50; index += 1) expect((await ledger.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
  });

  it('reports Redis as disabled in readiness without failing it', async () => {
    const ready = await ledger.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ checks: { redis: { state: 'disabled' } } });
  });
});
