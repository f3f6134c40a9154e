/**
 * Issue 5's guarantees for transfers, against real PostgreSQL: a crash after any step, a repeated
 * delivery of any event and a second manager running at once each leave every transfer terminal
 * with each effect recorded exactly once; a missed deadline fails the transfer and gives the funds
 * back; and under load the books balance. The checks fold the event store directly.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { sql, type Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AccountEvent } from '../../src/domain/account.js';
import { formatAmount } from '../../src/domain/money.js';
import { isTerminal, type TransferState } from '../../src/domain/transfer.js';
import type { RecordedEvent } from '../../src/eventstore/port.js';
import { accountStream, transferStream } from '../../src/write/streams.js';
import { startProcessManager, TransferProcessManager, type ProcessManagerOptions, type TransferStep } from '../../src/write/transfers/processManager.js';
import { createWriteSide, type WriteSide } from '../../src/write/writeSide.js';
import { client, openFundedAccount, startTestLedger, type TestLedger } from '../support/ledger.js';
import {
  accountOf,
  boundedAll,
  deadlineRowExists,
  effectsOf,
  eventsByTransfer,
  ledgerTotals,
  moneyOf,
  readAllEvents,
  readWholeStream,
  transferOf,
  until,
  withTimeout,
} from './audit.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const WITHOUT_MANAGER = ['write-api', 'read-api', 'projector'] as const;
const SETTLE_TIMEOUT_MS = 20_000;

type ManagerWorker = ReturnType<typeof startProcessManager>;

/** A process manager as its own process would run it: its own write side, so no warm cache is shared. */
function managerFor(ledger: TestLedger, running: ManagerWorker[], options: Partial<ProcessManagerOptions> = {}): ManagerWorker {
  const { runtime } = ledger;
  const write = createWriteSide(runtime.store, { retryLimit: runtime.config.COMMAND_RETRY_LIMIT });
  const worker = startProcessManager(write, runtime.db, runtime.store, runtime.databaseUrl, { logger, batchSize: 50, timerIntervalMs: 200, ...options });
  running.push(worker);
  return worker;
}

/** An ordinary hold of 10.00 (no transfer) that expires 200 ms from now; its id. */
async function placeExpiringHold(ledger: TestLedger, accountId: string): Promise<string> {
  const holdId = randomUUID();
  const now = new Date();
  await ledger.ledger.write.accounts.handle(
    accountStream(accountId),
    { type: 'PlaceHold', data: { accountId, holdId, currency: 'EUR', amountMinor: 1_000n, expiresAt: new Date(now.getTime() + 200).toISOString(), reference: null, description: null, now: now.toISOString() } },
    { idempotencyKey: `test:${holdId}`, requestHash: 'hold', actor: 'test', correlationId: holdId },
  );
  return holdId;
}

function freshWriteSide(ledger: TestLedger): WriteSide {
  return createWriteSide(ledger.runtime.store, { retryLimit: ledger.runtime.config.COMMAND_RETRY_LIMIT });
}

/** An afterStep hook that throws once, right after `step` succeeded for `transferId`. */
function crashOnceAfter(step: TransferStep, transferId: string, observe?: () => Promise<void>) {
  let fired = false;
  let signal: () => void = () => undefined;
  const crashed = new Promise<void>((resolve) => {
    signal = resolve;
  });
  const afterStep = async (done: TransferStep, id: string) => {
    if (fired || done !== step || id !== transferId) return;
    fired = true;
    await observe?.();
    signal();
    throw new Error(`simulated crash right after ${step}`);
  };
  return { afterStep, crashed };
}

async function settled(ledger: TestLedger, transferId: string): Promise<TransferState> {
  const { store, db } = ledger.runtime;
  const state = await until(() => transferOf(store, transferId), isTerminal, SETTLE_TIMEOUT_MS);
  expect(state.status, `transfer ${transferId} did not end in time`).toMatch(/^(completed|failed)$/);
  // The manager deletes the timer row in the batch that carries the terminal event.
  const rowGone = await until(() => deadlineRowExists(db, transferId), (exists) => !exists, SETTLE_TIMEOUT_MS);
  expect(rowGone, `the deadline row of ${transferId} outlived the transfer`).toBe(false);
  return state;
}

/** What a transfer must have left behind in the account and transfer streams, exactly once each. */
function expectEffects(counts: Record<string, number>, outcome: 'completed' | 'failed', label: string): void {
  const count = (type: string) => counts[type] ?? 0;
  expect(count('TransferRequested'), `${label}: requested`).toBe(1);
  if (outcome === 'completed') {
    expect({
      HoldPlaced: count('HoldPlaced'),
      TransferCredited: count('TransferCredited'),
      HoldCaptured: count('HoldCaptured'),
      TransferCompleted: count('TransferCompleted'),
      HoldReleased: count('HoldReleased'),
      HoldExpired: count('HoldExpired'),
      TransferFailed: count('TransferFailed'),
      TransferHoldRejected: count('TransferHoldRejected'),
      TransferCreditRejected: count('TransferCreditRejected'),
    }, label).toEqual({
      HoldPlaced: 1,
      TransferCredited: 1,
      HoldCaptured: 1,
      TransferCompleted: 1,
      HoldReleased: 0,
      HoldExpired: 0,
      TransferFailed: 0,
      TransferHoldRejected: 0,
      TransferCreditRejected: 0,
    });
    return;
  }
  expect(count('TransferFailed'), `${label}: failed`).toBe(1);
  expect(count('TransferCompleted'), `${label}: completed`).toBe(0);
  expect(count('TransferCredited'), `${label}: credited`).toBe(0);
  expect(count('HoldCaptured'), `${label}: captured`).toBe(0);
  expect(count('HoldPlaced'), `${label}: placed`).toBeLessThanOrEqual(1);
  // A hold that was placed was given back.
  expect(count('HoldReleased') + count('HoldExpired'), `${label}: hold ended`).toBe(count('HoldPlaced'));
  expect(count('TransferHoldRejected') + count('HoldPlaced'), `${label}: one outcome at the source`).toBe(1);
  expect(count('TransferCreditRejected'), `${label}: credit rejected`).toBeLessThanOrEqual(1);
}

async function expectBooksBalance(ledger: TestLedger): Promise<void> {
  const { totals, clearing } = await ledgerTotals(ledger.runtime.store);
  expect(totals.size).toBeGreaterThan(0);
  for (const [currency, sumMinor] of totals) expect(sumMinor, `trial balance ${currency}`).toBe(0n);
  for (const [currency, balanceMinor] of clearing) expect(balanceMinor, `clearing ${currency}`).toBe(0n);
}

function transferEvents(events: readonly RecordedEvent[], transferIds: ReadonlySet<string>): RecordedEvent[] {
  return events.filter((event) => transferIds.has((event.data as { transferId?: string }).transferId ?? ''));
}

