/**
 * A client's retry is the same request whatever the order of its JSON keys and whether it sends an
 * empty optional field as null or leaves it out; a request recorded before canonical fingerprints
 * still matches its exact repeat, and what is recorded now still matches the raw fingerprint that
 * earlier versions compare. Against real PostgreSQL, through the HTTP API.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { idempotencyScopeOf, type Principal } from '../../src/shared/auth/principal.js';
import { requestFingerprints } from '../../src/shared/requestFingerprint.js';
import { transferStream } from '../../src/write/streams.js';
import { readWholeStream } from '../transfers/audit.js';
import { client, ledgerForSuite, openFundedAccount } from '../support/ledger.js';

describe('retries of the same request', () => {
  const suite = ledgerForSuite({ roles: ['write-api', 'read-api'] });

  it('a transfer repeated with its keys in another order and description null is answered as recorded, not refused', async () => {
    const { ledger, tokens } = suite;
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const teller = client(ledger.app, tokens.teller);
    const transferId = randomUUID();
    const first = await teller.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR' });
    expect(first.statusCode, first.body).toBe(202);
    // Another instance: no response cache in front of the store.
    const other = await ledger.restart(['write-api']);
    const repeat = await client(other.app, tokens.teller).post('/v1/transfers', { description: null, currency: 'EUR', amount: '1.00', toAccountId: to.accountId, fromAccountId: from.accountId, transferId });
    expect(repeat.statusCode, repeat.body).toBe(202);
    expect(repeat.headers['idempotent-replayed']).toBe('true');
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(repeat.json()).toEqual(first.json());
    const stored = await readWholeStream(ledger.runtime.store, transferStream(transferId));
    expect(stored.map((event) => event.type)).toEqual(['TransferRequested']);
    // What an instance of an earlier version compares during a rolling deploy: the raw fingerprint of the body as first sent.
    expect(stored[0]!.metadata.extra).toMatchObject({ requestHash: requestFingerprints('POST', '/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR' }).requestHash });
    const changed = await client(other.app, tokens.teller).post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR', description: 'rent' });
    expect(changed.statusCode, changed.body).toBe(422);
    expect(changed.json()).toMatchObject({ code: 'idempotency_key_reused', detail: 'this transfer id was already used with a different request' });
  });

  it('a deposit repeated with its keys in another order replays at another instance and in the same one', async () => {
    const { ledger, tokens } = suite;
    const account = await openFundedAccount(ledger.app, tokens);
    const key = randomUUID();
    const first = await client(ledger.app, tokens.teller).post(`/v1/accounts/${account.accountId}/deposits`, { amount: '2.00', currency: 'EUR', reference: 'r-1' }, { 'idempotency-key': key });
    expect(first.statusCode, first.body).toBe(201);
    const reordered = { reference: 'r-1', description: null, currency: 'EUR', amount: '2.00' };
    const other = await ledger.restart(['write-api']);
    // The other instance finds the key in the stream; this one in its response cache. Both say so.
    for (const app of [other.app, ledger.app]) {
      const repeat = await client(app, tokens.teller).post(`/v1/accounts/${account.accountId}/deposits`, reordered, { 'idempotency-key': key });
      expect(repeat.statusCode, repeat.body).toBe(201);
      expect(repeat.headers['idempotent-replayed']).toBe('true');
      expect(repeat.json()).toEqual(first.json());
    }
    const deposits = (await readWholeStream(ledger.runtime.store, `account-${account.accountId}`)).filter((event) => event.type === 'FundsDeposited');
    expect(deposits).toHaveLength(1);
  });

  it('a transfer recorded before canonical fingerprints (the raw one only) still matches its exact repeat', async () => {
    const { ledger, tokens } = suite;
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const subject = `teller-${randomUUID().slice(0, 8)}`;
    const teller = await ledger.token('teller', subject);
    const transferId = randomUUID();
    const body = { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '3.00', currency: 'EUR', description: null };
    const now = new Date();
    const recorded = await ledger.ledger.write.transfers.handle(
      transferStream(transferId),
      { type: 'RequestTransfer', data: { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, currency: 'EUR', amountMinor: 300n, description: null, deadlineAt: new Date(now.getTime() + 30_000).toISOString(), holdExpiresAt: new Date(now.getTime() + 3_630_000).toISOString(), now: now.toISOString() } },
      // As the route recorded it before canonical fingerprints, under the teller's scope.
      { idempotencyKey: `${idempotencyScopeOf({ role: 'teller', subject } as Principal)}:transfer:${transferId}`, requestHash: requestFingerprints('POST', '/v1/transfers', body).requestHash, actor: 'test', correlationId: transferId },
    );
    const other = await ledger.restart(['write-api']);
    const repeat = await client(other.app, teller).post('/v1/transfers', body);
    expect(repeat.statusCode, repeat.body).toBe(202);
    expect(repeat.json()).toMatchObject({ id: transferId, position: recorded.position.toString() });
    expect((await readWholeStream(ledger.runtime.store, transferStream(transferId))).map((event) => event.type)).toEqual(['TransferRequested']);
  });

  it('a late retry of an overdraft setting that changed nothing does not undo a change made since, at an instance without the cache', async () => {
    const { ledger, tokens } = suite;
    const account = await openFundedAccount(ledger.app, tokens);
    const admin = client(ledger.app, tokens.admin);
    const key = randomUUID();
    const first = await admin.post(`/v1/accounts/${account.accountId}/overdraft`, { overdraftLimit: '0' }, { 'idempotency-key': key });
    expect(first.statusCode, first.body).toBe(200);
    const changed = await admin.post(`/v1/accounts/${account.accountId}/overdraft`, { overdraftLimit: '300.00' });
    expect(changed.statusCode, changed.body).toBe(200);
    const other = await ledger.restart(['write-api']);
    const retry = await client(other.app, tokens.admin).post(`/v1/accounts/${account.accountId}/overdraft`, { overdraftLimit: '0' }, { 'idempotency-key': key });
    expect(retry.statusCode, retry.body).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual(first.json());
    const reused = await client(other.app, tokens.admin).post(`/v1/accounts/${account.accountId}/overdraft`, { overdraftLimit: '500.00' }, { 'idempotency-key': key });
    expect(reused.statusCode, reused.body).toBe(422);
    const limits = (await readWholeStream(ledger.runtime.store, `account-${account.accountId}`)).filter((event) => event.type === 'OverdraftLimitChanged').map((event) => (event.data as { overdraftLimitMinor: unknown }).overdraftLimitMinor);
    expect(limits.map(String)).toEqual(['0', '30000']);
  });

  it('an Idempotency-Key header on transfers plays no part: the transfer id is the key', async () => {
    const { ledger, tokens } = suite;
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const teller = client(ledger.app, tokens.teller);
    const header = { 'idempotency-key': `habit-${randomUUID()}` };
    const transfer = () => ({ transferId: randomUUID(), fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR' });
    const [a, b] = [transfer(), transfer()];
    const first = await teller.post('/v1/transfers', a, header);
    const second = await teller.post('/v1/transfers', b, header);
    expect([first.statusCode, second.statusCode], second.body).toEqual([202, 202]);
    expect(second.json()).toMatchObject({ id: b.transferId });
    const repeat = await teller.post('/v1/transfers', a, { 'idempotency-key': `other-${randomUUID()}` });
    expect(repeat.statusCode, repeat.body).toBe(202);
    expect(repeat.json()).toEqual(first.json());
    for (const { transferId } of [a, b]) expect((await readWholeStream(ledger.runtime.store, transferStream(transferId))).map((event) => event.type)).toEqual(['TransferRequested']);
  });
});
