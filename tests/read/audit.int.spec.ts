import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';

describe('audit endpoints', () => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string };

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api', 'read-api'] });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('replays a stream with its metadata and recomputes a zero trial balance from the log', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '12.34' });
    const auditor = client(ledger.app, await ledger.token('auditor'));
    const replay = await auditor.get(`/v1/audit/streams/account-${accountId}`);
    expect(replay.statusCode).toBe(200);
    const events = replay.json<{ events: { type: string; revision: string; actor: string; data: { amountMinor?: string } }[] }>().events;
    expect(events.map((event) => event.type)).toEqual(['AccountOpened', 'FundsDeposited']);
    expect(events[1]).toMatchObject({ revision: '1', data: { amountMinor: '1234' } });
    expect(events[1]!.actor).toMatch(/^teller:/);
    // The log shows the deposit once older transactions elsewhere have ended: poll briefly.
    let trial = await auditor.get('/v1/audit/trial-balance');
    for (let attempt = 0; attempt < 100 && trial.json<{ currencies: unknown[] }>().currencies.length === 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      trial = await auditor.get('/v1/audit/trial-balance');
    }
    expect(trial.json()).toMatchObject({ balanced: true, currencies: [{ currency: 'EUR', sumMinor: '0', clearingMinor: '0' }] });
    expect((await auditor.get('/v1/audit/streams/bad%20name')).statusCode).toBe(400);
    expect((await client(ledger.app, tokens.teller).get('/v1/audit/trial-balance')).statusCode).toBe(403);
    expect((await client(ledger.app, await ledger.token('customer', randomUUID())).get(`/v1/audit/streams/account-${accountId}`)).statusCode).toBe(403);
  });

  it('replays from any revision a stream can have and refuses one past PostgreSQL\'s bigint with a 400 problem', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '1.00' });
    const auditor = client(ledger.app, await ledger.token('auditor'));
    const replay = (fromRevision: string) => auditor.get(`/v1/audit/streams/account-${accountId}?fromRevision=${fromRevision}`);
    expect((await replay('1')).json<{ events: { type: string }[] }>().events.map((event) => event.type)).toEqual(['FundsDeposited']);
    expect((await replay('9223372036854775807')).json()).toMatchObject({ events: [] });
    for (const bad of ['9223372036854775808', '99999999999999999999', '999999999999999999999', '-1', '1.5', '1e3', 'abc', '']) {
      const response = await replay(bad);
      expect(response.statusCode, bad).toBe(400);
      expect(response.headers['content-type'], bad).toContain('application/problem+json');
    }
  });
});
