import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { storedEventCount } from './helpers.js';

describe('idempotency keys are scoped to their principal', () => {
  let ledger: TestLedger;
  let accountId: string;
  let tokens: { admin: string; teller: string };

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'] });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    ({ accountId } = await openFundedAccount(ledger.app, tokens));
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('the same key from two tellers makes two deposits, and each replays only its own', async () => {
    const key = `shared-${randomUUID()}`;
    const alice = client(ledger.app, await ledger.token('teller', 'alice'));
    const bob = client(ledger.app, await ledger.token('teller', 'bob'));
    const body = { amount: '5.00', currency: 'EUR' };

    const first = await alice.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    const second = await bob.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(201);
    expect(second.json().transactionId).not.toBe(first.json().transactionId);
    expect(second.json().balanceAfter).toBe('10.00');

    const before = await storedEventCount(ledger);
    const aliceAgain = await alice.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    const bobAgain = await bob.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key });
    expect(aliceAgain.json()).toEqual(first.json());
    expect(bobAgain.json()).toEqual(second.json());
    expect(await storedEventCount(ledger)).toBe(before);
  });

  it('another principal reusing a key with another body is neither a replay nor a 422 of someone else', async () => {
    const key = `shared-${randomUUID()}`;
    const alice = client(ledger.app, await ledger.token('teller', 'alice-2'));
    const mallory = client(ledger.app, await ledger.token('teller', 'mallory'));
    const first = await alice.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' }, { 'idempotency-key': key });
    const other = await mallory.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(other.statusCode).toBe(201);
    expect(other.json()).toMatchObject({ amount: '2.00' });
    expect(other.json().transactionId).not.toBe(first.json().transactionId);
  });

  it('a subject with a colon is another principal, whatever the keys: teller "a" with key "b:x" and teller "a:b" with key "x" do not meet', async () => {
    const suffix = randomUUID();
    const a = client(ledger.app, await ledger.token('teller', `a-${suffix}`));
    const ab = client(ledger.app, await ledger.token('teller', `a-${suffix}:b`));
    const first = await a.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' }, { 'idempotency-key': 'b:x' });
    const sameBody = await ab.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' }, { 'idempotency-key': 'x' });
    const otherBody = await ab.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' }, { 'idempotency-key': 'y' });
    expect([first.statusCode, sameBody.statusCode, otherBody.statusCode]).toEqual([201, 201, 201]);
    expect(sameBody.headers['idempotent-replayed']).toBeUndefined();
    expect(sameBody.json().transactionId).not.toBe(first.json().transactionId);
  });

  it('a key used on one account is refused on another, even with the same body, and nothing is recorded there', async () => {
    const teller = client(ledger.app, tokens.teller);
    const { accountId: otherAccountId } = await openFundedAccount(ledger.app, tokens);
    const key = randomUUID();
    const body = { amount: '7.00', currency: 'EUR' };
    expect((await teller.post(`/v1/accounts/${accountId}/deposits`, body, { 'idempotency-key': key })).statusCode).toBe(201);
    const before = await storedEventCount(ledger);
    const elsewhere = await teller.post(`/v1/accounts/${otherAccountId}/deposits`, body, { 'idempotency-key': key });
    expect(elsewhere.statusCode).toBe(422);
    expect(elsewhere.headers['content-type']).toContain('application/problem+json');
    expect(elsewhere.json()).toMatchObject({ code: 'idempotency_key_reused' });
    expect(await storedEventCount(ledger)).toBe(before);
  });

  it('the same subject under another role is another principal', async () => {
    const key = `shared-${randomUUID()}`;
    const body = { email: `${randomUUID()}@example.com`, firstName: 'A', lastName: 'B' };
    const asAdmin = await client(ledger.app, await ledger.token('admin', 'same-subject')).post('/v1/customers', body, { 'idempotency-key': key });
    expect(asAdmin.statusCode).toBe(201);
    // A teller with the same subject cannot even reach the route, let alone replay the admin's answer.
    const asTeller = await client(ledger.app, await ledger.token('teller', 'same-subject')).post('/v1/customers', body, { 'idempotency-key': key });
    expect(asTeller.statusCode).toBe(403);
    expect(asTeller.headers['idempotent-replayed']).toBeUndefined();
  });

  it('a replay from the in-process cache says so, and a reused key with another body still gets the durable 422', async () => {
    const teller = client(ledger.app, tokens.teller);
    const key = randomUUID();
    const first = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '3.00', currency: 'EUR' }, { 'idempotency-key': key });
    const replay = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '3.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.headers['content-type']).toContain('application/json');
    expect(replay.json()).toEqual(first.json());
    const reused = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '4.00', currency: 'EUR' }, { 'idempotency-key': key });
    expect(reused.statusCode).toBe(422);
    expect(reused.json()).toMatchObject({ code: 'idempotency_key_reused' });
  });
});