/** A transfer requested and reserved on the source through the write side, as the steps before a manager's next one leave it. */
async function reservedTransfer(ledger: TestLedger, tokens: { admin: string; teller: string }, timing: { deadlineInMs: number; holdExpiresInMs: number }) {
  const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
  const to = await openFundedAccount(ledger.app, tokens);
  const transferId = randomUUID();
  const write = freshWriteSide(ledger);
  const now = new Date();
  const facts = { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, currency: 'EUR' as const, amountMinor: 2_500n };
  const holdExpiresAt = new Date(now.getTime() + timing.holdExpiresInMs).toISOString();
  const context = (step: string) => ({ idempotencyKey: `pm:${transferId}:${step}`, requestHash: step, actor: 'system:process-manager', correlationId: transferId });
  await write.transfers.handle(
    transferStream(transferId),
    { type: 'RequestTransfer', data: { ...facts, description: null, deadlineAt: new Date(now.getTime() + timing.deadlineInMs).toISOString(), holdExpiresAt, now: now.toISOString() } },
    context('request'),
  );
  const hold = await write.accounts.handle(
    accountStream(from.accountId),
    { type: 'PlaceTransferHold', data: { accountId: from.accountId, transferId, currency: 'EUR', amountMinor: facts.amountMinor, expiresAt: holdExpiresAt, now: now.toISOString() } },
    context('reserve'),
  );
  expect(hold.events.map((event) => event.type)).toEqual(['HoldPlaced']);
  return { from, to, transferId, facts, write, context };
}

/** Appends an event the first process manager recorded on the transfer stream, as it recorded it. */
async function recordAsTheFirstManagerDid(ledger: TestLedger, transferId: string, facts: Record<string, unknown>, type: 'TransferFundsReserved' | 'TransferDestinationCredited', step: string) {
  const { store } = ledger.runtime;
  const revision = await store.streamRevision(transferStream(transferId));
  await store.append(
    transferStream(transferId),
    [{ id: randomUUID(), type, data: { ...facts, at: new Date().toISOString() } as never, metadata: { correlationId: transferId, actor: 'system:process-manager', extra: { idempotencyKey: `pm:${transferId}:${step}`, requestHash: step } } }],
    { expectedRevision: revision! },
  );
  return (await readWholeStream(store, transferStream(transferId))).at(-1)!;
}

function transferOfState(state: TransferState): Exclude<TransferState, { status: 'none' }> {
  if (state.status === 'none') throw new Error('no such transfer');
  return state;
}

function randomMinor(minMinor: number, maxMinor: number): bigint {
  return BigInt(minMinor + Math.floor(Math.random() * (maxMinor - minMinor + 1)));
}

