import { describe, expect, it } from 'vitest';
import { availableMinor, heldMinor } from '../../src/domain/account.js';
import { BusinessRuleError, DomainValidationError } from '../../src/domain/errors.js';
import { MAX_AMOUNT_MINOR } from '../../src/domain/money.js';
import { T0, T1, T2, T3, accountId, cmd, history, spec, stateOf } from './account-fixtures.js';

const funded = history(cmd.open(), cmd.deposit(1000n));
const withHold = history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('h1', 600n));
const customer = `customer:${accountId}`;

describe('PlaceHold', () => {
  it('reserves funds without posting anything', () => {
    spec
      .given(funded)
      .when(cmd.placeHold('h1', 600n, { reference: 'card-auth', description: 'Hotel' }))
      .then([
        {
          type: 'HoldPlaced',
          data: {
            accountId,
            holdId: 'h1',
            transferId: null,
            currency: 'EUR',
            amountMinor: 600n,
            expiresAt: T2,
            reference: 'card-auth',
            description: 'Hotel',
            heldAfterMinor: 600n,
            availableAfterMinor: 400n,
            at: T0,
          },
        },
      ]);
    const state = stateOf(withHold);
    expect(heldMinor(state, T0)).toBe(600n);
    expect(availableMinor(state, T0)).toBe(400n);
    expect(state.status !== 'none' && state.balanceMinor).toBe(1000n);
  });

  it('holds exactly what is available and refuses one minor unit more', () => {
    spec.given(withHold).when(cmd.placeHold('h2', 400n)).events();
    spec.given(withHold).when(cmd.placeHold('h2', 401n)).thenThrows('insufficient_funds', BusinessRuleError);
  });

  it.each([T0, '2024-12-31T23:59:59.999Z'])('refuses an expiry of %s, not after now', (expiresAt) => {
    spec.given(funded).when(cmd.placeHold('h', 1n, { expiresAt })).thenThrows('hold_expiry_in_past', DomainValidationError);
  });

  it('refuses a malformed expiry', () => {
    spec.given(funded).when(cmd.placeHold('h', 1n, { expiresAt: 'tomorrow' })).thenThrows('invalid_timestamp', DomainValidationError);
  });

  it('refuses to reuse a hold id, even after the hold ended', () => {
    spec.given(withHold).when(cmd.placeHold('h1', 1n)).thenThrows('hold_already_exists', BusinessRuleError);
    const released = [...withHold, ...spec.given(withHold).when(cmd.releaseHold('h1')).events()];
    spec.given(released).when(cmd.placeHold('h1', 1n)).thenThrows('hold_already_exists', BusinessRuleError);
  });

  it('refuses a frozen account', () => {
    spec.given(history(cmd.open(), cmd.deposit(1000n), cmd.freeze())).when(cmd.placeHold('h', 1n)).thenThrows('account_frozen', BusinessRuleError);
  });

  it('refuses a closed account', () => {
    spec.given(history(cmd.open(), cmd.close())).when(cmd.placeHold('h', 1n)).thenThrows('account_closed', BusinessRuleError);
  });

  it('refuses another currency', () => {
    spec.given(funded).when(cmd.placeHold('h', 1n, { currency: 'GBP' })).thenThrows('currency_mismatch', BusinessRuleError);
  });

  it('refuses more than the movement limit', () => {
    spec.given(funded).when(cmd.placeHold('h', MAX_AMOUNT_MINOR + 1n)).thenThrows('amount_limit_exceeded', BusinessRuleError);
  });
});

