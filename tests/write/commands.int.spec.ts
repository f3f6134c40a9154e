import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { EventStore } from '../../src/eventstore/port.js';
import { createHttpApp } from '../../src/shared/http/app.js';
import { accountStream, emailReservationStream, transferStream } from '../../src/write/streams.js';
import { createWriteSide } from '../../src/write/writeSide.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';

describe('command API', () => {
  let ledger: TestLedger;
  let admin: ReturnType<typeof client>;
  let teller: ReturnType<typeof client>;
  let tokens: { admin: string; teller: string };

  beforeAll(async () => {
    ledger = await startTestLedger({ roles: ['write-api'] });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    admin = client(ledger.app, tokens.admin);
    teller = client(ledger.app, tokens.teller);
  });
  afterAll(async () => {
    await ledger?.close();
  });

  async function storedEventCount(): Promise<number> {
    const { rows } = await ledger.runtime.pool.query<{ count: bigint }>('select count(*) from ledger_events');
    return Number(rows[0]!.count);
  }

  describe('customers', () => {
    it('registers a customer as pending verification, with a position', async () => {
      const response = await admin.post('/v1/customers', { email: `Ada.${randomUUID()}@Example.com`, firstName: 'Ada', lastName: 'Lovelace' });
      expect(response.statusCode).toBe(201);
      const body = response.json<{ id: string; status: string; position: string }>();
      expect(body.status).toBe('pending_verification');
      expect(body.position).toMatch(/^[0-9]+$/);
      expect(response.headers.location).toBe(`/v1/customers/${body.id}`);
    });

    it('walks every lifecycle transition and refuses the illegal ones', async () => {
      const { id } = (await admin.post('/v1/customers', { email: `${randomUUID()}@example.com`, firstName: 'Grace', lastName: 'Hopper' })).json<{ id: string }>();
      expect((await admin.post(`/v1/customers/${id}/reactivate`)).statusCode).toBe(422);
      expect((await admin.post(`/v1/customers/${id}/activate`)).json()).toMatchObject({ status: 'active' });
      expect((await admin.post(`/v1/customers/${id}/suspend`, { reason: 'kyc review' })).json()).toMatchObject({ status: 'suspended' });
      const illegal = await admin.post(`/v1/customers/${id}/activate`);
      expect(illegal.statusCode).toBe(422);
      expect(illegal.headers['content-type']).toContain('application/problem+json');
      expect(illegal.json()).toMatchObject({ status: 422, code: 'invalid_state_transition' });
      expect((await admin.post(`/v1/customers/${id}/reactivate`)).json()).toMatchObject({ status: 'active' });
      expect((await admin.post(`/v1/customers/${randomUUID()}/activate`)).statusCode).toBe(404);
    });

    it('keeps emails unique, case-insensitively, in the event store', async () => {
      const email = `unique.${randomUUID()}@example.com`;
      expect((await admin.post('/v1/customers', { email, firstName: 'A', lastName: 'B' })).statusCode).toBe(201);
      const before = await storedEventCount();
      const duplicate = await admin.post('/v1/customers', { email: `  ${email.toUpperCase()} `, firstName: 'C', lastName: 'D' });
      expect(duplicate.statusCode).toBe(409);
      expect(duplicate.json()).toMatchObject({ code: 'email_taken' });
      expect(await storedEventCount()).toBe(before);
    });

    it('lets a registration take over an email reserved by one that failed before registering its customer, once', async () => {
      const email = `orphan.${randomUUID()}@example.com`;
      // What a request that crashed between its two appends leaves: the reservation, no customer.
      const orphan = randomUUID();
      await createWriteSide(ledger.runtime.store, { retryLimit: 5 }).emails.handle(emailReservationStream(email), { type: 'ReserveEmail', data: { emailNormalized: email, customerId: orphan, now: new Date().toISOString() } }, { idempotencyKey: `test:${randomUUID()}`, requestHash: 'test', actor: 'test', correlationId: orphan });
      const key = randomUUID();
      const taken = await admin.post('/v1/customers', { email, firstName: 'Ada', lastName: 'Lovelace' }, { 'idempotency-key': key });
      expect(taken.statusCode, taken.body).toBe(201);
      expect(taken.json()).toMatchObject({ id: orphan, email, firstName: 'Ada' });
      expect(taken.headers.location).toBe(`/v1/customers/${orphan}`);
      const repeat = await admin.post('/v1/customers', { email, firstName: 'Ada', lastName: 'Lovelace' }, { 'idempotency-key': key });
      expect(repeat.statusCode, repeat.body).toBe(201);
      expect(repeat.json()).toEqual(taken.json());
      expect(repeat.headers['idempotent-replayed']).toBe('true');
      // The customer exists now: anyone else asking for the email is refused, as ever.
      const before = await storedEventCount();
      const other = await admin.post('/v1/customers', { email, firstName: 'C', lastName: 'D' });
      expect(other.json()).toMatchObject({ status: 409, code: 'email_taken' });
      expect(await storedEventCount()).toBe(before);
    });

    it.each([
      ['an unknown field', { email: 'x@example.com', firstName: 'A', lastName: 'B', isAdmin: true }],
      ['a number for a string', { email: 'x@example.com', firstName: 5, lastName: 'B' }],
      ['a missing field', { email: 'x@example.com', firstName: 'A' }],
      ['a bad email', { email: 'not-an-email', firstName: 'A', lastName: 'B' }],
      ['a control character in a name', { email: 'y@example.com', firstName: 'A\u0007', lastName: 'B' }],
    ])('refuses %s with a 400 problem and writes nothing', async (_label, body) => {
      const before = await storedEventCount();
      const response = await admin.post('/v1/customers', body);
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(await storedEventCount()).toBe(before);
    });

    it('refuses malformed JSON and a missing idempotency key', async () => {
      expect((await admin.post('/v1/customers', '{"email":')).statusCode).toBe(400);
      const missingKey = await ledger.app.inject({ method: 'POST', url: '/v1/customers', headers: { authorization: `Bearer ${tokens.admin}`, 'content-type': 'application/json' }, payload: { email: 'k@example.com', firstName: 'A', lastName: 'B' } });
      expect(missingKey.statusCode).toBe(400);
    });
  });

  describe('accounts', () => {
    it('opens an account only for an active customer', async () => {
      const { id } = (await admin.post('/v1/customers', { email: `${randomUUID()}@example.com`, firstName: 'A', lastName: 'B' })).json<{ id: string }>();
      const pending = await teller.post('/v1/accounts', { customerId: id, currency: 'EUR', type: 'checking' });
      expect(pending.statusCode).toBe(422);
      expect(pending.json()).toMatchObject({ code: 'customer_not_active' });
      await admin.post(`/v1/customers/${id}/activate`);
      const opened = await teller.post('/v1/accounts', { customerId: id, currency: 'JPY', type: 'savings' });
      expect(opened.statusCode).toBe(201);
      expect(opened.json()).toMatchObject({ customerId: id, currency: 'JPY', type: 'savings', status: 'active', overdraftLimit: '0' });
      expect((await teller.post('/v1/accounts', { customerId: randomUUID(), currency: 'EUR', type: 'checking' })).statusCode).toBe(404);
      expect((await teller.post('/v1/accounts', { customerId: id, currency: 'XXZ', type: 'checking' })).statusCode).toBe(400);
      expect((await teller.post('/v1/accounts', { customerId: id, currency: 'EUR', type: 'gold' })).statusCode).toBe(400);
    });

    it('freezes (credits only), unfreezes and closes only at zero', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
      expect((await teller.post(`/v1/accounts/${accountId}/freeze`, { reason: 'fraud check' })).json()).toMatchObject({ status: 'frozen' });
      expect((await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '1.00', currency: 'EUR' })).statusCode).toBe(201);
      const debit = await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '1.00', currency: 'EUR' });
      expect(debit.statusCode).toBe(422);
      expect(debit.json()).toMatchObject({ code: 'account_frozen' });
      expect((await teller.post(`/v1/accounts/${accountId}/unfreeze`)).json()).toMatchObject({ status: 'active' });
      expect((await admin.post(`/v1/accounts/${accountId}/close`)).json()).toMatchObject({ code: 'balance_not_zero' });
      await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '11', currency: 'EUR' });
      expect((await admin.post(`/v1/accounts/${accountId}/close`)).json()).toMatchObject({ status: 'closed' });
      expect((await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '1', currency: 'EUR' })).json()).toMatchObject({ code: 'account_closed' });
      expect((await teller.post(`/v1/accounts/${randomUUID()}/freeze`)).statusCode).toBe(404);
    });

    it('lets staff set an overdraft and honours it to the minor unit', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '5.00' });
      expect((await admin.post(`/v1/accounts/${accountId}/overdraft`, { overdraftLimit: '10.00' })).json()).toMatchObject({ overdraftLimit: '10.00' });
      expect((await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '15.01', currency: 'EUR' })).statusCode).toBe(422);
      const atLimit = await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '15.00', currency: 'EUR' });
      expect(atLimit.json()).toMatchObject({ balanceAfter: '-10.00' });
    });

    it.each(['0', '0.0', '0.00'])('takes an overdraft limit of %s on a EUR account as none, at opening and later', async (overdraftLimit) => {
      const { customerId, accountId } = await openFundedAccount(ledger.app, tokens);
      const opened = await teller.post('/v1/accounts', { customerId, currency: 'EUR', type: 'checking', overdraftLimit });
      expect(opened.statusCode, opened.body).toBe(201);
      expect(opened.json()).toMatchObject({ overdraftLimit: '0.00' });
      expect((await admin.post(`/v1/accounts/${accountId}/overdraft`, { overdraftLimit })).json()).toMatchObject({ overdraftLimit: '0.00' });
    });

    it.each([
      ['0.000', 'EUR'],
      ['0.000000', 'EUR'],
      ['0.0', 'JPY'],
    ])('refuses a zero overdraft limit %s with more decimals than %s has, at opening and later, and writes nothing', async (overdraftLimit, currency) => {
      const { customerId, accountId } = await openFundedAccount(ledger.app, tokens, { currency });
      const before = await storedEventCount();
      for (const refused of [
        await teller.post('/v1/accounts', { customerId, currency, type: 'checking', overdraftLimit }),
        await admin.post(`/v1/accounts/${accountId}/overdraft`, { overdraftLimit }),
      ]) {
        expect(refused.statusCode).toBe(400);
        expect(refused.headers['content-type']).toContain('application/problem+json');
        expect(refused.json()).toMatchObject({ code: 'too_many_decimals' });
      }
      expect(await storedEventCount()).toBe(before);
    });
  });

  describe('movements', () => {
    it('deposits and withdraws with exact decimal strings per currency', async () => {
      const eur = await openFundedAccount(ledger.app, tokens);
      expect((await teller.post(`/v1/accounts/${eur.accountId}/deposits`, { amount: '12.34', currency: 'EUR', reference: 'r-1', description: 'cash' })).json()).toMatchObject({ amount: '12.34', balanceAfter: '12.34', type: 'deposit' });
      expect((await teller.post(`/v1/accounts/${eur.accountId}/withdrawals`, { amount: '2.3', currency: 'EUR' })).json()).toMatchObject({ amount: '2.30', balanceAfter: '10.04' });
      const jpy = await openFundedAccount(ledger.app, tokens, { currency: 'JPY' });
      expect((await teller.post(`/v1/accounts/${jpy.accountId}/deposits`, { amount: '500', currency: 'JPY' })).json()).toMatchObject({ amount: '500', balanceAfter: '500' });
      const kwd = await openFundedAccount(ledger.app, tokens, { currency: 'KWD' });
      expect((await teller.post(`/v1/accounts/${kwd.accountId}/deposits`, { amount: '1.005', currency: 'KWD' })).json()).toMatchObject({ amount: '1.005' });
    });

    it.each([
      ['a JSON number', 500, 'EUR', 400],
      ['an exponent', '1e3', 'EUR', 400],
      ['too many decimals', '12.345', 'EUR', 400],
      ['decimals for JPY', '500.0', 'JPY', 400],
      ['zero', '0.00', 'EUR', 400],
      ['a negative', '-1.00', 'EUR', 400],
      ['a leading plus', '+1.00', 'EUR', 400],
      ['over the maximum', '100000000000000.00', 'EUR', 400],
      ['an unknown currency', '1.00', 'ABC', 400],
      ['another currency than the account', '1.00', 'USD', 422],
    ])('refuses %s and writes nothing', async (_label, amount, currency, status) => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { currency: currency === 'JPY' ? 'JPY' : 'EUR' });
      const before = await storedEventCount();
      const response = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount, currency });
      expect(response.statusCode).toBe(status);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(await storedEventCount()).toBe(before);
    });

    it('places, partially captures and releases holds', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const holdId = randomUUID();
      const expiresAt = new Date(Date.now() + 60_000).toISOString();
      const placed = await teller.post(`/v1/accounts/${accountId}/holds`, { holdId, amount: '30.00', currency: 'EUR', expiresAt });
      expect(placed.statusCode).toBe(201);
      expect(placed.json()).toMatchObject({ held: '30.00', available: '70.00' });
      expect((await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '70.01', currency: 'EUR' })).json()).toMatchObject({ code: 'insufficient_funds' });
      const captured = await teller.post(`/v1/accounts/${accountId}/holds/${holdId}/capture`, { amount: '12.50' });
      expect(captured.json()).toMatchObject({ captured: '12.50', released: '17.50', balanceAfter: '87.50', held: '0.00' });
      expect((await teller.post(`/v1/accounts/${accountId}/holds/${holdId}/release`)).json()).toMatchObject({ code: 'hold_not_active' });
      const second = randomUUID();
      await teller.post(`/v1/accounts/${accountId}/holds`, { holdId: second, amount: '5.00', currency: 'EUR', expiresAt });
      expect((await teller.post(`/v1/accounts/${accountId}/holds/${second}/release`)).json()).toMatchObject({ status: 'released', released: '5.00' });
      expect((await teller.post(`/v1/accounts/${accountId}/holds/${randomUUID()}/capture`)).json()).toMatchObject({ code: 'hold_not_found' });
      expect((await teller.post(`/v1/accounts/${accountId}/holds`, { holdId: randomUUID(), amount: '1.00', currency: 'EUR', expiresAt: '2001-01-01T00:00:00Z' })).statusCode).toBe(400);
    });

    it('takes a hold id in any case as the same hold (RFC 9562), and still finds one placed under an upper-case spelling before', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const expiresAt = new Date(Date.now() + 60_000).toISOString();
      const holdId = randomUUID();
      const placed = await teller.post(`/v1/accounts/${accountId}/holds`, { holdId: holdId.toUpperCase(), amount: '2.00', currency: 'EUR', expiresAt });
      expect(placed.statusCode, placed.body).toBe(201);
      expect(placed.json()).toMatchObject({ holdId, held: '2.00' });
      const again = await teller.post(`/v1/accounts/${accountId}/holds`, { holdId, amount: '2.00', currency: 'EUR', expiresAt });
      expect(again.json()).toMatchObject({ status: 422, code: 'hold_already_exists' });
      const captured = await teller.post(`/v1/accounts/${accountId}/holds/${holdId.toUpperCase()}/capture`);
      expect(captured.json()).toMatchObject({ holdId, captured: '2.00', balanceAfter: '98.00', held: '0.00' });

      // Recorded as spelled by an earlier version, which did not lower-case hold ids.
      const legacy = randomUUID().toUpperCase();
      const now = new Date().toISOString();
      await createWriteSide(ledger.runtime.store, { retryLimit: 5 }).accounts.handle(accountStream(accountId), { type: 'PlaceHold', data: { accountId, holdId: legacy, currency: 'EUR', amountMinor: 300n, expiresAt, reference: null, description: null, now } }, { idempotencyKey: `test:${randomUUID()}`, requestHash: 'test', actor: 'test', correlationId: legacy });
      const released = await teller.post(`/v1/accounts/${accountId}/holds/${legacy}/release`);
      expect(released.json()).toMatchObject({ holdId: legacy, status: 'released', released: '3.00', held: '0.00' });
    });
  });

  describe('routes that take no body', () => {
    type World = { actor: ReturnType<typeof client>; url: string; answer: Record<string, unknown> };
    const registered = async () => (await admin.post('/v1/customers', { email: `${randomUUID()}@example.com`, firstName: 'A', lastName: 'B' })).json<{ id: string }>().id;
    const routes: [string, Record<string, unknown>, string, () => Promise<World>][] = [
      ['activate', { reason: 'kyc' }, 'reason', async () => ({ actor: admin, url: `/v1/customers/${await registered()}/activate`, answer: { status: 'active' } })],
      ['reactivate', { anything: [1] }, 'anything', async () => {
        const id = await registered();
        await admin.post(`/v1/customers/${id}/activate`);
        await admin.post(`/v1/customers/${id}/suspend`);
        return { actor: admin, url: `/v1/customers/${id}/reactivate`, answer: { status: 'active' } };
      }],
      ['unfreeze', { anything: [1] }, 'anything', async () => {
        const { accountId } = await openFundedAccount(ledger.app, tokens);
        await teller.post(`/v1/accounts/${accountId}/freeze`);
        return { actor: teller, url: `/v1/accounts/${accountId}/unfreeze`, answer: { status: 'active' } };
      }],
      ['close', { force: true }, 'force', async () => ({ actor: admin, url: `/v1/accounts/${(await openFundedAccount(ledger.app, tokens)).accountId}/close`, answer: { status: 'closed' } })],
      ['release', { amount: '0.50', bogus: true }, 'amount', async () => {
        const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
        const holdId = randomUUID();
        await teller.post(`/v1/accounts/${accountId}/holds`, { holdId, amount: '30.00', currency: 'EUR', expiresAt: new Date(Date.now() + 60_000).toISOString() });
        return { actor: teller, url: `/v1/accounts/${accountId}/holds/${holdId}/release`, answer: { status: 'released', released: '30.00', held: '0.00' } };
      }],
    ];

    it.each(routes)('%s refuses a body with a field, naming it, and writes nothing; {} is accepted', async (_action, body, field, prepare) => {
      const { actor, url, answer } = await prepare();
      const before = await storedEventCount();
      const refused = await actor.post(url, body);
      expect(refused.statusCode).toBe(400);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: `body/${field}` }] });
      expect(await storedEventCount()).toBe(before);
      const accepted = await actor.post(url, {});
      expect(accepted.statusCode, accepted.body).toBe(200);
      expect(accepted.json()).toMatchObject(answer);
    });

    it.each(routes)('%s is accepted with no body and no content type', async (_action, _body, _field, prepare) => {
      const { actor, url, answer } = await prepare();
      const accepted = await actor.post(url);
      expect(accepted.statusCode, accepted.body).toBe(200);
      expect(accepted.json()).toMatchObject(answer);
    });

    it('a POST route that declares no body schema cannot be registered', async () => {
      const app = await createHttpApp({ logger: pino({ level: 'silent' }), bodyLimitBytes: 1_024, requestTimeoutMs: 1_000, title: 'test' });
      expect(() => app.post('/v1/anything', async () => ({}))).toThrow(/declares no body/);
      await app.close();
    });
  });

  describe('idempotency', () => {
    it('the same key and body answers the same and writes once; another body gets a 422', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens);
      const key = randomUUID();
      const first = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '10.00', currency: 'EUR' }, { 'idempotency-key': key });
      const before = await storedEventCount();
      const again = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '10.00', currency: 'EUR' }, { 'idempotency-key': key });
      expect(again.statusCode).toBe(201);
      expect(again.json()).toEqual(first.json());
      expect(await storedEventCount()).toBe(before);
      const other = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '11.00', currency: 'EUR' }, { 'idempotency-key': key });
      expect(other.statusCode).toBe(422);
      expect(other.json()).toMatchObject({ code: 'idempotency_key_reused' });
      expect(await storedEventCount()).toBe(before);
    });

    it('replays after a restart of the app and from another instance', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens);
      const key = randomUUID();
      const first = await teller.post(`/v1/accounts/${accountId}/deposits`, { amount: '7.00', currency: 'EUR' }, { 'idempotency-key': key });
      const restarted = await ledger.restart(['write-api']);
      const before = await storedEventCount();
      const replay = await client(restarted.app, tokens.teller).post(`/v1/accounts/${accountId}/deposits`, { amount: '7.00', currency: 'EUR' }, { 'idempotency-key': key });
      expect(replay.statusCode).toBe(201);
      expect(replay.json()).toEqual(first.json());
      expect(await storedEventCount()).toBe(before);
      await restarted.close();
    });

    it('a command that creates a stream appends without reading it; another instance repeating it replays the stored answer', async () => {
      const { store } = ledger.runtime;
      const counted = (): { store: EventStore; reads: () => number } => {
        let reads = 0;
        const wrapped = Object.create(store) as EventStore;
        wrapped.readStream = (...args) => {
          reads += 1;
          return store.readStream(...args);
        };
        return { store: wrapped, reads: () => reads };
      };
      const transferId = randomUUID();
      const request = (nowMs: number) => ({
        type: 'RequestTransfer' as const,
        data: {
          transferId,
          fromAccountId: randomUUID(),
          toAccountId: randomUUID(),
          currency: 'EUR' as const,
          amountMinor: 500n,
          description: null,
          deadlineAt: new Date(nowMs + 60_000).toISOString(),
          holdExpiresAt: new Date(nowMs + 120_000).toISOString(),
          now: new Date(nowMs).toISOString(),
        },
      });
      const context = { idempotencyKey: `test:${transferId}`, requestHash: 'request', actor: 'test', correlationId: transferId };
      const first = counted();
      const created = await createWriteSide(first.store, { retryLimit: 5 }).transfers.handle(transferStream(transferId), request(Date.now()), context);
      expect(created.replayed).toBe(false);
      expect(first.reads(), 'a new stream is not read before its first append').toBe(0);

      const before = await storedEventCount();
      const second = counted();
      // Decided again later, with another clock: the stored events answer, not the new decision.
      const repeated = await createWriteSide(second.store, { retryLimit: 5 }).transfers.handle(transferStream(transferId), request(Date.now() + 5_000), context);
      expect(repeated.replayed).toBe(true);
      expect(repeated.events).toEqual(created.events);
      // The ids a command answers with are the ids stored, fresh or replayed (the process manager follows them).
      expect(repeated.eventIds).toEqual(created.eventIds);
      expect((await first.store.readStream(transferStream(transferId))).map((event) => event.id)).toEqual(created.eventIds);
      expect(second.reads()).toBeGreaterThan(0);
      expect(await storedEventCount()).toBe(before);

      const other = createWriteSide(counted().store, { retryLimit: 5 }).transfers.handle(transferStream(transferId), request(Date.now()), { ...context, idempotencyKey: `test:${randomUUID()}` });
      await expect(other).rejects.toMatchObject({ code: 'already_exists' });
      expect(await storedEventCount()).toBe(before);
    });

    describe('a cached stream remembers only its newest commands (rememberedPerStream 2)', () => {
      const movement = (type: 'Deposit' | 'Withdraw', accountId: string, amountMinor: bigint) => ({
        type,
        data: { accountId, transactionId: randomUUID(), currency: 'EUR' as const, amountMinor, reference: null, description: null, now: new Date().toISOString() },
      });
      const contextFor = (key: string, requestHash = `hash-${key}`) => ({ idempotencyKey: `test:${key}`, requestHash, actor: 'test', correlationId: key });
      const remembered = (write: ReturnType<typeof createWriteSide>, stream: string) =>
        (write.accounts as unknown as { cache: Map<string, { commands: { byKey: Map<string, unknown> } }> }).cache.get(stream)!.commands.byKey.size;
      /** An account funded with 100.00, then `first` and four `then` commands through a write side that remembers two: `first` is forgotten. */
      async function afterForgetting(first: (accountId: string) => ReturnType<typeof movement>, then: (accountId: string) => ReturnType<typeof movement>) {
        const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
        const stream = accountStream(accountId);
        const write = createWriteSide(ledger.runtime.store, { retryLimit: 5, rememberedPerStream: 2 });
        const command = first(accountId);
        const answer = await write.accounts.handle(stream, command, contextFor('first'));
        for (let index = 0; index < 4; index++) await write.accounts.handle(stream, then(accountId), contextFor(`then-${index}-${randomUUID()}`));
        return { accountId, stream, write, command, answer };
      }

      it('answers a repeat of a forgotten command with its stored answer, even one the state would now refuse, and refuses its key with another request', async () => {
        const { accountId, stream, write, command: withdrawal, answer: first } = await afterForgetting(
          (accountId) => movement('Withdraw', accountId, 6_000n),
          (accountId) => movement('Withdraw', accountId, 1_000n),
        );
        expect(remembered(write, stream)).toBe(2);
        const before = await storedEventCount();

        // 100.00 - 60.00 - 4 x 10.00 = 0.00: decided anew, the withdrawal would be refused.
        const repeated = await write.accounts.handle(stream, withdrawal, contextFor('first'));
        expect(repeated.replayed).toBe(true);
        expect(repeated.events).toEqual(first.events);
        expect(repeated.eventIds).toEqual(first.eventIds);
        await expect(write.accounts.handle(stream, movement('Withdraw', accountId, 6_000n), contextFor('first', 'another request'))).rejects.toMatchObject({ status: 422, code: 'idempotency_key_reused' });
        expect(await storedEventCount()).toBe(before);
        expect(remembered(write, stream)).toBe(2);
      });

      it('a repeat of a forgotten command that would be decided again is caught by the store and replayed, not applied twice', async () => {
        const { stream, write, command: deposit, answer: first } = await afterForgetting(
          (accountId) => movement('Deposit', accountId, 700n),
          (accountId) => movement('Deposit', accountId, 100n),
        );
        const before = await storedEventCount();
        const repeated = await write.accounts.handle(stream, deposit, contextFor('first'));
        expect(repeated.replayed).toBe(true);
        expect(repeated.events).toEqual(first.events);
        expect(await storedEventCount()).toBe(before);
        const { state } = await write.accounts.load(stream);
        expect((state as { balanceMinor: bigint }).balanceMinor).toBe(10_000n + 700n + 400n);
      });

      /**
       * A batch holding the cached stream while, in the same process, a read trims the commands that
       * stream remembers (another instance pushed it past the bound) and the batch's append loses
       * its revision: the retry must still know that `first` may be forgotten.
       */
      async function batchRacingATrim(first: (accountId: string) => ReturnType<typeof movement>, other: (accountId: string) => ReturnType<typeof movement>) {
        const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
        const stream = accountStream(accountId);
        let beforeNextAppend: (() => Promise<void>) | undefined;
        const store = Object.create(ledger.runtime.store) as EventStore;
        store.append = async (...args) => {
          const hook = beforeNextAppend;
          beforeNextAppend = undefined;
          await hook?.();
          return ledger.runtime.store.append(...args);
        };
        const write = createWriteSide(store, { retryLimit: 5, rememberedPerStream: 4 });
        const elsewhere = createWriteSide(ledger.runtime.store, { retryLimit: 5 });
        const command = first(accountId);
        const answer = await write.accounts.handle(stream, command, contextFor('first'));
        const before = await storedEventCount();
        // `lead` appends at once; the three behind it queue and are decided together in the next batch.
        const lead = write.accounts.handle(stream, movement('Deposit', accountId, 100n), contextFor(`lead-${randomUUID()}`));
        beforeNextAppend = async () => {
          for (let index = 0; index < 4; index++) await elsewhere.accounts.handle(stream, other(accountId), contextFor(`elsewhere-${index}-${randomUUID()}`));
          await write.accounts.load(stream);
        };
        const batch = [
          write.accounts.handle(stream, movement('Deposit', accountId, 100n), contextFor(`before-${randomUUID()}`)),
          write.accounts.handle(stream, command, contextFor('first')),
          write.accounts.handle(stream, movement('Deposit', accountId, 100n), contextFor(`after-${randomUUID()}`)),
        ];
        await lead;
        const [unrelatedBefore, repeated, unrelatedAfter] = await Promise.allSettled(batch);
        return { answer, repeated, unrelated: [unrelatedBefore, unrelatedAfter], written: (await storedEventCount()) - before };
      }

      it.each([
        // 100.00 - 60.00 - 4 x 10.00 = 0.00: decided anew, the withdrawal would be refused.
        ['is replayed, not refused on the new state', 'Withdraw', 6_000n, 1_000n],
        // Decided anew, its events carry the stored ids: the store refuses the append.
        ['is caught by the store, and the commands beside it are not failed', 'Deposit', 700n, 100n],
      ] as const)('a repeat in a batch whose stream another read trimmed meanwhile %s', async (_outcome, type, firstMinor, otherMinor) => {
        const { answer, repeated, unrelated, written } = await batchRacingATrim(
          (accountId) => movement(type, accountId, firstMinor),
          (accountId) => movement(type, accountId, otherMinor),
        );
        expect(repeated).toMatchObject({ status: 'fulfilled', value: { replayed: true, events: answer.events, eventIds: answer.eventIds } });
        expect(unrelated.map((outcome) => outcome?.status)).toEqual(['fulfilled', 'fulfilled']);
        expect(written, 'the lead, four commands elsewhere and the two deposits beside the repeat').toBe(7);
      });

      it('on a store that cannot say which ids it holds, remembers every command', async () => {
        const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
        const stream = accountStream(accountId);
        const store = Object.create(ledger.runtime.store) as EventStore;
        Object.defineProperty(store, 'storedEventIds', { value: undefined });
        const write = createWriteSide(store, { retryLimit: 5, rememberedPerStream: 2 });
        for (let index = 0; index < 5; index++) await write.accounts.handle(stream, movement('Deposit', accountId, 100n), contextFor(`kept-${index}`));
        expect(remembered(write, stream)).toBeGreaterThanOrEqual(5);
      });
    });

    it('a customer registration replays to the same customer', async () => {
      const key = randomUUID();
      const body = { email: `${randomUUID()}@example.com`, firstName: 'A', lastName: 'B' };
      const first = await admin.post('/v1/customers', body, { 'idempotency-key': key });
      const again = await admin.post('/v1/customers', body, { 'idempotency-key': key });
      expect(again.json()).toEqual(first.json());
      const changed = await admin.post('/v1/customers', { ...body, email: `${randomUUID()}@example.com` }, { 'idempotency-key': key });
      expect(changed.statusCode).toBe(422);
    });
  });

  describe('concurrency', () => {
    /**
     * Counts the FundsWithdrawn events the store holds for the account and folds its stream afresh
     * (no cache), checking the balance after every event never went below zero.
     */
    async function expectStoredWithdrawals(accountId: string, count: number, finalBalanceMinor: bigint): Promise<void> {
      const stream = accountStream(accountId);
      const stored = await ledger.runtime.store.readStream(stream, { maxCount: 1_000 });
      expect(stored.filter((event) => event.type === 'FundsWithdrawn')).toHaveLength(count);
      const balancesAfter = stored.flatMap((event) => (typeof event.data.balanceAfterMinor === 'bigint' ? [event.data.balanceAfterMinor] : []));
      expect(balancesAfter, 'the deposit and each withdrawal record the balance after them').toHaveLength(count + 1);
      expect(balancesAfter.filter((balance) => balance < 0n), 'no event leaves the account below zero').toEqual([]);
      const { state } = await createWriteSide(ledger.runtime.store, { retryLimit: 5 }).accounts.load(stream);
      expect((state as { balanceMinor: bigint }).balanceMinor).toBe(finalBalanceMinor);
    }

    it('50 concurrent withdrawals that can pay for only 10: exactly 10 succeed, and the stored stream holds exactly 10 withdrawals and folds to zero', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const responses = await Promise.all(Array.from({ length: 50 }, () => teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '10.00', currency: 'EUR' })));
      const succeeded = responses.filter((response) => response.statusCode === 201);
      expect(succeeded).toHaveLength(10);
      expect(responses.filter((response) => response.statusCode === 422).every((response) => response.json().code === 'insufficient_funds')).toBe(true);
      expect(responses.filter((response) => response.statusCode === 422)).toHaveLength(40);
      const balances = succeeded.map((response) => response.json<{ balanceAfter: string }>().balanceAfter).sort();
      expect(balances[0]).toBe('0.00');
      // What the store recorded, not what the answers said: ten withdrawals, and the stream folds to zero.
      await expectStoredWithdrawals(accountId, 10, 0n);
    });

    it('a refusal is decided on fresh state: another instance funded the account after this one cached it', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '5.00' });
      // This instance caches the account at 5.00: a 50.00 withdrawal is refused on what it knows.
      expect((await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '50.00', currency: 'EUR' })).statusCode).toBe(422);
      const other = await ledger.restart(['write-api']);
      expect((await client(other.app, tokens.teller).post(`/v1/accounts/${accountId}/deposits`, { amount: '100.00', currency: 'EUR' })).statusCode).toBe(201);
      // The cache still says 5.00, and nothing was appended to prove it wrong: the refusal must not stand on it.
      const withdrawal = await teller.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '50.00', currency: 'EUR' });
      expect(withdrawal.statusCode).toBe(201);
      expect(withdrawal.json()).toMatchObject({ balanceAfter: '55.00' });
      await other.close();
    });

    /** A deposit of 1.00 with a fresh transaction id: the same request decided twice records different events. */
    const depositOf = (accountId: string) => ({
      type: 'Deposit' as const,
      data: { accountId, transactionId: randomUUID(), currency: 'EUR' as const, amountMinor: 100n, reference: null, description: null, now: new Date().toISOString() },
    });
    const contextFor = (key: string) => ({ idempotencyKey: `test:${key}`, requestHash: `hash-${key}`, actor: 'test', correlationId: key });

    it('a repeat another instance records between this one\'s re-read and its append is replayed, and the command beside it is appended', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const stream = accountStream(accountId);
      const deposit = () => depositOf(accountId);
      const elsewhere = createWriteSide(ledger.runtime.store, { retryLimit: 5 });
      const repeatKey = `repeat-${randomUUID()}`;
      const beforeAppend = new Map<number, () => Promise<unknown>>([
        // The batch's first append loses its revision to another writer...
        [2, () => elsewhere.accounts.handle(stream, deposit(), contextFor(`elsewhere-${randomUUID()}`))],
        // ...and after the re-read, before the second, another instance records the same request.
        [3, () => elsewhere.accounts.handle(stream, deposit(), contextFor(repeatKey))],
      ]);
      let appends = 0;
      const store = Object.create(ledger.runtime.store) as EventStore;
      store.append = async (...args) => {
        appends += 1;
        await beforeAppend.get(appends)?.();
        return ledger.runtime.store.append(...args);
      };
      const write = createWriteSide(store, { retryLimit: 5 });
      await write.accounts.load(stream);
      const lead = write.accounts.handle(stream, deposit(), contextFor(`lead-${randomUUID()}`));
      const repeated = write.accounts.handle(stream, deposit(), contextFor(repeatKey));
      const beside = write.accounts.handle(stream, deposit(), contextFor(`beside-${randomUUID()}`));
      await lead;
      const [repeatOutcome, besideOutcome] = await Promise.allSettled([repeated, beside]);
      expect(appends, 'the lead, then the batch twice, then once more after the conflict').toBeGreaterThanOrEqual(4);
      expect(repeatOutcome).toMatchObject({ status: 'fulfilled', value: { replayed: true } });
      expect(besideOutcome).toMatchObject({ status: 'fulfilled', value: { replayed: false } });
      const { state } = await write.accounts.load(stream);
      expect((state as { balanceMinor: bigint }).balanceMinor, 'the lead, the other writer, the repeat once and the one beside it').toBe(10_000n + 400n);
    });

    it.each([
      ['a store that gives an append consecutive positions (PostgreSQL)', false],
      ['a store that does not say where each event landed (as EventStoreDB)', true],
    ])('commands decided together in one append each answer their own last event\'s position, and a repeat answers the same, here or in another instance: %s', async (_store, withoutFirstPosition) => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const stream = accountStream(accountId);
      const deposit = () => depositOf(accountId);
      let appends = 0;
      const store = Object.create(ledger.runtime.store) as EventStore;
      store.append = async (...args) => {
        appends += 1;
        const { firstPosition, ...result } = await ledger.runtime.store.append(...args);
        return withoutFirstPosition ? result : { ...result, firstPosition };
      };
      const write = createWriteSide(store, { retryLimit: 5 });
      await write.accounts.load(stream);
      const keys = Array.from({ length: 4 }, (_, index) => `batched-${index}-${randomUUID()}`);
      const commands = keys.map(() => deposit());
      // The first appends at once; the three behind it are decided together and share the next append.
      const originals = await Promise.all(keys.map((key, index) => write.accounts.handle(stream, commands[index]!, contextFor(key))));
      expect(appends).toBe(2);
      const stored = await ledger.runtime.store.readStream(stream, { maxCount: 1_000 });
      for (const [index, original] of originals.entries()) {
        expect(original.position, keys[index]).toBe(stored.find((event) => event.id === original.eventIds.at(-1))!.position);
      }
      expect(originals[1]!.position < originals[3]!.position).toBe(true);

      const elsewhere = createWriteSide(ledger.runtime.store, { retryLimit: 5 });
      for (const [index, key] of keys.entries()) {
        const here = await write.accounts.handle(stream, commands[index]!, contextFor(key));
        const there = await elsewhere.accounts.handle(stream, commands[index]!, contextFor(key));
        expect([here.replayed, there.replayed]).toEqual([true, true]);
        expect([here.position, there.position], key).toEqual([originals[index]!.position, originals[index]!.position]);
      }
    });

    it('two instances withdrawing 30 × 10.00 from one account holding 100.00 (409s retried with their key): exactly 10 succeed, 20 are refused, the stream folds to zero, never below', async () => {
      const { accountId } = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const other = await ledger.restart(['write-api']);
      const clients = [teller, client(other.app, tokens.teller)];
      // A 409 asks for a retry: the same request with the same key, until it is decided (bounded).
      const withdraw = async (index: number) => {
        const key = randomUUID();
        for (let attempt = 1; ; attempt += 1) {
          const response = await clients[index % 2]!.post(`/v1/accounts/${accountId}/withdrawals`, { amount: '10.00', currency: 'EUR' }, { 'idempotency-key': key });
          if (response.statusCode !== 409 || attempt === 50) return response;
        }
      };
      const responses = await Promise.all(Array.from({ length: 30 }, (_, index) => withdraw(index)));
      expect(responses.map((response) => response.statusCode).sort()).toEqual([...Array<number>(10).fill(201), ...Array<number>(20).fill(422)]);
      expect(responses.filter((response) => response.statusCode === 422).every((response) => response.json().code === 'insufficient_funds')).toBe(true);
      await expectStoredWithdrawals(accountId, 10, 0n);
      await other.close();
    });
  });
});