describe('transfer guarantees', () => {
  const running: ManagerWorker[] = [];
  afterEach(async () => {
    for (const worker of running.splice(0)) await worker.stop().catch(() => undefined);
  });

  describe('crashes, redelivery and concurrent managers', () => {
    let ledger: TestLedger;
    let tokens: { admin: string; teller: string };
    let teller: ReturnType<typeof client>;

    beforeAll(async () => {
      ledger = await startTestLedger({ roles: WITHOUT_MANAGER });
      tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
      teller = client(ledger.app, tokens.teller);
    });
    afterAll(async () => {
      await ledger?.close();
    });

    async function requestTransfer(fromAccountId: string, toAccountId: string, amount: string, currency = 'EUR'): Promise<string> {
      const transferId = randomUUID();
      const response = await teller.post('/v1/transfers', { transferId, fromAccountId, toAccountId, amount, currency });
      expect(response.statusCode, response.body).toBe(202);
      return transferId;
    }

    async function closedAccount(): Promise<string> {
      const { accountId } = await openFundedAccount(ledger.app, tokens);
      const closed = await client(ledger.app, tokens.admin).post(`/v1/accounts/${accountId}/close`);
      expect(closed.statusCode, closed.body).toBe(200);
      return accountId;
    }

    /** Crashes a manager right after `step`, then lets a fresh one finish the transfer. */
    async function crashAfterStepThenRecover(step: TransferStep, transferId: string): Promise<{ atCrash: TransferState; final: TransferState }> {
      const { afterStep, crashed } = crashOnceAfter(step, transferId);
      const doomed = managerFor(ledger, running, { afterStep });
      await withTimeout(crashed, SETTLE_TIMEOUT_MS, `the manager to reach ${step}`);
      await doomed.runner.crash();
      await doomed.stop();
      const atCrash = await transferOf(ledger.runtime.store, transferId);
      const fresh = managerFor(ledger, running);
      const final = await settled(ledger, transferId);
      await fresh.stop();
      return { atCrash, final };
    }

    const happySteps: [TransferStep, TransferState['status']][] = [
      ['reserve', 'requested'],
      ['credit', 'requested'],
      ['capture', 'requested'],
      ['complete', 'completed'],
    ];
    it.each(happySteps)('a crash right after %s: the transfer still completes exactly once', async (step, statusAtCrash) => {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = await requestTransfer(from.accountId, to.accountId, '40.00');

      const { atCrash, final } = await crashAfterStepThenRecover(step, transferId);

      expect(atCrash.status).toBe(statusAtCrash);
      expect(final).toMatchObject({ status: 'completed', reason: null });
      const events = await readAllEvents(ledger.runtime.store);
      expectEffects(effectsOf(events, transferId), 'completed', `crash after ${step}`);
      expect((await readWholeStream(ledger.runtime.store, transferStream(transferId))).map((event) => event.type)).toEqual([
        'TransferRequested',
        'TransferCompleted',
      ]);
      expect(await moneyOf(ledger.runtime.store, from.accountId)).toEqual({ status: 'active', balanceMinor: 6_000n, heldMinor: 0n, availableMinor: 6_000n });
      expect(await moneyOf(ledger.runtime.store, to.accountId)).toMatchObject({ balanceMinor: 4_000n, heldMinor: 0n });
      await expectBooksBalance(ledger);
    });

    const compensationSteps: [TransferStep, TransferState['status']][] = [
      ['compensate', 'compensating'],
      ['release', 'compensating'],
      ['fail', 'failed'],
    ];
    it.each(compensationSteps)('a crash right after %s: the refused transfer still fails exactly once and gives the hold back', async (step, statusAtCrash) => {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const closed = await closedAccount();
      const transferId = await requestTransfer(from.accountId, closed, '40.00');

      const { atCrash, final } = await crashAfterStepThenRecover(step, transferId);

      expect(atCrash.status).toBe(statusAtCrash);
      expect(final).toMatchObject({ status: 'failed', reason: 'account_closed' });
      const counts = effectsOf(await readAllEvents(ledger.runtime.store), transferId);
      expectEffects(counts, 'failed', `crash after ${step}`);
      expect(counts).toMatchObject({ HoldPlaced: 1, HoldReleased: 1, TransferCreditRejected: 1, TransferCompensationStarted: 1 });
      expect((await readWholeStream(ledger.runtime.store, transferStream(transferId))).map((event) => event.type)).toEqual([
        'TransferRequested',
        'TransferCompensationStarted',
        'TransferFailed',
      ]);
      expect(await moneyOf(ledger.runtime.store, from.accountId)).toEqual({ status: 'active', balanceMinor: 10_000n, heldMinor: 0n, availableMinor: 10_000n });
      expect(await moneyOf(ledger.runtime.store, closed)).toMatchObject({ status: 'closed', balanceMinor: 0n });
      await expectBooksBalance(ledger);
    });

    it("posts an outgoing transfer's history row where its hold is captured: a deposit between the request and the capture reconciles", async () => {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = await requestTransfer(from.accountId, to.accountId, '30.00');
      // No manager yet: the request waits, and money arrives before its hold and capture.
      const deposited = await teller.post(`/v1/accounts/${from.accountId}/deposits`, { amount: '50.00', currency: 'EUR' });
      expect(deposited.statusCode, deposited.body).toBe(201);
      managerFor(ledger, running);
      expect((await settled(ledger, transferId)).status).toBe('completed');
      const head = (await ledger.runtime.store.headPosition()).toString();
      const history = await client(ledger.app, tokens.teller).get(`/v1/accounts/${from.accountId}/transactions?minPosition=${head}`);
      expect(history.statusCode, history.body).toBe(200);
      const items = history.json<{ items: { type: string; amount: string; balanceAfter: string; status: string; occurredAt: string }[] }>().items;
      // Newest first: each row's balance is the one before it plus its amount.
      expect(items.map((item) => [item.type, item.amount, item.balanceAfter, item.status])).toEqual([
        ['transfer_out', '-30.00', '120.00', 'completed'],
        ['deposit', '50.00', '150.00', 'completed'],
        ['deposit', '100.00', '100.00', 'completed'],
      ]);
      // Dated as posted: a statement period is cut by the capture, not the request.
      expect(Date.parse(items[0]!.occurredAt)).toBeGreaterThanOrEqual(Date.parse(items[1]!.occurredAt));
    });

    it('a repeated delivery of every event of finished transfers appends nothing and changes no state', async () => {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const closed = await closedAccount();
      const completedId = await requestTransfer(from.accountId, to.accountId, '25.00');
      const compensatedId = await requestTransfer(from.accountId, closed, '30.00');
      const refusedId = await requestTransfer(to.accountId, from.accountId, '1000.00');
      const worker = managerFor(ledger, running);
      expect(await settled(ledger, completedId)).toMatchObject({ status: 'completed' });
      expect(await settled(ledger, compensatedId)).toMatchObject({ status: 'failed', reason: 'account_closed' });
      expect(await settled(ledger, refusedId)).toMatchObject({ status: 'failed', reason: 'insufficient_funds' });
      await worker.stop();

      const { store } = ledger.runtime;
      const ours = transferEvents(await readAllEvents(store), new Set([completedId, compensatedId, refusedId]));
      expect(new Set(ours.map((event) => event.type))).toEqual(
        new Set([
          'TransferRequested',
          'TransferCompensationStarted',
          'TransferCompleted',
          'TransferFailed',
          'HoldPlaced',
          'HoldCaptured',
          'HoldReleased',
          'TransferHoldRejected',
          'TransferCredited',
          'TransferCreditRejected',
        ]),
      );
      const snapshot = async () => ({
        head: await store.headPosition(),
        eventCount: (await readAllEvents(store)).length,
        accounts: await Promise.all([from.accountId, to.accountId, closed].map((id) => accountOf(store, id))),
        transfers: await Promise.all([completedId, compensatedId, refusedId].map((id) => transferOf(store, id))),
      });
      const before = await snapshot();

      // A manager in another process, with a cold cache, gets everything again: twice in order, then backwards one by one.
      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      await manager.react(ours);
      await manager.react(ours);
      for (const event of [...ours].reverse()) await manager.react([event]);
      await manager.settled();
      // The warm write side the first manager used must not see anything new either.
      await worker.manager.react(ours);
      await worker.manager.settled();

      expect(await snapshot()).toEqual(before);
      await expectBooksBalance(ledger);
    });

    it('one delivery of TransferRequested drives the whole transfer; the log delivering its outcomes afterwards takes no step', async () => {
      // react() returns once each delivered event's own step is recorded; settled() waits for the steps that follow on their outcomes.
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = await requestTransfer(from.accountId, to.accountId, '12.50');
      const { store } = ledger.runtime;
      // The log shows an event once no older transaction is open (the safe horizon): wait for it.
      const ofTransfer = async () => transferEvents(await readAllEvents(store), new Set([transferId]));
      const requested = await until(ofTransfer, (events) => events.length > 0, SETTLE_TIMEOUT_MS);
      expect(requested.map((event) => event.type)).toEqual(['TransferRequested']);
      const steps: TransferStep[] = [];
      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50, afterStep: async (step) => void steps.push(step) });

      await manager.react(requested);
      await manager.settled();

      expect(steps).toEqual(['reserve', 'credit', 'capture', 'complete']);
      expect(await transferOf(store, transferId)).toMatchObject({ status: 'completed' });
      const all = await until(ofTransfer, (events) => events.some((event) => event.type === 'TransferCompleted'), SETTLE_TIMEOUT_MS);
      expectEffects(effectsOf(all, transferId), 'completed', 'followed inline');
      const head = await store.headPosition();
      await manager.react(all.filter((event) => event.type !== 'TransferRequested'));
      await manager.settled();
      expect(steps, 'the outcomes it followed itself are not reacted to again when the log brings them').toHaveLength(4);
      expect(await store.headPosition()).toBe(head);
      await expectBooksBalance(ledger);
    });

    it('a transfer handed over by the write API is driven at once; the log delivering it and its outcomes afterwards takes no step', async () => {
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = await requestTransfer(from.accountId, to.accountId, '7.25');
      const { store } = ledger.runtime;
      const ofTransfer = async () => transferEvents(await readAllEvents(store), new Set([transferId]));
      const [requested] = await until(ofTransfer, (events) => events.length > 0, SETTLE_TIMEOUT_MS);
      const steps: TransferStep[] = [];
      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50, afterStep: async (step) => void steps.push(step) });

      expect(manager.takeRecorded({ id: requested!.id, streamName: requested!.streamName, type: requested!.type, data: requested!.data })).toBe(true);
      await manager.settled();

      expect(steps).toEqual(['reserve', 'credit', 'capture', 'complete']);
      const all = await until(ofTransfer, (events) => events.some((event) => event.type === 'TransferCompleted'), SETTLE_TIMEOUT_MS);
      const head = await store.headPosition();
      await manager.react(all);
      await manager.settled();
      expect(steps, 'the delivery of the handed-over request awaits the reaction it started').toHaveLength(4);
      expect(await store.headPosition()).toBe(head);
      expectEffects(effectsOf(all, transferId), 'completed', 'handed over');
      expect(manager.takeRecorded({ id: randomUUID(), streamName: 'account-x', type: 'AccountOpened', data: {} }), 'nothing it does not react to').toBe(false);
      await expectBooksBalance(ledger);
    });

    it('a transfer the first process manager left reserved (TransferFundsReserved on its stream) is credited, captured and completed once', async () => {
      const { store } = ledger.runtime;
      const { from, to, transferId, facts } = await reservedTransfer(ledger, tokens, { deadlineInMs: 60_000, holdExpiresInMs: 3_600_000 });
      const fundsReserved = await recordAsTheFirstManagerDid(ledger, transferId, facts, 'TransferFundsReserved', 'record-reservation');

      // Its checkpoint was past HoldPlaced: only the transfer stream's copy is left to deliver.
      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      await manager.react([fundsReserved]);
      await manager.settled();

      expect(await transferOf(store, transferId)).toMatchObject({ status: 'completed', reason: null });
      expect((await readWholeStream(store, transferStream(transferId))).map((event) => event.type)).toEqual(['TransferRequested', 'TransferFundsReserved', 'TransferCompleted']);
      // The log shows an event once no older transaction is open (the safe horizon): wait for it.
      const effects = await until(async () => effectsOf(await readAllEvents(store), transferId), (counts) => counts.TransferCompleted === 1, SETTLE_TIMEOUT_MS);
      expect(effects).toMatchObject({ HoldPlaced: 1, TransferCredited: 1, HoldCaptured: 1, TransferCompleted: 1 });
      expect(await moneyOf(store, from.accountId)).toMatchObject({ balanceMinor: 7_500n, heldMinor: 0n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 2_500n });
      // The read model enters each stage once, whether the account or the transfer stream told it.
      const auditor = client(ledger.app, await ledger.token('auditor'));
      const shown = await until(
        () => auditor.get(`/v1/transfers/${transferId}`),
        (response) => response.statusCode === 200 && response.json<{ status: string }>().status === 'completed',
        SETTLE_TIMEOUT_MS,
      );
      expect(shown.json<{ timeline: { stage: string }[] }>().timeline.map((entry) => entry.stage)).toEqual(['requested', 'reserved', 'credited', 'completed']);
      await expectBooksBalance(ledger);
    });

    it('a transfer the first process manager left credited (TransferDestinationCredited on its stream) is captured and completed once', async () => {
      const { store } = ledger.runtime;
      const { from, to, transferId, facts, write, context } = await reservedTransfer(ledger, tokens, { deadlineInMs: 60_000, holdExpiresInMs: 3_600_000 });
      await recordAsTheFirstManagerDid(ledger, transferId, facts, 'TransferFundsReserved', 'record-reservation');
      await write.accounts.handle(
        accountStream(to.accountId),
        { type: 'CreditTransfer', data: { accountId: to.accountId, transferId, fromAccountId: from.accountId, currency: 'EUR', amountMinor: facts.amountMinor, description: null, now: new Date().toISOString() } },
        context('credit'),
      );
      const destinationCredited = await recordAsTheFirstManagerDid(ledger, transferId, facts, 'TransferDestinationCredited', 'record-credit');

      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      await manager.react([destinationCredited]);
      await manager.settled();

      expect(await transferOf(store, transferId)).toMatchObject({ status: 'completed', reason: null });
      // The log shows an event once no older transaction is open (the safe horizon): wait for it.
      const effects = await until(async () => effectsOf(await readAllEvents(store), transferId), (counts) => counts.TransferCompleted === 1, SETTLE_TIMEOUT_MS);
      expect(effects).toMatchObject({ HoldPlaced: 1, TransferCredited: 1, HoldCaptured: 1, TransferCompleted: 1 });
      expect(await moneyOf(store, from.accountId)).toMatchObject({ balanceMinor: 7_500n, heldMinor: 0n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 2_500n });
      await expectBooksBalance(ledger);
    });

    it('two managers running at once over 100 transfers: each ends once, every effect once, the books balance', async () => {
      // Enough accounts that the two managers contend without starving each other on a loaded CI machine.
      const accountCount = 24;
      const deposits = Array.from({ length: accountCount }, () => randomMinor(5_000, 20_000));
      const accounts = await boundedAll(deposits, 4, (deposit) => openFundedAccount(ledger.app, tokens, { deposit: formatAmount(deposit, 'EUR') }));
      const closed = await closedAccount();
      const stepsBy = [0, 0];
      const first = managerFor(ledger, running, { exclusive: false, batchSize: 10, afterStep: async () => void stepsBy[0]!++ });
      const second = managerFor(ledger, running, { exclusive: false, batchSize: 10, afterStep: async () => void stepsBy[1]!++ });

      const plans = Array.from({ length: 100 }, (_unused, index) => {
        const fromIndex = Math.floor(Math.random() * accountCount);
        const toIndex = (fromIndex + 1 + Math.floor(Math.random() * (accountCount - 1))) % accountCount;
        const toClosed = index % 17 === 0;
        const oversized = index % 11 === 0;
        return {
          fromIndex,
          toIndex: toClosed ? -1 : toIndex,
          amountMinor: oversized ? 1_000_000n : randomMinor(1, 4_000),
        };
      });
      const transferIds = await boundedAll(plans, 20, (plan) =>
        requestTransfer(accounts[plan.fromIndex]!.accountId, plan.toIndex < 0 ? closed : accounts[plan.toIndex]!.accountId, formatAmount(plan.amountMinor, 'EUR')),
      );

      const allTerminal = (events: RecordedEvent[]) => {
        const byTransfer = eventsByTransfer(events);
        return transferIds.every((id) => byTransfer.get(id)?.some((event) => event.type === 'TransferCompleted' || event.type === 'TransferFailed'));
      };
      const events = await until(() => readAllEvents(ledger.runtime.store), allTerminal, 120_000, 250);
      expect(allTerminal(events), 'every transfer ends').toBe(true);
      for (const id of transferIds) await settled(ledger, id);
      await first.stop();
      await second.stop();
      expect(stepsBy[0], 'the first manager took steps').toBeGreaterThan(0);
      expect(stepsBy[1], 'the second manager took steps').toBeGreaterThan(0);

      const finalEvents = await readAllEvents(ledger.runtime.store);
      const expected = new Map(accounts.map((account, index) => [account.accountId, deposits[index]!]));
      let completed = 0;
      for (const [index, id] of transferIds.entries()) {
        const state = await transferOf(ledger.runtime.store, id);
        if (state.status !== 'completed' && state.status !== 'failed') throw new Error(`transfer ${id} is ${state.status}`);
        expectEffects(effectsOf(finalEvents, id), state.status, `transfer ${index}`);
        if (state.status !== 'completed') continue;
        completed += 1;
        expected.set(state.fromAccountId, expected.get(state.fromAccountId)! - state.amountMinor);
        expected.set(state.toAccountId, expected.get(state.toAccountId)! + state.amountMinor);
      }
      expect(completed).toBeGreaterThan(0);
      expect(completed).toBeLessThan(transferIds.length);
      for (const [accountId, balanceMinor] of expected) {
        expect(await moneyOf(ledger.runtime.store, accountId), accountId).toEqual({ status: 'active', balanceMinor, heldMinor: 0n, availableMinor: balanceMinor });
      }
      await expectBooksBalance(ledger);
    }, 120_000);
  });

  describe('the deadline', () => {
    let ledger: TestLedger;
    let tokens: { admin: string; teller: string };

    beforeAll(async () => {
      ledger = await startTestLedger({ roles: WITHOUT_MANAGER, env: { TRANSFER_DEADLINE_MS: '1000' } });
      tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    });
    afterAll(async () => {
      await ledger?.close();
    });

    it('fails a transfer whose manager was down past its deadline, and leaves the source whole', async () => {
      const { store, db } = ledger.runtime;
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = randomUUID();
      const accepted = await client(ledger.app, tokens.teller).post('/v1/transfers', { transferId, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '30.00', currency: 'EUR' });
      expect(accepted.statusCode, accepted.body).toBe(202);
      const { deadlineAt } = (await transferOf(store, transferId)) as { deadlineAt: string };

      // No manager has seen TransferRequested yet, so no timer row exists: the timer alone cannot fence it.
      const idle = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      expect(await deadlineRowExists(db, transferId)).toBe(false);
      expect(await idle.fireDeadlines(db as unknown as Kysely<unknown>, new Date(Date.now() + 2_000))).toBe(0);
      await until(async () => Date.now(), (nowMs) => nowMs > Date.parse(deadlineAt) + 50, 5_000);

      // Looked at right after the manager's first step (the reaction's fence), by the reaction
      // alone: the timer, ticking too, could fence, fail the transfer and delete its row while the
      // reaction's look is still on its way.
      let rowAfterFence: Promise<boolean> | undefined;
      managerFor(ledger, running, {
        timerIntervalMs: 3_600_000,
        afterStep: async (_step, id) => {
          if (id === transferId && rowAfterFence === undefined) await (rowAfterFence = deadlineRowExists(db, transferId));
        },
      });
      const final = await settled(ledger, transferId);

      expect(final).toMatchObject({ status: 'failed', reason: 'deadline_exceeded' });
      expect(await rowAfterFence, 'the timer row existed once TransferRequested was processed').toBe(true);
      expectEffects(effectsOf(await readAllEvents(store), transferId), 'failed', 'late transfer');
      expect(await moneyOf(store, from.accountId)).toEqual({ status: 'active', balanceMinor: 10_000n, heldMinor: 0n, availableMinor: 10_000n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 0n });
      await expectBooksBalance(ledger);
    });

    it('a hold that expires while the credit is pending: the credit is fenced, the transfer fails with hold_expired and the money stays with the source', async () => {
      const { store } = ledger.runtime;
      const { from, to, transferId, write } = await reservedTransfer(ledger, tokens, { deadlineInMs: 800, holdExpiresInMs: 1_200 });
      const { holdExpiresAt } = transferOfState(await transferOf(store, transferId));
      await until(async () => Date.now(), (nowMs) => nowMs > Date.parse(holdExpiresAt) + 20, 5_000);
      const expired = await write.accounts.handle(
        accountStream(from.accountId),
        { type: 'ExpireHold', data: { accountId: from.accountId, holdId: transferId, now: new Date().toISOString() } },
        { idempotencyKey: `sweeper:${transferId}:expire`, requestHash: 'expire', actor: 'system:hold-sweeper', correlationId: transferId },
      );
      expect(expired.events.map((event) => event.type)).toEqual(['HoldExpired']);
      const holdExpired = (await readWholeStream(store, accountStream(from.accountId))).at(-1)!;

      const manager = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      await manager.react([holdExpired]);
      await manager.settled();

      expect(await transferOf(store, transferId)).toMatchObject({ status: 'failed', reason: 'hold_expired' });
      expect(effectsOf(await readWholeStream(store, accountStream(to.accountId)), transferId)).toEqual({ TransferCreditRejected: 1 });
      const counts = await until(async () => effectsOf(await readAllEvents(store), transferId), (seen) => seen.TransferFailed === 1, SETTLE_TIMEOUT_MS);
      expectEffects(counts, 'failed', 'expired hold');
      expect(counts).toMatchObject({ HoldPlaced: 1, HoldExpired: 1, TransferCompensationStarted: 1 });
      expect(counts.HoldReleased ?? 0).toBe(0);
      expect(await moneyOf(store, from.accountId)).toEqual({ status: 'active', balanceMinor: 10_000n, heldMinor: 0n, availableMinor: 10_000n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 0n });
      await expectBooksBalance(ledger);
    });

    /** A transfer credited at the destination whose source hold then lapsed: the manager was down past the grace between credit and capture. */
    async function creditedPastItsHold(options: { recordExpiry: boolean }) {
      const { store } = ledger.runtime;
      const reserved = await reservedTransfer(ledger, tokens, { deadlineInMs: 600, holdExpiresInMs: 900 });
      const { from, to, transferId, facts, write, context } = reserved;
      const credit = await write.accounts.handle(
        accountStream(to.accountId),
        { type: 'CreditTransfer', data: { ...facts, accountId: to.accountId, description: null, now: new Date().toISOString() } },
        context('credit'),
      );
      expect(credit.events.map((event) => event.type)).toEqual(['TransferCredited']);
      const { holdExpiresAt } = transferOfState(await transferOf(store, transferId));
      await until(async () => Date.now(), (nowMs) => nowMs > Date.parse(holdExpiresAt) + 20, 5_000);
      if (options.recordExpiry) {
        const expired = await write.accounts.handle(
          accountStream(from.accountId),
          { type: 'ExpireHold', data: { accountId: from.accountId, holdId: transferId, now: new Date().toISOString() } },
          { idempotencyKey: `sweeper:${transferId}:expire`, requestHash: 'expire', actor: 'system:hold-sweeper', correlationId: transferId },
        );
        expect(expired.events.map((event) => event.type)).toEqual(['HoldExpired']);
      }
      expect((await ledgerTotals(store)).clearing.get('EUR'), 'the credit came out of clearing').toBe(-2_500n);
      return reserved;
    }

    it.each([
      ['recorded by the sweeper', true],
      ['lapsed but not recorded', false],
    ])('a credited transfer whose hold expired before the capture (%s) is captured late and completes once', async (_label, recordExpiry) => {
      const { store } = ledger.runtime;
      const { from, to, transferId } = await creditedPastItsHold({ recordExpiry });

      managerFor(ledger, running);
      const final = await settled(ledger, transferId);

      expect(final).toMatchObject({ status: 'completed' });
      const counts = effectsOf(await readAllEvents(store), transferId);
      expect(counts).toMatchObject({ TransferRequested: 1, HoldPlaced: 1, TransferCredited: 1, HoldCaptured: 1, TransferCompleted: 1 });
      expect(counts.HoldExpired ?? 0).toBe(recordExpiry ? 1 : 0);
      expect((counts.HoldReleased ?? 0) + (counts.TransferFailed ?? 0) + (counts.TransferCreditRejected ?? 0)).toBe(0);
      expect(await moneyOf(store, from.accountId)).toEqual({ status: 'active', balanceMinor: 7_500n, heldMinor: 0n, availableMinor: 7_500n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 2_500n });
      await expectBooksBalance(ledger);
    });

    it('a credited transfer whose lapsed hold was spent waits, with clearing carrying the amount, and completes once the source can pay', async () => {
      const { store, db } = ledger.runtime;
      const { from, to, transferId, write } = await creditedPastItsHold({ recordExpiry: true });
      // The lapsed hold no longer reserves: the customer spends all but 10.00 of it.
      await write.accounts.handle(
        accountStream(from.accountId),
        { type: 'Withdraw', data: { accountId: from.accountId, transactionId: randomUUID(), currency: 'EUR', amountMinor: 9_000n, reference: null, description: null, now: new Date().toISOString() } },
        { idempotencyKey: `test:${transferId}:spend`, requestHash: 'spend', actor: 'test', correlationId: transferId },
      );

      const worker = managerFor(ledger, running);
      const waiting = await until(() => deadlineRowExists(db, transferId), (exists) => exists, SETTLE_TIMEOUT_MS);
      expect(waiting, 'the manager took the transfer and its timer').toBe(true);
      await worker.manager.fireDeadlines(db as unknown as Kysely<unknown>, new Date(Date.now() + 60_000));
      await worker.manager.settled();
      expect(await transferOf(store, transferId)).toMatchObject({ status: 'requested' });
      expect(effectsOf(await readAllEvents(store), transferId).HoldCaptured ?? 0, 'no capture below the funds available').toBe(0);
      expect((await ledgerTotals(store)).clearing.get('EUR'), 'clearing carries what the source owes').toBe(-2_500n);
      expect(await moneyOf(store, from.accountId)).toMatchObject({ balanceMinor: 1_000n, availableMinor: 1_000n });

      await write.accounts.handle(
        accountStream(from.accountId),
        { type: 'Deposit', data: { accountId: from.accountId, transactionId: randomUUID(), currency: 'EUR', amountMinor: 5_000n, reference: null, description: null, now: new Date().toISOString() } },
        { idempotencyKey: `test:${transferId}:top-up`, requestHash: 'top-up', actor: 'test', correlationId: transferId },
      );
      await worker.manager.fireDeadlines(db as unknown as Kysely<unknown>, new Date(Date.now() + 7_200_000));
      const final = await settled(ledger, transferId);

      expect(final).toMatchObject({ status: 'completed' });
      expect(effectsOf(await readAllEvents(store), transferId)).toMatchObject({ HoldCaptured: 1, TransferCompleted: 1, TransferCredited: 1 });
      expect(await moneyOf(store, from.accountId)).toEqual({ status: 'active', balanceMinor: 3_500n, heldMinor: 0n, availableMinor: 3_500n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 2_500n });
      await expectBooksBalance(ledger);
    });

    it('one deadline whose fence fails does not hold up the others; it is checked again later', async () => {
      const { db, store } = ledger.runtime;
      const to = await openFundedAccount(ledger.app, tokens);
      const failingSource = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const source = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const now = new Date();
      const request = async (fromAccountId: string) => {
        const transferId = randomUUID();
        await ledger.ledger.write.transfers.handle(transferStream(transferId), {
          type: 'RequestTransfer',
          data: { transferId, fromAccountId, toAccountId: to.accountId, currency: 'EUR', amountMinor: 1_000n, description: null, deadlineAt: new Date(now.getTime() + 10_000).toISOString(), holdExpiresAt: new Date(now.getTime() + 3_600_000).toISOString(), now: now.toISOString() },
        }, { idempotencyKey: `test:${transferId}`, requestHash: 'request', actor: 'test', correlationId: transferId });
        return transferId;
      };
      const failing = await request(failingSource.accountId);
      const healthy = await request(source.accountId);
      // No manager runs here: the timer rows are written as the manager writes them, the failing one due first.
      await sql`insert into transfer_deadlines (transfer_id, deadline_at, next_check_at) values
        (${failing}, ${new Date(now.getTime() + 10_000)}, ${new Date(now.getTime() + 9_000)}),
        (${healthy}, ${new Date(now.getTime() + 10_000)}, ${new Date(now.getTime() + 10_000)})`.execute(db);

      const write = freshWriteSide(ledger);
      const handle = write.accounts.handle.bind(write.accounts);
      write.accounts.handle = (stream, ...rest) => (stream === accountStream(failingSource.accountId) ? Promise.reject(new Error('injected: the account is unavailable')) : handle(stream, ...rest));
      const timer = new TransferProcessManager(write, { logger, batchSize: 50 });
      const firedAt = new Date(now.getTime() + 20_000);
      expect(await timer.fireDeadlines(db as unknown as Kysely<unknown>, firedAt)).toBeGreaterThanOrEqual(2);

      expect(effectsOf(await readWholeStream(store, accountStream(source.accountId)), healthy), 'the healthy deadline fired').toEqual({ TransferHoldRejected: 1 });
      expect(effectsOf(await readWholeStream(store, accountStream(failingSource.accountId)), failing)).toEqual({});
      const rows = await sql<{ transfer_id: string; next_check_at: Date }>`select transfer_id, next_check_at from transfer_deadlines where transfer_id in (${failing}, ${healthy})`.execute(db);
      const failingRow = rows.rows.find((row) => row.transfer_id === failing);
      expect(failingRow, 'the failing timer is kept').toBeDefined();
      expect(failingRow!.next_check_at.getTime(), 'and checked again after as long as it is overdue (10 s)').toBe(firedAt.getTime() + 10_000);

      // Still failing two hours past its deadline: it is looked at again an hour later, not every few seconds.
      const muchLater = new Date(now.getTime() + 10_000 + 2 * 3_600_000);
      await timer.fireDeadlines(db as unknown as Kysely<unknown>, muchLater);
      const later = await sql<{ next_check_at: Date }>`select next_check_at from transfer_deadlines where transfer_id = ${failing}`.execute(db);
      expect(later.rows[0]!.next_check_at.getTime()).toBe(muchLater.getTime() + 3_600_000);
    });

    it('one hold the sweeper cannot expire does not hold up the others', async () => {
      const { db, store } = ledger.runtime;
      const holdOn = (accountId: string) => placeExpiringHold(ledger, accountId);
      const failingAccount = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const account = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const failingHold = await holdOn(failingAccount.accountId);
      const hold = await holdOn(account.accountId);
      const projected = await until(
        () => db.selectFrom('account_holds').select('hold_id').where('hold_id', 'in', [failingHold, hold]).execute(),
        (rows) => rows.length === 2,
        SETTLE_TIMEOUT_MS,
      );
      expect(projected).toHaveLength(2);
      await new Promise((resolve) => setTimeout(resolve, 250));

      const write = freshWriteSide(ledger);
      const handle = write.accounts.handle.bind(write.accounts);
      write.accounts.handle = (stream, ...rest) => (stream === accountStream(failingAccount.accountId) ? Promise.reject(new Error('injected: the account is unavailable')) : handle(stream, ...rest));
      const sweeper = new TransferProcessManager(write, { logger, batchSize: 50 });
      expect(await sweeper.expireHolds(db)).toBeGreaterThanOrEqual(2);
      const expired = async (accountId: string) => (await readWholeStream(store, accountStream(accountId))).filter((event) => event.type === 'HoldExpired').length;
      expect(await expired(account.accountId)).toBe(1);
      expect(await expired(failingAccount.accountId)).toBe(0);
    });

    it('the sweeper expiring an ordinary hold (no transfer) looks up no transfer and leaves nothing followed', async () => {
      const { db } = ledger.runtime;
      const account = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const holdId = await placeExpiringHold(ledger, account.accountId);
      const projected = await until(
        () => db.selectFrom('account_holds').select('hold_id').where('hold_id', '=', holdId).executeTakeFirst(),
        (row) => row !== undefined,
        SETTLE_TIMEOUT_MS,
      );
      expect(projected, 'the hold reached the accounts read model').toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 250));

      const write = freshWriteSide(ledger);
      const transfersLoaded: string[] = [];
      const load = write.transfers.load.bind(write.transfers);
      write.transfers.load = (stream) => {
        transfersLoaded.push(stream);
        return load(stream);
      };
      const sweeper = new TransferProcessManager(write, { logger, batchSize: 50 });
      expect(await sweeper.expireHolds(db)).toBeGreaterThanOrEqual(1);
      await sweeper.settled();
      expect((await readWholeStream(ledger.runtime.store, accountStream(account.accountId))).filter((event) => event.type === 'HoldExpired')).toHaveLength(1);
      expect(transfersLoaded).toEqual([]);
      expect((sweeper as unknown as { followed: Map<string, unknown> }).followed.size).toBe(0);
    });

    it('keeps the timer as a row across a crash; firing it fences the pending credit and the hold is released', async () => {
      const { store, db } = ledger.runtime;
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const transferId = randomUUID();
      // Requested directly, with a deadline well ahead, so that only the explicit timer call below fires it.
      const now = new Date();
      await ledger.ledger.write.transfers.handle(transferStream(transferId), {
        type: 'RequestTransfer',
        data: {
          transferId,
          fromAccountId: from.accountId,
          toAccountId: to.accountId,
          currency: 'EUR',
          amountMinor: 3_000n,
          description: null,
          deadlineAt: new Date(now.getTime() + 10_000).toISOString(),
          holdExpiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
          now: now.toISOString(),
        },
      }, { idempotencyKey: `test:${transferId}`, requestHash: 'request', actor: 'test', correlationId: transferId });

      let rowAfterRequested: boolean | undefined;
      const { afterStep, crashed } = crashOnceAfter('reserve', transferId, async () => {
        rowAfterRequested = await deadlineRowExists(db, transferId);
      });
      const doomed = managerFor(ledger, running, { afterStep });
      await withTimeout(crashed, SETTLE_TIMEOUT_MS, 'the reservation');
      await doomed.runner.crash();
      await doomed.stop();
      expect(rowAfterRequested, 'the timer row exists once TransferRequested was processed').toBe(true);
      expect(await deadlineRowExists(db, transferId), 'the timer row survives the crash').toBe(true);
      expect(await transferOf(store, transferId)).toMatchObject({ status: 'requested' });
      expect(effectsOf(await readWholeStream(store, accountStream(from.accountId)), transferId)).toEqual({ HoldPlaced: 1 });

      const timer = new TransferProcessManager(freshWriteSide(ledger), { logger, batchSize: 50 });
      expect(await timer.fireDeadlines(db as unknown as Kysely<unknown>, new Date(Date.now() + 20_000))).toBeGreaterThanOrEqual(1);
      expect(effectsOf(await readWholeStream(store, accountStream(to.accountId)), transferId)).toEqual({ TransferCreditRejected: 1 });

      managerFor(ledger, running);
      const final = await settled(ledger, transferId);

      expect(final).toMatchObject({ status: 'failed', reason: 'deadline_exceeded' });
      const counts = effectsOf(await readAllEvents(store), transferId);
      expectEffects(counts, 'failed', 'fenced transfer');
      expect(counts).toMatchObject({ HoldPlaced: 1, HoldReleased: 1 });
      expect(await moneyOf(store, from.accountId)).toEqual({ status: 'active', balanceMinor: 10_000n, heldMinor: 0n, availableMinor: 10_000n });
      expect(await moneyOf(store, to.accountId)).toMatchObject({ balanceMinor: 0n });
      await expectBooksBalance(ledger);
    });

    // Last in this group: the poison stays in this database's log, before every later transfer.
    it('a manager stopped at a poison event still sweeps expired holds', async () => {
      const { db, store } = ledger.runtime;
      const from = await openFundedAccount(ledger.app, tokens, { deposit: '100.00' });
      const to = await openFundedAccount(ledger.app, tokens);
      const poisoned = randomUUID();
      // Every completion of this one transfer fails with an error the manager cannot take as a refusal.
      const write = freshWriteSide(ledger);
      const handle = write.transfers.handle.bind(write.transfers);
      write.transfers.handle = (stream, command, ...rest) =>
        stream === transferStream(poisoned) && command.type === 'CompleteTransfer' ? Promise.reject(new Error('injected: a poison event')) : handle(stream, command, ...rest);
      const worker = startProcessManager(write, db, store, ledger.runtime.databaseUrl, { logger, batchSize: 50, timerIntervalMs: 100 });
      running.push(worker);
      const accepted = await client(ledger.app, tokens.teller).post('/v1/transfers', { transferId: poisoned, fromAccountId: from.accountId, toAccountId: to.accountId, amount: '1.00', currency: 'EUR' });
      expect(accepted.statusCode).toBe(202);
      expect(await until(async () => worker.runner.currentState, (state) => state === 'failing', SETTLE_TIMEOUT_MS)).toBe('failing');

      const holdId = await placeExpiringHold(ledger, from.accountId);
      const expired = await until(
        async () => (await readWholeStream(store, accountStream(from.accountId))).some((event) => event.type === 'HoldExpired' && (event.data as { holdId: string }).holdId === holdId),
        (found) => found,
        SETTLE_TIMEOUT_MS,
      );
      expect(expired, 'the sweeper expired the hold while the manager was failing').toBe(true);
      expect(worker.runner.currentState).toBe('failing');
    });
  });

  describe('under load through the HTTP API', () => {
    let ledger: TestLedger;
    let tokens: { admin: string; teller: string };

    beforeAll(async () => {
      ledger = await startTestLedger({ env: { RATE_LIMIT_PER_MINUTE: '1000000', PG_POOL_MAX: '24' } });
      tokens = { admin: await ledger.token('admin'), teller: await ledger.token('teller') };
    });
    afterAll(async () => {
      await ledger?.close();
    });

    it('2,000 concurrent random transfers among 50 accounts: all end, balances follow the completed ones, the books balance', async () => {
      const { store, db } = ledger.runtime;
      const teller = client(ledger.app, tokens.teller);
      const admin = client(ledger.app, tokens.admin);
      const auditor = client(ledger.app, await ledger.token('auditor'));
      const transferCount = 2_000;
      const currencies = Array.from({ length: 50 }, (_unused, index) => (index < 40 ? 'EUR' : 'USD'));
      // Two accounts stay empty and untouched until they are closed mid-run; three others get frozen then.
      const toClose = new Set([38, 48]);
      const toFreeze = new Set([3, 17, 42]);
      const deposits = currencies.map((_currency, index) => (toClose.has(index) ? 0n : randomMinor(50_000, 200_000)));
      const accounts = await boundedAll(currencies, 10, (currency, index) =>
        openFundedAccount(ledger.app, tokens, { currency, ...(deposits[index]! > 0n ? { deposit: formatAmount(deposits[index]!, currency) } : {}) }),
      );
      const indexesOf = (currency: string, includeClosable: boolean) => currencies.flatMap((other, index) => (other === currency && (includeClosable || !toClose.has(index)) ? [index] : []));

      let midRun: Promise<void> | undefined;
      let closedMidRun = false;
      const changeAccountsMidRun = async () => {
        for (const index of toFreeze) expect((await teller.post(`/v1/accounts/${accounts[index]!.accountId}/freeze`, { reason: 'load test' })).statusCode).toBe(200);
        for (const index of toClose) {
          const closedResponse = await admin.post(`/v1/accounts/${accounts[index]!.accountId}/close`);
          expect(closedResponse.statusCode, closedResponse.body).toBe(200);
        }
        closedMidRun = true;
      };
      let backlogRefusals = 0;
      const startedMs = Date.now();
      const submitted = await boundedAll(Array.from({ length: transferCount }, (_unused, index) => index), 50, async (index) => {
        if (index === transferCount / 2) {
          midRun = changeAccountsMidRun();
          await midRun;
        }
        const currency = Math.random() < 0.8 ? 'EUR' : 'USD';
        const pool = indexesOf(currency, closedMidRun);
        const fromIndex = pool[Math.floor(Math.random() * pool.length)]!;
        const others = pool.filter((other) => other !== fromIndex);
        const toIndex = others[Math.floor(Math.random() * others.length)]!;
        const amountMinor = Math.random() < 0.05 ? randomMinor(500_000, 5_000_000) : randomMinor(1, 5_000);
        const transferId = randomUUID();
        const body = { transferId, fromAccountId: accounts[fromIndex]!.accountId, toAccountId: accounts[toIndex]!.accountId, amount: formatAmount(amountMinor, currency), currency };
        // As a client should: a 503 (the process manager is behind) is retried after Retry-After.
        let response = await teller.post('/v1/transfers', body);
        for (let attempt = 1; response.statusCode === 503 && attempt <= 30; attempt++) {
          backlogRefusals += 1;
          await new Promise((resolve) => setTimeout(resolve, Number(response.headers['retry-after']) * 1000));
          response = await teller.post('/v1/transfers', body);
        }
        expect(response.statusCode, response.body).toBe(202);
        return transferId;
      });
      const submittedMs = Date.now();
      await midRun;

      const countByStatus = async () => {
        const result = await sql<{ status: string; count: bigint }>`select status, count(*) as count from transfers group by status`.execute(db);
        return Object.fromEntries(result.rows.map((row) => [row.status, Number(row.count)])) as Record<string, number>;
      };
      const counts = await until(countByStatus, (byStatus) => (byStatus.completed ?? 0) + (byStatus.failed ?? 0) >= transferCount, 120_000, 250);
      const settledMs = Date.now();
      expect(counts.pending ?? 0, 'transfers left pending').toBe(0);
      expect((counts.completed ?? 0) + (counts.failed ?? 0)).toBe(transferCount);
      console.info(
        `[load] ${transferCount} transfers: submitted in ${submittedMs - startedMs} ms (${Math.round((transferCount * 1000) / (submittedMs - startedMs))}/s), ` +
          `all terminal after ${settledMs - startedMs} ms (${Math.round((transferCount * 1000) / (settledMs - startedMs))}/s end to end); ${JSON.stringify(counts)}; 503 while the manager was behind: ${backlogRefusals}`,
      );

      // The read model agrees with the event store on every transfer.
      const rows = await sql<{ transfer_id: string; from_account_id: string; to_account_id: string; amount_minor: bigint; status: string; reason: string | null }>`
        select transfer_id, from_account_id, to_account_id, amount_minor, status, reason from transfers`.execute(db);
      expect(rows.rows.map((row) => row.transfer_id).sort()).toEqual([...submitted].sort());
      const events = await readAllEvents(store);
      const byTransfer = eventsByTransfer(events);
      const reasons: Record<string, number> = {};
      const expected = new Map(accounts.map((account, index) => [account.accountId, deposits[index]!]));
      for (const row of rows.rows) {
        const outcome = row.status as 'completed' | 'failed';
        const counted: Record<string, number> = {};
        for (const event of byTransfer.get(row.transfer_id) ?? []) counted[event.type] = (counted[event.type] ?? 0) + 1;
        expectEffects(counted, outcome, `transfer ${row.transfer_id}`);
        if (outcome === 'failed') {
          reasons[row.reason ?? 'none'] = (reasons[row.reason ?? 'none'] ?? 0) + 1;
          continue;
        }
        expected.set(row.from_account_id, expected.get(row.from_account_id)! - row.amount_minor);
        expected.set(row.to_account_id, expected.get(row.to_account_id)! + row.amount_minor);
      }
      console.info(`[load] failures by reason: ${JSON.stringify(reasons)}`);
      expect(reasons.insufficient_funds ?? 0).toBeGreaterThan(0);
      expect(reasons.account_frozen ?? 0).toBeGreaterThan(0);
      expect(reasons.account_closed ?? 0).toBeGreaterThan(0);

      const sample = submitted.slice(0, 20);
      for (const transferId of sample) {
        const view = await auditor.get(`/v1/transfers/${transferId}`);
        const row = rows.rows.find((candidate) => candidate.transfer_id === transferId)!;
        expect(view.json()).toMatchObject({ id: transferId, status: row.status });
      }

      // Every account: the folded stream and the read model both equal deposit + completed in - completed out.
      const lastPositionOf = new Map<string, bigint>();
      for (const event of events) if (event.streamName.startsWith('account-')) lastPositionOf.set(event.streamName.slice('account-'.length), event.position);
      const balancesCaughtUp = async () => {
        const result = await db.selectFrom('account_balances').select(['account_id', 'last_position']).execute();
        return result.every((row) => lastPositionOf.get(row.account_id) === undefined || row.last_position >= lastPositionOf.get(row.account_id)!);
      };
      expect(await until(balancesCaughtUp, (done) => done, 30_000, 100), 'account_balances caught up').toBe(true);
      const readModel = new Map((await db.selectFrom('account_balances').selectAll().execute()).map((row) => [row.account_id, row]));
      for (const [index, account] of accounts.entries()) {
        const expectedMinor = expected.get(account.accountId)!;
        const folded = await moneyOf(store, account.accountId);
        const status = toClose.has(index) ? 'closed' : toFreeze.has(index) ? 'frozen' : 'active';
        expect(folded, `account ${index} folded`).toEqual({ status, balanceMinor: expectedMinor, heldMinor: 0n, availableMinor: expectedMinor });
        const row = readModel.get(account.accountId)!;
        expect({ status: row.status, balance: row.balance_minor, held: row.held_minor, available: row.available_minor }, `account ${index} read model`).toEqual({
          status,
          balance: expectedMinor,
          held: 0n,
          available: expectedMinor,
        });
        expect(expectedMinor >= 0n).toBe(true);
      }
      const negative = await db.selectFrom('account_balances').select('account_id').where((eb) => eb.or([eb('balance_minor', '<', 0n), eb('available_minor', '<', 0n)])).execute();
      expect(negative).toEqual([]);
      for (const event of events) {
        if (event.type !== 'HoldCaptured' && event.type !== 'TransferCredited' && event.type !== 'FundsDeposited') continue;
        expect((event.data as AccountEvent['data'] & { balanceAfterMinor: bigint }).balanceAfterMinor >= 0n, `balance after ${event.id}`).toBe(true);
      }

      const { totals, clearing, trial } = await ledgerTotals(store);
      expect([...totals.keys()].sort()).toEqual(['EUR', 'USD']);
      for (const [currency, sumMinor] of totals) expect(sumMinor, `trial balance ${currency}`).toBe(0n);
      for (const [currency, balanceMinor] of clearing) expect(balanceMinor, `clearing ${currency}`).toBe(0n);
      for (const currency of ['EUR', 'USD']) {
        const depositedMinor = deposits.reduce((sum, deposit, index) => (currencies[index] === currency ? sum + deposit : sum), 0n);
        expect(trial.get(currency)?.get(`settlement:${currency}`)).toBe(-depositedMinor);
      }
      expect(Date.now() - startedMs).toBeLessThan(120_000);
    }, 180_000);
  });
});
