/**
 * Random command sequences over several accounts and currencies, with a clock that mostly advances
 * and sometimes steps back (writers with skewed clocks). After every step: nothing is overspent,
 * every currency's trial balance (clearing included) is zero, and each account's balance equals the
 * sum of its own legs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AccountCommand, AccountEvent, AccountEventType, AccountState } from '../../src/domain/account.js';
import { accountDecider, accountEventTypes, availableMinor } from '../../src/domain/account.js';
import { DomainError } from '../../src/domain/errors.js';
import { createTrialBalance, customerLedgerAccount, isTrialBalanceZero, ledgerAccountBalance, postingOf, postLegs, trialBalance } from '../../src/domain/ledger.js';
import { MAX_BALANCE_MINOR } from '../../src/domain/money.js';

const ACCOUNTS = [
  { accountId: 'a0', currency: 'EUR', overdraftLimitMinor: 0n },
  { accountId: 'a1', currency: 'EUR', overdraftLimitMinor: 500n },
  { accountId: 'a2', currency: 'EUR', overdraftLimitMinor: 0n },
  { accountId: 'a3', currency: 'JPY', overdraftLimitMinor: 0n },
  { accountId: 'a4', currency: 'JPY', overdraftLimitMinor: 1000n },
  { accountId: 'a5', currency: 'KWD', overdraftLimitMinor: 0n },
  { accountId: 'a6', currency: 'KWD', overdraftLimitMinor: 0n },
] as const;
const HOLD_IDS = 4;
const TRANSFERS = 6;
const START_MS = Date.parse('2025-01-01T00:00:00.000Z');
const MINUTE_MS = 60_000;

const accountIndex = fc.nat(ACCOUNTS.length - 1);
const holdIndex = fc.nat(HOLD_IDS - 1);
const transferIndex = fc.nat(TRANSFERS - 1);
const amount = fc.bigInt({ min: 1n, max: 3000n });

type Transfer = { from: number; to: number; amountMinor: bigint };

type Action =
  | { kind: 'deposit' | 'withdraw'; account: number; amountMinor: bigint }
  | { kind: 'placeHold'; account: number; hold: number; amountMinor: bigint; ttlMinutes: number }
  | { kind: 'captureHold'; account: number; hold: number; amountMinor: bigint | null }
  | { kind: 'releaseHold' | 'expireHold'; account: number; hold: number }
  | { kind: 'freeze' | 'unfreeze' | 'close'; account: number }
  | { kind: 'setOverdraft'; account: number; overdraftLimitMinor: bigint }
  | {
      kind: 'placeTransferHold' | 'rejectTransferHold' | 'creditTransfer' | 'rejectTransferCredit' | 'captureTransferHold' | 'releaseTransferHold';
      transfer: number;
      ttlMinutes: number;
    };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deposit' as const), account: accountIndex, amountMinor: amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('withdraw' as const), account: accountIndex, amountMinor: amount }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('placeHold' as const), account: accountIndex, hold: holdIndex, amountMinor: amount, ttlMinutes: fc.integer({ min: 1, max: 120 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('captureHold' as const), account: accountIndex, hold: holdIndex, amountMinor: fc.option(amount, { nil: null }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('releaseHold' as const, 'expireHold' as const), account: accountIndex, hold: holdIndex }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('freeze' as const, 'unfreeze' as const, 'close' as const), account: accountIndex }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('setOverdraft' as const), account: accountIndex, overdraftLimitMinor: fc.bigInt({ min: 0n, max: 2000n }) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constantFrom(
        'placeTransferHold' as const,
        'rejectTransferHold' as const,
        'creditTransfer' as const,
        'rejectTransferCredit' as const,
        'captureTransferHold' as const,
        'releaseTransferHold' as const,
      ),
      transfer: transferIndex,
      ttlMinutes: fc.integer({ min: 1, max: 120 }),
    }),
  },
);

const scenario = fc.record({
  transfers: fc.array(fc.record({ from: accountIndex, to: accountIndex, amountMinor: amount }), { minLength: TRANSFERS, maxLength: TRANSFERS }),
  steps: fc.array(fc.record({ advanceMinutes: fc.integer({ min: -10, max: 30 }), action }), { minLength: 20, maxLength: 100 }),
});

function toCommand(step: Action, transfers: readonly Transfer[], now: string, nowMs: number): AccountCommand {
  const expiresAt = (ttlMinutes: number) => new Date(nowMs + ttlMinutes * MINUTE_MS).toISOString();
  if ('transfer' in step) {
    const transfer = transfers[step.transfer]!;
    const from = ACCOUNTS[transfer.from]!;
    const to = ACCOUNTS[transfer.to]!;
    const transferId = `t${step.transfer}`;
    const base = { transferId, currency: from.currency, amountMinor: transfer.amountMinor, now };
    switch (step.kind) {
      case 'placeTransferHold':
        return { type: 'PlaceTransferHold', data: { ...base, accountId: from.accountId, expiresAt: expiresAt(step.ttlMinutes) } };
      case 'rejectTransferHold':
        return { type: 'RejectTransferHold', data: { ...base, accountId: from.accountId, reason: 'insufficient_funds' } };
      case 'creditTransfer':
        return { type: 'CreditTransfer', data: { ...base, accountId: to.accountId, fromAccountId: from.accountId, description: null } };
      case 'rejectTransferCredit':
        return { type: 'RejectTransferCredit', data: { ...base, accountId: to.accountId, fromAccountId: from.accountId, reason: 'account_closed' } };
      case 'captureTransferHold':
        return { type: 'CaptureTransferHold', data: { transferId, accountId: from.accountId, toAccountId: to.accountId, now } };
      case 'releaseTransferHold':
        return { type: 'ReleaseTransferHold', data: { transferId, accountId: from.accountId, now } };
    }
  }
  const account = ACCOUNTS[step.account]!;
  const accountId = account.accountId;
  switch (step.kind) {
    case 'deposit':
    case 'withdraw':
      return {
        type: step.kind === 'deposit' ? 'Deposit' : 'Withdraw',
        data: { accountId, transactionId: `tx-${nowMs}`, currency: account.currency, amountMinor: step.amountMinor, reference: null, description: null, now },
      };
    case 'placeHold':
      return {
        type: 'PlaceHold',
        data: { accountId, holdId: `h${step.hold}`, currency: account.currency, amountMinor: step.amountMinor, expiresAt: expiresAt(step.ttlMinutes), reference: null, description: null, now },
      };
    case 'captureHold':
      return { type: 'CaptureHold', data: { accountId, holdId: `h${step.hold}`, ...(step.amountMinor === null ? {} : { amountMinor: step.amountMinor }), now } };
    case 'releaseHold':
      return { type: 'ReleaseHold', data: { accountId, holdId: `h${step.hold}`, now } };
    case 'expireHold':
      return { type: 'ExpireHold', data: { accountId, holdId: `h${step.hold}`, now } };
    case 'freeze':
      return { type: 'FreezeAccount', data: { accountId, now } };
    case 'unfreeze':
      return { type: 'UnfreezeAccount', data: { accountId, now } };
    case 'close':
      return { type: 'CloseAccount', data: { accountId, now } };
    case 'setOverdraft':
      return { type: 'SetOverdraftLimit', data: { accountId, overdraftLimitMinor: step.overdraftLimitMinor, now } };
  }
}

describe('ledger properties', () => {
  it('keeps every account within its funds and every currency balanced, step after step', () => {
    const seenEventTypes = new Set<AccountEventType>();
    fc.assert(
      fc.property(scenario, ({ transfers, steps }) => {
        const states = new Map<string, AccountState>();
        const streams = new Map<string, AccountEvent[]>();
        const trial = createTrialBalance();
        const log: { type: string; data: unknown }[] = [];
        let nowMs = START_MS;
        const apply = (command: AccountCommand) => {
          const accountId = command.data.accountId;
          let state = states.get(accountId) ?? accountDecider.initialState();
          let events;
          try {
            events = accountDecider.decide(command, state);
          } catch (error) {
            if (error instanceof DomainError) return;
            throw error;
          }
          for (const event of events) {
            state = accountDecider.evolve(state, event);
            seenEventTypes.add(event.type);
            log.push(event);
            const stream = streams.get(accountId) ?? [];
            stream.push(event);
            streams.set(accountId, stream);
            const posting = postingOf(event);
            if (posting !== null) postLegs(trial, posting.currency, posting.legs);
          }
          states.set(accountId, state);
        };

        for (const account of ACCOUNTS) {
          apply({ type: 'OpenAccount', data: { ...account, customerId: 'c', customerStatus: 'active', accountType: 'checking', now: new Date(nowMs).toISOString() } });
        }
        for (const step of steps) {
          nowMs += step.advanceMinutes * MINUTE_MS;
          const now = new Date(nowMs).toISOString();
          apply(toCommand(step.action, transfers, now, nowMs));

          expect(isTrialBalanceZero(trial)).toBe(true);
          for (const { accountId, currency } of ACCOUNTS) {
            const state = states.get(accountId)!;
            if (state.status === 'none') throw new Error(`${accountId} was never opened`);
            expect(availableMinor(state, now) >= 0n).toBe(true);
            expect(state.balanceMinor <= MAX_BALANCE_MINOR && state.balanceMinor >= -MAX_BALANCE_MINOR).toBe(true);
            expect(ledgerAccountBalance(trial, currency, customerLedgerAccount(accountId))).toBe(state.balanceMinor);
            // The active holds the available balance is computed from are exactly the holds still active.
            expect([...state.activeHolds.keys()].sort()).toEqual([...state.holds.values()].filter((hold) => hold.status === 'active').map((hold) => hold.holdId).sort());
          }
        }

        // Replaying each stream from scratch rebuilds the same state, and the whole log re-balances.
        for (const [accountId, stream] of streams) {
          expect(stream.reduce((state, event) => accountDecider.evolve(state, event), accountDecider.initialState())).toEqual(states.get(accountId));
        }
        expect(isTrialBalanceZero(trialBalance(log))).toBe(true);
      }),
      // A fixed seed keeps the event-type coverage check below reproducible; FC_SEED explores others.
      { numRuns: 200, seed: Number(process.env.FC_SEED ?? 20_261_125) },
    );
    // Guards against a vacuous property: the random walks must reach every kind of outcome.
    expect([...seenEventTypes].sort()).toEqual([...accountEventTypes].sort());
  });
});
