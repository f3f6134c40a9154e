import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { storeVariants } from '../support/variants.js';

describe.each(storeVariants('query API'))('query API on $name', ({ env: storeEnv }) => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string; auditor: string };
  let teller: ReturnType<typeof client>;
  let auditor: ReturnType<typeof client>;

  beforeAll(async () => {
    ledger = await startTestLedger({ env: { ...storeEnv, READ_WAIT_TIMEOUT_MS: '8000', PROJECTION_BATCH_SIZE: '50' } });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller'), auditor: await ledger.token('auditor') };
    teller = client(ledger.app, tokens.teller);
    auditor = client(ledger.app, tokens.auditor);
  });
  afterAll(async () => {
    await ledger?.close();
  });

  it('reads an account with its balances once the projection has passed the write (read-your-writes)', async () => {
    const { accountId, customerId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
    const hold = await teller.post(`/v1/accounts/${accountId}/holds`, { holdId: randomUUID(), amount: '25.50', currency: 'EUR', expiresAt: new Date(Date.now() + 60_000).toISOString() });
    const position = hold.json<{ position: string }>().position;
    const account = await auditor.get(`/v1/accounts/${accountId}?minPosition=${position}`);
    expect(account.statusCode).toBe(200);
    expect(account.json()).toMatchObject({ id: accountId, customerId, currency: 'EUR', status: 'active', balance: '100.00', held: '25.50', available: '74.50' });
    const viaHeader = await auditor.get(`/v1/customers/${customerId}/accounts`, { 'x-min-position': position });
    expect(viaHeader.json<{ items: unknown[] }>().items).toHaveLength(1);
    const customer = await auditor.get(`/v1/customers/${customerId}?minPosition=${position}`);
    expect(customer.json()).toMatchObject({ id: customerId, status: 'active', firstName: 'Ada' });
  });

  it("pages a customer's accounts, oldest first, with a cursor bound to that customer", async () => {
    const { accountId: first, customerId } = await openFundedAccount(ledger.app, tokens);
    const opened = [first];
    let position = '0';
    for (let index = 0; index < 4; index++) {
      const response = await teller.post('/v1/accounts', { customerId, currency: 'EUR', type: 'checking' });
      expect(response.statusCode, response.body).toBe(201);
      opened.push(response.json<{ id: string }>().id);
      position = response.json<{ position: string }>().position;
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 5 && (page === 0 || cursor !== null); page++) {
      const response = await auditor.get(`/v1/customers/${customerId}/accounts?limit=2&minPosition=${position}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(response.statusCode, response.body).toBe(200);
      const body = response.json<{ items: { id: string }[]; nextCursor: string | null }>();
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items.map((item) => item.id));
      cursor = body.nextCursor;
    }
    expect(cursor).toBeNull();
    expect(new Set(seen)).toEqual(new Set(opened));
    expect(seen).toHaveLength(5);
    const all = await auditor.get(`/v1/customers/${customerId}/accounts`);
    expect(all.json<{ items: { id: string }[] }>().items.map((item) => item.id)).toEqual(seen);

    const { customerId: other } = await openFundedAccount(ledger.app, tokens);
    const firstPage = await auditor.get(`/v1/customers/${customerId}/accounts?limit=1`);
    const foreign = await auditor.get(`/v1/customers/${other}/accounts?cursor=${firstPage.json<{ nextCursor: string }>().nextCursor}`);
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json()).toMatchObject({ code: 'invalid_cursor' });
  });

  it('answers 503 with Retry-After when the read model does not reach minPosition in time', async () => {
    const started = Date.now();
    const response = await auditor.get(`/v1/accounts/${randomUUID()}?minPosition=9223372036854775807`);
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a minPosition past PostgreSQL\'s bigint at once with a 400 problem, as a query parameter or a header', async () => {
    const { accountId, customerId } = await openFundedAccount(ledger.app, tokens);
    const started = Date.now();
    for (const url of [`/v1/accounts/${accountId}`, `/v1/accounts/${accountId}/transactions`, `/v1/customers/${customerId}`, `/v1/customers/${customerId}/accounts`, `/v1/transfers/${randomUUID()}`]) {
      for (const position of ['9223372036854775808', '99999999999999999999']) {
        for (const response of [await auditor.get(`${url}?minPosition=${position}`), await auditor.get(url, { 'x-min-position': position })]) {
          expect(response.statusCode, `${url} ${position}`).toBe(400);
          expect(response.headers['content-type']).toContain('application/problem+json');
          expect(response.json()).toMatchObject({ code: 'invalid_min_position' });
        }
      }
    }
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('lists history newest first with keyset pages that return every row exactly once while a row is added (and in the read model) between pages', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens);
    let last = '';
    for (let index = 1; index <= 25; index++) last = (await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: `${index}.00`, currency: 'EUR' })).json<{ position: string }>().position;
    const seen: string[] = [];
    let cursor: string | null = null;
    const seenPositions: string[] = [];
    let pages = 0;
    let added: { position: string } | undefined;
    do {
      // After the first page, every page waits for the row added after it: it is in the read model, above the cursor.
      const response = await auditor.get(`/v1/accounts/${accountId}/transactions?limit=7&minPosition=${added?.position ?? last}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(response.statusCode).toBe(200);
      const body = response.json<{ items: { id: string; amount: string; position: string }[]; nextCursor: string | null }>();
      seen.push(...body.items.map((item) => item.id));
      seenPositions.push(...body.items.map((item) => item.position));
      cursor = body.nextCursor;
      // A new row arrives between pages; it is newer than the cursor and never shifts a page.
      if (pages++ === 0) {
        const deposit = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '0.01', currency: 'EUR' });
        expect(deposit.statusCode).toBe(201);
        added = deposit.json<{ position: string }>();
      }
    } while (cursor);
    expect(pages).toBe(4);
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    expect(seenPositions, 'the added row is above the first cursor').not.toContain(added!.position);
    const first = await auditor.get(`/v1/accounts/${accountId}/transactions?limit=1&minPosition=${added!.position}`);
    expect(first.json<{ items: { position: string; amount: string; type: string }[] }>().items[0]).toMatchObject({ position: added!.position, type: 'deposit', amount: '0.01' });
  });

  it('filters by type, amount and date, and refuses bad filters and tampered cursors', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens);
    await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '50.00', currency: 'EUR' });
    const last = (await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '20.00', currency: 'EUR' })).json<{ position: string }>().position;
    const withdrawals = await auditor.get(`/v1/accounts/${accountId}/transactions?type=withdrawal&minPosition=${last}`);
    expect(withdrawals.json<{ items: { amount: string; balanceAfter: string }[] }>().items).toEqual([expect.objectContaining({ amount: '-20.00', balanceAfter: '30.00' })]);
    // occurredAt is ISO 8601 in UTC with milliseconds, the form every other timestamp of the API has.
    const [withdrawal] = withdrawals.json<{ items: { occurredAt: string }[] }>().items;
    expect(withdrawal!.occurredAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Math.abs(Date.parse(withdrawal!.occurredAt) - Date.now())).toBeLessThan(60_000);
    const big = await auditor.get(`/v1/accounts/${accountId}/transactions?minAmount=30`);
    expect(big.json<{ items: { amount: string }[] }>().items.map((item) => item.amount)).toEqual(['50.00']);
    const today = new Date().toISOString().slice(0, 10);
    expect((await auditor.get(`/v1/accounts/${accountId}/transactions?from=${today}`)).json<{ items: unknown[] }>().items).toHaveLength(2);
    for (const bad of ['from=yesterday', 'from=2026-02-01&to=2026-01-01', 'type=bribe', 'minAmount=1e3', 'limit=201', 'limit=0', 'cursor=abc', "cursor=' OR 1=1 --", 'unknown=1', 'minAmount=5&maxAmount=1']) {
      const response = await auditor.get(`/v1/accounts/${accountId}/transactions?${bad}`);
      expect(response.statusCode, bad).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
    }
    // A cursor made for one account is refused on another, and an altered one is refused everywhere.
    const { accountId: other } = await openFundedAccount(ledger.app, tokens);
    await teller.post(`/v1/accounts/${other}/deposits`, { amount: '1.00', currency: 'EUR' });
    const page = (await auditor.get(`/v1/accounts/${accountId}/transactions?limit=1`)).json<{ nextCursor: string }>();
    expect((await auditor.get(`/v1/accounts/${other}/transactions?cursor=${page.nextCursor}`)).statusCode).toBe(400);
    const tampered = `${page.nextCursor.slice(0, 5)}${page.nextCursor[5] === 'A' ? 'B' : 'A'}${page.nextCursor.slice(6)}`;
    expect((await auditor.get(`/v1/accounts/${accountId}/transactions?cursor=${tampered}`)).statusCode).toBe(400);
  });

  it('refuses impossible calendar dates and times in from and to, which would roll over, and reads an offset as written', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '1.00' });
    const last = (await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' })).json<{ position: string }>().position;
    const listed = (query: string) => auditor.get(`/v1/accounts/${accountId}/transactions?minPosition=${last}&${query}`);
    for (const bad of [
      'from=2024-02-30', 'to=2024-02-30', 'from=2023-02-29', 'from=2024-04-31', 'from=2024-13-01', 'from=2024-00-10', 'from=2024-01-00',
      'from=2024-02-30T10:00:00Z', 'from=2024-01-01T24:00:00Z', 'from=2024-01-01T10:60:00Z', 'from=2024-01-01T10:00:60Z',
      'from=2024-01-01T10:00:00%2B24:00', 'from=2024-01-01T10:00:00%2B02:60', 'from=2024-01-01T10:00.5Z', 'from=2024-1-01',
    ]) {
      const response = await listed(bad);
      expect(response.statusCode, bad).toBe(400);
      expect(response.headers['content-type'], bad).toContain('application/problem+json');
      expect(response.json(), bad).toMatchObject({ code: 'invalid_date' });
    }
    for (const good of ['from=2024-02-29', 'from=2024-01-01T10:00', 'from=2024-01-01T10:00:00Z', 'from=2024-01-01%2010:00:00.123456Z', 'from=2024-01-01T10:00:00%2B0200', `to=${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}`]) {
      const response = await listed(good);
      expect(response.statusCode, good).toBe(200);
      expect(response.json<{ items: unknown[] }>().items, good).toHaveLength(2);
    }
    // The wall-clock time a minute ago at +02:00 and a minute ahead at -05:00, written with their offsets.
    const at = (instantMs: number, offsetMinutes: number) =>
      `${new Date(instantMs + offsetMinutes * 60_000).toISOString().slice(0, 19)}${offsetMinutes < 0 ? '-' : '%2B'}${String(Math.trunc(Math.abs(offsetMinutes) / 60)).padStart(2, '0')}:${String(Math.abs(offsetMinutes) % 60).padStart(2, '0')}`;
    expect((await listed(`from=${at(Date.now() - 60_000, 120)}`)).json<{ items: unknown[] }>().items).toHaveLength(2);
    expect((await listed(`from=${at(Date.now() + 60_000, -300)}`)).json<{ items: unknown[] }>().items).toHaveLength(0);
    expect((await listed(`to=${at(Date.now() - 60_000, -300)}`)).json<{ items: unknown[] }>().items).toHaveLength(0);
  });

  it('reads a date-only to as the whole of that day, and a date-time to as inclusive', async () => {
    const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '1.00' });
    const last = (await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '2.00', currency: 'EUR' })).json<{ position: string }>().position;
    const listed = async (query: string) => {
      const response = await auditor.get(`/v1/accounts/${accountId}/transactions?minPosition=${last}&${query}`);
      expect(response.statusCode, query).toBe(200);
      return response.json<{ items: { amount: string; occurredAt: string }[] }>().items.map((item) => item.amount);
    };
    const items = (await auditor.get(`/v1/accounts/${accountId}/transactions?minPosition=${last}`)).json<{ items: { amount: string; occurredAt: string }[] }>().items;
    expect(items.map((item) => item.amount)).toEqual(['2.00', '1.00']);
    const newest = items[0]!;
    const oldest = items[1]!;
    // The days of the rows themselves, so a run across midnight UTC cannot make this flaky.
    const newestDay = newest.occurredAt.slice(0, 10);
    const oldestDay = oldest.occurredAt.slice(0, 10);
    const dayBefore = (day: string) => new Date(Date.parse(day) - 86_400_000).toISOString().slice(0, 10);
    expect(await listed(`from=${oldestDay}&to=${newestDay}`)).toEqual(['2.00', '1.00']);
    expect(await listed(`to=${newestDay}`)).toEqual(['2.00', '1.00']);
    expect(await listed(`to=${dayBefore(oldestDay)}`)).toEqual([]);
    // A date-time from within the day, up to that same day by date: the range is not reversed.
    expect(await listed(`from=${newest.occurredAt}&to=${newestDay}`)).toEqual(['2.00']);
    // A date-time to keeps its instant, inclusively.
    expect(await listed(`to=${newest.occurredAt}`)).toEqual(['2.00', '1.00']);
    expect(await listed(`to=${new Date(Date.parse(oldest.occurredAt) - 1).toISOString()}`)).toEqual([]);
    const reversed = await auditor.get(`/v1/accounts/${accountId}/transactions?from=${newestDay}T00:00:00Z&to=${dayBefore(newestDay)}`);
    expect(reversed.statusCode).toBe(400);
    expect(reversed.json()).toMatchObject({ code: 'invalid_date_range' });
  });

  it('hides other customers\' accounts from a customer with a 404', async () => {
    const mine = await openFundedAccount(ledger.app, tokens, { deposit: '1.00' });
    const theirs = await openFundedAccount(ledger.app, tokens, { deposit: '1.00' });
    const customer = client(ledger.app, await ledger.token('customer', mine.customerId));
    // Wait for the read model to pass both accounts' last writes, so a 404 can only mean "not yours".
    const after = `minPosition=${theirs.position}`;
    expect((await customer.get(`/v1/accounts/${mine.accountId}?${after}`)).statusCode).toBe(200);
    expect((await customer.get(`/v1/accounts/${theirs.accountId}?${after}`)).statusCode).toBe(404);
    // Staff read it first, so its owner is remembered: the customer is still refused.
    expect((await auditor.get(`/v1/accounts/${theirs.accountId}/transactions`)).statusCode).toBe(200);
    expect((await customer.get(`/v1/accounts/${theirs.accountId}/transactions`)).statusCode).toBe(404);
    expect((await customer.get(`/v1/accounts/${mine.accountId}/transactions`)).statusCode).toBe(200);
    expect((await auditor.get(`/v1/accounts/${randomUUID()}/transactions`)).statusCode).toBe(404);
    expect((await customer.get(`/v1/customers/${theirs.customerId}`)).statusCode).toBe(404);
  });
});
