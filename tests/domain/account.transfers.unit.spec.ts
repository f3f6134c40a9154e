import { describe, expect, it } from 'vitest';
import type { AccountCommand, AccountEvent, TransferCreditRejectionReason, TransferHoldRejectionReason } from '../../src/domain/account.js';
import { accountDecider } from '../../src/domain/account.js';
import { BusinessRuleError } from '../../src/domain/errors.js';
import { assertTrialBalanceZero, ledgerAccountBalance, trialBalance } from '../../src/domain/ledger.js';
import { MAX_AMOUNT_MINOR, MAX_BALANCE_MINOR } from '../../src/domain/money.js';
import { T0, T1, T2, accountId, cmd, history, otherAccountId, spec } from './account-fixtures.js';

const funded = history(cmd.open(), cmd.deposit(1000n));
const placed = history(cmd.open(), cmd.deposit(1000n), cmd.placeTransferHold('t1', 300n));
const closed = history(cmd.open(), cmd.close());
const frozen = history(cmd.open(), cmd.deposit(1000n), cmd.freeze());

function then(given: AccountEvent[], command: Parameters<ReturnType<typeof spec.given>['when']>[0]): AccountEvent[] {
  return [...given, ...spec.given(given).when(command).events()];
}

function holdRejected(reason: TransferHoldRejectionReason, currency = 'EUR', amountMinor = 300n): AccountEvent {
  return { type: 'TransferHoldRejected', data: { accountId, transferId: 't1', currency, amountMinor, reason, at: T0 } };
}

describe('PlaceTransferHold', () => {
  it('places a hold whose id is the transfer id', () => {
    const [event] = spec.given(funded).when(cmd.placeTransferHold('t1', 300n)).events();
    expect(event).toEqual({
      type: 'HoldPlaced',
      data: {
        accountId,
        holdId: 't1',
        transferId: 't1',
        currency: 'EUR',
        amountMinor: 300n,
        expiresAt: T2,
        reference: null,
        description: null,
        heldAfterMinor: 300n,
        availableAfterMinor: 700n,
        at: T0,
      },
    });
  });

  it('is idempotent once placed', () => {
    spec.given(placed).when(cmd.placeTransferHold('t1', 300n)).thenNothing();
  });

  it.each([
    ['insufficient_funds', funded, cmd.placeTransferHold('t1', 1001n), holdRejected('insufficient_funds', 'EUR', 1001n)],
    ['account_frozen', frozen, cmd.placeTransferHold('t1', 300n), holdRejected('account_frozen')],
    ['account_closed', closed, cmd.placeTransferHold('t1', 300n), holdRejected('account_closed')],
    ['currency_mismatch', funded, cmd.placeTransferHold('t1', 300n, { currency: 'USD' }), holdRejected('currency_mismatch', 'USD')],
    ['amount_limit_exceeded', funded, cmd.placeTransferHold('t1', MAX_AMOUNT_MINOR + 1n), holdRejected('amount_limit_exceeded', 'EUR', MAX_AMOUNT_MINOR + 1n)],
  ] as const)('records %s as a rejection event, then is idempotent', (_reason, given, command, expected) => {
    spec.given([...given]).when(command).then([expected]);
    spec.given(then([...given], command)).when(command).thenNothing();
  });

  it('refuses a transfer id already used by a plain hold', () => {
    spec.given(history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('t1', 1n))).when(cmd.placeTransferHold('t1', 1n)).thenThrows('hold_already_exists', BusinessRuleError);
  });
});

describe('RejectTransferHold', () => {
  it('records a rejection when there is no outcome yet', () => {
    spec.given(funded).when(cmd.rejectTransferHold('t1', { amountMinor: 300n })).then([holdRejected('insufficient_funds')]);
  });

  it('fences a late PlaceTransferHold', () => {
    const rejected = then(funded, cmd.rejectTransferHold('t1'));
    spec.given(rejected).when(cmd.placeTransferHold('t1', 300n)).thenNothing();
    spec.given(rejected).when(cmd.rejectTransferHold('t1')).thenNothing();
  });

  it('does nothing once the hold is placed', () => {
    spec.given(placed).when(cmd.rejectTransferHold('t1')).thenNothing();
  });
});

