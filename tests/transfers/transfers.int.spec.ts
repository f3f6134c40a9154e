import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { accountStream, transferStream } from '../../src/write/streams.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import { storeVariants } from '../support/variants.js';

async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each(storeVariants('transfers'))('transfers on $name', ({ env: storeEnv }) => {
  let ledger: TestLedger;
  let tokens: { admin: string; teller: string };
  let teller: ReturnType<typeof client>;
  let auditor: ReturnType<typeof client>;

  beforeAll(async () => {
    ledger = await startTestLedger({ env: { ...storeEnv, PROJECTION_BATCH_SIZE: '100', TRANSFER_DEADLINE_MS: '5000' } });
    tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    teller = client(ledger.app, tokens.teller);
    auditor = client(ledger.app, await ledger.token('auditor'));
  });
  afterAll(async () => {
    await ledger?.close();
  });

  const settled = (id: string) =>
    until(
      () => auditor.get(`/v1/transfers/${id}`),
      (response) => response.statusCode === 200 && response.json<{ status: string }>().status !== 'pending',
    );

  it('moves money: reserve, credit, capture, complete; balances and history follow; the same request again answers as the first time and moves nothing more', async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const customer = client(ledger.app, await ledger.token('customer', from.customerId));
    const transferId = randomUUID();
    const accepted = await customer.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '40.00', currency: 'EUR', description: 'rent' });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers.location).toBe(`/v1/transfers/${transferId}`);
    const transfer = await settled(transferId);
    expect(transfer.json()).toMatchObject({ id: transferId, status: 'completed', amount: '40.00' });
    expect(transfer.json<{ timeline: { stage: string }[] }>().timeline.map((entry) => entry.stage)).toEqual(['requested', 'reserved', 'credited', 'completed']);
    const position = transfer.json<{ position: string }>().position;
    expect((await auditor.get(`/v1/accounts/${from.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '60.00', held: '0.00', available: '60.00' });
    expect((await auditor.get(`/v1/accounts/${to.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '40.00' });
    const history = await auditor.get(`/v1/accounts/${from.accountId}/transactions?type=transfer_out&minPosition=${position}`);
    expect(history.json<{ items: unknown[] }>().items).toEqual([expect.objectContaining({ amount: '-40.00', balanceAfter: '60.00', status: 'completed', counterpartyAccountId: to.accountId })]);
    const incoming = await auditor.get(`/v1/accounts/${to.accountId}/transactions?minPosition=${position}`);
    expect(incoming.json<{ items: unknown[] }>().items).toEqual([expect.objectContaining({ type: 'transfer_in', amount: '40.00', status: 'completed' })]);
    // The same request again is the same transfer: answered as the first time, nothing recorded, no second debit.
    const again = await customer.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '40.00', currency: 'EUR', description: 'rent' });
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual(accepted.json());
    expect(await ledger.runtime.store.readAll({ after: BigInt(accepted.json<{ position: string }>().position), filter: { eventTypes: ['TransferRequested'] } })).toEqual([]);
    const head = (await ledger.runtime.store.headPosition()).toString();
    expect((await auditor.get(`/v1/accounts/${from.accountId}?minPosition=${head}`)).json()).toMatchObject({ balance: '60.00', held: '0.00', available: '60.00' });
    expect((await auditor.get(`/v1/accounts/${to.accountId}?minPosition=${head}`)).json()).toMatchObject({ balance: '40.00', held: '0.00', available: '40.00' });
  });

  it('the write API hands each transfer it records to the process manager of its process; a repeat hands nothing on', async () => {
    const manager = ledger.ledger.workers.find((worker) => worker.name === 'process-manager') as unknown as { takeRecorded: (event: { id: string; type: string }) => boolean; runner: { currentState: string } };
    await until(async () => manager.runner.currentState, (state) => state === 'active');
    const handedOff = vi.spyOn(manager, 'takeRecorded');
    try {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = randomUUID();
      const body = { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '2.00', currency: 'EUR' };
      expect((await teller.post('/v1/transfers', body)).statusCode).toBe(202);
      expect((await teller.post('/v1/transfers', body)).statusCode).toBe(202);

      expect(handedOff).toHaveBeenCalledTimes(1);
      const [requested] = await ledger.runtime.store.readStream(transferStream(transferId));
      expect(handedOff.mock.calls[0]![0]).toMatchObject({ id: requested!.id, type: 'TransferRequested' });
      expect(handedOff.mock.results[0]!.value, 'taken: this instance leads').toBe(true);
      expect((await settled(transferId)).json()).toMatchObject({ status: 'completed' });
    } finally {
      handedOff.mockRestore();
    }
  });

  it('a transfer id in upper case is the same transfer: the repeat replays, the money moves once, and GET finds it in either case', async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const transferId = randomUUID();
    const request = { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '10.00', currency: 'EUR' };
    const first = await teller.post('/v1/transfers', request);
    const upper = await teller.post('/v1/transfers', { ...request, transferId: transferId.toUpperCase(), fromAccountId: from.accountId.toUpperCase() });
    expect([first.statusCode, upper.statusCode]).toEqual([202, 202]);
    expect(upper.json()).toEqual(first.json());
    expect(upper.headers.location).toBe(`/v1/transfers/${transferId}`);
    expect((await settled(transferId)).json()).toMatchObject({ id: transferId, status: 'completed' });
    expect((await auditor.get(`/v1/transfers/${transferId.toUpperCase()}`)).json()).toMatchObject({ id: transferId, status: 'completed' });
    const position = (await auditor.get(`/v1/transfers/${transferId}`)).json<{ position: string }>().position;
    expect((await auditor.get(`/v1/accounts/${from.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '90.00' });
    expect((await auditor.get(`/v1/accounts/${to.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '10.00' });
  });

  it('a transfer recorded under an upper-case id before ids were normalised is still found under that spelling, and not recorded again', async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const legacyId = randomUUID().toUpperCase();
    const now = new Date();
    await ledger.ledger.write.transfers.handle(transferStream(legacyId), {
      type: 'RequestTransfer',
      data: { transferId: legacyId, fromAccountId: from.accountId, toAccountId: to.accountId, currency: 'EUR', amountMinor: 500n, description: null, deadlineAt: new Date(now.getTime() + 5_000).toISOString(), holdExpiresAt: new Date(now.getTime() + 3_605_000).toISOString(), now: now.toISOString() },
    }, { idempotencyKey: `legacy:${legacyId}`, requestHash: 'legacy', actor: 'test', correlationId: legacyId });
    const retry = await teller.post('/v1/transfers', { transferId: legacyId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '5.00', currency: 'EUR' });
    expect(retry.statusCode).toBe(409);
    expect(await ledger.runtime.store.readStream(transferStream(legacyId.toLowerCase()))).toEqual([]);
    expect((await settled(legacyId)).json()).toMatchObject({ id: legacyId, status: 'completed' });
  });

  it("is completed from its hold's capture; TransferCompleted then confirms it without a second entry or a later finish", async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '30.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const transferId = randomUUID();
    expect((await teller.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '3.00', currency: 'EUR' })).statusCode).toBe(202);
    await settled(transferId);
    const captured = (await ledger.runtime.store.readStream(accountStream(from.accountId))).find((event) => event.type === 'HoldCaptured');
    const transferEvents = await until(
      () => ledger.runtime.store.readStream(transferStream(transferId)),
      (events) => events.some((event) => event.type === 'TransferCompleted'),
    );
    const completedEvent = transferEvents.find((event) => event.type === 'TransferCompleted')!;
    expect(completedEvent.position).toBeGreaterThan(captured!.position);

    const view = (await auditor.get(`/v1/transfers/${transferId}?minPosition=${completedEvent.position}`)).json<{ status: string; finishedAt: string; position: string; timeline: { stage: string; at: string; position: string }[] }>();
    expect(view.status).toBe('completed');
    expect(view.timeline.map((entry) => entry.stage)).toEqual(['requested', 'reserved', 'credited', 'completed']);
    expect(view.timeline.at(-1)).toMatchObject({ position: captured!.position.toString(), at: (captured!.data as { at: string }).at });
    expect(view.finishedAt).toBe(new Date((captured!.data as { at: string }).at).toISOString());
    expect(view.position).toBe(completedEvent.position.toString());
  });

  it('fails a transfer the source cannot pay, and moves nothing', async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const transferId = randomUUID();
    const accepted = await teller.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '10.01', currency: 'EUR' });
    expect(accepted.statusCode, accepted.body).toBe(202);
    const transfer = await settled(transferId);
    expect(transfer.json()).toMatchObject({ status: 'failed', reason: 'insufficient_funds' });
    // Read at the failure's position: the source's refusal is before it.
    const position = transfer.json<{ position: string }>().position;
    expect((await auditor.get(`/v1/accounts/${from.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '10.00', held: '0.00', available: '10.00' });
    expect((await auditor.get(`/v1/accounts/${to.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '0.00', held: '0.00', available: '0.00' });
  });

  it('compensates when the destination refuses the credit: the hold is released', async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '50.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    await teller.post(`/v1/accounts/${to.accountId}/withdrawals`, { amount: '0.01', currency: 'EUR' }).catch(() => undefined);
    await client(ledger.app, tokens.admin).post(`/v1/accounts/${to.accountId}/close`);
    const transferId = randomUUID();
    await teller.post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '20.00', currency: 'EUR' });
    const transfer = await settled(transferId);
    expect(transfer.json()).toMatchObject({ status: 'failed', reason: 'account_closed' });
    expect(transfer.json<{ timeline: { stage: string }[] }>().timeline.map((entry) => entry.stage)).toEqual(['requested', 'reserved', 'compensating', 'failed']);
    const position = transfer.json<{ position: string }>().position;
    expect((await auditor.get(`/v1/accounts/${from.accountId}?minPosition=${position}`)).json()).toMatchObject({ balance: '50.00', held: '0.00', available: '50.00' });
  });

  it("shows the payee a payment once it reached them, without the payer's side; a transfer that never credited them is a 404", async () => {
    const from = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const to = await openFundedAccount(ledger.app, tokens);
    const payee = client(ledger.app, await ledger.token('customer', to.customerId));
    const payer = client(ledger.app, await ledger.token('customer', from.customerId));
    const paid = randomUUID();
    const refused = randomUUID();
    expect((await teller.post('/v1/transfers', { transferId: paid, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '4.00', currency: 'EUR', description: 'rent' })).statusCode).toBe(202);
    expect((await teller.post('/v1/transfers', { transferId: refused, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '500.00', currency: 'EUR' })).statusCode).toBe(202);
    const completed = await settled(paid);
    const failed = await settled(refused);
    expect(failed.json()).toMatchObject({ status: 'failed', reason: 'insufficient_funds' });
    const position = [completed, failed].map((response) => BigInt(response.json<{ position: string }>().position)).reduce((a, b) => (a > b ? a : b)).toString();

    const seen = await payee.get(`/v1/transfers/${paid}?minPosition=${position}`);
    expect(seen.statusCode, seen.body).toBe(200);
    expect(seen.json()).toMatchObject({ id: paid, status: 'completed', amount: '4.00', description: 'rent' });
    expect(seen.json<{ timeline: { stage: string }[] }>().timeline.map((entry) => entry.stage)).toEqual(['credited', 'completed']);
    const hidden = await payee.get(`/v1/transfers/${refused}?minPosition=${position}`);
    expect(hidden.statusCode).toBe(404);
    expect(hidden.body).not.toContain('insufficient_funds');
    // The payer sees both, whole.
    expect((await payer.get(`/v1/transfers/${refused}?minPosition=${position}`)).json()).toMatchObject({ status: 'failed', reason: 'insufficient_funds' });
    expect((await payer.get(`/v1/transfers/${paid}?minPosition=${position}`)).json<{ timeline: unknown[] }>().timeline).toHaveLength(4);
  });

  it('rejects same-account and cross-currency transfers up front with a 422', async () => {
    const eur = await openFundedAccount(ledger.app, tokens, { deposit: '10.00' });
    const usd = await openFundedAccount(ledger.app, tokens, { currency: 'USD' });
    const same = await teller.post('/v1/transfers', { transferId: randomUUID(), fromAccountId: eur.accountId, toAccountId: eur.accountId, amount: '1.00', currency: 'EUR' });
    expect(same.statusCode).toBe(422);
    expect(same.json()).toMatchObject({ code: 'same_account_transfer' });
    const cross = await teller.post('/v1/transfers', { transferId: randomUUID(), fromAccountId: eur.accountId, toAccountId: usd.accountId, amount: '1.00', currency: 'EUR' });
    expect(cross.statusCode).toBe(422);
    expect(cross.json()).toMatchObject({ code: 'cross_currency_transfer' });
    const other = await openFundedAccount(ledger.app, tokens);
    const stranger = client(ledger.app, await ledger.token('customer', other.customerId));
    expect((await stranger.post('/v1/transfers', { transferId: randomUUID(), fromAccountId: eur.accountId, toAccountId: other.accountId, amount: '1.00', currency: 'EUR' })).statusCode).toBe(404);
  });
});
