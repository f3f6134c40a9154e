import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { runLedger } from '../support/cli.js';
import { client, ledgerForSuite, openFundedAccount } from '../support/ledger.js';

describe('audit endpoints', () => {
  const suite = ledgerForSuite({ roles: ['write-api', 'read-api'] });

  it('replays a stream with its metadata and recomputes a zero trial balance from the log', async () => {
    const { ledger, tokens } = suite;
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
    const { ledger, tokens } = suite;
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

describe('the trial balance over a log with an invalid posting', () => {
  const suite = ledgerForSuite({ roles: ['write-api', 'read-api'] });
  let corrupt: { id: string; streamName: string };

  beforeAll(async () => {
    const { ledger, tokens } = suite;
    await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    // Written past the domain, as a faulty writer or a tampered row would leave it.
    corrupt = { id: randomUUID(), streamName: `account-${randomUUID()}` };
    await ledger.runtime.store.append(
      corrupt.streamName,
      [{ id: corrupt.id, type: 'FundsDeposited', data: { currency: 'EUR', amountMinor: 5n, legs: [{ ledgerAccount: 'customer:x', amountMinor: 5n }, { ledgerAccount: 'settlement:EUR', amountMinor: -4n }] } as never, metadata: { actor: 'test' } }],
      { expectedRevision: 'no_stream' },
    );
  });

  it('answers "not balanced" and names the event, rather than failing with a 500', async () => {
    const auditor = client(suite.ledger.app, suite.tokens.auditor);
    const [first, second] = await Promise.all([auditor.get('/v1/audit/trial-balance'), auditor.get('/v1/audit/trial-balance')]);
    for (const response of [first, second]) {
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json()).toMatchObject({
        balanced: false,
        currencies: [{ currency: 'EUR', sumMinor: '1', clearingMinor: '0' }],
        exceptionCount: 1,
        exceptions: [{ eventId: corrupt.id, streamName: corrupt.streamName, type: 'FundsDeposited', problem: 'legs do not balance: they sum to 1' }],
      });
    }
  });

  it('`ledger audit trial-balance` prints the event and exits 1', async () => {
    const { child, output } = runLedger(['audit', 'trial-balance'], { DATABASE_URL: suite.ledger.database.url, JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'error' });
    const [code] = await once(child, 'exit');
    expect(code, output().stderr).toBe(1);
    expect(output().stdout).toMatch(/^EUR\t1\t0\tNOT BALANCED$/m);
    expect(output().stdout).toMatch(new RegExp(`^\\d+\\t${corrupt.id}\\t${corrupt.streamName}\\tFundsDeposited\\tlegs do not balance: they sum to 1$`, 'm'));
  });
});

describe('`ledger audit verify` beside a projection that is not running', () => {
  const suite = ledgerForSuite({ roles: ['write-api'] });

  beforeAll(async () => {
    await openFundedAccount(suite.ledger.app, suite.tokens, { deposit: '1.00' });
  });

  it('says the match holds only up to the checkpoint, and how far behind the log that is', async () => {
    const { child, output } = runLedger(['audit', 'verify', 'accounts'], { DATABASE_URL: suite.ledger.database.url, JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'warn' });
    const [code] = await once(child, 'exit');
    expect(code, output().stderr).toBe(0);
    const warning = output().stdout.split('\n').find((line) => line.includes('verified only up to its checkpoint'));
    expect(warning, output().stdout).toBeDefined();
    expect(JSON.parse(warning!)).toMatchObject({ projection: 'accounts', position: '0', failingEventId: null });
    expect(JSON.parse(warning!).lagEvents).toBeGreaterThanOrEqual(2);
  });
});

describe('overdue transfers, for the auditors', () => {
  // No process manager: every transfer requested stays pending.
  const suite = ledgerForSuite({ roles: ['write-api', 'read-api', 'projector'], env: { TRANSFER_DEADLINE_MS: '1000' } });

  it('lists the transfers still pending past their deadline, oldest first, bounded, and only to auditors and admins', async () => {
    const { ledger, tokens } = suite;
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const teller = client(ledger.app, tokens.teller);
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    let position = '0';
    for (const transferId of ids) {
      const requested = await teller.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR' });
      expect(requested.statusCode, requested.body).toBe(202);
      position = requested.json<{ position: string }>().position;
    }
    const auditor = client(ledger.app, tokens.auditor);
    // Seen by the read model first (the transfer view waits for the position), then asked as overdue.
    expect((await auditor.get(`/v1/transfers/${ids[2]}?minPosition=${position}`)).statusCode).toBe(200);

    const byDefault = await auditor.get('/v1/audit/overdue-transfers');
    expect(byDefault.statusCode, byDefault.body).toBe(200);
    expect(byDefault.json()).toMatchObject({ transfers: [], more: false });

    const overdue = await auditor.get('/v1/audit/overdue-transfers?minAgeSeconds=0&limit=2');
    expect(overdue.statusCode, overdue.body).toBe(200);
    const page = overdue.json<{ transfers: { id: string; status: string; stage: string }[]; more: boolean; asOfPosition: string }>();
    expect(page.transfers.map((transfer) => transfer.id)).toEqual(ids.slice(0, 2));
    expect(page.transfers[0]).toMatchObject({ status: 'pending', stage: 'requested', amount: '1.00' });
    expect(page.more).toBe(true);
    expect(BigInt(page.asOfPosition)).toBeGreaterThanOrEqual(BigInt(position));
    // The rest through the cursor, under the first page's cut-off.
    const next = await auditor.get(`/v1/audit/overdue-transfers?limit=2&cursor=${overdue.json<{ nextCursor: string }>().nextCursor}`);
    expect(next.statusCode, next.body).toBe(200);
    expect(next.json()).toMatchObject({ requestedBefore: overdue.json<{ requestedBefore: string }>().requestedBefore, more: false, nextCursor: null });
    expect(next.json<{ transfers: { id: string }[] }>().transfers.map((transfer) => transfer.id)).toEqual([ids[2]]);
    const altered = await auditor.get(`/v1/audit/overdue-transfers?cursor=${overdue.json<{ nextCursor: string }>().nextCursor.replace(/^./, (c) => (c === 'e' ? 'f' : 'e'))}`);
    expect(altered.json()).toMatchObject({ status: 400, code: 'invalid_cursor' });

    expect((await client(ledger.app, tokens.admin).get('/v1/audit/overdue-transfers')).statusCode).toBe(200);
    expect((await teller.get('/v1/audit/overdue-transfers')).statusCode).toBe(403);
    for (const bad of ['limit=0', 'limit=201', 'minAgeSeconds=-1', 'minAgeSeconds=1.5', 'other=1']) {
      const response = await auditor.get(`/v1/audit/overdue-transfers?${bad}`);
      expect(response.statusCode, bad).toBe(400);
      expect(response.headers['content-type'], bad).toContain('application/problem+json');
    }
  });
});