describe('CreditTransfer', () => {
  it('credits the customer from clearing', () => {
    spec
      .given(funded)
      .when(cmd.creditTransfer('t9', 300n, { description: 'rent', now: T1 }))
      .then([
        {
          type: 'TransferCredited',
          data: {
            accountId,
            transferId: 't9',
            fromAccountId: otherAccountId,
            currency: 'EUR',
            amountMinor: 300n,
            balanceAfterMinor: 1300n,
            description: 'rent',
            legs: [
              { ledgerAccount: `customer:${accountId}`, amountMinor: 300n },
              { ledgerAccount: 'clearing:EUR', amountMinor: -300n },
            ],
            at: T1,
          },
        },
      ]);
  });

  it('credits a frozen account', () => {
    const [event] = spec.given(frozen).when(cmd.creditTransfer('t9', 1n)).events();
    expect(event?.type).toBe('TransferCredited');
  });

  it('is idempotent once credited', () => {
    spec.given(then(funded, cmd.creditTransfer('t9', 300n))).when(cmd.creditTransfer('t9', 300n)).thenNothing();
  });

  function creditRejected(reason: TransferCreditRejectionReason, currency = 'EUR', amountMinor = 300n): AccountEvent {
    return { type: 'TransferCreditRejected', data: { accountId, transferId: 't9', fromAccountId: otherAccountId, currency, amountMinor, reason, at: T0 } };
  }

  it.each([
    ['account_closed', closed, cmd.creditTransfer('t9', 300n), creditRejected('account_closed')],
    ['currency_mismatch', funded, cmd.creditTransfer('t9', 300n, { currency: 'JPY' }), creditRejected('currency_mismatch', 'JPY')],
  ] as const)('records %s as a rejection event, then is idempotent', (_reason, given, command, expected) => {
    spec.given([...given]).when(command).then([expected]);
    spec.given(then([...given], command)).when(command).thenNothing();
  });

  it('records balance_limit_exceeded as a rejection event', () => {
    const nearLimit: AccountEvent = {
      type: 'FundsDeposited',
      data: {
        accountId,
        transactionId: 'big',
        currency: 'EUR',
        amountMinor: MAX_BALANCE_MINOR,
        balanceAfterMinor: MAX_BALANCE_MINOR,
        reference: null,
        description: null,
        legs: [
          { ledgerAccount: `customer:${accountId}`, amountMinor: MAX_BALANCE_MINOR },
          { ledgerAccount: 'settlement:EUR', amountMinor: -MAX_BALANCE_MINOR },
        ],
        at: T0,
      },
    };
    spec.given([...history(cmd.open()), nearLimit]).when(cmd.creditTransfer('t9', 300n)).then([creditRejected('balance_limit_exceeded')]);
  });
});

describe('RejectTransferCredit', () => {
  it('records a rejection when there is no outcome yet, and fences a late credit', () => {
    const [event] = spec.given(funded).when(cmd.rejectTransferCredit('t9')).events();
    expect(event).toMatchObject({ type: 'TransferCreditRejected', data: { transferId: 't9', reason: 'account_closed', amountMinor: 100n } });
    spec.given([...funded, event!]).when(cmd.creditTransfer('t9', 100n)).thenNothing();
    spec.given([...funded, event!]).when(cmd.rejectTransferCredit('t9')).thenNothing();
  });

  it('does nothing once credited', () => {
    spec.given(then(funded, cmd.creditTransfer('t9', 100n))).when(cmd.rejectTransferCredit('t9')).thenNothing();
  });
});

