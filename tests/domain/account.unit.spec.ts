import { describe, expect, it } from 'vitest';
import { accountEventTypes, availableMinor } from '../../src/domain/account.js';
import type { AccountCommand, AccountEvent } from '../../src/domain/account.js';
import { BusinessRuleError, DomainValidationError, NotFoundError } from '../../src/domain/errors.js';
import { MAX_AMOUNT_MINOR, MAX_BALANCE_MINOR } from '../../src/domain/money.js';
import { T0, T1, T2, accountId, cmd, customerId, depositLegs, history, spec, stateOf } from './account-fixtures.js';

const opened = history(cmd.open());
const funded = history(cmd.open(), cmd.deposit(1000n));
const frozen = history(cmd.open(), cmd.deposit(1000n), cmd.freeze());
const closed = history(cmd.open(), cmd.close());

describe('account event types', () => {
  it('lists all 14 event types', () => {
    expect(accountEventTypes).toHaveLength(14);
    expect(new Set(accountEventTypes).size).toBe(14);
  });
});

describe('OpenAccount', () => {
  it('opens an account for an active customer', () => {
    spec
      .given([])
      .when(cmd.open({ overdraftLimitMinor: 500n, accountType: 'savings' }))
      .then([{ type: 'AccountOpened', data: { accountId, customerId, currency: 'EUR', accountType: 'savings', overdraftLimitMinor: 500n, at: T0 } }]);
  });

  it('refuses to open an account twice', () => {
    spec.given(opened).when(cmd.open()).thenThrows('already_exists', BusinessRuleError);
  });

  it('refuses a customer that does not exist', () => {
    spec.given([]).when(cmd.open({ customerStatus: 'none' })).thenThrows('customer_not_found', NotFoundError);
  });

  it.each(['pending_verification', 'suspended'] as const)('refuses a %s customer', (customerStatus) => {
    spec.given([]).when(cmd.open({ customerStatus })).thenThrows('customer_not_active', BusinessRuleError);
  });

  it('refuses an unknown currency', () => {
    spec.given([]).when(cmd.open({ currency: 'XXX' })).thenThrows('unknown_currency', DomainValidationError);
  });

  it.each([-1n, MAX_BALANCE_MINOR + 1n])('refuses the overdraft limit %s', (overdraftLimitMinor) => {
    spec.given([]).when(cmd.open({ overdraftLimitMinor })).thenThrows('invalid_overdraft_limit', DomainValidationError);
  });

  it('accepts an overdraft limit of exactly the balance limit', () => {
    expect(spec.given([]).when(cmd.open({ overdraftLimitMinor: MAX_BALANCE_MINOR })).events()).toHaveLength(1);
  });
});

describe('commands on an account that does not exist', () => {
  const commands: AccountCommand[] = [
    cmd.freeze(),
    cmd.unfreeze(),
    cmd.close(),
    cmd.setOverdraft(1n),
    cmd.deposit(1n),
    cmd.withdraw(1n),
    cmd.placeHold('h', 1n),
    cmd.captureHold('h'),
    cmd.releaseHold('h'),
    cmd.expireHold('h'),
    cmd.placeTransferHold('t', 1n),
    cmd.rejectTransferHold('t'),
    cmd.creditTransfer('t', 1n),
    cmd.rejectTransferCredit('t'),
    cmd.captureTransferHold('t'),
    cmd.releaseTransferHold('t'),
  ];
  it.each(commands.map((command) => [command.type, command] as const))('%s throws account_not_found', (_type, command) => {
    spec.given([]).when(command).thenThrows('account_not_found', NotFoundError);
  });
});

