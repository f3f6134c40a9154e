/**
 * Closing an account that has a transfer hold expired uncaptured: refused until that transfer has
 * ended, since a late capture may still come for it. Against real PostgreSQL, through the HTTP API.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { accountStream, transferStream } from '../../src/write/streams.js';
import { client, ledgerForSuite, openFundedAccount } from '../support/ledger.js';

describe('closing an account with a transfer hold expired uncaptured', () => {
  const suite = ledgerForSuite({ roles: ['write-api'] });

  it('is refused with transfer_in_flight while the transfer has not ended, and allowed once it has', async () => {
    const { ledger, tokens } = suite;
    const from = await openFundedAccount(ledger.app, tokens, { overdraftLimit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const { write } = ledger.ledger;
    const transferId = randomUUID();
    const now = new Date();
    const holdExpiresAt = new Date(now.getTime() + 300).toISOString();
    const context = (step: string) => ({ idempotencyKey: `test:${transferId}:${step}`, requestHash: step, actor: 'test', correlationId: transferId });
    await write.transfers.handle(
      transferStream(transferId),
      { type: 'RequestTransfer', data: { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, currency: 'EUR', amountMinor: 100n, description: null, deadlineAt: new Date(now.getTime() + 200).toISOString(), holdExpiresAt, now: now.toISOString() } },
      context('request'),
    );
    await write.accounts.handle(accountStream(from.accountId), { type: 'PlaceTransferHold', data: { accountId: from.accountId, transferId, currency: 'EUR', amountMinor: 100n, expiresAt: holdExpiresAt, now: now.toISOString() } }, context('reserve'));
    while (Date.now() <= Date.parse(holdExpiresAt)) await new Promise((resolve) => setTimeout(resolve, 50));
    const expired = await write.accounts.handle(accountStream(from.accountId), { type: 'ExpireHold', data: { accountId: from.accountId, holdId: transferId, now: new Date().toISOString() } }, context('expire'));
    expect(expired.events.map((event) => event.type)).toEqual(['HoldExpired']);

    const admin = client(ledger.app, tokens.admin);
    const refused = await admin.post(`/v1/accounts/${from.accountId}/close`);
    expect(refused.statusCode, refused.body).toBe(422);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({ code: 'transfer_in_flight' });

    await write.transfers.handle(transferStream(transferId), { type: 'FailTransfer', data: { transferId, reason: 'hold_expired', now: new Date().toISOString() } }, context('fail'));
    const closed = await admin.post(`/v1/accounts/${from.accountId}/close`);
    expect(closed.statusCode, closed.body).toBe(200);
    expect(closed.json()).toMatchObject({ status: 'closed' });
  });

  it('is allowed when the expired hold belongs to a transfer never requested: no capture can come for it', async () => {
    const { ledger, tokens } = suite;
    const account = await openFundedAccount(ledger.app, tokens, { overdraftLimit: '10.00' });
    const { write } = ledger.ledger;
    const transferId = randomUUID();
    const now = new Date();
    const expiresAt = new Date(now.getTime() + 200).toISOString();
    const context = (step: string) => ({ idempotencyKey: `test:${transferId}:${step}`, requestHash: step, actor: 'test', correlationId: transferId });
    await write.accounts.handle(accountStream(account.accountId), { type: 'PlaceTransferHold', data: { accountId: account.accountId, transferId, currency: 'EUR', amountMinor: 100n, expiresAt, now: now.toISOString() } }, context('reserve'));
    while (Date.now() <= Date.parse(expiresAt)) await new Promise((resolve) => setTimeout(resolve, 50));
    await write.accounts.handle(accountStream(account.accountId), { type: 'ExpireHold', data: { accountId: account.accountId, holdId: transferId, now: new Date().toISOString() } }, context('expire'));
    const closed = await client(ledger.app, tokens.admin).post(`/v1/accounts/${account.accountId}/close`);
    expect(closed.statusCode, closed.body).toBe(200);
  });
});