describe('CaptureTransferHold', () => {
  /** The capture of t1's hold of 3.00 into clearing. */
  const captured = (at: string, heldAfterMinor = 0n, balanceAfterMinor = 700n): AccountEvent => ({
    type: 'HoldCaptured',
    data: {
      accountId,
      holdId: 't1',
      transferId: 't1',
      counterpartyAccountId: otherAccountId,
      currency: 'EUR',
      capturedMinor: 300n,
      releasedMinor: 0n,
      balanceAfterMinor,
      heldAfterMinor,
      legs: [
        { ledgerAccount: `customer:${accountId}`, amountMinor: -300n },
        { ledgerAccount: 'clearing:EUR', amountMinor: 300n },
      ],
      at,
    },
  });

  it('captures the whole transfer hold into clearing', () => {
    spec.given(placed).when(cmd.captureTransferHold('t1', { now: T1 })).then([captured(T1)]);
  });

  it('is idempotent once captured', () => {
    spec.given(then(placed, cmd.captureTransferHold('t1'))).when(cmd.captureTransferHold('t1')).thenNothing();
  });

  it('captures on a frozen account', () => {
    spec.given(then(placed, cmd.freeze())).when(cmd.captureTransferHold('t1')).events();
  });

  it('refuses a released hold', () => {
    spec.given(then(placed, cmd.releaseTransferHold('t1'))).when(cmd.captureTransferHold('t1')).thenThrows('hold_not_active', BusinessRuleError);
  });

  describe('a hold past its expiry (the manager was down past the grace after the credit)', () => {
    const lateCapture = (heldAfterMinor: bigint, balanceAfterMinor = 700n) => captured(T2, heldAfterMinor, balanceAfterMinor);

    it('captures it late from the available funds, whether its expiry was recorded or not', () => {
      spec.given(placed).when(cmd.captureTransferHold('t1', { now: T2 })).then([lateCapture(0n)]);
      spec.given(then(placed, cmd.expireHold('t1'))).when(cmd.captureTransferHold('t1', { now: T2 })).then([lateCapture(0n)]);
    });

    it('does not count the lapsed hold again in what is still held', () => {
      const withOtherHold = then(placed, cmd.placeHold('h2', 100n, { expiresAt: '2030-01-01T00:00:00.000Z' }));
      spec.given(withOtherHold).when(cmd.captureTransferHold('t1', { now: T2 })).then([lateCapture(100n)]);
    });

    it('is idempotent once captured late', () => {
      const expired = then(placed, cmd.expireHold('t1'));
      spec.given(then(expired, cmd.captureTransferHold('t1', { now: T2 }))).when(cmd.captureTransferHold('t1', { now: T2 })).thenNothing();
    });

    it('refuses while the funds available are short, and captures once they are back', () => {
      const spent = then(then(placed, cmd.expireHold('t1')), cmd.withdraw(800n, { now: T2 }));
      spec.given(spent).when(cmd.captureTransferHold('t1', { now: T2 })).thenThrows('insufficient_funds', BusinessRuleError);
      spec.given(then(spent, cmd.deposit(100n, { now: T2 }))).when(cmd.captureTransferHold('t1', { now: T2 })).then([lateCapture(0n, 0n)]);
    });

    it('captures late on an account frozen since: the payment was authorised when the hold was placed', () => {
      spec.given(then(placed, cmd.freeze())).when(cmd.captureTransferHold('t1', { now: T2 })).then([lateCapture(0n)]);
    });

    it('refuses on an account closed since, with a business rule, not a broken invariant', () => {
      const closedSince = history(cmd.open({ overdraftLimitMinor: 300n }), cmd.deposit(300n), cmd.placeTransferHold('t1', 300n), cmd.expireHold('t1'), cmd.withdraw(300n, { now: T2 }), cmd.close({ now: T2, endedTransferIds: ['t1'] }));
      spec.given(closedSince).when(cmd.captureTransferHold('t1', { now: T2 })).thenThrows('account_closed', BusinessRuleError);
    });

    it('does not apply to a plain hold, which stays expired', () => {
      const plain = history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('h1', 300n));
      spec.given(then(plain, cmd.expireHold('h1'))).when(cmd.captureHold('h1')).thenThrows('hold_expired', BusinessRuleError);
    });
  });

  it('refuses a released hold even past its expiry', () => {
    spec.given(then(placed, cmd.releaseTransferHold('t1'))).when(cmd.captureTransferHold('t1', { now: T2 })).thenThrows('hold_not_active', BusinessRuleError);
  });

  it('refuses a transfer that never placed a hold or was rejected', () => {
    spec.given(funded).when(cmd.captureTransferHold('t1')).thenThrows('hold_not_found', BusinessRuleError);
    spec.given(then(funded, cmd.rejectTransferHold('t1'))).when(cmd.captureTransferHold('t1')).thenThrows('hold_not_found', BusinessRuleError);
  });

  it('refuses a plain hold that shares the id', () => {
    spec.given(history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('t1', 1n))).when(cmd.captureTransferHold('t1')).thenThrows('hold_not_found', BusinessRuleError);
  });
});