describe('FreezeAccount and UnfreezeAccount', () => {
  it('freezes an active account with a trimmed reason', () => {
    spec.given(opened).when(cmd.freeze({ reason: ' court order ', now: T1 })).then([{ type: 'AccountFrozen', data: { accountId, reason: 'court order', at: T1 } }]);
  });

  it('freezes without a reason', () => {
    spec.given(opened).when(cmd.freeze()).then([{ type: 'AccountFrozen', data: { accountId, reason: null, at: T0 } }]);
  });

  it('unfreezes a frozen account', () => {
    spec.given(frozen).when(cmd.unfreeze({ now: T1 })).then([{ type: 'AccountUnfrozen', data: { accountId, at: T1 } }]);
  });

  it('refuses to freeze a frozen account', () => {
    spec.given(frozen).when(cmd.freeze()).thenThrows('invalid_state_transition', BusinessRuleError);
  });

  it('refuses to unfreeze an active account', () => {
    spec.given(opened).when(cmd.unfreeze()).thenThrows('invalid_state_transition', BusinessRuleError);
  });

  it.each([cmd.freeze(), cmd.unfreeze()])('$type on a closed account throws account_closed', (command) => {
    spec.given(closed).when(command).thenThrows('account_closed', BusinessRuleError);
  });
});

describe('CloseAccount', () => {
  it('closes an account with a zero balance and no holds', () => {
    spec.given(opened).when(cmd.close({ now: T1 })).then([{ type: 'AccountClosed', data: { accountId, at: T1 } }]);
  });

  it('closes an account whose money came and went', () => {
    spec.given(history(cmd.open(), cmd.deposit(100n), cmd.withdraw(100n))).when(cmd.close()).events();
  });

  it('refuses a positive balance', () => {
    spec.given(funded).when(cmd.close()).thenThrows('balance_not_zero', BusinessRuleError);
  });

  it('refuses a negative balance', () => {
    spec.given(history(cmd.open({ overdraftLimitMinor: 100n }), cmd.withdraw(1n))).when(cmd.close()).thenThrows('balance_not_zero', BusinessRuleError);
  });

  it('refuses while a hold is open', () => {
    spec.given(history(cmd.open({ overdraftLimitMinor: 100n }), cmd.placeHold('h', 50n))).when(cmd.close()).thenThrows('open_holds', BusinessRuleError);
  });

  it('expires lapsed holds in the same decision', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 100n }), cmd.placeHold('h', 50n, { expiresAt: T1 }));
    spec
      .given(given)
      .when(cmd.close({ now: T1 }))
      .then([
        { type: 'HoldExpired', data: { accountId, holdId: 'h', transferId: null, currency: 'EUR', amountMinor: 50n, heldAfterMinor: 0n, at: T1 } },
        { type: 'AccountClosed', data: { accountId, at: T1 } },
      ]);
  });

  it('refuses while a transfer hold lapsed or expired uncaptured and its transfer has not ended: a late capture may still come', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 300n }), cmd.placeTransferHold('t1', 300n, { expiresAt: T1 }));
    spec.given(given).when(cmd.close({ now: T2, endedTransferIds: ['t1'] })).thenThrows('transfer_in_flight', BusinessRuleError);
    const expired = history(cmd.open({ overdraftLimitMinor: 300n }), cmd.placeTransferHold('t1', 300n, { expiresAt: T1 }), cmd.expireHold('t1', { now: T2 }));
    spec.given(expired).when(cmd.close({ now: T2 })).thenThrows('transfer_in_flight', BusinessRuleError);
    spec.given(expired).when(cmd.close({ now: T2, endedTransferIds: ['t9'] })).thenThrows('transfer_in_flight', BusinessRuleError);
    expect(spec.given(expired).when(cmd.close({ now: T2, endedTransferIds: ['t1'] })).events().map((event) => event.type)).toEqual(['AccountClosed']);
  });

  it('refuses a frozen account', () => {
    spec.given(history(cmd.open(), cmd.freeze())).when(cmd.close()).thenThrows('account_frozen', BusinessRuleError);
  });

  it('refuses to close twice', () => {
    spec.given(closed).when(cmd.close()).thenThrows('account_closed', BusinessRuleError);
  });
});

