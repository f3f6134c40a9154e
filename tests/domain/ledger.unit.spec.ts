import { describe, expect, it } from 'vitest';
import {
  assertBalanced,
  assertTrialBalanceZero,
  auditPostings,
  createTrialBalanceAudit,
  isAuditBalanced,
  POSTING_EXCEPTIONS_LISTED_MAX,
  trialBalanceTotals,
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

describe('an audit of stored postings', () => {
  const stored = (position: bigint, type: string, data: unknown) => ({ position, id: `e${position}`, streamName: `account-${position}`, type, data });
  const deposit = (position: bigint, legs: unknown[]) => stored(position, 'FundsDeposited', { currency: 'EUR', legs });

  it('reports an unbalanced or malformed posting by event instead of throwing, and still sums the well-formed legs', () => {
    const audit = auditPostings(
      [
        deposit(1n, [{ ledgerAccount: 'customer:a', amountMinor: 100n }, { ledgerAccount: 'settlement:EUR', amountMinor: -100n }]),
        deposit(2n, [{ ledgerAccount: 'customer:a', amountMinor: 5n }, { ledgerAccount: 'settlement:EUR', amountMinor: -4n }]),
        deposit(3n, [{ ledgerAccount: 'customer:a', amountMinor: 7 }, { ledgerAccount: 'settlement:EUR', amountMinor: -7n }]),
        stored(4n, 'AccountOpened', { currency: 'EUR' }),
      ],
      createTrialBalanceAudit(['FundsDeposited']),
    );
    expect(audit.exceptionCount).toBe(2);
    expect(audit.exceptions).toEqual([
      { position: 2n, eventId: 'e2', streamName: 'account-2', type: 'FundsDeposited', problem: 'legs do not balance: they sum to 1' },
      { position: 3n, eventId: 'e3', streamName: 'account-3', type: 'FundsDeposited', problem: 'leg for customer:a has a non-bigint amount' },
    ]);
    expect(trialBalanceTotals(audit.trial).get('EUR')).toBe(-6n);
    expect(isAuditBalanced(audit)).toBe(false);
  });

  it('reports a posting event with no valid posting, a null leg, or legs on any event, instead of skipping it or throwing', () => {
    const audit = auditPostings(
      [
        stored(1n, 'FundsDeposited', { legs: [{ ledgerAccount: 'customer:a', amountMinor: 1n }] }),
        stored(2n, 'FundsDeposited', { currency: 'EUR', legs: 'oops' }),
        deposit(3n, [null, { ledgerAccount: 'settlement:EUR', amountMinor: -1n }]),
        stored(4n, 'SomethingElse', { legs: null }),
        stored(5n, 'AccountOpened', { currency: 'EUR' }),
      ],
      createTrialBalanceAudit(['FundsDeposited']),
    );
    expect(audit.exceptions.map((exception) => [exception.position, exception.problem])).toEqual([
      [1n, 'no valid posting: its currency or legs are missing or malformed'],
      [2n, 'no valid posting: its currency or legs are missing or malformed'],
      [3n, 'a leg is not an object'],
      [4n, 'no valid posting: its currency or legs are missing or malformed'],
    ]);
    expect(isAuditBalanced(audit)).toBe(false);
  });

  it('is balanced for a valid log, and lists at most a bounded number of exceptions while counting all', () => {
    expect(isAuditBalanced(auditPostings([deposit(1n, [{ ledgerAccount: 'customer:a', amountMinor: 1n }, { ledgerAccount: 'settlement:EUR', amountMinor: -1n }])], createTrialBalanceAudit(['FundsDeposited'])))).toBe(true);
    const many = Array.from({ length: POSTING_EXCEPTIONS_LISTED_MAX + 5 }, (_, index) => deposit(BigInt(index + 1), [{ ledgerAccount: 'customer:a', amountMinor: 1n }]));
    const audit = auditPostings(many, createTrialBalanceAudit(['FundsDeposited']));
    expect(audit.exceptionCount).toBe(POSTING_EXCEPTIONS_LISTED_MAX + 5);
    expect(audit.exceptions).toHaveLength(POSTING_EXCEPTIONS_LISTED_MAX);
  });
});
