import { describe, it } from 'vitest';
import { BusinessRuleError, DomainValidationError, NotFoundError } from '../../src/domain/errors.js';
import { transferDecider, type TransferEvent } from '../../src/domain/transfer.js';
import { deciderSpec } from './decider-spec.js';

const spec = deciderSpec(transferDecider);
const now = '2026-11-25T10:00:00.000Z';
const later = '2026-11-25T10:00:01.000Z';
const facts = { transferId: 't-1', fromAccountId: 'a-1', toAccountId: 'a-2', currency: 'EUR', amountMinor: 1_000n };
const timing = { deadlineAt: '2026-11-25T10:00:30.000Z', holdExpiresAt: '2026-11-25T11:00:30.000Z' };

const request = (overrides: Partial<typeof facts & typeof timing & { description: string | null; now: string }> = {}) => ({
  type: 'RequestTransfer' as const,
  data: { ...facts, ...timing, description: 'rent', now, ...overrides },
});
const requested: TransferEvent = { type: 'TransferRequested', data: { ...facts, ...timing, description: 'rent', at: now } };
// Recorded by the first process manager only; such streams must still fold and finish.
const reserved: TransferEvent = { type: 'TransferFundsReserved', data: { ...facts, at: later } };
const credited: TransferEvent = { type: 'TransferDestinationCredited', data: { ...facts, at: later } };
const compensating: TransferEvent = { type: 'TransferCompensationStarted', data: { ...facts, reason: 'account_closed', at: later } };
const completed: TransferEvent = { type: 'TransferCompleted', data: { ...facts, at: later } };
const failed: TransferEvent = { type: 'TransferFailed', data: { ...facts, reason: 'insufficient_funds', at: later } };
const complete = { type: 'CompleteTransfer' as const, data: { transferId: 't-1', now: later } };
const compensate = { type: 'StartCompensation' as const, data: { transferId: 't-1', reason: 'account_closed' as const, now: later } };
const fail = (reason: 'insufficient_funds' | 'deadline_exceeded') => ({ type: 'FailTransfer' as const, data: { transferId: 't-1', reason, now: later } });

describe('transfer decider', () => {
  describe('requesting', () => {
    it('records the request with its deadline and hold expiry', () => {
      spec.given([]).when(request()).then([requested]);
    });
    it('refuses a second request for the same transfer', () => {
      spec.given([requested]).when(request()).thenThrows('already_exists', BusinessRuleError);
    });
    it('refuses a transfer to the same account', () => {
      spec.given([]).when(request({ toAccountId: 'a-1' })).thenThrows('same_account_transfer', BusinessRuleError);
    });
    it('refuses zero, negative and oversized amounts', () => {
      spec.given([]).when(request({ amountMinor: 0n })).thenThrows('amount_must_be_positive', DomainValidationError);
      spec.given([]).when(request({ amountMinor: -5n })).thenThrows('amount_must_be_positive', DomainValidationError);
      spec.given([]).when(request({ amountMinor: 10n ** 15n + 1n })).thenThrows('amount_limit_exceeded', DomainValidationError);
    });
    it('refuses a deadline in the past or a hold expiring before the deadline', () => {
      spec.given([]).when(request({ deadlineAt: now })).thenThrows('invalid_timestamp', DomainValidationError);
      spec.given([]).when(request({ holdExpiresAt: timing.deadlineAt })).thenThrows('invalid_timestamp', DomainValidationError);
    });
    it('needs an existing transfer for every later step', () => {
      spec.given([]).when(complete).thenThrows('transfer_not_found', NotFoundError);
    });
  });

  describe('the happy path: the request, then the outcome', () => {
    it('completes once the process manager saw the hold captured (the steps are on the accounts)', () => {
      spec.given([requested]).when(complete).then([completed]);
    });
    it('a repeated completion decides nothing', () => {
      spec.given([requested, completed]).when(complete).thenNothing();
    });
    it('a transfer being compensated does not complete', () => {
      spec.given([requested, compensating]).when(complete).thenNothing();
    });
    it('a stream recorded by the first process manager still completes from where it was', () => {
      spec.given([requested, reserved]).when(complete).then([completed]);
      spec.given([requested, reserved, credited]).when(complete).then([completed]);
      spec.given([requested, reserved, credited, completed]).when(complete).thenNothing();
    });
  });

  describe('failure and compensation', () => {
    it('fails before the reservation with the given reason', () => {
      spec.given([requested]).when(fail('insufficient_funds')).then([failed]);
    });
    it('compensation keeps its own reason when the transfer fails', () => {
      spec.given([requested]).when(compensate).then([compensating]);
      spec.given([requested, compensating]).when(fail('deadline_exceeded')).then([{ type: 'TransferFailed', data: { ...facts, reason: 'account_closed', at: later } }]);
    });
    it('compensation starts once', () => {
      spec.given([requested, compensating]).when(compensate).thenNothing();
      spec.given([requested, failed]).when(compensate).thenNothing();
      spec.given([requested, completed]).when(compensate).thenNothing();
    });
    it('a stream recorded by the first process manager is still compensated from reserved', () => {
      spec.given([requested, reserved]).when(compensate).then([compensating]);
      spec.given([requested, reserved, compensating]).when(fail('deadline_exceeded')).then([{ type: 'TransferFailed', data: { ...facts, reason: 'account_closed', at: later } }]);
    });
    it('a credited transfer can only complete', () => {
      spec.given([requested, reserved, credited]).when(fail('deadline_exceeded')).thenThrows('invalid_state_transition', BusinessRuleError);
    });
    it('a finished transfer ignores further failures', () => {
      spec.given([requested, failed]).when(fail('deadline_exceeded')).thenNothing();
      spec.given([requested, reserved, credited, completed]).when(fail('deadline_exceeded')).thenNothing();
    });
  });
});