describe('SetOverdraftLimit', () => {
  it('raises the limit', () => {
    spec.given(opened).when(cmd.setOverdraft(500n)).then([{ type: 'OverdraftLimitChanged', data: { accountId, overdraftLimitMinor: 500n, at: T0 } }]);
  });

  it('records the limit even when it does not change, so the command keeps its idempotency key', () => {
    spec.given(history(cmd.open({ overdraftLimitMinor: 500n }))).when(cmd.setOverdraft(500n)).then([{ type: 'OverdraftLimitChanged', data: { accountId, overdraftLimitMinor: 500n, at: T0 } }]);
  });

  it('lowers the limit to exactly what is used', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 500n }), cmd.withdraw(200n), cmd.placeHold('h', 100n));
    spec.given(given).when(cmd.setOverdraft(300n)).events();
  });

  it('refuses to lower the limit one minor unit below what is used', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 500n }), cmd.withdraw(200n), cmd.placeHold('h', 100n));
    spec.given(given).when(cmd.setOverdraft(299n)).thenThrows('insufficient_funds', BusinessRuleError);
  });

  it('changes the limit of a frozen account', () => {
    spec.given(frozen).when(cmd.setOverdraft(10n)).events();
  });

  it('refuses a closed account', () => {
    spec.given(closed).when(cmd.setOverdraft(10n)).thenThrows('account_closed', BusinessRuleError);
  });

  it.each([-1n, MAX_BALANCE_MINOR + 1n])('refuses the limit %s', (limit) => {
    spec.given(opened).when(cmd.setOverdraft(limit)).thenThrows('invalid_overdraft_limit', DomainValidationError);
  });
});

describe('Deposit', () => {
  it('credits the customer and debits settlement', () => {
    spec
      .given(funded)
      .when(cmd.deposit(250n, { transactionId: 'tx-9', reference: ' INV-1 ', description: 'salary', now: T1 }))
      .then([
        {
          type: 'FundsDeposited',
          data: {
            accountId,
            transactionId: 'tx-9',
            currency: 'EUR',
            amountMinor: 250n,
            balanceAfterMinor: 1250n,
            reference: 'INV-1',
            description: 'salary',
            legs: depositLegs(250n),
            at: T1,
          },
        },
      ]);
  });

  it('credits a frozen account', () => {
    const [event] = spec.given(frozen).when(cmd.deposit(1n)).events();
    expect(event?.type).toBe('FundsDeposited');
  });

  it('refuses a closed account', () => {
    spec.given(closed).when(cmd.deposit(1n)).thenThrows('account_closed', BusinessRuleError);
  });

  it('refuses another currency', () => {
    spec.given(opened).when(cmd.deposit(1n, { currency: 'USD' })).thenThrows('currency_mismatch', BusinessRuleError);
  });

  it.each([0n, -1n])('refuses the amount %s', (amountMinor) => {
    spec.given(opened).when(cmd.deposit(amountMinor)).thenThrows('amount_must_be_positive', DomainValidationError);
  });

  it('accepts exactly the movement limit and refuses one minor unit more', () => {
    spec.given(opened).when(cmd.deposit(MAX_AMOUNT_MINOR)).events();
    spec.given(opened).when(cmd.deposit(MAX_AMOUNT_MINOR + 1n)).thenThrows('amount_limit_exceeded', BusinessRuleError);
  });

  it('refuses to push the balance past the balance limit', () => {
    const nearLimit: AccountEvent = {
      type: 'FundsDeposited',
      data: { ...(funded[1]!.data as Extract<AccountEvent, { type: 'FundsDeposited' }>['data']), amountMinor: MAX_BALANCE_MINOR, balanceAfterMinor: MAX_BALANCE_MINOR, legs: depositLegs(MAX_BALANCE_MINOR) },
    };
    spec.given([...opened, nearLimit]).when(cmd.deposit(1n)).thenThrows('balance_limit_exceeded', BusinessRuleError);
  });

  it.each([
    ['an empty transaction id', { transactionId: '' }, 'invalid_id'],
    ['a transaction id with spaces', { transactionId: 'a b' }, 'invalid_id'],
    ['a reference with a control character', { reference: 'a\u0000b' }, 'invalid_text'],
    ['an overlong description', { description: 'x'.repeat(501) }, 'invalid_text'],
    ['a malformed time', { now: '2025-02-30T00:00:00Z' }, 'invalid_timestamp'],
  ] as const)('refuses %s', (_name, overrides, code) => {
    spec.given(opened).when(cmd.deposit(1n, overrides)).thenThrows(code, DomainValidationError);
  });
});