describe('holds that expire', () => {
  it('stop reserving funds once expiresAt has passed, before any HoldExpired', () => {
    const state = stateOf(withHold);
    expect(heldMinor(state, '2025-01-01T01:59:59.999Z')).toBe(600n);
    expect(heldMinor(state, T2)).toBe(0n);
    expect(availableMinor(state, T2)).toBe(1000n);
  });

  it('let the whole balance be withdrawn after expiry', () => {
    spec.given(withHold).when(cmd.withdraw(1000n, { now: T1 })).thenThrows('insufficient_funds', BusinessRuleError);
    spec.given(withHold).when(cmd.withdraw(1000n, { now: T2 })).events();
  });

  it('do not come back to life when a later command carries an earlier clock', () => {
    const drained = [...withHold, ...spec.given(withHold).when(cmd.withdraw(1000n, { now: T2 })).events()];
    expect(availableMinor(stateOf(drained), T1)).toBe(0n);
    spec.given(drained).when(cmd.deposit(1n, { now: T1 })).events();
    spec.given(drained).when(cmd.captureHold('h1', { now: T1 })).thenThrows('hold_expired', BusinessRuleError);
  });

  it('a command whose clock is behind the account\'s is dated at the account\'s time: nothing is spent or expired "before" expiresAt', () => {
    // A deposit at T2, past the hold's expiry, moved the account's clock; then a withdrawal and an
    // expiry come from a writer whose clock says T1.
    const later = [...withHold, ...spec.given(withHold).when(cmd.deposit(1n, { now: T2 })).events()];
    const [withdrawn] = spec.given(later).when(cmd.withdraw(1001n, { now: T1 })).events();
    expect(withdrawn?.data).toMatchObject({ balanceAfterMinor: 0n, at: T2 });
    spec
      .given(later)
      .when(cmd.expireHold('h1', { now: T1 }))
      .then([{ type: 'HoldExpired', data: { accountId, holdId: 'h1', transferId: null, currency: 'EUR', amountMinor: 600n, heldAfterMinor: 0n, at: T2 } }]);
  });

  it('cannot be captured', () => {
    spec.given(withHold).when(cmd.captureHold('h1', { now: T2 })).thenThrows('hold_expired', BusinessRuleError);
  });

  it('are recorded by ExpireHold at or after expiresAt', () => {
    spec
      .given(withHold)
      .when(cmd.expireHold('h1', { now: T2 }))
      .then([{ type: 'HoldExpired', data: { accountId, holdId: 'h1', transferId: null, currency: 'EUR', amountMinor: 600n, heldAfterMinor: 0n, at: T2 } }]);
  });

  it('report the other holds still reserving funds in heldAfterMinor', () => {
    const given = history(cmd.open(), cmd.deposit(1000n), cmd.placeHold('h1', 600n), cmd.placeHold('h2', 100n, { expiresAt: T3 }));
    const [event] = spec.given(given).when(cmd.expireHold('h1', { now: T2 })).events();
    expect(event?.data).toMatchObject({ heldAfterMinor: 100n });
  });

  it('cannot be expired before expiresAt', () => {
    spec.given(withHold).when(cmd.expireHold('h1', { now: T1 })).thenThrows('invalid_state_transition', BusinessRuleError);
  });

  it('cannot be expired twice, and then capture reports hold_expired', () => {
    const expired = [...withHold, ...spec.given(withHold).when(cmd.expireHold('h1')).events()];
    spec.given(expired).when(cmd.expireHold('h1', { now: T3 })).thenThrows('hold_not_active', BusinessRuleError);
    spec.given(expired).when(cmd.captureHold('h1', { now: T1 })).thenThrows('hold_expired', BusinessRuleError);
  });

  it('ExpireHold refuses an unknown hold', () => {
    spec.given(withHold).when(cmd.expireHold('nope')).thenThrows('hold_not_found', BusinessRuleError);
  });

  it('ExpireHold refuses a released hold', () => {
    const released = [...withHold, ...spec.given(withHold).when(cmd.releaseHold('h1')).events()];
    spec.given(released).when(cmd.expireHold('h1')).thenThrows('hold_not_active', BusinessRuleError);
  });
});

