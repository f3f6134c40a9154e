import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestLedger, TEST_JWT_SECRET, type TestLedger } from '../support/ledger.js';
import { base64url, expectProblem, newCustomerBody, storedEventCount } from './helpers.js';

const secret = new TextEncoder().encode(TEST_JWT_SECRET);
const nowSeconds = () => Math.floor(Date.now() / 1000);

function claims(role = 'admin', alg = 'HS256') {
  return new SignJWT({ role }).setProtectedHeader({ alg, typ: 'JWT' }).setSubject(`admin-${randomUUID().slice(0, 8)}`).setIssuedAt();
}

/** Tries to register a customer with the given Authorization header; the answer must be a 401 that wrote nothing. */
async function expectRefused(ledger: TestLedger, authorization: string | undefined): Promise<void> {
  const before = await storedEventCount(ledger);
  const response = await ledger.app.inject({
    method: 'POST',
    url: '/v1/customers',
    headers: { ...(authorization === undefined ? {} : { authorization }), 'idempotency-key': randomUUID(), 'content-type': 'application/json' },
    payload: JSON.stringify(newCustomerBody()),
  });
  expectProblem(response, 401);
  expect(response.headers['www-authenticate']).toMatch(/^Bearer/);
  expect(await storedEventCount(ledger)).toBe(before);
}

async function expectAccepted(ledger: TestLedger, token: string): Promise<void> {
  const response = await ledger.app.inject({
    method: 'POST',
    url: '/v1/customers',
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' },
    payload: JSON.stringify(newCustomerBody()),
  });
  expect(response.statusCode, response.body).toBe(201);
}

describe('authentication: an HS256 ledger', () => {
  let ledger: TestLedger;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'] });
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('accepts a valid token (the control case)', async () => {
    await expectAccepted(ledger, await claims().setExpirationTime('5m').sign(secret));
  });

  it.each([
    ['no Authorization header', async () => undefined],
    ['an empty header', async () => ''],
    ['another scheme', async () => `Basic ${Buffer.from('admin:admin').toString('base64')}`],
    ['a bare token without the scheme', async () => claims().setExpirationTime('5m').sign(secret)],
    ['garbage after Bearer', async () => 'Bearer not-a-jwt'],
    ['three garbled parts', async () => 'Bearer aaaa.bbbb.cccc'],
    ['an oversized token', async () => `Bearer ${'a'.repeat(5_000)}.${'b'.repeat(5_000)}.c`],
    ['an expired token', async () => `Bearer ${await claims().setExpirationTime(nowSeconds() - 60).sign(secret)}`],
    ['a token not valid yet (nbf)', async () => `Bearer ${await claims().setNotBefore(nowSeconds() + 3_600).setExpirationTime('2h').sign(secret)}`],
    ['a forged signature (another secret)', async () => `Bearer ${await claims().setExpirationTime('5m').sign(new TextEncoder().encode('another-secret-that-is-long-enough-0123456789'))}`],
    ['a tampered payload', async () => {
      const [header, , signature] = (await claims('teller').setExpirationTime('5m').sign(secret)).split('.');
      return `Bearer ${header}.${base64url({ role: 'admin', sub: 'mallory', exp: nowSeconds() + 300 })}.${signature}`;
    }],
    ['alg: none', async () => `Bearer ${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ role: 'admin', sub: 'mallory', exp: nowSeconds() + 300 })}.`],
    ['an RS256 token (algorithm confusion)', async () => `Bearer ${await claims('admin', 'RS256').setExpirationTime('5m').sign(rsa.privateKey)}`],
    ['an unknown role', async () => `Bearer ${await claims('superuser').setExpirationTime('5m').sign(secret)}`],
    ['no role', async () => `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime('5m').sign(secret)}`],
    ['no subject', async () => `Bearer ${await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(secret)}`],
    ['no expiry', async () => `Bearer ${await claims().sign(secret)}`],
  ])('refuses %s with a 401 problem and writes nothing', async (_label, header) => {
    await expectRefused(ledger, await header());
  });
});