describe('ReleaseTransferHold', () => {
  it('releases an active transfer hold', () => {
    spec
      .given(placed)
      .when(cmd.releaseTransferHold('t1'))
      .then([{ type: 'HoldReleased', data: { accountId, holdId: 't1', transferId: 't1', currency: 'EUR', amountMinor: 300n, heldAfterMinor: 0n, at: T0 } }]);
  });

  it('is idempotent once released', () => {
    spec.given(then(placed, cmd.releaseTransferHold('t1'))).when(cmd.releaseTransferHold('t1')).thenNothing();
  });

  it('does nothing for a hold that expired, was never placed or was rejected', () => {
    spec.given(then(placed, cmd.expireHold('t1'))).when(cmd.releaseTransferHold('t1')).thenNothing();
    spec.given(funded).when(cmd.releaseTransferHold('t1')).thenNothing();
    spec.given(then(funded, cmd.rejectTransferHold('t1'))).when(cmd.releaseTransferHold('t1')).thenNothing();
  });

  it('refuses a captured hold', () => {
    spec.given(then(placed, cmd.captureTransferHold('t1'))).when(cmd.releaseTransferHold('t1')).thenThrows('hold_not_active', BusinessRuleError);
  });
});

describe('a whole transfer between two accounts', () => {
  it('moves the money through clearing and leaves clearing at zero', () => {
    const source = history(cmd.open(), cmd.deposit(1000n), cmd.placeTransferHold('t1', 300n));
    const destinationId = otherAccountId;
    const destination = history(
      cmd.open({ accountId: destinationId }),
      cmd.creditTransfer('t1', 300n, { accountId: destinationId, fromAccountId: accountId }),
    );
    const sourceDone = then(source, cmd.captureTransferHold('t1', { toAccountId: destinationId }));
    const trial = trialBalance([...sourceDone, ...destination]);
    assertTrialBalanceZero(trial);
    expect(ledgerAccountBalance(trial, 'EUR', `customer:${accountId}`)).toBe(700n);
    expect(ledgerAccountBalance(trial, 'EUR', `customer:${destinationId}`)).toBe(300n);
    expect(ledgerAccountBalance(trial, 'EUR', 'clearing:EUR')).toBe(0n);
    expect(ledgerAccountBalance(trial, 'EUR', 'settlement:EUR')).toBe(-1000n);
  });
});

describe('an account with a long history', () => {
  it('leaves the state it evolved from untouched: a refused append keeps the cached state exact', () => {
    const given = history(cmd.open(), cmd.deposit(1_000n), cmd.placeTransferHold('t1', 300n));
    const before = given.reduce(accountDecider.evolve, accountDecider.initialState());
    const [placed] = accountDecider.decide(cmd.placeTransferHold('t2', 200n), before);
    const after = accountDecider.evolve(before, placed!);
    if (before.status === 'none' || after.status === 'none') throw new Error('never opened');
    expect([...before.holds.keys()]).toEqual(['t1']);
    expect([...before.activeHolds.keys()]).toEqual(['t1']);
    expect(before.transferHoldOutcomes.has('t2')).toBe(false);
    expect([...after.activeHolds.keys()]).toEqual(['t1', 't2']);
    expect(after.transferHoldOutcomes.get('t2')).toBe('placed');
  });

  it('remembers every transfer it took part in, while only open holds count against the funds', () => {
    const commands: AccountCommand[] = [cmd.open(), cmd.deposit(1_000_000n)];
    for (let index = 0; index < 500; index++) commands.push(cmd.placeTransferHold(`t${index}`, 1n), cmd.captureTransferHold(`t${index}`));
    const state = history(...commands).reduce(accountDecider.evolve, accountDecider.initialState());
    if (state.status === 'none') throw new Error('never opened');
    expect(state.holds.size).toBe(500);
    expect(state.activeHolds.size).toBe(0);
    // A repeat of any old transfer's step decides nothing.
    spec.given(history(...commands)).when(cmd.placeTransferHold('t7', 1n)).thenNothing();
    expect(state.balanceMinor).toBe(999_500n);
  });
});
