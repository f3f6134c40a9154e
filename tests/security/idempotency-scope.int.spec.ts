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

  it('the same subject under another role is another principal: customer X and teller X with one key open two accounts, neither a replay', async () => {
    // POST /v1/accounts is open to customers (for themselves) and tellers, so both reach idempotency.
    const { customerId } = await openFundedAccount(ledger.app, tokens);
    const key = `shared-${randomUUID()}`;
    const body = { customerId, currency: 'EUR', type: 'checking' };
    const asCustomer = await client(ledger.app, await ledger.token('customer', customerId)).post('/v1/accounts', body, { 'idempotency-key': key });
    const asTeller = await client(ledger.app, await ledger.token('teller', customerId)).post('/v1/accounts', body, { 'idempotency-key': key });
    expect(asCustomer.statusCode, asCustomer.body).toBe(201);
    expect(asTeller.statusCode, asTeller.body).toBe(201);
    expect(asTeller.headers['idempotent-replayed']).toBeUndefined();
    expect(asTeller.json().id).not.toBe(asCustomer.json().id);

    const { rows } = await ledger.runtime.pool.query<{ account_id: string; actor: string }>(
      "select data->>'accountId' as account_id, metadata->>'actor' as actor from ledger_events where event_type = 'AccountOpened' and data->>'customerId' = $1 order by position",
      [customerId],
    );
    // The account openFundedAccount opened, then one for each principal.
    expect(rows.slice(1)).toEqual([
      { account_id: asCustomer.json().id, actor: `customer:${customerId}` },
      { account_id: asTeller.json().id, actor: `teller:${customerId}` },
    ]);
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