describe('authentication: audience and issuer', () => {
  let ledger: TestLedger;
  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'], env: { JWT_AUDIENCE: 'ledger-api', JWT_ISSUER: 'https://idp.example' } });
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('accepts the configured audience and issuer (the control case)', async () => {
    await expectAccepted(ledger, await claims().setAudience('ledger-api').setIssuer('https://idp.example').setExpirationTime('5m').sign(secret));
  });

  it.each([
    ['a wrong audience', { aud: 'another-api', iss: 'https://idp.example' }],
    ['a wrong issuer', { aud: 'ledger-api', iss: 'https://evil.example' }],
    ['no audience', { iss: 'https://idp.example' }],
    ['no issuer', { aud: 'ledger-api' }],
  ] as [string, { aud?: string; iss?: string }][])('refuses %s', async (_label, extra) => {
    let jwt = claims().setExpirationTime('5m');
    if (extra.aud) jwt = jwt.setAudience(extra.aud);
    if (extra.iss) jwt = jwt.setIssuer(extra.iss);
    await expectRefused(ledger, `Bearer ${await jwt.sign(secret)}`);
  });
});

describe('authentication: an RS256 ledger (JWT_PUBLIC_KEY)', () => {
  let ledger: TestLedger;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'], env: { JWT_PUBLIC_KEY: publicPem, JWT_ISSUER: 'https://idp.example', JWT_AUDIENCE: 'ledger' } });
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('accepts a token signed with the private key (the control case)', async () => {
    await expectAccepted(ledger, await claims('admin', 'RS256').setIssuer('https://idp.example').setAudience('ledger').setExpirationTime('5m').sign(rsa.privateKey));
  });

  it('refuses a token of the same key for another audience, or without one (a shared identity provider)', async () => {
    await expectRefused(ledger, `Bearer ${await claims('admin', 'RS256').setIssuer('https://idp.example').setAudience('some-other-service').setExpirationTime('5m').sign(rsa.privateKey)}`);
    await expectRefused(ledger, `Bearer ${await claims('admin', 'RS256').setIssuer('https://idp.example').setExpirationTime('5m').sign(rsa.privateKey)}`);
  });

  it('refuses an HS256 token signed with the public key text (algorithm confusion)', async () => {
    await expectRefused(ledger, `Bearer ${await claims().setExpirationTime('5m').sign(new TextEncoder().encode(publicPem))}`);
  });

  it('refuses an HS256 token signed with the shared test secret', async () => {
    await expectRefused(ledger, `Bearer ${await claims().setExpirationTime('5m').sign(secret)}`);
  });

  it('refuses an RS256 token signed by another key', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await expectRefused(ledger, `Bearer ${await claims('admin', 'RS256').setExpirationTime('5m').sign(other.privateKey)}`);
  });
});

describe('authentication: token guessing', () => {
  let ledger: TestLedger;

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'] });
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('refuses an address with a 429 after 60 failed authentications in a minute, while valid tokens still pass', async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 65; attempt++) {
      const response = await ledger.app.inject({ method: 'GET', url: `/v1/customers/${randomUUID()}`, headers: { authorization: 'Bearer a.b.c' } });
      statuses.push(response.statusCode);
    }
    expect(statuses.slice(0, 60).every((status) => status === 401)).toBe(true);
    expect(statuses.slice(60).every((status) => status === 429)).toBe(true);
    const limited = await ledger.app.inject({ method: 'GET', url: '/v1/customers/x', headers: { authorization: 'Bearer a.b.c' } });
    expect(limited.headers['retry-after']).toMatch(/^[0-9]+$/);
    const valid = await ledger.app.inject({ method: 'POST', url: '/v1/customers', headers: { authorization: `Bearer ${await ledger.token('admin')}`, 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, payload: { email: `${randomUUID()}@example.com`, firstName: 'A', lastName: 'B' } });
    expect(valid.statusCode).toBe(201);
    // A merely expired token from the same address is told so, to refresh it, not 429.
    const expired = await claims().setIssuedAt(Math.floor(Date.now() / 1000) - 120).setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(secret);
    const stale = await ledger.app.inject({ method: 'GET', url: `/v1/customers/${randomUUID()}`, headers: { authorization: `Bearer ${expired}` } });
    expect(stale.statusCode, stale.body).toBe(401);
    expect(stale.json()).toMatchObject({ code: 'token_expired' });
    expect(stale.headers['www-authenticate']).toContain('invalid_token');
  });
});
