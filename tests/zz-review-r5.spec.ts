import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { availableMinor, heldMinor } from '../src/domain/account.js';
import { accountsProjection } from '../src/projections/accounts/projection.js';
import { transactionsProjection } from '../src/projections/transactions/projection.js';
import { listTransactions } from '../src/projections/transactions/query.js';
import type { ReadDatabase } from '../src/projections/database.js';
import type { CommandContext } from '../src/write/commandHandler.js';
import { accountStream, transferStream } from '../src/write/streams.js';
import { openAccount, projectionEnvPerTest, registerActiveCustomer, settledHead, sleep, waitForCheckpoints, deposit } from './projections/helpers.js';

const ctx = (): CommandContext => {
  const key = randomUUID();
  return { idempotencyKey: key, requestHash: key, actor: 'teller:review', correlationId: randomUUID() };
};
const now = () => new Date().toISOString();
const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();

describe('review r5', () => {
  const env = projectionEnvPerTest();

  it('A: a lapsed, not-yet-swept hold keeps reserving in the read model; available goes negative', async () => {
    const { write, db } = await env.open();
    const customerId = await registerActiveCustomer(write);
    const accountId = await openAccount(write, customerId);
    const stream = accountStream(accountId);
    await write.accounts.handle(stream, { type: 'SetOverdraftLimit', data: { accountId, overdraftLimitMinor: 100_00n, now: now() } }, ctx());
    await write.accounts.handle(stream, { type: 'PlaceHold', data: { accountId, holdId: randomUUID(), currency: 'EUR', amountMinor: 80_00n, expiresAt: inMs(800), reference: null, description: null, now: now() } }, ctx());
    await sleep(1_000);
    await write.accounts.handle(stream, { type: 'Withdraw', data: { accountId, transactionId: randomUUID(), currency: 'EUR', amountMinor: 100_00n, reference: null, description: null, now: now() } }, ctx());
    const runner = env.current().runner(accountsProjection).start();
    void runner;
    await waitForCheckpoints(db, [accountsProjection], await settledHead(db));
    const { rows } = await sql<{ balance_minor: bigint; held_minor: bigint; available_minor: bigint }>`select balance_minor, held_minor, available_minor from account_balances where account_id = ${accountId}`.execute(db);
    const { state } = await write.accounts.load(stream);
    console.log('A read model', rows[0], 'domain held', heldMinor(state, now()), 'domain available', availableMinor(state, now()));
    expect(rows[0]!.available_minor).toBe(-80_00n);
    expect(availableMinor(state, now())).toBe(0n);
  });

  it('B: an outgoing transfer row sits at its request position but carries the balance after its capture', async () => {
    const { write, db } = await env.open();
    const customerId = await registerActiveCustomer(write);
    const from = await openAccount(write, customerId);
    const to = await openAccount(write, customerId);
    await deposit(write, from, 100_00n);
    const transferId = randomUUID();
    const facts = { transferId, currency: 'EUR' as const, amountMinor: 30_00n };
    await write.transfers.handle(transferStream(transferId), { type: 'RequestTransfer', data: { ...facts, fromAccountId: from, toAccountId: to, description: null, deadlineAt: inMs(600_000), holdExpiresAt: inMs(1_200_000), now: now() } }, ctx());
    await write.accounts.handle(accountStream(from), { type: 'PlaceTransferHold', data: { ...facts, accountId: from, expiresAt: inMs(1_200_000), now: now() } }, ctx());
    await deposit(write, from, 50_00n);
    await write.accounts.handle(accountStream(to), { type: 'CreditTransfer', data: { ...facts, accountId: to, fromAccountId: from, description: null, now: now() } }, ctx());
    await write.accounts.handle(accountStream(from), { type: 'CaptureTransferHold', data: { accountId: from, transferId, toAccountId: to, now: now() } }, ctx());
    await write.transfers.handle(transferStream(transferId), { type: 'CompleteTransfer', data: { transferId, now: now() } }, ctx());
    env.current().runner(transactionsProjection).start();
    await waitForCheckpoints(db, [transactionsProjection], await settledHead(db));
    const rows = await listTransactions(db as unknown as Kysely<ReadDatabase>, { accountId: from, limit: 10 });
    const oldestFirst = rows.reverse().map((row) => ({ type: row.type, amount: row.amount_minor, balanceAfter: row.balance_after_minor, position: row.position }));
    console.log('B history oldest first', oldestFirst);
    // 100 -> (transfer_out -30) -> 120?? -> (deposit +50) -> 150
    expect(oldestFirst.map((row) => row.balanceAfter)).toEqual([100_00n, 120_00n, 150_00n]);
  });
});