describe('Withdraw', () => {
  it('debits the customer and credits settlement', () => {
    spec
      .given(funded)
      .when(cmd.withdraw(400n, { transactionId: 'tx-w' }))
      .then([
        {
          type: 'FundsWithdrawn',
          data: {
            accountId,
            transactionId: 'tx-w',
            currency: 'EUR',
            amountMinor: 400n,
            balanceAfterMinor: 600n,
            reference: null,
            description: null,
            legs: [
              { ledgerAccount: `customer:${accountId}`, amountMinor: -400n },
              { ledgerAccount: 'settlement:EUR', amountMinor: 400n },
            ],
            at: T0,
          },
        },
      ]);
  });

  it('withdraws the whole balance', () => {
    spec.given(funded).when(cmd.withdraw(1000n)).events();
  });

  it('refuses one minor unit more than the balance without overdraft', () => {
    spec.given(funded).when(cmd.withdraw(1001n)).thenThrows('insufficient_funds', BusinessRuleError);
  });

  it('goes exactly to the overdraft limit', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 300n }), cmd.deposit(1000n));
    const [event] = spec.given(given).when(cmd.withdraw(1300n)).events();
    expect(event?.data).toMatchObject({ balanceAfterMinor: -300n });
    expect(availableMinor(stateOf([...given, event!]), T0)).toBe(0n);
  });

  it('refuses one minor unit past the overdraft limit', () => {
    const given = history(cmd.open({ overdraftLimitMinor: 300n }), cmd.deposit(1000n));
    spec.given(given).when(cmd.withdraw(1301n)).thenThrows('insufficient_funds', BusinessRuleError);
  });

  it('counts holds against what is available', () => {
    const given = history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('h', 600n));
    spec.given(given).when(cmd.withdraw(401n)).thenThrows('insufficient_funds', BusinessRuleError);
    spec.given(given).when(cmd.withdraw(400n)).events();
  });

  it('refuses a frozen account', () => {
    spec.given(frozen).when(cmd.withdraw(1n)).thenThrows('account_frozen', BusinessRuleError);
  });

  it('refuses a closed account', () => {
    spec.given(closed).when(cmd.withdraw(1n)).thenThrows('account_closed', BusinessRuleError);
  });

  it('refuses another currency', () => {
    spec.given(funded).when(cmd.withdraw(1n, { currency: 'JPY' })).thenThrows('currency_mismatch', BusinessRuleError);
  });

  it('refuses more than the movement limit', () => {
    spec.given(funded).when(cmd.withdraw(MAX_AMOUNT_MINOR + 1n)).thenThrows('amount_limit_exceeded', BusinessRuleError);
  });

  it('refuses a zero amount', () => {
    spec.given(funded).when(cmd.withdraw(0n)).thenThrows('amount_must_be_positive', DomainValidationError);
  });
});

describe('account evolve', () => {
  it('treats an event for an unopened account as a bug', () => {
    expect(() => stateOf(funded.slice(1))).toThrow(Error);
  });

  it('treats a balanceAfterMinor that disagrees with the fold as a bug', () => {
    const corrupt = { ...funded[1]!, data: { ...funded[1]!.data, balanceAfterMinor: 999n } } as AccountEvent;
    expect(() => stateOf([...opened, corrupt])).toThrow(/balance/);
  });

  it('treats a command given another account state as a bug', () => {
    expect(() => spec.given(opened).when(cmd.deposit(1n, { accountId: 'acc-other' })).events()).toThrow(Error);
  });
});
