import { describe, expect, it } from 'vitest';
import {
  assertBalanced,
  assertTrialBalanceZero,
  clearingLedgerAccount,
  customerLedgerAccount,
  isTrialBalanceZero,
  ledgerAccountBalance,
  postLegs,
  settlementLedgerAccount,
  trialBalance,
  createTrialBalance,
} from '../../src/domain/ledger.js';

describe('ledger account names', () => {
  it('names customer, settlement and clearing accounts', () => {
    expect(customerLedgerAccount('acc-1')).toBe('customer:acc-1');
    expect(settlementLedgerAccount('EUR')).toBe('settlement:EUR');
    expect(clearingLedgerAccount('EUR')).toBe('clearing:EUR');
  });
});

describe('assertBalanced', () => {
  it('accepts legs that sum to zero', () => {
    expect(() => assertBalanced([{ ledgerAccount: 'a', amountMinor: 5n }, { ledgerAccount: 'b', amountMinor: -5n }])).not.toThrow();
    expect(() =>
      assertBalanced([
        { ledgerAccount: 'a', amountMinor: 5n },
        { ledgerAccount: 'b', amountMinor: -3n },
        { ledgerAccount: 'c', amountMinor: -2n },
      ]),
    ).not.toThrow();
  });

  it.each([
    ['unbalanced', [{ ledgerAccount: 'a', amountMinor: 5n }, { ledgerAccount: 'b', amountMinor: -4n }]],
    ['a single leg', [{ ledgerAccount: 'a', amountMinor: 0n }]],
    ['no legs', []],
    ['a zero leg', [{ ledgerAccount: 'a', amountMinor: 0n }, { ledgerAccount: 'b', amountMinor: 0n }]],
  ])('rejects %s with a plain Error', (_name, legs) => {
    expect(() => assertBalanced(legs)).toThrow(Error);
  });
});

describe('trial balance', () => {
  const events = [
    { type: 'AccountOpened', data: { accountId: 'a', currency: 'EUR' } },
    { type: 'FundsDeposited', data: { currency: 'EUR', legs: [{ ledgerAccount: 'customer:a', amountMinor: 100n }, { ledgerAccount: 'settlement:EUR', amountMinor: -100n }] } },
    { type: 'FundsDeposited', data: { currency: 'JPY', legs: [{ ledgerAccount: 'customer:b', amountMinor: 7n }, { ledgerAccount: 'settlement:JPY', amountMinor: -7n }] } },
    { type: 'HoldCaptured', data: { currency: 'EUR', legs: [{ ledgerAccount: 'customer:a', amountMinor: -40n }, { ledgerAccount: 'clearing:EUR', amountMinor: 40n }] } },
  ];

  it('sums legs per currency and ledger account, ignoring events without legs', () => {
    const trial = trialBalance(events);
    expect(ledgerAccountBalance(trial, 'EUR', 'customer:a')).toBe(60n);
    expect(ledgerAccountBalance(trial, 'EUR', 'settlement:EUR')).toBe(-100n);
    expect(ledgerAccountBalance(trial, 'EUR', 'clearing:EUR')).toBe(40n);
    expect(ledgerAccountBalance(trial, 'JPY', 'customer:b')).toBe(7n);
    expect(ledgerAccountBalance(trial, 'USD', 'customer:a')).toBe(0n);
    expect(isTrialBalanceZero(trial)).toBe(true);
    expect(() => assertTrialBalanceZero(trial)).not.toThrow();
  });

  it('accepts any iterable, such as a generator over a log', () => {
    function* log() {
      yield* events;
    }
    expect(ledgerAccountBalance(trialBalance(log()), 'EUR', 'customer:a')).toBe(60n);
  });

  it('refuses to post unbalanced legs', () => {
    expect(() => postLegs(createTrialBalance(), 'EUR', [{ ledgerAccount: 'a', amountMinor: 1n }, { ledgerAccount: 'b', amountMinor: 1n }])).toThrow(Error);
  });

  it('detects a corrupted balance', () => {
    const trial = trialBalance(events);
    trial.get('EUR')?.set('customer:a', 61n);
    expect(isTrialBalanceZero(trial)).toBe(false);
    expect(() => assertTrialBalanceZero(trial)).toThrow(/EUR/);
  });
});