describe('CaptureHold', () => {
  it('captures the whole hold into settlement', () => {
    spec
      .given(withHold)
      .when(cmd.captureHold('h1', { now: T1 }))
      .then([
        {
          type: 'HoldCaptured',
          data: {
            accountId,
            holdId: 'h1',
            transferId: null,
            counterpartyAccountId: null,
            currency: 'EUR',
            capturedMinor: 600n,
            releasedMinor: 0n,
            balanceAfterMinor: 400n,
            heldAfterMinor: 0n,
            legs: [
              { ledgerAccount: customer, amountMinor: -600n },
              { ledgerAccount: 'settlement:EUR', amountMinor: 600n },
            ],
            at: T1,
          },
        },
      ]);
  });

  it('captures part of a hold and releases the remainder in the same event', () => {
    const [event] = spec.given(withHold).when(cmd.captureHold('h1', { amountMinor: 250n, now: T1 })).events();
    expect(event?.data).toMatchObject({
      capturedMinor: 250n,
      releasedMinor: 350n,
      balanceAfterMinor: 750n,
      heldAfterMinor: 0n,
      legs: [
        { ledgerAccount: customer, amountMinor: -250n },
        { ledgerAccount: 'settlement:EUR', amountMinor: 250n },
      ],
    });
    const state = stateOf([...withHold, event!]);
    expect(availableMinor(state, T1)).toBe(750n);
    spec.given([...withHold, event!]).when(cmd.captureHold('h1', { now: T1 })).thenThrows('hold_not_active', BusinessRuleError);
  });

  it('refuses to capture more than the hold', () => {
    spec.given(withHold).when(cmd.captureHold('h1', { amountMinor: 601n })).thenThrows('capture_exceeds_hold', BusinessRuleError);
  });

  it('refuses a zero capture', () => {
    spec.given(withHold).when(cmd.captureHold('h1', { amountMinor: 0n })).thenThrows('amount_must_be_positive', DomainValidationError);
  });

  it('captures on a frozen account, because the funds were reserved', () => {
    const frozen = [...withHold, ...spec.given(withHold).when(cmd.freeze()).events()];
    spec.given(frozen).when(cmd.captureHold('h1')).events();
  });

  it('refuses an unknown hold', () => {
    spec.given(withHold).when(cmd.captureHold('nope')).thenThrows('hold_not_found', BusinessRuleError);
  });

  it('refuses a released hold', () => {
    const released = [...withHold, ...spec.given(withHold).when(cmd.releaseHold('h1')).events()];
    spec.given(released).when(cmd.captureHold('h1')).thenThrows('hold_not_active', BusinessRuleError);
  });

  it('refuses a closed account', () => {
    spec.given(history(cmd.open(), cmd.close())).when(cmd.captureHold('h1')).thenThrows('account_closed', BusinessRuleError);
  });

  it('refuses a transfer hold, which only its transfer settles', () => {
    const given = history(cmd.open(), cmd.deposit(1000n), cmd.placeTransferHold('t1', 100n));
    spec.given(given).when(cmd.captureHold('t1')).thenThrows('invalid_state_transition', BusinessRuleError);
    spec.given(given).when(cmd.releaseHold('t1')).thenThrows('invalid_state_transition', BusinessRuleError);
  });
});

describe('ReleaseHold', () => {
  it('releases an active hold', () => {
    spec
      .given(withHold)
      .when(cmd.releaseHold('h1', { now: T1 }))
      .then([{ type: 'HoldReleased', data: { accountId, holdId: 'h1', transferId: null, currency: 'EUR', amountMinor: 600n, heldAfterMinor: 0n, at: T1 } }]);
  });

  it('releases on a frozen account', () => {
    const frozen = [...withHold, ...spec.given(withHold).when(cmd.freeze()).events()];
    spec.given(frozen).when(cmd.releaseHold('h1')).events();
  });

  it('refuses to release twice', () => {
    const released = [...withHold, ...spec.given(withHold).when(cmd.releaseHold('h1')).events()];
    spec.given(released).when(cmd.releaseHold('h1')).thenThrows('hold_not_active', BusinessRuleError);
  });

  it('refuses a captured hold', () => {
    const captured = [...withHold, ...spec.given(withHold).when(cmd.captureHold('h1')).events()];
    spec.given(captured).when(cmd.releaseHold('h1')).thenThrows('hold_not_active', BusinessRuleError);
  });

  it('refuses an unknown hold', () => {
    spec.given(withHold).when(cmd.releaseHold('nope')).thenThrows('hold_not_found', BusinessRuleError);
  });
});
